#!/usr/bin/env python3
"""DDP communication hooks side by side on emulated links: the same script, only the hook changed.

    bench/hook_table.py [--out DIR] [--nodes 4] [--links 100mbit,10mbit] [--epochs 3]
                        [--hooks none,fp16,powersgd:4,cdl:qsgd:bits=4,entropy=rans,cdl-adaptive]
                        [--rate-only HOOK@LINK]... [--steps 30] [--hook-warmup 50]
                        [--step-timeout 3600]

For each link and hook, bench/ddp_baseline.py runs on --nodes emulated nodes (cdl-launch
--emulate, root) twice: --steps timed steps (samples/s, the hook's compression ratio) and --full
training of --epochs epochs with a test after each (the wall seconds at which the test accuracy
first reached 90%). --hook-warmup is ddp_baseline.py's: the PowerSGD hook's fp32 steps and the
steps before cdl-adaptive's first plan; the timed steps of those two come after it. The hooks are ddp_baseline.py's --hook values; hooks are separated by ';'
when one has a comma in its spec (cdl:qsgd:bits=4,entropy=rans), else by ','.

A HOOK@LINK given to --rate-only gets its timed run only (a plain DDP epoch at 10 Mbit/s takes many
minutes): its time to 90% is then estimated as the epochs the same hook needed on another link
(the arithmetic, so the trajectory, does not depend on the link) times its epoch at this link's
measured samples/s, plus the test time of those epochs measured on the other link, and the table
marks it "est.".

Writes DIR/LINK/HOOK.{steps,full}.json and their logs, and DIR/table.md (also printed): per link,
per hook, time to 90%, samples/s, the compression ratio of cdl's hooks, and the final accuracy.
The build folder is CDL_BUILD (default build/); the python is cdl's venv (scripts/torch-venv.sh),
with PYTHONPATH=CDL_BUILD/python for the cdl package.
"""
import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = "0.90"
DEFAULT_HOOKS = "none;fp16;powersgd:4;cdl:qsgd:bits=4,entropy=rans;cdl-adaptive"


def die(msg):
    print(f"hook_table: {msg}", file=sys.stderr)
    sys.exit(2)


def split_hooks(text):
    return [h for h in (text.split(";") if ";" in text else text.split(",")) if h]


def file_name(hook):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", hook)


def run(a, link, hook, mode, python, build):
    """One ddp_baseline.py run; returns its JSON record (rank 0's)."""
    base = os.path.join(a.out, link, file_name(hook) + "." + mode)
    store = base + ".store"
    if os.path.exists(store):
        os.remove(store)
    # The timed steps start after a hook's fp32 steps (powersgd) or its first plan (cdl-adaptive).
    phased = hook.startswith("powersgd:") or hook.startswith("cdl-adaptive")
    warmup = a.hook_warmup + 5 if phased else 3
    args = ["--steps", str(a.steps), "--warmup", str(warmup)] if mode == "steps" else \
        ["--full", "--epochs", str(a.epochs)]
    args += ["--hook-warmup", str(a.hook_warmup)]
    cmd = [os.path.join(build, "bin", "cdl-launch"), "--emulate", str(a.nodes), "--bandwidth",
           link, "--bench", "-x", "PYTHONPATH=" + os.path.join(build, "python"), "--program",
           python, "--", os.path.join(HERE, "ddp_baseline.py"), "--store", store, "--hook", hook,
           "--json"] + args
    print(f"hook_table: {link} {hook} ({mode})", file=sys.stderr, flush=True)
    with open(base + ".json", "w") as out, open(base + ".log", "w") as log:
        try:
            rc = subprocess.run(cmd, stdout=out, stderr=log, timeout=a.step_timeout).returncode
        except subprocess.TimeoutExpired:
            die(f"{link} {hook} ({mode}) did not finish within {a.step_timeout} s "
                f"(log: {base}.log)")
    if rc != 0:
        die(f"{link} {hook} ({mode}) failed with status {rc} (log: {base}.log)")
    with open(base + ".json") as f:
        text = f.read()
    start = text.find("{")
    try:
        return json.loads(text[start:])
    except ValueError:
        die(f"{link} {hook} ({mode}): no JSON record in {base}.json")


