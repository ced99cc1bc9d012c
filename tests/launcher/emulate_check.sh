#!/usr/bin/env bash
# cdl-launch --emulate end to end: LAUNCH CONFIG (needs root; skips with status 77 otherwise)
#  1. a 4-node emulated training run at 1gbit finishes and writes its summary;
#  2. a 16 MiB plain allreduce between 2 nodes at 100mbit is no faster than the shaped links allow
#     (each rank must receive the other's whole buffer), so the links really are shaped and the
#     ranks really talk over them; with netem in the kernel, a small allreduce at --latency 20ms
#     takes at least the one-way delay;
#  3. SIGTERM to cdl-launch in the middle of a run stops it with a failure status;
#  4. a link taken down in the middle of a 3-node run ends every rank within CDL_COMM_TIMEOUT + 5 s,
#     each naming the collective and the ranks it waited for, and cdl-launch ends the job;
#  5. every run removes its namespaces, links, folder and processes.
source "$(dirname "$0")/../support/check.sh"
set +e  # each step's status is checked where it matters
launch=$1 config=$2

[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces and tc)"
for tool in ip tc timeout; do command -v "$tool" >/dev/null || skip "$tool is not installed"; done
probe=cdlprobe$$
ip netns add "$probe" 2>/dev/null || skip "cannot create a network namespace here"
ip netns del "$probe"

ids=()  # the PIDs of the cdl-emulate runs so far (they name every resource a run makes)

# emulated NAME ARGS...: cdl-launch ARGS, at most 300 s (then SIGTERM, so its clean-up runs);
# its stdout in $tmp/NAME.out, its stderr in $tmp/NAME.err (and here), its status in $rc.
emulated() {
  local name=$1
  shift
  rc=0
  timeout -s TERM 300 "$launch" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
  cat "$tmp/$name.err"
  noteRun "$name"
}
noteRun() {
  local id
  id=$(grep -o 'nodes on cdlbr[0-9]*' "$tmp/$1.err" | head -n 1 | grep -o '[0-9]*$')
  [ -n "$id" ] || fail "$1: cdl-emulate did not report its bridge"
  ids+=("$id")
}
# started NAME PATTERN: waits up to 60 s for PATTERN in the output of the run NAME in the
# background ($job); false when it ended or never printed it.
started() {
  local _
  for _ in $(seq 600); do
    cat "$tmp/$1".* | grep -q "$2" && return 0
    kill -0 "$job" 2>/dev/null || break
    sleep 0.1
  done
  cat "$tmp/$1".* | grep -q "$2"
}
# What runs $ids left behind: namespaces, links, folders, and any process of this test.
leftovers() {
  local id
  for id in "${ids[@]}"; do
    ip netns list | grep -o "^cdl${id}n[0-9]*"
    ip -o link show | cut -d' ' -f2 | grep -o "^cdl\(br\)\?${id}\([hp][0-9]*\)\?"
    ls -d "/tmp/cdl-emulate.$id."* 2>/dev/null
  done
  pgrep -af "$tmp" | grep -v pgrep
  return 0
}

# 1. Training on 4 nodes.
start=$SECONDS
emulated train --emulate 4 --bandwidth 1gbit "$config" -- --set data.dataset=synthetic \
  --set train.epochs=1 --set log.runs_dir="$tmp/train"
[ "$rc" -eq 0 ] || fail "the emulated training run exited $rc"
[ -f "$tmp/train/fmnist_mlp/summary.json" ] || fail "no summary.json after the emulated run"
cat "$tmp"/train.* | grep -q "4 ranks" || fail "the emulated run did not have 4 ranks"
log "4-node training run at 1gbit: $((SECONDS - start)) s"

# 2. Bandwidth (and latency where the kernel has netem) of plain fp32 allreduces.
# The mpi_allreduce_fp32 record's time_us in the JSON of run NAME.
allreduceUs() {
  tr -d ' \n' <"$tmp/$1.out" | grep -o '{[^}]*"codec":"mpi_allreduce_fp32"[^}]*}' |
    grep -o '"time_us":[0-9.eE+-]*' | head -n 1 | cut -d: -f2
}
bytes=16777216 mbit=100
emulated bw --emulate 2 --bandwidth ${mbit}mbit --bench -- allreduce --min-bytes 16M \
  --max-bytes 16M --codec none --iters 2 --json
[ "$rc" -eq 0 ] || fail "the emulated allreduce bench exited $rc"
us=$(allreduceUs bw)
[ -n "$us" ] || { cat "$tmp/bw.out" >&2; fail "no mpi_allreduce_fp32 time in the bench JSON"; }
# 10% below the bound for tbf's bucket and the clocks.
minUs=$(awk -v b=$bytes -v m=$mbit 'BEGIN { printf "%.0f", 0.9 * b * 8 / (m * 1e6) * 1e6 }')
log "16 MiB allreduce, 2 nodes at ${mbit}mbit: $us us (the links allow no less than $minUs us)"
awk -v t="$us" -v m="$minUs" 'BEGIN { exit !(t >= m) }' ||
  fail "the allreduce took $us us, faster than ${mbit}mbit links allow ($minUs us): not shaped"

