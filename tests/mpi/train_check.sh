#!/usr/bin/env bash
# Trains under a real mpirun and checks the run's summary.json:
#   train_check.sh CDL_TRAIN NP CONFIG MIN_ACCURACY MIN_COMPRESSION [--max-bits B] [--max-bpc C]
#                  [--set key=value ...]
# Fails when cdl-train fails, when the summary is missing, or when the test accuracy or the
# compression ratio against fp32 falls below the given minimum; with --max-bits (a CDL run), also
# when the model's bits per quantized weight exceed B; with --max-bpc (a text run), when the test
# bits per character exceed C.
source "$(dirname "$0")/../support/check.sh"
train=$1 np=$2 config=$3 minAcc=$4 minRatio=$5
shift 5
maxBits= maxBpc=
while [ "${1:-}" = --max-bits ] || [ "${1:-}" = --max-bpc ]; do
  if [ "$1" = --max-bits ]; then maxBits=$2; else maxBpc=$2; fi
  shift 2
done
runs=$tmp
mpirun_np "$np" \
  "$train" "$config" --set log.runs_dir="$runs" "$@"
summary=$(find "$runs" -name summary.json | head -n 1)
if [ -z "$summary" ]; then
  echo "train_check: no summary.json under $runs" >&2
  exit 1
fi
cat "$summary"
value() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\),\{0,1\}$/\1/p" "$summary"; }
acc=$(value test_accuracy)
ratio=$(value compression_ratio)
awk -v a="$acc" -v r="$ratio" -v ma="$minAcc" -v mr="$minRatio" 'BEGIN {
  if (a == "" || r == "") { print "train_check: summary lacks test_accuracy or compression_ratio"; exit 1 }
  if (a + 0 < ma + 0) { printf "train_check: test accuracy %s < %s\n", a, ma; exit 1 }
  if (r + 0 < mr + 0) { printf "train_check: compression ratio %s < %s\n", r, mr; exit 1 }
  printf "train_check: test accuracy %s >= %s, compression %sx >= %sx\n", a, ma, r, mr
}'
# atMost KEY LIMIT WHAT: the summary's KEY must be there and at most LIMIT.
atMost() {
  awk -v v="$(value "$1")" -v lim="$2" -v key="$1" -v what="$3" 'BEGIN {
    if (v == "") { printf "train_check: summary lacks %s\n", key; exit 1 }
    if (v + 0 > lim + 0) { printf "train_check: %s %s > %s\n", v, what, lim; exit 1 }
    printf "train_check: %s %s <= %s\n", v, what, lim
  }'
}
if [ -n "$maxBits" ]; then atMost model_bits_per_weight "$maxBits" "bits per weight"; fi
if [ -n "$maxBpc" ]; then atMost test_bpc "$maxBpc" "test bits per character"; fi
