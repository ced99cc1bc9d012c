#!/usr/bin/env python3
"""suite_report.py OUT: bench/run_suite.sh's records under OUT as summary.md, .json, .csv and plots.

OUT/links/RATE/ holds, per emulated link rate, allreduce.json (cdl-bench allreduce --json),
gloo.json (bench/ddp_baseline.py --allreduce --json), train.json (cdl-bench train --json),
ddp.json (bench/ddp_baseline.py --json; gloo.json and ddp.json when they ran) and, at
one link, threads-N.json (cdl-bench train at N hand-set threads). OUT/tta/ holds the
time-to-accuracy runs: target.txt (target accuracy, epochs, ranks), runs.txt (the cdl runs, NAME
and settings a line), links.txt, hooks.txt (DDP's runs, NAME and hook a line, when they ran), the
cdl run folders LINK/NAME/ and loopback/NAME/ (with the reference loopback/fp32/), and DDP's
LINK/ddp-HOOK.json.
Any of them may be missing (the suite's --no-* flags), but a file that is there and cannot be
read is an error naming it.

The figures: per link, at the largest allreduce size, every row's time and its speed-up over
MPI_Allreduce and over the best fp32 allreduce of the run (MPI's, gloo's or cdl's `none`), and
`none`'s share of the raw TCP ring's rate and its speed-up over gloo at every size; cdl's
training samples/s per codec beside PyTorch DDP's; the defaults' samples/s against the best
hand-set thread count; per time-to-accuracy link, each run's seconds to the target against the
same run on loopback and against DDP's PowerSGD hook, its seconds to the final accuracy of the run
`uniform` (L-GreCo's measure), and its final accuracy against the fp32 reference. speedup.png
draws the speed-ups against the link rate, tta.png the test accuracy against wall seconds
(gnuplot).
"""
import csv
import io
import json
import os
import re
import subprocess
import sys

EPOCH = 60000  # samples in an epoch of Fashion-MNIST's train split
MPI, TCP, GLOO = "mpi_allreduce_fp32", "tcp_ring_raw", "gloo_allreduce_fp32"
UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
         "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}


def fail(msg):
    print(f"suite_report: {msg}", file=sys.stderr)
    sys.exit(2)


def rate_bits(text):
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)", text)
    if not m or m.group(2).lower() not in UNITS:
        fail(f"links/{text}: not a link rate in tc's units")
    return float(m.group(1)) * UNITS[m.group(2).lower()]


