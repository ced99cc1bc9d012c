#!/usr/bin/env bash
# cdl-bench under a real mpirun: bench_check.sh CDL_BENCH CDL_LAUNCH CONFIG
# allreduce: the CSV has a line per size and codec (MPI_Allreduce's too), the plot is a PNG.
# model: the cost model fitted to those records prints the fit and the projections (JSON too),
# and a file without records is one error naming it.
# train:
# Two rows (fp32 and 4-bit qsgd) of a short synthetic run on 2 ranks: the JSON has a record per
# row with its speed-up, step split and bytes (4-bit qsgd sends over 4x fewer bytes than fp32,
# whose ratio is 1), the CSV a line per row, the plot is a PNG, and the scratch run folders are
# gone; through cdl-launch --bench the table comes out; a bad codec spec and a split config are
# each one clear error that starts nothing and leaves nothing.
source "$(dirname "$0")/../support/check.sh"
bench=$1 launch=$2 config=$3
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }

mpirun_np 2 "$bench" allreduce --min-bytes 4K --max-bytes 64K --iters 1 --warmup 0 \
  --codec qsgd:bits=4,entropy=rans --json --csv "$tmp/ar.csv" --plot "$tmp/ar.png" \
  >"$tmp/ar.json" 2>"$tmp/ar.log" || { cat "$tmp/ar.log"; fail "the allreduce bench failed"; }
[ "$(wc -l <"$tmp/ar.csv")" -eq 10 ] || { cat "$tmp/ar.csv"; fail "the allreduce CSV is not a header and 3 sizes x 3 rows"; }
[ "$(grep -c '^"qsgd:bits=4,bucket=1024,rounding=stochastic,entropy=rans",' "$tmp/ar.csv")" -eq 3 ] || fail "the qsgd rows of the allreduce CSV"
[ "$(grep -c '^mpi_allreduce_fp32,' "$tmp/ar.csv")" -eq 3 ] || fail "the MPI_Allreduce rows of the allreduce CSV"
# The raw TCP ring moves the ring's bytes (Note [Raw TCP ring]): as many as MPI_Allreduce's rows say.
python3 - "$tmp/ar.json" <<'PY' || fail "the raw TCP ring rows are wrong: $(cat "$tmp/ar.json")"
import json, sys
rows = json.load(open(sys.argv[1]))
tcp = [r for r in rows if r["codec"] == "tcp_ring_raw"]
mpi = {r["bytes"]: r for r in rows if r["codec"] == "mpi_allreduce_fp32"}
assert [r["bytes"] for r in tcp] == [4096, 16384, 65536], tcp
for r in tcp:
    assert r["time_us"] > 0 and r["wire_bytes"] == mpi[r["bytes"]]["wire_bytes"] == r["bytes"], r
PY
mpirun_np 2 "$bench" allreduce --min-bytes 4K --max-bytes 4K --iters 1 --warmup 0 --codec none \
  --no-tcp --json >"$tmp/notcp.json" 2>"$tmp/notcp.log" || { cat "$tmp/notcp.log"; fail "--no-tcp failed"; }
! grep -q tcp_ring_raw "$tmp/notcp.json" || fail "--no-tcp still timed the raw TCP ring"
is_png "$tmp/ar.png" || fail "the allreduce plot is not a PNG"
# The cost model on those records: the fit beside the 6 rows, projections per rank count and link.
"$bench" model "$tmp/ar.json" --link 1gbit --ranks 16,64 --gbits 10,100 >"$tmp/model.txt" ||
  fail "cdl-bench model failed"
grep -q "^# projected allreduce of 64M" "$tmp/model.txt" || { cat "$tmp/model.txt"; fail "no projection table"; }
[ "$(grep -cE '^ +(16|64) +(10|100) ' "$tmp/model.txt")" -eq 4 ] || { cat "$tmp/model.txt"; fail "not 4 projected rows"; }
"$bench" model "$tmp/ar.json" --ranks 16,64 --gbits 10,100 --json >"$tmp/model.json"
python3 - "$tmp/model.json" <<'PY' || fail "the model JSON is wrong: $(cat "$tmp/model.json")"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["ranks"] == 2 and m["bandwidth_gbps"] > 0 and m["alpha_us"] >= 0, m
assert len(m["measured"]) == 9 and all(r["model_us"] > 0 for r in m["measured"]), m["measured"]
assert len(m["projected"]) == 2 * 2 * 3, m["projected"]  # MPI_Allreduce, the raw TCP ring, qsgd
for p in m["projected"]:
    assert p["ms"] > 0 and p["speedup_vs_fp32_ring"] > 0, p
    if p["codec"] == "mpi_allreduce_fp32":
        assert abs(p["speedup_vs_fp32_ring"] - 1) < 1e-12, p
