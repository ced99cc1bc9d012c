#!/usr/bin/env bash
# Stop signals under a real mpirun (Note [Stop signals]): stop_check.sh CDL_TRAIN CONFIG
# SIGTERM reaches one rank after a backward pass (CDL_FAULT=term-backward of the 0-based step 10,
# the 11th; a real signal through
# cdl-train's handler): every rank must stop after that step with its checkpoint and the job exit
# with status 3 (stopped, resumable), and --resume must end exactly as the uninterrupted run. A
# second SIGTERM halfway through that checkpoint ends the rank at once: the job fails, and
# --resume continues from the checkpoint before, again exactly.
source "$(dirname "$0")/../support/check.sh"
train=$1 config=$2
mpi() {
  timeout 120 mpirun "${mpirun_flags[@]}" -np 2 "$train" "$config" --set log.runs_dir="$tmp" \
    --set data.dataset=synthetic --set train.epochs=2 --set train.threads=1 \
    --set checkpoint.every_steps=4 --set checkpoint.keep=1 --set log.every_steps=2 \
    --set comm.codec=qsgd:bits=4 "$@"
}
records() {
  grep '"kind":"step"' "$1/metrics.jsonl" |
    sed -E 's/"ms":\{[^}]*\},?//; s/"(samples_per_s|wall_s)":[^,}]*,?//g'
}
field() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\),\{0,1\}$/\1/p" "$2"; }
resumed_exactly() {
  local name=$1 want=$2
  mpi --set name="$name" --resume >"$tmp/$name.resume.log" 2>&1 ||
    { cat "$tmp/$name.resume.log"; fail "$name: --resume failed"; }
  [ "$(field test_loss "$tmp/$name/summary.json")" = "$want" ] ||
    fail "$name: the resumed run's test loss differs from the uninterrupted run's"
  diff <(records "$tmp/whole") <(records "$tmp/$name") >"$tmp/$name.diff" ||
    { cat "$tmp/$name.diff"; fail "$name: the step records differ from the uninterrupted run's"; }
  sed -n 's/.*resumed from .*(step \([0-9]*\),.*/\1/p' "$tmp/$name.resume.log" | head -n 1
}

mpi --set name=whole >"$tmp/whole.log" 2>&1 || { cat "$tmp/whole.log"; fail "the uninterrupted run failed"; }
want=$(field test_loss "$tmp/whole/summary.json")

# One SIGTERM to rank 1 after the 11th step's backward.
start=$(date +%s%N)
status=0
CDL_FAULT=term-backward:1:10 mpi --set name=term >"$tmp/term.log" 2>&1 || status=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$status" -eq 3 ] || { cat "$tmp/term.log"; fail "SIGTERM: exit status $status, expected 3"; }
grep -q "\[rank 1\].*SIGTERM: stopping after this step" "$tmp/term.log" ||
  { cat "$tmp/term.log"; fail "SIGTERM: rank 1 did not say it stops"; }
grep -q "\[rank 0\].*stopped at step 11 by a signal to 1 rank" "$tmp/term.log" ||
  { cat "$tmp/term.log"; fail "SIGTERM: rank 0 did not stop at step 11"; }
for r in 0 1; do
  [ -f "$tmp/term/checkpoints/ckpt-0000000011.rank$r.ckpt" ] ||
    fail "SIGTERM: rank $r has no checkpoint of step 11"
done
from=$(resumed_exactly term "$want")
[ "$from" = 11 ] || fail "SIGTERM: resumed from step $from, expected 11"
log "SIGTERM during step 11: every rank stopped there with a checkpoint (status 3, job ended ${elapsed_ms} ms after its start), resumed exactly"

# A second SIGTERM during that checkpoint's write.
status=0
CDL_FAULT=term-backward:1:10,term-checkpoint-write:1:11 mpi --set name=twice >"$tmp/twice.log" 2>&1 ||
  status=$?
[ "$status" -ne 0 ] && [ "$status" -ne 3 ] ||
  { cat "$tmp/twice.log"; fail "a second SIGTERM: exit status $status, expected a failure"; }
from=$(resumed_exactly twice "$want")
[ "$from" = 8 ] || fail "a second SIGTERM: resumed from step $from, expected 8"
log "a second SIGTERM during the checkpoint: the job failed (status $status), resumed from step 8 exactly"
log "ok"