def load(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")


def load_records(path, what):
    """A record file that is a non-empty list (None when missing)."""
    rows = load(path)
    if rows is not None and (not isinstance(rows, list) or not rows):
        fail(f"{path}: not a list of {what} records")
    return rows


def need(record, key, path):
    if not isinstance(record, dict) or key not in record:
        fail(f"{path}: a record without '{key}'")
    return record[key]


def short(codec):
    """A codec spec without the defaults cdl writes out in full."""
    return codec.replace(",bucket=1024", "").replace(",rounding=stochastic", "").replace(
        ",rounding=nearest", "")


def allreduce_section(path, gloo_path):
    rows = load_records(path, "allreduce")
    if rows is None:
        return None
    gloo = load_records(gloo_path, "allreduce")
    if gloo is not None:
        # gloo's row goes after the raw TCP ring's, before cdl's.
        at = next((i + 1 for i, r in enumerate(rows) if r.get("codec") == TCP), 1)
        rows = rows[:at] + gloo + rows[at:]
    sizes = sorted({need(r, "bytes", path) for r in rows})
    by = {(need(r, "codec", path), r["bytes"]): need(r, "time_us", path) for r in rows}
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    big = sizes[-1]
    if (MPI, big) not in by:
        fail(f"{path}: no {MPI} row at {big} bytes")
    mpi = by[(MPI, big)]
    fp32 = [by[(c, big)] for c in (MPI, GLOO, "none") if (c, big) in by]
    best = min(fp32)
    out = {"bytes": big, "ranks": rows[0].get("ranks"), "rows": []}
    for c in codecs:
        if (c, big) in by:
            t = by[(c, big)]
            out["rows"].append({"codec": c, "time_ms": t / 1e3, "speedup_vs_mpi": mpi / t,
                                "speedup_vs_best_fp32": best / t})
    if any(c == TCP for c in codecs) and "none" in codecs:
        out["none_share_of_tcp"] = [
            {"bytes": s, "share": by[(TCP, s)] / by[("none", s)]}
            for s in sizes if (TCP, s) in by and ("none", s) in by]
        out["mpi_share_of_tcp"] = [
            {"bytes": s, "share": by[(TCP, s)] / by[(MPI, s)]}
            for s in sizes if (TCP, s) in by and (MPI, s) in by]
    if gloo is not None and "none" in codecs:
        out["none_vs_gloo"] = [{"bytes": s, "speedup": by[(GLOO, s)] / by[("none", s)]}
                               for s in sizes if (GLOO, s) in by and ("none", s) in by]
    return out


def train_section(path, ddp_path):
    rows = load_records(path, "train")
    if rows is None:
        return None
    out = {"threads": need(rows[0], "threads", path), "rows": []}
    for r in rows:
        sps = need(r, "samples_per_s", path)
        out["rows"].append({"codec": need(r, "codec", path), "samples_per_s": sps,
                            "speedup": need(r, "speedup", path), "epoch_s": EPOCH / sps,
                            "wire_bytes_per_step": need(r, "wire_bytes_per_step", path),
                            "compression_ratio": need(r, "compression_ratio", path)})
    ddp = load(ddp_path)
    if ddp is not None:
        sps = need(ddp, "samples_per_s", ddp_path)
        out["ddp"] = {"samples_per_s": sps, "epoch_s": EPOCH / sps,
                      "threads": need(ddp, "threads", ddp_path)}
        none = [r for r in out["rows"] if r["codec"] == "none"]
        if none:
            out["none_vs_ddp"] = none[0]["samples_per_s"] / sps
        out["best_vs_ddp"] = max(r["samples_per_s"] for r in out["rows"]) / sps
    return out


def threads_section(link_dir, train):
    sweep = {}
    for name in sorted(os.listdir(link_dir)):
        m = re.fullmatch(r"threads-([0-9]+)\.json", name)
        if m:
            rows = load(os.path.join(link_dir, name))
            if not isinstance(rows, list) or len(rows) != 1:
                fail(f"{link_dir}/{name}: not one train record")
            sweep[int(m.group(1))] = rows[0]
    if not sweep or train is None:
        return None
    codec = next(iter(sweep.values()))["codec"]
    default = [r for r in train["rows"] if r["codec"] == codec]
    if not default:
        return None
    hand = {t: r["samples_per_s"] for t, r in sweep.items()}
    best_t = max(hand, key=hand.get)
    return {"codec": codec, "default_threads": train["threads"],
            "default_samples_per_s": default[0]["samples_per_s"], "hand_set": hand,
            "best_hand_set": best_t,
            "best_over_default": hand[best_t] / default[0]["samples_per_s"]}


def gnuplot(script, png):
    """Runs a gnuplot script that writes png + ".tmp", then puts the plot in place."""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        fail(f"gnuplot failed on {png}: {getattr(e, 'stderr', '') or e}")
    os.replace(png + ".tmp", png)
    return png


def trajectory(path, what):
    """[(wall seconds, test accuracy)] at each epoch end: a cdl run folder's metrics.jsonl or a
    bench/ddp_baseline.py --full record."""
    if what == "cdl":
        p = os.path.join(path, "metrics.jsonl")
        if not os.path.exists(p):
            fail(f"{p}: missing (the run did not finish)")
        try:
            records = [json.loads(line) for line in open(p) if line.strip()]
        except ValueError as e:
            fail(f"{p}: {e}")
        points = [(need(r, "wall_s", p), need(r, "test_accuracy", p))
                  for r in records if isinstance(r, dict) and r.get("kind") == "epoch"]
    else:
        r = load(path)
        if r is None:
            fail(f"{path}: missing (the run did not finish)")
        points = [(need(e, "wall_s", path), need(e, "test_accuracy", path))
                  for e in need(r, "records", path)]
    if not points:
        fail(f"{path}: no epoch's test accuracy")
    return points


def time_to(points, target):
    """The wall seconds at the first epoch end at or above target, or None."""
    return next((w for w, acc in points if acc >= target), None)


def tta_section(out_dir):
    """Per link, every run's trajectory and seconds to the target, beside the same cdl run on
    loopback and PyTorch's PowerSGD hook on the same link; the fp32 reference's final accuracy."""
    d = os.path.join(out_dir, "tta")
    target_path = os.path.join(d, "target.txt")
    if not os.path.exists(target_path):
        return None
    target, epochs, nodes = open(target_path).read().split()
    target = float(target)
    runs = [line.split("\t")[0] for line in open(os.path.join(d, "runs.txt")).read().splitlines()]
    hooks_path = os.path.join(d, "hooks.txt")
    hooks = [line.split("\t") for line in open(hooks_path).read().splitlines()] \
        if os.path.exists(hooks_path) else []
    links = open(os.path.join(d, "links.txt")).read().split()
    loop = {n: trajectory(os.path.join(d, "loopback", n), "cdl") for n in ["fp32"] + runs}
    reference = loop["fp32"][-1][1]
    section = {"target": target, "epochs": int(epochs), "nodes": int(nodes),
               "fp32_accuracy": reference, "links": []}
    for link in ["loopback"] + links:
        rows = [{"name": n, "kind": "cdl",
                 "points": loop[n] if link == "loopback" else
                 trajectory(os.path.join(d, link, n), "cdl")} for n in runs]
        if link != "loopback":
            rows += [{"name": f"DDP {h}", "kind": "ddp", "hook": h,
                      "points": trajectory(os.path.join(d, link, name + ".json"), "ddp")}
                     for name, h in hooks]
        for r in rows:
            r["seconds"] = time_to(r["points"], target)
            r["final_accuracy"] = r["points"][-1][1]
            r["vs_fp32_pt"] = 100 * (r["final_accuracy"] - reference)
        psgd = next((r for r in rows if r.get("hook", "").startswith("powersgd:")), None)
        uniform = next((r for r in rows if r["name"] == "uniform"), None)
        for r in rows:
            base = time_to(loop[r["name"]], target) if r["kind"] == "cdl" else None
            if link != "loopback" and r["seconds"] and base:
                r["over_loopback"] = r["seconds"] / base
            if psgd and psgd["seconds"] and r["seconds"] and r is not psgd:
                r["powersgd_over"] = psgd["seconds"] / r["seconds"]
        entry = {"link": link, "rows": rows}
        if uniform:  # L-GreCo's measure: how much sooner a run reaches uniform's final accuracy
            entry["uniform_final"] = uniform["final_accuracy"]
            base = time_to(uniform["points"], uniform["final_accuracy"])
            for r in rows:
                r["seconds_to_uniform_final"] = time_to(r["points"], uniform["final_accuracy"])
                if r["seconds_to_uniform_final"]:
                    r["uniform_over"] = base / r["seconds_to_uniform_final"]
        section["links"].append(entry)
    return section


def gnuplot_tta(out_dir, tta):
    """tta.png: test accuracy against wall seconds, a panel per link, a line per run."""
    data = os.path.join(out_dir, "tta.dat")
    panels = []
    with open(data, "w") as f:
        index = 0
        for l in tta["links"]:
            items = []
            for r in l["rows"]:
                f.write(f"# {l['link']}: {r['name']}\n")
                f.writelines(f"{w} {100 * acc}\n" for w, acc in r["points"])
                f.write("\n\n")
                style = "dashtype 2" if r["kind"] == "ddp" else "dashtype 1"
                items.append(f"'{data}' index {index} with linespoints {style} title '{r['name']}'")
                index += 1
            panels.append((l["link"], items))
    png = os.path.join(out_dir, "tta.png")
    cols = min(2, len(panels))
    rows = (len(panels) + cols - 1) // cols
    script = [f"set terminal pngcairo size {700 * cols},{480 * rows} noenhanced",
              f"set output '{png}.tmp'", f"set multiplot layout {rows},{cols}", "set grid",
              "set xlabel 'wall seconds'", "set ylabel 'test accuracy (%)'", "set key right bottom"]
    for link, items in panels:
        script += [f"set title '{link}: {tta['nodes']} nodes, {tta['epochs']} epochs'",
                   "plot " + ", ".join(items)]
    script += ["unset multiplot", ""]
    return gnuplot("\n".join(script), png)


def gnuplot_speedups(out_dir, links):
    """speedup.png: allreduce speed-up over MPI_Allreduce and training speed-up over cdl's fp32
    against the link rate, a line per codec."""
    series = {"allreduce": {}, "train": {}}
    for l in links:
        gbit = l["gbit"]
        if l.get("allreduce"):
            for r in l["allreduce"]["rows"]:
                if r["codec"] != MPI:
                    series["allreduce"].setdefault(short(r["codec"]), []).append(
                        (gbit, r["speedup_vs_mpi"]))
        if l.get("train"):
            for r in l["train"]["rows"]:
                series["train"].setdefault(short(r["codec"]), []).append((gbit, r["speedup"]))
            if "ddp" in l["train"]:
                none = [r for r in l["train"]["rows"] if r["codec"] == "none"]
                if none:
                    series["train"].setdefault("PyTorch DDP (gloo)", []).append(
                        (gbit, l["train"]["ddp"]["samples_per_s"] / none[0]["samples_per_s"]))
    data = os.path.join(out_dir, "speedup.dat")
    blocks, plots = [], {"allreduce": [], "train": []}
    with open(data, "w") as f:
        for panel in ("allreduce", "train"):
            for name, pts in series[panel].items():
                f.write(f"# {panel}: {name}\n")
                for x, y in sorted(pts):
                    f.write(f"{x} {y}\n")
                f.write("\n\n")
                plots[panel].append((len(blocks), name))
                blocks.append(name)
    if not blocks:
        return None
    big = links[0].get("allreduce", {}) or {}
    size = f"{big.get('bytes', 0) / 2**20:g} MiB" if big else ""

    def plot_cmd(panel):
        items = [f"'{data}' index {i} with linespoints title '{name}'"
                 for i, name in plots[panel]]
        return "plot " + ", ".join(items) if items else "plot 1 notitle"

    png = os.path.join(out_dir, "speedup.png")
    script = "\n".join([
        "set terminal pngcairo size 1400,560 noenhanced",
        f"set output '{png}.tmp'",
        "set multiplot layout 1,2",
        "set logscale x", "set logscale y", "set grid",
        "set offsets graph 0.02, graph 0.02, graph 0.05, graph 0.05",
        "set xlabel 'link (Gbit/s)'", "set key left top",
        f"set title 'allreduce of {size}: speed-up over MPI_Allreduce'",
        "set ylabel 'x'", plot_cmd("allreduce"),
        "set title 'training samples/s over cdl fp32 (none)'", plot_cmd("train"),
        "unset multiplot", ""])
    return gnuplot(script, png)


def write_atomically(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def markdown(summary):
    md = ["# cdl benchmark suite", ""]
    for l in summary["links"]:
        md += [f"## {l['link']} per link ({l['nodes']} emulated nodes)", ""]
        a = l.get("allreduce")
        if a:
            md += [f"Allreduce of {a['bytes'] / 2**20:g} MiB:", "",
                   "| row | ms | x MPI_Allreduce | x best fp32 |", "|---|---|---|---|"]
            md += [f"| {short(r['codec'])} | {r['time_ms']:.1f} | {r['speedup_vs_mpi']:.2f} "
                   f"| {r['speedup_vs_best_fp32']:.2f} |" for r in a["rows"]]
            if a.get("none_share_of_tcp"):
                shares = ", ".join(f"{s['bytes'] / 2**10:g} KiB {100 * s['share']:.0f}%"
                                   for s in a["none_share_of_tcp"])
                md += ["", f"cdl `none` at a share of the raw TCP ring's rate: {shares}."]
            if a.get("none_vs_gloo"):
                ratios = ", ".join(f"{s['bytes'] / 2**10:g} KiB {s['speedup']:.2f}x"
                                   for s in a["none_vs_gloo"])
                md += ["", f"cdl `none` over gloo's allreduce: {ratios}."]
            md.append("")
        t = l.get("train")
        if t:
            md += [f"Training ({t['threads']} threads per rank, cdl's default):", "",
                   "| codec | samples/s | x none | s per epoch | wire B/step | x fp32 bytes |",
                   "|---|---|---|---|---|---|"]
            md += [f"| {short(r['codec'])} | {r['samples_per_s']:.0f} | {r['speedup']:.2f} | "
                   f"{r['epoch_s']:.1f} | {r['wire_bytes_per_step']:.0f} | "
                   f"{r['compression_ratio']:.1f} |" for r in t["rows"]]
            if "ddp" in t:
                d = t["ddp"]
                md.append(f"| PyTorch DDP (gloo) | {d['samples_per_s']:.0f} | | "
                          f"{d['epoch_s']:.1f} | | |")
                md += ["", f"cdl `none` / DDP: {t.get('none_vs_ddp', float('nan')):.2f}x; "
                       f"cdl's fastest row / DDP: {t['best_vs_ddp']:.2f}x."]
            md.append("")
        th = l.get("threads")
        if th:
            hand = ", ".join(f"{k} threads {v:.0f}" for k, v in sorted(th["hand_set"].items()))
            md += [f"Threads ({short(th['codec'])}): default {th['default_threads']} "
                   f"{th['default_samples_per_s']:.0f} samples/s; hand-set {hand}; the best "
                   f"hand-set count is {th['best_over_default']:.2f}x the default.", ""]
    t = summary.get("tta")
    if t:
        pct = f"{100 * t['target']:g}%"
        md += ["## Time to accuracy", "",
               f"{t['nodes']} ranks, {t['epochs']} epochs; the fp32 reference (cdl-train, "
               f"`none`, loopback) ends at {100 * t['fp32_accuracy']:.2f}%. A run's time to "
               f"{pct} is the end of the first epoch at or above it; \"x loopback\" is the same "
               "run's on loopback, \"PowerSGD / run\" the DDP PowerSGD hook's time over the run's; "
               "\"to uniform's final\" is the time to the final accuracy of the run `uniform` on "
               "the same link, and \"uniform / run\" uniform's time to it over the run's.",
               "", f"| link | run | to {pct} (s) | x loopback | PowerSGD / run | final accuracy "
               "| vs fp32 (pt) | to uniform's final (s) | uniform / run |",
               "|---|---|---|---|---|---|---|---|---|"]
        for l in t["links"]:
            for r in l["rows"]:
                sec = f"{r['seconds']:.1f}" if r["seconds"] else "not reached"
                lo = f"{r['over_loopback']:.2f}x" if "over_loopback" in r else ""
                ps = f"{r['powersgd_over']:.2f}x" if "powersgd_over" in r else ""
                to_u = r.get("seconds_to_uniform_final")
                uf = (f"{to_u:.1f}" if to_u else "not reached") if "uniform_final" in l else ""
                uo = f"{r['uniform_over']:.2f}x" if "uniform_over" in r else ""
                md.append(f"| {l['link']} | {r['name']} | {sec} | {lo} | {ps} | "
                          f"{100 * r['final_accuracy']:.2f}% | {r['vs_fp32_pt']:+.2f} | {uf} "
                          f"| {uo} |")
        md += ["", "![test accuracy against wall time](tta.png)", ""]
    md += ["![speed-up against link rate](speedup.png)", ""]
    return "\n".join(md)


def csv_rows(summary):
    rows = []
    for l in summary["links"]:
        for r in (l.get("allreduce") or {}).get("rows", []):
            for k in ("time_ms", "speedup_vs_mpi", "speedup_vs_best_fp32"):
                rows.append(("allreduce", l["link"], r["codec"], k, r[k]))
        for r in (l.get("train") or {}).get("rows", []):
            for k in ("samples_per_s", "speedup", "epoch_s", "wire_bytes_per_step"):
                rows.append(("train", l["link"], r["codec"], k, r[k]))
        t = l.get("train") or {}
        if "ddp" in t:
            rows.append(("train", l["link"], "pytorch_ddp_gloo", "samples_per_s",
                         t["ddp"]["samples_per_s"]))
    for l in (summary.get("tta") or {}).get("links", []):
        for r in l["rows"]:
            if r["seconds"]:
                rows.append(("tta", l["link"], r["name"], f"seconds_to_{summary['tta']['target']}",
                             r["seconds"]))
            rows.append(("tta", l["link"], r["name"], "final_accuracy", r["final_accuracy"]))
            if r.get("seconds_to_uniform_final"):
                rows.append(("tta", l["link"], r["name"], "seconds_to_uniform_final",
                             r["seconds_to_uniform_final"]))
    return rows


def main():
    if len(sys.argv) != 2:
        fail("usage: suite_report.py OUT (bench/run_suite.sh's output folder)")
    out = sys.argv[1]
    links_dir = os.path.join(out, "links")
    if not os.path.isdir(links_dir):
        fail(f"{out}: no links/ folder (not run_suite.sh's output)")
    links = []
    for name in sorted(os.listdir(links_dir), key=rate_bits):
        d = os.path.join(links_dir, name)
        a = allreduce_section(os.path.join(d, "allreduce.json"), os.path.join(d, "gloo.json"))
        t = train_section(os.path.join(d, "train.json"), os.path.join(d, "ddp.json"))
        link = {"link": name, "gbit": rate_bits(name) / 1e9,
                "nodes": (a or {}).get("ranks"), "allreduce": a, "train": t}
        th = threads_section(d, t)
        if th:
            link["threads"] = th
        links.append(link)
    if not links:
        fail(f"{links_dir}: no link folders")
    summary = {"links": links, "tta": tta_section(out)}
    gnuplot_speedups(out, links)
    if summary["tta"]:
        gnuplot_tta(out, summary["tta"])
    write_atomically(os.path.join(out, "summary.json"), json.dumps(summary, indent=2) + "\n")
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(["section", "link", "codec", "metric", "value"])
    w.writerows(csv_rows(summary))
    write_atomically(os.path.join(out, "summary.csv"), text.getvalue())
    write_atomically(os.path.join(out, "summary.md"), markdown(summary))


if __name__ == "__main__":
    main()
