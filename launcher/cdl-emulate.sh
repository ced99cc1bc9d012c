#!/usr/bin/env bash
# cdl-emulate: runs an mpirun command on an emulated cluster of N nodes on this machine.
#
#   cdl-emulate --nodes N --bandwidth RATE [--latency DELAY] [--slots S] -- mpirun ARGS...
#
# Each node is a network namespace cdl<pid>n<i> joined to a bridge cdlbr<pid> by a veth pair on
# 10.X.Y.<i>/24 (the bridge itself is .254, for mpirun, which stays in this namespace). Each link
# is shaped with tc tbf at RATE in both directions (egress of the namespace end: the node's
# uplink; egress of the bridge end: its downlink), so node-to-node traffic crosses two shapers of
# RATE. --latency adds a netem delay of DELAY on each node's uplink (one-way node-to-node delay
# DELAY); it needs the kernel's sch_netem and is refused without it rather than ignored.
# The ranks start inside the namespaces through an rsh agent (ip netns exec, as ssh would run
# the orted command line under a shell), from a hostfile of the node addresses with S slots
# each; every node has its own temporary folder (TMPDIR, Open MPI's session directory), as the
# nodes share one host name and /tmp; Open MPI is told to use TCP only (no shared memory) on the
# bridge subnet. Everything (namespaces, links, bridge, files) is removed on exit, failure, Ctrl-C
# or TERM, and what a run killed outright left behind is removed by the next one.
# Exit status: mpirun's; 2 for a usage error, a missing privilege or a set-up failure.
set -uo pipefail

prog=cdl-emulate
die() {
  echo "$prog: $*" >&2
  exit 2
}

nodes="" rate="" delay="" slots=1
while [ $# -gt 0 ]; do
  case $1 in
    --) shift && break ;;
    --nodes | --bandwidth | --latency | --slots) [ $# -ge 2 ] || die "$1 needs a value" ;;
    *) die "unknown argument '$1' (usage: $prog --nodes N --bandwidth RATE [--latency DELAY]" \
      "[--slots S] -- mpirun ARGS...)" ;;
  esac
  case $1 in
    --nodes) nodes=$2 ;;
    --bandwidth) rate=$2 ;;
    --latency) delay=$2 ;;
    --slots) slots=$2 ;;
  esac
  shift 2
done
[ $# -ge 1 ] || die "no mpirun command after --"
if ! [[ $nodes =~ ^[0-9]+$ ]] || [ "$nodes" -lt 1 ] || [ "$nodes" -gt 200 ]; then
  die "--nodes '$nodes' must be 1..200"
fi
if ! [[ $slots =~ ^[0-9]+$ ]] || [ "$slots" -lt 1 ]; then die "--slots '$slots' must be >= 1"; fi
[ -n "$rate" ] || die "--bandwidth is needed (e.g. 1gbit, 100mbit)"
[ "$(id -u)" -eq 0 ] || die "cdl-launch --emulate needs root (network namespaces and tc)"
for tool in ip tc; do
  command -v "$tool" >/dev/null || die "$tool (iproute2) is not installed"
done

# RATE in bits per second, in tc's units (a bare number is bits per second).
rateBits() {
  local v u
  [[ $1 =~ ^([0-9]+(\.[0-9]+)?)([a-zA-Z]*)$ ]] || return 1
  v=${BASH_REMATCH[1]} u=${BASH_REMATCH[3],,}
  case $u in
    "" | bit) awk -v v="$v" 'BEGIN { printf "%.0f", v }' ;;
    kbit) awk -v v="$v" 'BEGIN { printf "%.0f", v * 1e3 }' ;;
    mbit) awk -v v="$v" 'BEGIN { printf "%.0f", v * 1e6 }' ;;
    gbit) awk -v v="$v" 'BEGIN { printf "%.0f", v * 1e9 }' ;;
    tbit) awk -v v="$v" 'BEGIN { printf "%.0f", v * 1e12 }' ;;
    bps) awk -v v="$v" 'BEGIN { printf "%.0f", v * 8 }' ;;
    kbps) awk -v v="$v" 'BEGIN { printf "%.0f", v * 8e3 }' ;;
    mbps) awk -v v="$v" 'BEGIN { printf "%.0f", v * 8e6 }' ;;
    gbps) awk -v v="$v" 'BEGIN { printf "%.0f", v * 8e9 }' ;;
    *) return 1 ;;
  esac
}
if ! bits=$(rateBits "$rate") || [ "$bits" -lt 8000 ]; then
  die "--bandwidth '$rate' is not a rate of at least 8kbit in tc's units (e.g. 1gbit, 100mbit)"
