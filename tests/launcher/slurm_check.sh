#!/usr/bin/env bash
# cdl-launch --slurm end to end on a real single-node SLURM cluster: LAUNCH CONFIG
#  1. installs slurmctld, slurmd, munge and slurm-client from Debian when missing;
#  2. starts munged, slurmctld and slurmd on localhost with their own config, state and sockets
#     under a temporary folder (nothing under /etc is changed, no system daemon is touched);
#  3. a 2-task synthetic job submitted with `cdl-launch --slurm --wait` exits 0, prints the final
#     "done: test accuracy" line into its output file and writes its summary;
#  4. cdl-launch run inside an allocation launches its ranks there (srun with PMIx);
#  5. a job whose ranks fail makes `cdl-launch --slurm --wait` exit non-zero.
# Exits 77 (CTest's skip) with the reason when the packages cannot be installed or the daemons
# cannot start here; every daemon and job it started is stopped on exit.
source "$(dirname "$0")/../support/check.sh"
launch=$1 config=$2

# 1. Packages.
need=()
for p in slurmctld slurmd munge slurm-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || skip "not root, cannot install ${need[*]} (apt-get install ${need[*]})"
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  aptlog=$(mktemp /tmp/cdl_slurm_check_apt.XXXXXX)
  if ! apt-get install -y --no-install-recommends "${need[@]}" >"$aptlog" 2>&1; then
    apt-get update >/dev/null 2>&1 || true
    apt-get install -y --no-install-recommends "${need[@]}" >"$aptlog" 2>&1 || {
      tail -n 5 "$aptlog" >&2
      rm -f "$aptlog"
      skip "apt-get install ${need[*]} failed"
    }
  fi
  rm -f "$aptlog"
fi
[ "$(id -u)" -eq 0 ] || skip "not root: this single-node cluster runs its daemons as root"

# 2. The cluster (credentials expire after 15 s, not 120: a requeued job waits that long before
# it starts again). munged wants its socket folder (and the folders above) searchable by all.
chmod 755 "$tmp"
mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/jobtmp"
chmod 755 "$tmp/munge"
pids=()
# Nothing of a surrounding allocation or the user's sbatch/srun defaults leaks into our jobs.
for v in $(compgen -e); do
  case $v in SLURM_* | SBATCH_* | SALLOC_* | SRUN_*) unset "$v" ;; esac
done
export SLURM_CONF=$tmp/slurm.conf

