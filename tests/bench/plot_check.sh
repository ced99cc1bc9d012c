#!/usr/bin/env bash
# cdl-plot on real run folders: plot_check.sh CDL_TRAIN CDL_PLOT CONFIG
# Trains two short runs (2 ranks, synthetic data, 2 epochs: step and epoch records), plots each
# alone and both side by side, and checks that every PNG is a whole PNG of some size; a folder
# without metrics, a metrics file without step records or with a broken line, and an output in a
# missing folder are each one clear error naming it, and leave no PNG behind. --points draws
# accuracy against bits per weight from a JSON-lines file; a line that is not a point is named.
source "$(dirname "$0")/../support/check.sh"
train=$1 plot=$2 config=$3
run() {
  mpirun_np 2 "$train" "$config" --set log.runs_dir="$tmp" --set data.dataset=synthetic \
    --set train.epochs=2 --set log.every_steps=2 "$@" >"$tmp/train.log" 2>&1 ||
    { cat "$tmp/train.log"; fail "training failed"; }
}
is_png() {  # a PNG signature and more than a header's worth of bytes
  [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] && [ "$(stat -c %s "$1")" -gt 2000 ]
}
refused() {  # refused WHAT EXPECTED-TEXT ARGS...: cdl-plot must fail naming EXPECTED-TEXT
  local what=$1 text=$2
  shift 2
  if "$plot" "$@" >"$tmp/err.log" 2>&1; then fail "$what was accepted"; fi
  grep -qF -- "$text" "$tmp/err.log" || { cat "$tmp/err.log"; fail "$what: the error does not name $text"; }
  [ "$(wc -l <"$tmp/err.log")" -eq 1 ] || { cat "$tmp/err.log"; fail "$what: more than one line"; }
}

run --set name=fp32 --set comm.codec=none
run --set name=qsgd4 --set comm.codec=qsgd:bits=4,entropy=rans
"$plot" "$tmp/fp32" -o "$tmp/one.png" >/dev/null
is_png "$tmp/one.png" || fail "one run: not a PNG"
"$plot" "$tmp/fp32" "$tmp/qsgd4" -o "$tmp/two.png" --title "fp32 against 4-bit qsgd" >/dev/null
is_png "$tmp/two.png" || fail "two runs: not a PNG"

mkdir "$tmp/empty" "$tmp/nosteps" "$tmp/broken"
grep '"kind":"epoch"' "$tmp/fp32/metrics.jsonl" >"$tmp/nosteps/metrics.jsonl"
{ head -n 1 "$tmp/fp32/metrics.jsonl"; echo '{"kind":"step",'; } >"$tmp/broken/metrics.jsonl"
refused "a folder without metrics" "$tmp/empty: no metrics.jsonl" "$tmp/fp32" "$tmp/empty" -o "$tmp/bad.png"
refused "metrics without steps" "$tmp/nosteps/metrics.jsonl: no step records" "$tmp/nosteps" -o "$tmp/bad.png"
refused "a broken record" "$tmp/broken/metrics.jsonl:2: not a JSON object" "$tmp/broken" -o "$tmp/bad.png"
refused "an output in a missing folder" "the folder $tmp/nowhere does not exist" "$tmp/fp32" -o "$tmp/nowhere/x.png"
printf '%s\n' '{"method": "CDL", "bits_per_weight": 1.1, "test_accuracy": 0.899}' \
  '{"method": "LSQ", "bits_per_weight": 1.7, "test_accuracy": 0.911}' '' \
  '{"method": "CDL", "bits_per_weight": 0.6, "test_accuracy": 0.889, "run": "x"}' >"$tmp/points.jsonl"
"$plot" --points "$tmp/points.jsonl" -o "$tmp/rate.png" >/dev/null
is_png "$tmp/rate.png" || fail "points: not a PNG"
{ cat "$tmp/points.jsonl"; echo '{"method": "PTQ", "bits_per_weight": "2"}'; } >"$tmp/badpoints.jsonl"
refused "a point without accuracy" "$tmp/badpoints.jsonl:5: not a point" --points "$tmp/badpoints.jsonl" -o "$tmp/bad.png"
: >"$tmp/nopoints.jsonl"
refused "a file without points" "$tmp/nopoints.jsonl: no points" --points "$tmp/nopoints.jsonl" -o "$tmp/bad.png"
if "$plot" "$tmp/fp32" --points "$tmp/points.jsonl" -o "$tmp/bad.png" >"$tmp/err.log" 2>&1; then
  fail "runs and points at once were accepted"
fi
grep -q "excludes" "$tmp/err.log" || { cat "$tmp/err.log"; fail "runs and points: unclear error"; }
refused "neither runs nor points" "no run folders to plot" -o "$tmp/bad.png"
[ ! -e "$tmp/bad.png" ] && [ ! -e "$tmp/bad.png.partial" ] || fail "a refused plot left a file behind"
echo "plot_check: ok"