fi
# A bucket of 10 ms at RATE, at least 64 KiB so that one offloaded (GSO) packet fits.
burst=$((bits / 8 / 100))
[ "$burst" -ge 65536 ] || burst=65536
if [ -n "$delay" ]; then
  [[ $delay =~ ^[0-9]+(\.[0-9]+)?(us|usec|ms|msec|s|sec)$ ]] ||
    die "--latency '$delay' is not a delay such as 5ms or 200us"
fi

# What an earlier cdl-emulate left behind when it was killed outright (SIGKILL: no clean-up ran):
# its namespaces, links and folder carry its PID; those of a PID that is no longer a cdl-emulate
# are removed, with any process still inside. Running instances are left alone.
# removeNode NS: kills whatever runs in node NS (an orted that lost mpirun, say), then deletes the
# namespace, which takes its veth end, and so the pair, with it.
removeNode() {
  local pids
  mapfile -t pids < <(ip netns pids "$1" 2>/dev/null)
  [ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null
  ip netns del "$1" 2>/dev/null
}
alive() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q cdl-emulate; }
reap() {
  local ns pid dev dir
  for ns in $(ip netns list 2>/dev/null | cut -d' ' -f1); do
    [[ $ns =~ ^cdl([0-9]+)n[0-9]+$ ]] || continue
    pid=${BASH_REMATCH[1]}
    alive "$pid" && continue
    removeNode "$ns" && echo "$prog: removed namespace $ns of a dead run (PID $pid)" >&2
  done
  for dev in $(ip -o link show 2>/dev/null | cut -d' ' -f2); do
    [[ ${dev%%[@:]*} =~ ^cdl(br)?([0-9]+)([hp][0-9]+)?$ ]] || continue
    alive "${BASH_REMATCH[2]}" || ip link del "${dev%%[@:]*}" 2>/dev/null
  done
  for dir in /tmp/cdl-emulate.*; do
    [ -d "$dir" ] || continue
    [[ $dir =~ ^/tmp/cdl-emulate\.([0-9]+)\. ]] || continue
    alive "${BASH_REMATCH[1]}" || rm -rf "$dir"
  done
}
reap

id=$$
br=cdlbr$id
tmp=$(mktemp -d "/tmp/cdl-emulate.$id.XXXXXX") || die "cannot create a temporary folder"
created=()  # namespaces made so far

