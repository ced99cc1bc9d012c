#!/usr/bin/env bash
# Fault injection under a real mpirun (Note [Fault points]): faults_check.sh CDL_TRAIN CONFIG
# A rank is killed (SIGKILL) after a backward pass with its collectives in flight, halfway
# through writing a checkpoint (so the other rank renames its own and the two differ), and right
# after its rename (before the ranks confirm the step), with checkpoint.keep 1. Each time the job
# must end within a bound with a failure, and --resume must then end exactly as the uninterrupted
# run: the same step records and the same test loss.
source "$(dirname "$0")/../support/check.sh"
train=$1 config=$2
mpi() {
  timeout 120 mpirun "${mpirun_flags[@]}" -np 2 "$train" "$config" --set log.runs_dir="$tmp" --set data.dataset=synthetic \
    --set train.epochs=2 --set train.threads=1 --set checkpoint.every_steps=4 \
    --set checkpoint.keep=1 --set log.every_steps=2 --set comm.codec=qsgd:bits=4 "$@"
}
# The step records without their timings (ms, samples_per_s, wall_s).
records() {
  grep '"kind":"step"' "$1/metrics.jsonl" |
    sed -E 's/"ms":\{[^}]*\},?//; s/"(samples_per_s|wall_s)":[^,}]*,?//g'
}
field() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\),\{0,1\}$/\1/p" "$2"; }

mpi --set name=whole >"$tmp/whole.log" 2>&1 || { cat "$tmp/whole.log"; fail "the uninterrupted run failed"; }
want=$(field test_loss "$tmp/whole/summary.json")

for fault in backward:1:10 checkpoint-write:1:12 after-rename:0:16 checkpoint-write:0:32; do
  name=${fault//[:-]/_}
  start=$(date +%s)
  if CDL_FAULT=$fault mpi --set name="$name" >"$tmp/$name.log" 2>&1; then
    cat "$tmp/$name.log"
    fail "$fault: the run with a killed rank exited 0"
  fi
  elapsed=$(( $(date +%s) - start ))
  grep -q "CDL_FAULT: killed at" "$tmp/$name.log" || { cat "$tmp/$name.log"; fail "$fault: the fault did not fire"; }
  [ "$elapsed" -le 60 ] || fail "$fault: the job took ${elapsed} s to end after the kill"
  mpi --set name="$name" --resume >"$tmp/$name.resume.log" 2>&1 ||
    { cat "$tmp/$name.resume.log"; fail "$fault: --resume failed"; }
  got=$(field test_loss "$tmp/$name/summary.json")
  [ "$got" = "$want" ] || fail "$fault: test loss $got after the resume, $want uninterrupted"
  diff <(records "$tmp/whole") <(records "$tmp/$name") >"$tmp/$name.diff" ||
    { cat "$tmp/$name.diff"; fail "$fault: the step records differ from the uninterrupted run's"; }
  from=$(sed -n 's/.*resumed from .*(step \([0-9]*\),.*/\1/p' "$tmp/$name.resume.log" | head -n 1)
  echo "faults_check: $fault: ended in ${elapsed} s, resumed from step $from, exact"
done
echo "faults_check: ok"
