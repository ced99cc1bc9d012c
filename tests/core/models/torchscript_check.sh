#!/usr/bin/env bash
# TorchScript models under a real mpirun: torchscript_check.sh CDL_TRAIN MODELS_DIR CONFIG
# MODELS_DIR holds cnn.pt, wrong-out.pt and bigram.pt (tests/support/make_test_models.sh). Checks that a
# missing file, a file that is not TorchScript, a module with the wrong output shape and CDL on a
# TorchScript model each fail with one clear error naming the file or key (no c10 backtrace) and
# leave no run folder; and that the CNN module trained with adaptive rates straight through and
# stopped inside a measurement window, then resumed, ends with the same accuracy, loss and bytes;
# and that a module of tokens (bigram.pt) trains on the text set.
source "$(dirname "$0")/../support/check.sh"
train=$1 models=$2 config=$3
runs=$tmp
mpi() {
  mpirun_np 2 "$train" "$config" --set log.runs_dir="$runs" --set data.dataset=synthetic "$@"
}

# refused TEXT ARGS...: the run must fail naming TEXT, without a backtrace or a run folder.
refused() {
  local text=$1
  shift
  if mpi --set name=bad "$@" >"$runs/bad.log" 2>&1; then fail "accepted: $*"; fi
  grep -qF -- "$text" "$runs/bad.log" || { cat "$runs/bad.log"; fail "the error for '$*' does not say: $text"; }
  if grep -q "Exception raised from\|frame #" "$runs/bad.log"; then cat "$runs/bad.log"; fail "a backtrace for '$*'"; fi
  [ ! -e "$runs/bad" ] || fail "'$*' left a run folder"
}
printf 'not a module\n' >"$runs/text.pt"
refused "$runs/none.pt: no such file" --set model.torchscript="$runs/none.pt"
refused "$runs/text.pt: not a TorchScript module" --set model.torchscript="$runs/text.pt"
refused "is [2, 11] of Float; expected [2, 10] floats" --set model.torchscript="$models/wrong-out.pt"
refused "cannot be wrapped with CDL quantizers" --set model.torchscript="$models/cnn.pt" --set cdl.mode=cdl

common=(--set model.torchscript="$models/cnn.pt" --set train.epochs=3 --set data.synthetic_train=2048
        --set comm.adaptive.enabled=true --set comm.adaptive.warmup_steps=10
        --set comm.adaptive.every_steps=20 --set comm.adaptive.window=5 --set log.every_steps=5)
mpi "${common[@]}" --set name=whole >"$runs/whole.log" 2>&1 || { cat "$runs/whole.log"; fail "the straight run failed"; }
# Plans follow steps 10, 30, ...; stopped after step 27: past the plan at 10, inside the window
# (steps 25..29) of the plan at 30.
mpi "${common[@]}" --set name=parts --stop-after 27 >"$runs/parts.log" 2>&1 || { cat "$runs/parts.log"; fail "the first part failed"; }
mpi "${common[@]}" --set name=parts --resume >>"$runs/parts.log" 2>&1 || { cat "$runs/parts.log"; fail "the resumed part failed"; }
field() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\),\{0,1\}$/\1/p" "$2"; }
for key in test_accuracy test_loss wire_bytes; do
  a=$(field "$key" "$runs/whole/summary.json") b=$(field "$key" "$runs/parts/summary.json")
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "$key $a (straight) != $b (resumed)"
done
plans=$(grep -c '"kind":"plan"' "$runs/whole/metrics.jsonl")

# A module of tokens on the text set: a character bigram model, which starts from a uniform guess
# (8 bits per character), gets well below it in 60 steps.
mpi --set name=bigram --set data.dataset=text --set data.context=32 --set model.torchscript="$models/bigram.pt" \
  --set train.max_steps=60 --set train.optimizer=adam --set train.lr=0.1 --set train.warmup_steps=0 \
  --set train.weight_decay=0 >"$runs/bigram.log" 2>&1 ||
  { cat "$runs/bigram.log"; fail "the bigram module on text failed"; }
bpc=$(field test_bpc "$runs/bigram/summary.json")
awk -v b="$bpc" 'BEGIN { exit !(b != "" && b + 0 < 6) }' || fail "the bigram module's test bits per character: '$bpc'"
[ "$plans" -ge 2 ] || fail "fewer than 2 plans ($plans)"
echo "torchscript_check: ok ($plans plans; test accuracy $(field test_accuracy "$runs/whole/summary.json") straight and resumed; bigram $bpc bits per character)"
