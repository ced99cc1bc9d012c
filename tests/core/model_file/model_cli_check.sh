#!/usr/bin/env bash
# cdl-model end to end on real runs: model_cli_check.sh CDL_TRAIN CDL_MODEL CONFIG
# Trains a CDL and a plain model of CONFIG on the synthetic set (2 ranks, 3 steps, so the accuracy
# is far from 100% and its equality tells), exports both,
# and checks that the file's accuracy equals the run's own (CDL: exactly; also streamed and in
# canonical order), that inspect reports the file's real size, that a model without CDL exports in
# fp32 without --bits (its accuracy the run's, up to fp32 sums in another batching) and post-training
# quantized with it, and that a truncated file is one clear error.
source "$(dirname "$0")/../support/check.sh"
train=$1 model=$2 config=$3
run() {
  mpirun_np 2 "$train" "$config" --set log.runs_dir="$tmp" --set data.dataset=synthetic \
    --set train.epochs=1 --set train.max_steps=3 "$@" >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log"; fail "training failed"; }
}
field() { sed -n "s/.*\"$1\": *\([-0-9.eE+]*\).*/\1/p" | head -n 1; }

run --set name=cdl --set cdl.mode=cdl
run --set name=plain
want=$(field test_accuracy <"$tmp/cdl/summary.json")
[ -n "$want" ] || fail "no test_accuracy in the CDL run's summary.json"

"$model" export "$tmp/cdl" -o "$tmp/cdl.cdlm"
got=$("$model" eval "$tmp/cdl.cdlm" --json | field test_accuracy)
[ "$got" = "$want" ] || fail "accuracy from the file $got != the run's $want"
got=$("$model" eval "$tmp/cdl.cdlm" --json --stream | field test_accuracy)
[ "$got" = "$want" ] || fail "accuracy streamed from the file $got != the run's $want"
ckpt=$(ls "$tmp"/cdl/checkpoints/*.rank0.ckpt | tail -n 1)
"$model" export "$ckpt" -o "$tmp/canonical.cdlm" --canonical-order
got=$("$model" eval "$tmp/canonical.cdlm" --json | field test_accuracy)
[ "$got" = "$want" ] || fail "accuracy in canonical order $got != the run's $want"
[ "$(stat -c %s "$tmp/canonical.cdlm")" -lt "$(stat -c %s "$tmp/cdl.cdlm")" ] ||
  fail "canonical order did not shrink the file"
size=$("$model" inspect "$tmp/cdl.cdlm" --json | field file_bytes)
[ "$size" = "$(stat -c %s "$tmp/cdl.cdlm")" ] || fail "inspect says $size bytes"
"$model" inspect "$tmp/canonical.cdlm" | grep "row-multiset" >/dev/null || fail "inspect shows no row multiset"

"$model" export "$tmp/plain" -o "$tmp/fp32.cdlm" 2>"$tmp/err" || fail "fp32 export: $(cat "$tmp/err")"
grep -q "fp32 weights" "$tmp/err" || fail "the fp32 export does not say so: $(cat "$tmp/err")"
"$model" inspect "$tmp/fp32.cdlm" --json | grep '"quantized_weights": *0' >/dev/null ||
  fail "the fp32 file holds quantized weights"
if "$model" export "$tmp/plain" -o "$tmp/plain.cdlm" --first-last-bits 8 2>"$tmp/err"; then
  fail "--first-last-bits without --bits was taken"
fi
grep -q "first-last-bits applies to post-training quantization" "$tmp/err" ||
  fail "unclear error: $(cat "$tmp/err")"
[ ! -e "$tmp/plain.cdlm" ] || fail "a failed export left a file"
plain=$(field test_accuracy <"$tmp/plain/summary.json")
acc=$("$model" eval "$tmp/fp32.cdlm" --json | field test_accuracy)
awk -v a="$acc" -v b="$plain" 'BEGIN { d = a - b; exit !(d < 0.005 && d > -0.005) }' ||
  fail "fp32 file accuracy $acc, the run's $plain"
"$model" export "$tmp/plain" -o "$tmp/plain.cdlm" --bits 4
acc=$("$model" eval "$tmp/plain.cdlm" --json | field test_accuracy)
awk -v a="$acc" 'BEGIN { exit !(a > 0.2) }' || fail "4-bit model accuracy $acc"

head -c 300 "$tmp/cdl.cdlm" >"$tmp/short.cdlm"
if "$model" eval "$tmp/short.cdlm" 2>"$tmp/err"; then fail "a truncated file was evaluated"; fi
[ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "short.cdlm: .*truncated" "$tmp/err" ||
  fail "unclear error for a truncated file: $(cat "$tmp/err")"
echo "model_cli_check: accuracy $want from the run, the file, its stream and canonical order"