ip link add "cdlprobe$$a" type veth peer name "cdlprobe$$b" 2>/dev/null
if tc qdisc add dev "cdlprobe$$a" root netem delay 20ms 2>/dev/null; then
  ip link del "cdlprobe$$a"
  emulated lat --emulate 2 --bandwidth 1gbit --latency 20ms --bench -- allreduce \
    --min-bytes 1K --max-bytes 1K --codec none --iters 5 --json
  [ "$rc" -eq 0 ] || fail "the emulated allreduce bench with --latency exited $rc"
  us=$(allreduceUs lat)
  log "1 KiB allreduce, 2 nodes 20 ms apart: $us us"
  awk -v t="$us" 'BEGIN { exit !(t >= 20000) }' ||
    fail "the allreduce took $us us, less than the 20 ms one-way delay: --latency not applied"
else
  ip link del "cdlprobe$$a" 2>/dev/null
  log "latency not checked: this kernel has no netem (cdl-launch --latency refuses it here)"
fi

# 3. SIGTERM in the middle of a run.
start=$SECONDS
timeout -s KILL 300 "$launch" --emulate 2 --bandwidth 1gbit "$config" -- \
  --set data.dataset=synthetic --set train.epochs=1000 --set log.runs_dir="$tmp/term" \
  >"$tmp/term.out" 2>"$tmp/term.err" &
job=$!
started term "2 ranks, batch" || { cat "$tmp"/term.*; fail "the run to stop did not start"; }
kill -TERM "$job"
rc=0
wait "$job" || rc=$?
noteRun term
[ "$rc" -ne 0 ] || fail "cdl-launch exited 0 after SIGTERM"
[ "$rc" -ne 137 ] || fail "cdl-launch did not stop within 300 s of SIGTERM"
log "SIGTERM: cdl-launch exited $rc in $((SECONDS - start)) s"

# 4. A link taken down in the middle of training (Note [Peer status], Note [A job that does not
# end]): every rank ends within CDL_COMM_TIMEOUT + 5 s naming the collective and the ranks it
# waited for (node 2's rank 1, whose output can no longer reach mpirun, in its --output-filename
# file), and cdl-launch ends the job that mpirun cannot.
limit=5
CDL_COMM_TIMEOUT=$limit timeout -s KILL 300 "$launch" --emulate 3 --bandwidth 1gbit \
  --mpi-arg --output-filename --mpi-arg "$tmp/link-ranks" "$config" -- \
  --set data.dataset=synthetic --set train.epochs=1000 --set log.runs_dir="$tmp/link" \
  >"$tmp/link.out" 2>"$tmp/link.err" &
job=$!
started link "] step [0-9]*/" || { cat "$tmp"/link.*; fail "the run to cut did not start"; }
noteRun link
mapfile -t ranks < <(for p in $(pgrep -x cdl-train); do
  tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "$tmp/link" && echo "$p"; done)
[ ${#ranks[@]} -eq 3 ] || fail "found ${#ranks[@]} ranks of the run to cut, expected 3"
ip link set "cdl${ids[-1]}h2" down || fail "cannot take node 2's link down"
down=$(date +%s%N)
# A rank has ended once it is gone or a zombie (its daemon may not reap it).
running() { local p; for p in "${ranks[@]}"; do ps -o stat= -p "$p" 2>/dev/null | grep -qv Z && echo "$p"; done; }
while [ -n "$(running)" ] && [ $(( ($(date +%s%N) - down) / 1000000 )) -lt 60000 ]; do sleep 0.05; done
ended_ms=$(( ($(date +%s%N) - down) / 1000000 ))
[ -z "$(running)" ] || fail "ranks $(running | tr '\n' ' ')still run 60 s after the link went down"
rc=0
wait "$job" || rc=$?
[ "$rc" -ne 0 ] || fail "cdl-launch exited 0 after a link went down"
[ "$rc" -ne 137 ] || fail "cdl-launch did not end within 300 s of the link going down"
log "link down: every rank ended ${ended_ms} ms after it (the limit: $((limit + 5)) s)," \
  "cdl-launch $(( ($(date +%s%N) - down) / 1000000 )) ms after it, with status $rc"
[ "$ended_ms" -le $(( (limit + 5) * 1000 )) ] ||
  fail "the ranks took ${ended_ms} ms to end, more than CDL_COMM_TIMEOUT + 5 s"
grep -q "did not complete within $limit s (waiting for rank 1: it did not answer a status query" \
  "$tmp/link.err" || { cat "$tmp/link.err"; fail "no rank named rank 1 as cut off"; }
grep -q "(collective #[0-9]* on rank 1 of 3) did not complete within $limit s (waiting for ranks 0, 2: they did not answer" \
  "$tmp/link-ranks/1/rank.1/stderr" ||
  { cat "$tmp/link-ranks/1/rank.1/stderr"; fail "rank 1 did not name ranks 0 and 2 as cut off"; }
log "link down: $(grep -m 1 -o 'cdl-train: \[rank [02]\].*' "$tmp/link.err")"

# 5. Nothing left behind (namespaces go with their clean-up; allow the kernel a moment).
for _ in 1 2 3 4 5 6 7 8 9 10; do
  [ -z "$(leftovers)" ] && break
  sleep 0.5
done
[ -z "$(leftovers)" ] || fail "cdl-emulate left behind: $(leftovers)"
log "ok"