# Every process whose environment holds our SLURM_CONF: the daemons, slurmstepd and job steps.
ours() {
  local p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    if [ "$p" != $$ ] && [ "$p" != "$BASHPID" ] &&
      { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qx "SLURM_CONF=$SLURM_CONF"; then
      echo "$p"
    fi
  done
  return 0
}
cleanup() {
  local rc=$? p left
  set +e
  if [ -n "${ctld_pid:-}" ] && kill -0 "$ctld_pid" 2>/dev/null; then
    scancel --full --quiet --user=root >/dev/null 2>&1
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      [ -z "$(squeue -h 2>/dev/null)" ] && break
      sleep 1
    done
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    left=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
    [ $left -eq 0 ] && break
    sleep 0.5
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in $(ours); do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

daemon_logs() {
  local f
  for f in "$tmp"/log/*; do
    [ -s "$f" ] || continue
    echo "--- last lines of ${f#"$tmp"/log/}" >&2
    tail -n 15 "$f" >&2
  done
}
cannot_start() {
  daemon_logs
  skip "$1"
}

# Ports nobody here listens on, so a real SLURM on this host is left alone.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ctld_port=
for base in 16817 26817 36817 46817; do
  if port_free "$base" && port_free $((base + 1)); then
    ctld_port=$base
    break
  fi
done
[ -n "$ctld_port" ] || cannot_start "no free port pair for slurmctld and slurmd"
slurmd_port=$((ctld_port + 1))

node=$(hostname -s 2>/dev/null || true)
[ -n "$node" ] || node=localhost
cpus=$(nproc)

dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$tmp/munge/munge.key"
munge_socket=$tmp/munge/munge.socket
munged --foreground --key-file="$tmp/munge/munge.key" --socket="$munge_socket" \
  --pid-file="$tmp/munge/munged.pid" --seed-file="$tmp/munge/munged.seed" \
  --log-file="$tmp/log/munged.log" >>"$tmp/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  [ -S "$munge_socket" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || break
  sleep 0.2
done
munge -S "$munge_socket" -n 2>/dev/null | unmunge -S "$munge_socket" >/dev/null 2>&1 ||
  cannot_start "munged does not start"

: >"$tmp/plugstack.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=cdltest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_socket,cred_expire=15
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
TmpFS=$tmp/jobtmp
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$tmp/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
InactiveLimit=0
KillWait=5
MinJobAge=10
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=$cpus State=UNKNOWN
PartitionName=cdltest Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF

slurmctld -D -i -f "$SLURM_CONF" >>"$tmp/log/slurmctld.out" 2>&1 &
ctld_pid=$!
pids+=("$ctld_pid")
for _ in $(seq 50); do
  scontrol ping 2>/dev/null | grep -q "is UP" && break
  kill -0 "$ctld_pid" 2>/dev/null || break
  sleep 0.2
done
scontrol ping 2>/dev/null | grep -q "is UP" || cannot_start "slurmctld does not start"

slurmd -D -N "$node" -f "$SLURM_CONF" >>"$tmp/log/slurmd.out" 2>&1 &
slurmd_pid=$!
pids+=("$slurmd_pid")
state=
for _ in $(seq 60); do
  state=$(sinfo -h -N -n "$node" -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  kill -0 "$slurmd_pid" 2>/dev/null || break
  sleep 1
done
[ "$state" = idle ] || cannot_start "node $node is '${state:-unknown}', not idle, after 60 s"
log "cluster up: node $node, $cpus CPUs, slurmctld port $ctld_port, $(srun --version)"

# 3. A 2-task job through cdl-launch --slurm --wait.
job() {  # NAME, then cdl-train's arguments; cdl-launch's status in $rc, its stderr in $tmp/NAME.err
  local name=$1
  shift
  rc=0
  "$launch" --slurm --wait -np 2 --nodes 1 --time 10 --job-name "cdl-$name" \
    --output "$tmp/$name-%j.out" --script "$tmp/$name.sbatch" "$config" -- "$@" \
    >"$tmp/$name.id" 2>"$tmp/$name.err" || rc=$?
}
show() {  # NAME: what a failing check needs to see
  echo "--- cdl-launch stderr" >&2
  cat "$tmp/$1.err" >&2
  echo "--- job output" >&2
  cat "$tmp/$1"-*.out >&2 2>/dev/null || echo "(no output file)" >&2
  daemon_logs
}

start=$SECONDS
job ok --set data.dataset=synthetic --set train.epochs=1 --set log.runs_dir="$tmp/runs"
[ "$rc" -eq 0 ] || { show ok; fail "the synthetic job: cdl-launch exited $rc"; }
outs=("$tmp"/ok-*.out)
out=${outs[0]}
[ -f "$out" ] || { show ok; fail "the synthetic job left no output file $tmp/ok-%j.out"; }
grep -q "done: test accuracy" "$out" || { show ok; fail "no 'done: test accuracy' line in $out"; }
[ -f "$tmp/runs/fmnist_mlp/summary.json" ] || { show ok; fail "no runs/fmnist_mlp/summary.json"; }
# With PMIx in SLURM the job must have run its ranks as step 0 (srun), not under mpirun.
jobid=${out##*/ok-}
jobid=${jobid%.out}
if srun --mpi=list 2>&1 | grep pmix >/dev/null; then
  grep -q "launch task StepId=$jobid.0 " "$tmp/log/slurmd.log" ||
    { show ok; fail "SLURM offers PMIx but job $jobid did not start its ranks with srun"; }
  how="srun --mpi=pmix"
else
  how="mpirun (SLURM lists no PMIx)"
fi
log "synthetic job $jobid ok in $((SECONDS - start)) s, ranks started by $how"
grep "done: test accuracy" "$out"

# 4. cdl-launch inside an allocation of its own (sbatch --wrap, as from salloc): the allocation
# is the host list, and with PMIx the ranks are an srun step.
start=$SECONDS
rc=0
inside=$(sbatch --parsable --wait --nodes=1 --ntasks=2 --time=10 --job-name=cdl-inside \
  --output="$tmp/inside-%j.out" --wrap "$launch -np 2 $config -- --set data.dataset=synthetic \
  --set train.epochs=1 --set log.runs_dir=$tmp/runs-inside" 2>"$tmp/inside.err") || rc=$?
inside=${inside%%;*}
if [ "$rc" -ne 0 ]; then
  cat "$tmp/inside.err" "$tmp"/inside-*.out >&2
  daemon_logs
  fail "cdl-launch inside an allocation: sbatch exited $rc"
fi
grep -q "done: test accuracy" "$tmp/inside-$inside.out" || {
  cat "$tmp/inside-$inside.out" >&2
  fail "cdl-launch inside an allocation did not finish training"
}
if [ "$how" = "srun --mpi=pmix" ]; then
  grep -q "^cdl-launch: srun --mpi=pmix " "$tmp/inside-$inside.out" || {
    cat "$tmp/inside-$inside.out" >&2
    fail "cdl-launch inside allocation $inside did not use srun"
  }
fi
log "cdl-launch inside allocation $inside ok in $((SECONDS - start)) s"

# 5. A job whose ranks fail.
start=$SECONDS
job bad --set data.path="$tmp/nowhere" --set log.runs_dir="$tmp/runs-bad"
[ "$rc" -ne 0 ] || { show bad; fail "a job whose ranks fail made cdl-launch exit 0"; }
grep -q "cdl-train: \[rank [01]\].*not found" "$tmp"/bad-*.out 2>/dev/null ||
  { show bad; fail "the failing job's output does not name the rank and its error"; }
log "failing job: cdl-launch exited $rc in $((SECONDS - start)) s"

# 6. Stopped and requeued (Note [SLURM stops]): SIGUSR1 to the batch shell, as SLURM sends it
# ahead of the time limit, stops the ranks with a checkpoint; the job requeues itself and its
# requeued run ends exactly as an uninterrupted one.
start=$SECONDS
sets=(--set data.dataset=synthetic --set train.epochs=20 --set log.every_steps=2
  --set checkpoint.every_steps=0 --set comm.codec=qsgd:bits=4)
records() {
  grep '"kind":"step"' "$1/metrics.jsonl" |
    sed -E 's/"ms":\{[^}]*\},?//; s/"(samples_per_s|wall_s)":[^,}]*,?//g'
}
"$launch" -np 2 "$config" -- "${sets[@]}" --set log.runs_dir="$tmp/runs-whole" \
  >"$tmp/whole.log" 2>&1 || { cat "$tmp/whole.log" >&2; fail "the uninterrupted local run failed"; }
rq=$("$launch" --slurm -np 2 --nodes 1 --time 10 --requeue --job-name cdl-requeue \
  --output "$tmp/requeue-%j.out" --script "$tmp/requeue.sbatch" "$config" -- "${sets[@]}" \
  --set log.runs_dir="$tmp/runs-rq" 2>"$tmp/requeue.err") ||
  { cat "$tmp/requeue.err" >&2; fail "submitting the requeue job failed"; }
rq=${rq%%;*}
grep -q "^#SBATCH --signal=B:USR1@120$" "$tmp/requeue.sbatch" || fail "no --signal in the script"
metrics=$tmp/runs-rq/fmnist_mlp/metrics.jsonl
for _ in $(seq 120); do
  [ -f "$metrics" ] && [ "$(grep -c '"kind":"step"' "$metrics")" -ge 20 ] && break
  sleep 0.5
done
[ -f "$metrics" ] || { cat "$tmp"/requeue-*.out >&2; daemon_logs; fail "the requeue job never trained"; }
scancel --signal=USR1 --batch "$rq"
for _ in $(seq 360); do
  [ -f "$tmp/runs-rq/fmnist_mlp/summary.json" ] && [ -z "$(squeue -h -j "$rq" 2>/dev/null)" ] && break
  sleep 0.5
done
out=$tmp/requeue-$rq.out
[ -f "$tmp/runs-rq/fmnist_mlp/summary.json" ] ||
  { cat "$out" >&2; daemon_logs; fail "the requeued job did not finish"; }
for want in "stopping after this step with a checkpoint" \
  "cdl-launch: the ranks stopped with a checkpoint; requeueing job $rq" \
  "cdl-launch: job $rq requeued (1): continuing from the newest step" "resumed from .*(step "; do
  grep -q "$want" "$out" || { cat "$out" >&2; fail "the requeued job's output lacks: $want"; }
done
diff <(records "$tmp/runs-whole/fmnist_mlp") <(records "$tmp/runs-rq/fmnist_mlp") >"$tmp/rq.diff" ||
  { cat "$tmp/rq.diff" >&2; fail "the requeued run's step records differ from the uninterrupted run's"; }
from=$(sed -n 's/.*resumed from .*(step \([0-9]*\),.*/\1/p' "$out" | head -n 1)
log "SIGUSR1 to job $rq: stopped at step $from with a checkpoint, requeued, resumed exactly in $((SECONDS - start)) s"
log "ok"
