#!/usr/bin/env bash
# bench/run_suite.sh end to end on a small job: suite_check.sh SUITE BUILD CONFIG (root: skips
# with 77 where network namespaces cannot be made).
# 2 emulated nodes at 1gbit and 100mbit, a 256 KiB allreduce, 2 training steps of a synthetic
# set, one epoch of time to accuracy at 100mbit (cdl uniform and adaptive with the time budget, and
# DDP's PowerSGD hook): summary.md has a section per link (slowest first) with the allreduce table
# (MPI_Allreduce, the raw TCP ring, gloo's allreduce on the torch of cdl's venv, every codec), the
# training table (with PyTorch DDP's row) and the thread sweep at the first link, and the
# time-to-accuracy table (each run on loopback and at the link, the fp32 reference); summary.json
# and summary.csv say the same; speedup.png and tta.png are PNGs. An --out that holds anything else
# is refused and left as it was, as are bad arguments; the report names a record file that does
# not parse. The suite's progress (each step and its seconds) goes to stderr, and a step that
# hangs ends the suite after 300 s naming it.
source "$(dirname "$0")/../support/check.sh"
suite=$1 build=$2 config=$3
skip() { echo "suite_check: SKIP: $*"; exit 77; }
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces and tc)"
probe=cdlprobe$$
ip netns add "$probe" 2>/dev/null || skip "cannot create a network namespace here"
ip netns del "$probe"
report=$(dirname "$suite")/suite_report.py

mkdir -p "$tmp/keep"
echo precious >"$tmp/keep/file"
if CDL_BUILD=$build "$suite" --out "$tmp/keep" --nodes 2 2>"$tmp/refused.err"; then
  fail "the suite ran into a folder holding something else"
fi
grep -q "is not a suite's output" "$tmp/refused.err" || fail "the refusal says $(cat "$tmp/refused.err")"
[ "$(cat "$tmp/keep/file")" = precious ] || fail "the refused folder was changed"
if CDL_BUILD=$build "$suite" --nodes 1 2>"$tmp/bad.err"; then fail "--nodes 1 was taken"; fi
grep -q -- "--nodes '1' must be at least 2" "$tmp/bad.err" || fail "--nodes 1 says $(cat "$tmp/bad.err")"
if CDL_BUILD=$build "$suite" --step-timeout 1s 2>"$tmp/bad.err"; then fail "--step-timeout 1s was taken"; fi
grep -q -- "--step-timeout '1s' must be a count of seconds" "$tmp/bad.err" ||
  fail "--step-timeout 1s says $(cat "$tmp/bad.err")"

if CDL_BUILD=$build "$suite" --tta-run fp32=comm.codec=none 2>"$tmp/bad.err"; then
  fail "--tta-run fp32=... was taken"
fi
grep -q -- "--tta-run 'fp32=comm.codec=none' must be NAME=SETS" "$tmp/bad.err" ||
  fail "--tta-run fp32=... says $(cat "$tmp/bad.err")"
if CDL_BUILD=$build "$suite" --tta-run a=x --tta-run a=y 2>"$tmp/bad.err"; then
  fail "two runs named a were taken"
fi
grep -q -- "--tta-run: two runs named 'a'" "$tmp/bad.err" ||
  fail "two runs named a say $(cat "$tmp/bad.err")"
if CDL_BUILD=$build "$suite" --tta-target 90 2>"$tmp/bad.err"; then fail "--tta-target 90 was taken"; fi
grep -q -- "--tta-target '90' must be an accuracy in (0, 1)" "$tmp/bad.err" ||
  fail "--tta-target 90 says $(cat "$tmp/bad.err")"

out=$tmp/suite
CDL_BUILD=$build "$suite" --out "$out" --nodes 2 --links 1gbit,100mbit --config "$config" \
  --min-bytes 64K --max-bytes 256K --steps 2 --warmup 1 --codec none \
  --codec qsgd:bits=4,entropy=rans --set data.dataset=synthetic --set data.synthetic_train=512 \
  --tta-epochs 1 --tta-links 100mbit --tta-run uniform=comm.adaptive.enabled=false \
  --tta-run 'adaptive=comm.adaptive.enabled=true;comm.adaptive.warmup_steps=2;comm.adaptive.budget=time' \
  --tta-hook powersgd:4 --tta-target 0.5 --step-timeout 300 >"$tmp/suite.out" ||
  fail "the suite failed (its progress and errors are above)"
ddp=0
python=$("$(dirname "$suite")/../scripts/torch-venv.sh")/bin/python
"$python" -W ignore -c "import torch.distributed as d; assert d.is_gloo_available()" ||
  fail "$python has no torch with gloo (scripts/install-deps.sh installs cdl's venv)"
ddp=1