PY
echo '[]' >"$tmp/empty.json"
if "$bench" model "$tmp/empty.json" 2>"$tmp/model.err"; then fail "cdl-bench model fitted no records"; fi
grep -q "empty.json: no records to fit" "$tmp/model.err" || { cat "$tmp/model.err"; fail "the empty file is not named"; }

common=(--set data.dataset=synthetic --set data.synthetic_train=512 --set train.threads=1)
mkdir -p "$tmp/scratch"
TMPDIR="$tmp/scratch" mpirun_np 2 "$bench" train "$config" "${common[@]}" --steps 4 --warmup 2 \
  --codec none --codec qsgd:bits=4,entropy=rans --json --csv "$tmp/rows.csv" --plot "$tmp/rows.png" \
  >"$tmp/rows.json" 2>"$tmp/rows.log" || { cat "$tmp/rows.log"; fail "the bench failed"; }
python3 - "$tmp/rows.json" <<'PY' || fail "the JSON records are wrong: $(cat "$tmp/rows.json")"
import json, sys
rows = json.load(open(sys.argv[1]))
# Specs come back in full (formatSchemeSpec).
assert [r["codec"] for r in rows] == ["none", "qsgd:bits=4,bucket=1024,rounding=stochastic,entropy=rans"], rows
for r in rows:
    assert r["ranks"] == 2 and r["steps"] == 4 and r["warmup"] == 2 and r["threads"] == 1, r
    assert r["global_batch"] == 2 * r["batch_per_rank"], r
    assert r["samples_per_s"] > 0, r
    ms = r["ms"]
    assert all(ms[k] >= 0 for k in
               ("data", "compute", "wait", "optimizer", "encode", "comm", "decode")), ms
    assert ms["compute"] > 0, ms
    assert ms["data"] + ms["compute"] + ms["wait"] + ms["optimizer"] <= ms["step"] * (1 + 1e-9), ms
    assert abs(r["samples_per_s"] * ms["step"] / 1e3 - r["global_batch"]) <= 0.5 * r["global_batch"], r
none, q4 = rows
assert none["speedup"] == 1.0, none
assert none["compression_ratio"] == 1.0, none
assert q4["compression_ratio"] > 4 and q4["wire_bytes_per_step"] * 4 < none["wire_bytes_per_step"], rows
assert q4["ms"]["encode"] > 0 and q4["ms"]["decode"] > 0, q4
PY
[ "$(wc -l <"$tmp/rows.csv")" -eq 3 ] || { cat "$tmp/rows.csv"; fail "the CSV is not a header and 2 rows"; }
head -n 1 "$tmp/rows.csv" | grep -q "^codec,ranks,global_batch,samples_per_s,speedup,step_ms," ||
  fail "the CSV header is $(head -n 1 "$tmp/rows.csv")"
grep -q '^"qsgd:bits=4,bucket=1024,rounding=stochastic,entropy=rans",2,' "$tmp/rows.csv" || fail "the spec with commas is not one field"
is_png "$tmp/rows.png" || fail "the train plot is not a PNG"
[ -z "$(ls -A "$tmp/scratch")" ] || fail "the scratch run folders were left: $(ls "$tmp/scratch")"

"$launch" --bench -np 2 -- train "$config" "${common[@]}" --steps 2 --warmup 0 --codec none \
  --runs-dir "$tmp/kept" >"$tmp/table.txt" 2>"$tmp/table.log" ||
  { cat "$tmp/table.log"; fail "cdl-launch --bench train failed"; }
grep -q "samples/s" "$tmp/table.txt" && grep -q "^none " "$tmp/table.txt" ||
  { cat "$tmp/table.txt"; fail "no table from cdl-launch --bench train"; }
[ -f "$tmp/kept/row0/summary.json" ] || fail "--runs-dir did not keep the run folder"

# refused TEXT ARGS...: the bench must exit 2 with one line naming TEXT, leaving no run folder.
refused() {
  local text=$1
  shift
  local rc=0
  mpirun_np 2 "$bench" train "$config" "${common[@]}" --runs-dir "$tmp/bad" "$@" >"$tmp/bad.log" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "accepted: $*"
  grep -qF -- "$text" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "the error for '$*' does not say: $text"; }
  [ "$(grep -c "^cdl-bench: " "$tmp/bad.log")" -le 2 ] || { cat "$tmp/bad.log"; fail "more than one error a rank for '$*'"; }
  [ ! -e "$tmp/bad" ] || fail "'$*' left a run folder"
}
refused "qsgd:bits=40" --codec qsgd:bits=40
refused "model.split.stages" --set model.split.stages=2
echo "bench_check: allreduce and train rows, CSV, plots, cdl-launch and errors as expected"
