#!/usr/bin/env bash
# A stalled rank is named by the others (Note [Peer status]): stall_check.sh CDL_TRAIN CONFIG
# Three ranks under a real mpirun with CDL_COMM_TIMEOUT=4:
#  1. rank 2 stops itself with SIGSTOP after step 6's backward: the others fail naming the
#     collective and rank 2 as not answering, and the job ends, no process left behind;
#  2. rank 1 hangs after step 6's backward (its process alive, as with a deadlocked data loader):
#     the others name rank 1 as not having issued the collective, with its latest one and its age;
#  3. rank 1 resets its TCP ring links after step 6's backward, fp32 gradients on the ring
#     (CDL_ALLREDUCE=ring, so no measurement can take them off the links): rank 2, whose link from
#     rank 1 reset, fails at once naming the collective and the link, and the job ends.
source "$(dirname "$0")/../support/check.sh"
train=$1 config=$2
timeout_s=4

# stalled NAME FAULT [SETTINGS...]: the job with the fault (and CDL_ALLREDUCE=$allreduce, auto when
# unset), its output in $tmp/NAME.log, its status in $rc and its milliseconds in $took.
stalled() {
  local name=$1 start
  start=$(date +%s%N)
  rc=0
  CDL_COMM_TIMEOUT=$timeout_s CDL_FAULT=$2 CDL_ALLREDUCE=${allreduce:-auto} timeout 120 mpirun "${mpirun_flags[@]}" -np 3 "$train" \
    "$config" --set log.runs_dir="$tmp" --set name="$name" --set data.dataset=synthetic \
    --set train.epochs=20 --set train.threads=1 "${@:3}" >"$tmp/$name.log" 2>&1 || rc=$?
  took=$(( ($(date +%s%N) - start) / 1000000 ))
  [ "$rc" -ne 124 ] || { cat "$tmp/$name.log"; fail "$name: the job did not end within 120 s"; }
  [ "$rc" -ne 0 ] || { cat "$tmp/$name.log"; fail "$name: the job succeeded despite the stall"; }
  if pgrep -f "name=$name" >/dev/null; then
    pgrep -af "name=$name" >&2
    fail "$name: processes of the job are left behind"
  fi
}
# named NAME RANK TEXT: some rank other than RANK timed out and its error names RANK with TEXT.
named() {
  local line
  line=$(grep -m 1 "cdl-train: \[rank [0-9]\].*did not complete within $timeout_s s" "$tmp/$1.log") ||
    { cat "$tmp/$1.log"; fail "$1: no rank reported the timed-out collective"; }
  grep -q "cdl-train: \[rank $2\]" <<<"$line" && fail "$1: the stalled rank $2 reported itself"
  grep -q "(collective #[0-9]* on rank [0-9] of 3)" <<<"$line" ||
    fail "$1: the error does not name the collective: $line"
  grep -q "waiting for.*rank $2: it $3" <<<"$line" || fail "$1: the error does not name rank $2: $line"
  log "$1: $line"
}

stalled stop stop-backward:2:6
grep -q "\[rank 2\] CDL_FAULT: SIGSTOP at backward of step 6" "$tmp/stop.log" ||
  { cat "$tmp/stop.log"; fail "stop: rank 2 did not stop itself"; }
named stop 2 "did not answer a status query within 2.0 s (stopped, hung, or cut off"
log "stop: the job ended ${took} ms after its start"

stalled hang hang-backward:1:6
named hang 1 "has not issued it; its latest collective was issued [0-9.]* s ago: "
log "hang: the job ended ${took} ms after its start"

allreduce=ring stalled reset reset-backward:1:6 --set comm.codec=none
# The step's error may carry its own sendRecv context before the link's name.
line=$(grep -m 1 "cdl-train: \[rank 2\].*(ring).*failed: .*the TCP link from rank 1 to rank 2 failed" \
  "$tmp/reset.log") || { cat "$tmp/reset.log"; fail "reset: rank 2 did not name the reset link"; }
log "reset: $line"
log "reset: the job ended ${took} ms after its start"
