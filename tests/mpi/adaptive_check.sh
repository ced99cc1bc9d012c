#!/usr/bin/env bash
# Adaptive rates under a real mpirun: adaptive_check.sh CDL_TRAIN NP CONFIG [--set key=value ...]
# Trains CONFIG with comm.adaptive on NP ranks twice: straight through, and stopped inside a
# measurement window after a re-plan, then resumed. Every rank checks at each re-plan that all
# ranks hold the same plan (a differing rank fails the run naming the tensor); here the two runs
# must end with the same test accuracy, loss and bytes, and write the same plans.
source "$(dirname "$0")/../support/check.sh"
train=$1 np=$2 config=$3
shift 3
runs=$tmp
common=(--set log.runs_dir="$runs" --set comm.adaptive.enabled=true --set comm.adaptive.warmup_steps=20
        --set comm.adaptive.every_steps=30 --set comm.adaptive.window=5 --set log.every_steps=10 "$@")
mpi() {
  mpirun_np "$np" \
    "$train" "$config" "${common[@]}" "$@"
}
mpi --set name=whole
# Plans follow steps 20, 50, 80, ...; stopped after step 78: past the plan at 50, inside the
# window (steps 75..79) of the plan at 80.
mpi --set name=parts --stop-after 78
mpi --set name=parts --resume
field() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\),\{0,1\}$/\1/p" "$2"; }
for key in test_accuracy test_loss wire_bytes; do
  a=$(field "$key" "$runs/whole/summary.json") b=$(field "$key" "$runs/parts/summary.json")
  [ -n "$a" ] && [ "$a" = "$b" ] || { echo "adaptive_check: $key $a (straight) != $b (resumed)" >&2; exit 1; }
done
plans() { grep '"kind":"plan"' "$1" | sed -E 's/"(seconds|wall_s)":[-0-9.eE+]*,?//g'; }
[ "$(plans "$runs/whole/metrics.jsonl" | wc -l)" -ge 2 ] || { echo "adaptive_check: fewer than 2 plans" >&2; exit 1; }
diff <(plans "$runs/whole/metrics.jsonl") <(plans "$runs/parts/metrics.jsonl") >&2 ||
  { echo "adaptive_check: the resumed run planned differently" >&2; exit 1; }
echo "adaptive_check: $(plans "$runs/whole/metrics.jsonl" | wc -l) identical plans on $np ranks;" \
  "test accuracy $(field test_accuracy "$runs/whole/summary.json") straight and resumed"
