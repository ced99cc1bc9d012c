#!/usr/bin/env bash
# A model split across real MPI ranks (Note [Pipeline split]): split_check.sh CDL_TRAIN CDL_MODEL CONFIG
#   1. 2 stages x 2 replicas (-np 4) with lossless codecs follow the unsplit run on 2 ranks: the
#      same train losses at every record and the same test loss, to floating-point tolerance.
#   2. A stage that stalls (SIGSTOP) makes its neighbour fail within CDL_COMM_TIMEOUT with one
#      error naming both stages, and the job ends.
#   3. A CDL model split in 2 stages sends its activation indices; cdl-model exports the stages'
#      checkpoints as one coded file whose accuracy equals the run's.
#   4. -np that the stages do not divide is one error naming model.split.stages.
source "$(dirname "$0")/../support/check.sh"
train=$1 model=$2 config=$3
stopped=
cleanup() {
  [ -n "$stopped" ] && kill -CONT "$stopped" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mpi() { mpirun "${mpirun_flags[@]}" "$@"; }
common=(--set log.runs_dir="$tmp" --set data.dataset=synthetic --set train.epochs=1
        --set train.threads=1 --set comm.codec=none --set log.every_steps=8)
lossless=(--set model.split.activation_codec=none --set model.split.gradient_codec=none)

mpi -np 2 "$train" "$config" "${common[@]}" --set name=whole >"$tmp/whole.log" 2>&1 ||
  { cat "$tmp/whole.log"; fail "the unsplit run failed"; }
mpi -np 4 "$train" "$config" "${common[@]}" "${lossless[@]}" --set name=split \
  --set model.split.stages=2 --set 'model.split.cut_after=[fc1]' --set model.split.micro_batches=2 \
  >"$tmp/split.log" 2>&1 || { cat "$tmp/split.log"; fail "the split run failed"; }
losses() { sed -n 's/.*"train_loss":\([-0-9.eE+]*\).*/\1/p' "$1"; }
paste <(losses "$tmp/whole/metrics.jsonl") <(losses "$tmp/split/metrics.jsonl") | awk '
  { n++; d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || d > 2e-4) { print "record " n ": " $0; bad = 1 } }
  END { if (n == 0 || bad) exit 1 }' || fail "the split run's train losses differ from the unsplit run's"
field() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\),\{0,1\}$/\1/p" "$2"; }
awk -v a="$(field test_loss "$tmp/whole/summary.json")" -v b="$(field test_loss "$tmp/split/summary.json")" \
  'BEGIN { d = a - b; if (d < 0) d = -d; if (a == "" || d > 2e-4) exit 1 }' ||
  fail "test loss $(field test_loss "$tmp/split/summary.json") split vs $(field test_loss "$tmp/whole/summary.json")"
[ "$(field stages "$tmp/split/summary.json")" = 2 ] || fail "summary.json lacks stages"
echo "split_check: 2 stages x 2 replicas follow the unsplit run"

# A stalled stage: stop rank 1 (stage 1) once training runs; rank 0 must name it within the timeout.
CDL_COMM_TIMEOUT=5 mpi -np 2 "$train" "$config" "${common[@]}" --set name=stall \
  --set model.split.stages=2 --set 'model.split.cut_after=[fc1]' \
  --set data.synthetic_train=200000 --set log.every_steps=100000 >"$tmp/stall.log" 2>&1 &
job=$!
for _ in $(seq 1 600); do
  grep -q "split: 2 stages" "$tmp/stall.log" 2>/dev/null && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.1
done
grep -q "split: 2 stages" "$tmp/stall.log" || { cat "$tmp/stall.log"; fail "the stall run did not start"; }
sleep 1  # into the steps
for pid in $(pgrep -x cdl-train || true); do
  if tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qx 'name=stall' &&
     tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then
    stopped=$pid
  fi
done
[ -n "$stopped" ] || fail "rank 1 of the stall run not found"
kill -STOP "$stopped"
start=$(date +%s)
status=0
wait "$job" || status=$?
elapsed=$(( $(date +%s) - start ))
kill -CONT "$stopped" 2>/dev/null || true
stopped=
[ "$status" -ne 0 ] || fail "the job with a stalled stage exited 0"
[ "$elapsed" -le 60 ] || fail "the job with a stalled stage took ${elapsed} s to end"
# Rank 0 waits either for the cut's gradient or in the step's stop-signal allreduce (Note [Stop
# signals]), whichever rank 1 was stopped before; both errors name rank 1.
cut="stage 0 of replica 0: the gradient of micro-batch 0 at the cut after 'fc1' from stage 1 (rank 1)"
grep -q -e "$cut" -e "waiting for rank 1: it did not answer a status query" "$tmp/stall.log" ||
  { cat "$tmp/stall.log"; fail "no error naming the stalled stage"; }
echo "split_check: a stalled stage is named in ${elapsed} s"

mpi -np 2 "$train" "$config" "${common[@]}" --set name=cdl --set cdl.mode=cdl --set cdl.lambda_a=0.05 \
  --set model.split.stages=2 --set 'model.split.cut_after=[fc2]' --set train.max_steps=3 \
  >"$tmp/cdl.log" 2>&1 || { cat "$tmp/cdl.log"; fail "the CDL split run failed"; }
"$model" export "$tmp/cdl" -o "$tmp/cdl.cdlm" >"$tmp/export.log" 2>&1 ||
  { cat "$tmp/export.log"; fail "cdl-model export of the split run failed"; }
want=$(field test_accuracy "$tmp/cdl/summary.json")
got=$("$model" eval "$tmp/cdl.cdlm" --json | sed -n 's/.*"test_accuracy": *\([-0-9.eE+]*\).*/\1/p')
[ -n "$want" ] && [ "$got" = "$want" ] || fail "accuracy from the split run's file $got != the run's $want"
awk -v a="$want" 'BEGIN { exit !(a < 0.99) }' || fail "3 steps reached accuracy $want: the equality tells nothing"
echo "split_check: the CDL split run exports to a file of its accuracy ($got)"

if mpi -np 3 "$train" "$config" "${common[@]}" --set name=odd --set model.split.stages=2 \
  --set 'model.split.cut_after=[fc1]' >"$tmp/odd.log" 2>&1; then
  fail "3 ranks in 2 stages ran"
fi
grep -q "model.split.stages: 2 stages do not divide the job's 3 ranks" "$tmp/odd.log" ||
  { cat "$tmp/odd.log"; fail "no error naming model.split.stages"; }
echo "split_check: ok"