python3 - "$out" "$ddp" <<'PY' || fail "the summary is wrong (summary.md: $(cat "$out/summary.md"))"
import csv, json, sys
out, ddp = sys.argv[1], sys.argv[2] == "1"
s = json.load(open(f"{out}/summary.json"))
assert [l["link"] for l in s["links"]] == ["100mbit", "1gbit"], s["links"]
for l in s["links"]:
    a = l["allreduce"]
    assert a["bytes"] == 256 * 1024 and a["ranks"] == 2, a
    assert [r["codec"] for r in a["rows"]] == [
        "mpi_allreduce_fp32", "tcp_ring_raw"] + (["gloo_allreduce_fp32"] if ddp else []) + [
        "none", "qsgd:bits=4,bucket=1024,rounding=stochastic,entropy=rans"], a["rows"]
    assert all(r["time_ms"] > 0 for r in a["rows"]), a
    assert a["rows"][0]["speedup_vs_mpi"] == 1.0, a
    assert [x["bytes"] for x in a["none_share_of_tcp"]] == [65536, 262144], a
    assert ("none_vs_gloo" in a) == ddp, a
    if ddp:
        assert [x["bytes"] for x in a["none_vs_gloo"]] == [65536, 262144], a
        assert all(x["speedup"] > 0 for x in a["none_vs_gloo"]), a
    t = l["train"]
    assert [r["codec"] for r in t["rows"]][0] == "none" and len(t["rows"]) == 2, t
    assert t["rows"][0]["speedup"] == 1.0 and t["rows"][1]["compression_ratio"] > 4, t
    assert ("ddp" in t) == ddp, t
    if ddp:
        assert t["ddp"]["samples_per_s"] > 0 and t["ddp"]["threads"] == t["threads"], t
assert "threads" in s["links"][1] and "threads" not in s["links"][0], "the sweep is at the first link (1gbit) only"
th = s["links"][1]["threads"]
assert sorted(th["hand_set"]) == ["1", "2"] and th["best_over_default"] > 0, th
t = s["tta"]
assert t["target"] == 0.5 and t["epochs"] == 1 and t["nodes"] == 2, t
assert 0 <= t["fp32_accuracy"] <= 1, t
assert [l["link"] for l in t["links"]] == ["loopback", "100mbit"], t["links"]
names = [[r["name"] for r in l["rows"]] for l in t["links"]]
hook = ["DDP powersgd:4"] if ddp else []
assert names == [["uniform", "adaptive"], ["uniform", "adaptive"] + hook], names
for l in t["links"]:
    for r in l["rows"]:
        assert len(r["points"]) == 1 and r["points"][0][0] > 0, r
        assert r["final_accuracy"] == r["points"][-1][1], r
        assert abs(r["vs_fp32_pt"] - 100 * (r["final_accuracy"] - t["fp32_accuracy"])) < 1e-9, r
        if r["seconds"] is not None:
            assert r["final_accuracy"] >= 0.5 and r["seconds"] == r["points"][0][0], r
    assert l["uniform_final"] == l["rows"][0]["final_accuracy"], l
    assert l["rows"][0]["uniform_over"] == 1.0, l
plans = [json.loads(x) for x in open(f"{out}/tta/100mbit/adaptive/metrics.jsonl") if '"kind":"plan"' in x]
assert plans and all(p["budget_kind"] == "time" for p in plans), plans
md = open(f"{out}/summary.md").read()
for text in ("## 100mbit per link (2 emulated nodes)", "## 1gbit per link (2 emulated nodes)",
             "| tcp_ring_raw |", "| none |", "## Time to accuracy", "Threads (qsgd:bits=4,entropy=rans)"):
    assert text in md, text
assert ("| PyTorch DDP (gloo) |" in md) == ddp
assert ("| gloo_allreduce_fp32 |" in md and "cdl `none` over gloo's allreduce" in md) == ddp
assert md.index("## 100mbit") < md.index("## 1gbit")
rows = list(csv.reader(open(f"{out}/summary.csv")))
assert rows[0] == ["section", "link", "codec", "metric", "value"], rows[0]
assert any(r[:4] == ["allreduce", "1gbit", "tcp_ring_raw", "time_ms"] for r in rows), rows
assert any(r[:4] == ["tta", "100mbit", "uniform", "final_accuracy"] for r in rows), rows
PY
is_png "$out/speedup.png" || fail "speedup.png is not a PNG"
is_png "$out/tta.png" || fail "tta.png is not a PNG"
for l in 1gbit 100mbit; do
  is_png "$out/links/$l/allreduce.png" && is_png "$out/links/$l/train.png" || fail "the $l plots"
done
# An earlier suite's folder is replaced.
CDL_BUILD=$build "$suite" --out "$out" --nodes 2 --links 1gbit --config "$config" \
  --min-bytes 64K --max-bytes 64K --steps 1 --warmup 0 --codec none --no-tta --no-ddp \
  --no-threads --set data.dataset=synthetic --set data.synthetic_train=512 --step-timeout 300 \
  >"$tmp/again.out" ||
  fail "the second run failed (its progress and errors are above)"
[ ! -e "$out/links/100mbit" ] && [ ! -e "$out/tta.png" ] || fail "the earlier suite's files were kept"
grep -q "^## 1gbit per link" "$out/summary.md" || fail "the second summary"
# A record that does not parse is named.
echo '{' >"$out/links/1gbit/train.json"
if python3 "$report" "$out" 2>"$tmp/report.err"; then fail "the report took a broken record"; fi
grep -q "links/1gbit/train.json" "$tmp/report.err" || fail "the report says $(cat "$tmp/report.err")"
echo "suite_check: OK"
