#!/usr/bin/env bash
# cdl-launch --max-restarts under a real mpirun (Note [Restarts]): LAUNCH TRAIN CONFIG
#  1. rank 1 is killed (SIGKILL) during the 11th step of the first attempt only: cdl-launch names
#     it, restarts the job, the restart resumes from step 8 and the run ends exactly as the
#     uninterrupted one;
#  2. the same fault in every attempt: the second failure after resuming from step 8 stops the
#     retries, which cdl-launch says, with the job's failure status.
source "$(dirname "$0")/../support/check.sh"
launch=$1 train=$2 config=$3
sets=(--set data.dataset=synthetic --set train.epochs=2 --set train.threads=1
  --set checkpoint.every_steps=4 --set checkpoint.keep=1 --set log.every_steps=2
  --set comm.codec=qsgd:bits=4 --set log.runs_dir="$tmp")
records() {
  grep '"kind":"step"' "$1/metrics.jsonl" |
    sed -E 's/"ms":\{[^}]*\},?//; s/"(samples_per_s|wall_s)":[^,}]*,?//g'
}
# Each rank's first attempt runs with the fault; later ones without (a marker file per rank).
cat >"$tmp/train-once" <<SCRIPT
#!/bin/sh
marker="$tmp/attempted.\${OMPI_COMM_WORLD_RANK:-0}"
if [ ! -e "\$marker" ]; then : >"\$marker"; CDL_FAULT=backward:1:10; export CDL_FAULT; fi
exec "$train" "\$@"
SCRIPT
chmod +x "$tmp/train-once"

"$launch" -np 2 "$config" -- "${sets[@]}" --set name=whole >"$tmp/whole.log" 2>&1 ||
  { cat "$tmp/whole.log"; fail "the uninterrupted run failed"; }

start=$(date +%s)
"$launch" -np 2 --max-restarts 2 --program "$tmp/train-once" "$config" -- "${sets[@]}" \
  --set name=once >"$tmp/once.log" 2>&1 || { cat "$tmp/once.log"; fail "the restarted job failed"; }
elapsed=$(( $(date +%s) - start ))
for want in "cdl-launch: rank 1 failed first: .*process rank 1 .*exited on signal 9" \
  "cdl-launch: restart 1 of 2 in 2 s" "cdl-launch: restart 1 resumed from step 8"; do
  grep -qE "$want" "$tmp/once.log" || { cat "$tmp/once.log"; fail "no line like: $want"; }
done
diff <(records "$tmp/whole") <(records "$tmp/once") >"$tmp/once.diff" ||
  { cat "$tmp/once.diff"; fail "the restarted run's step records differ from the uninterrupted run's"; }
[ -f "$tmp/once/summary.json" ] || fail "the restarted run wrote no summary"
log "a rank killed in step 11: named, restarted after 2 s from step 8, exact (${elapsed} s in all)"

status=0
CDL_FAULT=backward:1:10 "$launch" -np 2 --max-restarts 3 "$config" -- "${sets[@]}" \
  --set name=always >"$tmp/always.log" 2>&1 || status=$?
[ "$status" -ne 0 ] || { cat "$tmp/always.log"; fail "a job that always fails exited 0"; }
grep -q "cdl-launch: the job failed twice after resuming from step 8; not restarting it again" \
  "$tmp/always.log" || { cat "$tmp/always.log"; fail "the repeated failure was not named"; }
[ "$(grep -c 'cdl-launch: restart [0-9]* of 3 in' "$tmp/always.log")" -eq 2 ] ||
  { cat "$tmp/always.log"; fail "expected exactly 2 restarts before giving up"; }
log "a failure that repeats at step 8: two restarts, then cdl-launch stops (status $status)"
log "ok"