def reached(full):
    """(wall seconds, epochs) at which the full run first reached TARGET, or None."""
    for r in full["records"]:
        if r["test_accuracy"] >= float(TARGET):
            return r["wall_s"], r["epoch"]
    return None


def estimate(hook, link, results, steps):
    """Time to TARGET of a rate-only hook at link from its full run on another link."""
    for other, runs in results.items():
        full = runs.get(hook, {}).get("full")
        if other == link or full is None:
            continue
        hit = reached(full)
        if hit is None:
            return None
        wall, epochs = hit
        other_train = epochs * full["epoch_samples"] / runs[hook]["steps"]["samples_per_s"]
        tests = wall - other_train  # what the other run spent beside training at its steady rate
        return epochs * full["epoch_samples"] / steps["samples_per_s"] + max(0.0, tests)
    return None


def table(a, results):
    rows = [f"# DDP hooks on {a.nodes} emulated nodes, CNN on Fashion-MNIST, {a.epochs} epochs",
            "", "| link | hook | time to 90% (s) | samples/s | compression | final accuracy |",
            "|---|---|---|---|---|---|"]
    for link, runs in results.items():
        for hook, r in runs.items():
            steps, full = r["steps"], r.get("full")
            stats = steps.get("hook_stats")
            ratio = f"{stats['compression_ratio']:.1f}x" if stats else ""
            if full is not None:
                hit = reached(full)
                tta = f"{hit[0]:.1f}" if hit else "not reached"
                acc = f"{full['records'][-1]['test_accuracy']:.4f}"
            else:
                est = estimate(hook, link, results, steps)
                tta = f"{est:.1f} (est.)" if est is not None else "n/a"
                acc = "(rate only)"
            rows.append(f"| {link} | {hook} | {tta} | {steps['samples_per_s']:.0f} | {ratio} "
                        f"| {acc} |")
    return "\n".join(rows) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--links", default="100mbit,10mbit")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--hooks", default=DEFAULT_HOOKS)
    ap.add_argument("--rate-only", action="append", default=[])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--hook-warmup", type=int, default=50)
    ap.add_argument("--step-timeout", type=int, default=3600)
    a = ap.parse_args()
    build = os.environ.get("CDL_BUILD", os.path.join(ROOT, "build"))
    a.out = a.out or os.path.join(build, "bench-out", "hooks")
    if a.nodes < 2 or a.epochs < 1 or a.steps < 1 or a.step_timeout < 1 or a.hook_warmup < 0:
        die("--nodes must be >= 2, --epochs, --steps and --step-timeout >= 1, --hook-warmup >= 0")
    venv = subprocess.run([os.path.join(ROOT, "scripts", "torch-venv.sh")], capture_output=True,
                          text=True)
    if venv.returncode != 0:
        die("no venv with torch (scripts/torch-venv.sh): " + venv.stderr.strip())
    python = os.path.join(venv.stdout.strip(), "bin", "python")
    hooks, links = split_hooks(a.hooks), [x for x in a.links.split(",") if x]
    for ro in a.rate_only:
        hook, _, link = ro.rpartition("@")
        if hook not in hooks or link not in links:
            die(f"--rate-only {ro}: not one of the hooks at one of the links")
    results = {}
    for link in links:
        os.makedirs(os.path.join(a.out, link), exist_ok=True)
        results[link] = {}
        for hook in hooks:
            r = {"steps": run(a, link, hook, "steps", python, build)}
            if f"{hook}@{link}" not in a.rate_only:
                r["full"] = run(a, link, hook, "full", python, build)
            results[link][hook] = r
    text = table(a, results)
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "table.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(text, end="")


if __name__ == "__main__":
    main()