# shellcheck disable=SC2317  # called through the trap
cleanup() {
  local ns
  trap '' INT TERM
  for ns in "${created[@]}"; do
    removeNode "$ns"
  done
  for ((i = 1; i <= nodes; ++i)); do ip link del "cdl${id}h$i" 2>/dev/null; done
  ip link del "$br" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A /24 in 10.0.0.0/8 no interface or route here uses, starting from one the PID picks.
subnet=""
for ((k = 0; k < 256; ++k)); do
  cand="10.$((100 + (id / 256 + k) % 100)).$((id % 256))"
  if ! ip -4 route show | grep -q "^$cand\.\|^10\.0\.0\.0/8" &&
    ! ip -4 addr show | grep -q "inet $cand\."; then
    subnet=$cand
    break
  fi
done
[ -n "$subnet" ] || die "no free 10.x.y.0/24 subnet for the bridge"

# Fails the set-up with the failing command named.
run() {
  "$@" 2>"$tmp/err" || die "set-up failed: $* : $(cat "$tmp/err")"
}

netem=0
if [ -n "$delay" ]; then
  # A throw-away veth pair (dummy links are a module some kernels lack) to try the qdisc on.
  ip link add "cdl${id}p0" type veth peer name "cdl${id}p1" 2>/dev/null
  if tc qdisc add dev "cdl${id}p0" root netem delay "$delay" 2>/dev/null; then netem=1; fi
  ip link del "cdl${id}p0" 2>/dev/null
  [ "$netem" -eq 1 ] || die "--latency needs the kernel's netem qdisc (sch_netem), which this" \
    "kernel lacks; run without --latency (bandwidth is shaped with tbf)"
fi

# shape DEV [NS]: tbf at RATE on DEV's egress (in namespace NS), behind a netem delay if asked.
shape() {
  local dev=$1 nsx=()
  [ $# -lt 2 ] || nsx=(ip netns exec "$2")
  local tbf=(tbf rate "$rate" burst "$burst" latency 100ms)
  if [ "$netem" -eq 1 ] && [ $# -ge 2 ]; then
    run "${nsx[@]}" tc qdisc add dev "$dev" root handle 1: netem delay "$delay"
    run "${nsx[@]}" tc qdisc add dev "$dev" parent 1:1 handle 10: "${tbf[@]}"
  else
    run "${nsx[@]}" tc qdisc add dev "$dev" root "${tbf[@]}"
  fi
}

run ip link add "$br" type bridge
run ip addr add "$subnet.254/24" dev "$br"
run ip link set "$br" up
agent=$tmp/agent
hostfile=$tmp/hostfile
# shellcheck disable=SC2016  # the agent's own variables
{
  echo '#!/bin/sh'
  echo "# rsh agent for $prog: runs the command line in the node's namespace, as ssh would."
  echo 'host=$1; shift'
  echo 'case $host in'
} >"$agent"
: >"$hostfile"
for ((i = 1; i <= nodes; ++i)); do
  ns=cdl${id}n$i host=cdl${id}h$i
  run ip netns add "$ns"
  created+=("$ns")
  run ip link add "$host" type veth peer name eth0 netns "$ns"
  run ip link set "$host" master "$br" up
  run ip netns exec "$ns" ip link set lo up
  run ip netns exec "$ns" ip addr add "$subnet.$i/24" dev eth0
  run ip netns exec "$ns" ip link set eth0 up
  shape "$host"
  shape eth0 "$ns"
  echo "$subnet.$i slots=$slots" >>"$hostfile"
  run mkdir "$tmp/n$i"
  echo "  $subnet.$i) ns=$ns dir=$tmp/n$i ;;" >>"$agent"
done
# shellcheck disable=SC2016
{
  echo "  *) echo \"$prog agent: unknown node '\$host'\" >&2; exit 255 ;;"
  echo 'esac'
  echo 'exec ip netns exec "$ns" env TMPDIR="$dir" OMPI_MCA_orte_tmpdir_base="$dir" /bin/sh -c "$*"'
} >>"$agent"
chmod +x "$agent"

# The node daemons stay attached to their agent rather than daemonizing, so that a daemon that
# fails to start makes mpirun fail with its error (a daemonized one leaves mpirun waiting).
cmd=("$1" --hostfile "$hostfile" --mca plm_rsh_agent "$agent" --mca plm_rsh_no_tree_spawn 1
  --mca orte_leave_session_attached 1
  --mca btl "tcp,self" --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include
  "$subnet.0/24" "${@:2}")
delayText=${delay:+, $delay delay}
echo "$prog: $nodes nodes on $br ($subnet.0/24), $rate per link each way$delayText" >&2

# mpirun runs in the background so that a signal to this script reaches it (and so its ranks)
# before the clean-up rather than after.
# The exit status is mpirun's, or 128 + the signal that stopped the job.
# A signalled mpirun that has not ended within 5 s (it waits for a node it cannot reach: Note [A
# job that does not end] in launcher/launch.h) is killed; the clean-up then ends what ran on
# the nodes.
"${cmd[@]}" &
job=$! signaled="" since=""
trap 'signaled=130 since=$SECONDS; kill -TERM $job 2>/dev/null' INT
trap 'signaled=143 since=$SECONDS; kill -TERM $job 2>/dev/null' TERM
while kill -0 "$job" 2>/dev/null; do
  if [ -z "$since" ]; then
    wait "$job"
  elif [ $((SECONDS - since)) -ge 5 ]; then
    echo "$prog: mpirun has not ended 5 s after the signal; killing it" >&2
    kill -KILL "$job" 2>/dev/null
    break
  else
    sleep 0.2
  fi
done
wait "$job"
rc=$?
exit "${signaled:-$rc}"
