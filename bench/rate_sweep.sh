#!/usr/bin/env bash
# rate_sweep.sh: test accuracy against model size for CDL, R-CDL, LSQ and post-training
# quantization on the CNN of configs/fmnist_cnn*.yaml (2 local ranks, the same epochs for all),
# into OUT/points.jsonl and OUT/rate.png (cdl-plot --points, Note [Rate plot]).
#   CDL and R-CDL: 2-bit weights, 4-bit activations at lambda_w 2, 0.5 and 0.1, and 4-bit
#                  weights at lambda_w 0.1 (configs/fmnist_cnn_cdl.yaml, cdl.mode cdl or rcdl)
#   LSQ:           2-, 3-, 4- and 6-bit weights, 4-bit activations (configs/fmnist_cnn_lsq.yaml)
#   PTQ:           the fp32 run (configs/fmnist_cnn.yaml) exported at 2, 3, 4 and 8 bits, the first
#                  and last layers at 8 (cdl-model export --bits B --first-last-bits 8)
# Every method's size is its .cdlm file's bits per weight; fp32's accuracy is drawn as a level
# line. A run whose OUT/runs/NAME/summary.json exists is reused, so a stopped sweep goes on where
# it stopped. About 13 trainings: an hour and a half on a 2-core machine at 5 epochs.
#
#   bench/rate_sweep.sh [--out DIR] [--epochs E] [--data DIR]
# The build folder is CDL_BUILD (default build/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CDL_BUILD:-$root/build}
out=$root/build/bench-out/rate epochs=5 data=/usr/share/datasets/fashion-mnist
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    *) echo "rate_sweep.sh: unknown argument $1 (--out DIR, --epochs E, --data DIR)" >&2; exit 2 ;;
  esac
done
for tool in cdl-launch cdl-model cdl-plot; do
  [ -x "$build/bin/$tool" ] || { echo "rate_sweep.sh: $build/bin/$tool is not built (make build)" >&2; exit 1; }
done
mkdir -p "$out/runs" "$out/models"
points=$out/points.jsonl
: >"$points.partial"

# train NAME CONFIG [--set K=V]...: one 2-rank run into OUT/runs/NAME, unless it is there.
train() {
  local name=$1 config=$2
  shift 2
  [ -f "$out/runs/$name/summary.json" ] && return 0
  rm -rf "$out/runs/$name"
  echo "rate_sweep: training $name" >&2
  "$build/bin/cdl-launch" -np 2 "$root/configs/$config" -- --set log.runs_dir="$out/runs" \
    --set name="$name" --set train.epochs="$epochs" --set data.path="$data" "$@" \
    >"$out/runs/$name.log" 2>&1 || { tail -n 5 "$out/runs/$name.log" >&2; echo "rate_sweep: $name failed (its log: $out/runs/$name.log)" >&2; exit 1; }
}
# point METHOD BITS ACCURACY [LABEL]
point() {
  printf '{"method": "%s", "bits_per_weight": %s, "test_accuracy": %s, "run": "%s"}\n' \
    "$1" "$2" "$3" "${4:-}" >>"$points.partial"
}
summary() {  # summary NAME KEY
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$out/runs/$1/summary.json" "$2"
}

for mode in cdl rcdl; do
  for setting in "2 2.0" "2 0.5" "2 0.1" "4 0.1"; do
    set -- $setting
    name=${mode}_w$1_l$2
    train "$name" fmnist_cnn_cdl.yaml --set cdl.mode=$mode --set cdl.weight_bits=$1 \
      --set cdl.lambda_w=$2
    point "$([ $mode = cdl ] && echo CDL || echo R-CDL)" "$(summary "$name" model_bits_per_weight)" \
      "$(summary "$name" test_accuracy)" "$name"
  done
done
for bits in 2 3 4 6; do
  train lsq_w$bits fmnist_cnn_lsq.yaml --set cdl.weight_bits=$bits --set cdl.act_bits=4
  point LSQ "$(summary lsq_w$bits model_bits_per_weight)" "$(summary lsq_w$bits test_accuracy)" lsq_w$bits
done
train fp32 fmnist_cnn.yaml
for bits in 2 3 4 8; do
  file=$out/models/ptq$bits.cdlm
  "$build/bin/cdl-model" export "$out/runs/fp32" -o "$file" --bits $bits --first-last-bits 8 2>/dev/null
  bpw=$("$build/bin/cdl-model" inspect "$file" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["bits_per_weight"])')
  acc=$("$build/bin/cdl-model" eval "$file" --json --data "$data" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["test_accuracy"])')
  point PTQ "$bpw" "$acc" "ptq$bits"
done
fp32=$(summary fp32 test_accuracy)
point "fp32 (32 bits)" 0.5 "$fp32" fp32
point "fp32 (32 bits)" 4.5 "$fp32" fp32
mv "$points.partial" "$points"
"$build/bin/cdl-plot" --points "$points" -o "$out/rate.png" \
  --title "CNN on Fashion-MNIST, 2 ranks, $epochs epochs" >&2
python3 - "$points" <<'PY'
import json, sys
print("| method | run | bits/weight | test accuracy |\n|---|---|---|---|")
for line in open(sys.argv[1]):
    p = json.loads(line)
    if p["run"] == "fp32":
        if p["bits_per_weight"] == 0.5:
            print(f"| fp32 | fp32 | 32 | {100 * p['test_accuracy']:.2f}% |")
    else:
        print(f"| {p['method']} | {p['run']} | {p['bits_per_weight']:.2f} | {100 * p['test_accuracy']:.2f}% |")
PY
