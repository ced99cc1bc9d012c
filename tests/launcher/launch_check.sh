#!/usr/bin/env bash
# cdl-launch end to end under a real mpirun: LAUNCH CONFIG
#  1. a 2-rank synthetic run succeeds and writes its summary;
#  2. a run whose ranks fail exits non-zero, names the failed rank and its error, and leaves no
#     process behind;
#  3. a bad config (a bad key, a bad codec spec) is refused before anything starts, naming the key;
#     repeated --mpi-arg and -x take one value each.
source "$(dirname "$0")/../support/check.sh"
set +e  # each step's status is checked where it matters
launch=$1 config=$2

"$launch" -np 2 "$config" -- --set data.dataset=synthetic --set train.epochs=1 \
  --set log.runs_dir="$tmp/ok" || fail "the synthetic run failed"
[ -f "$tmp/ok/fmnist_mlp/summary.json" ] || fail "no summary.json after the synthetic run"

"$launch" -np 2 "$config" -- --set data.path="$tmp/nowhere" --set log.runs_dir="$tmp/bad" \
  2>"$tmp/err"
rc=$?
[ "$rc" -ne 0 ] || fail "a failing job exited 0"
grep -q "cdl-launch: rank [01] failed first: .*not found" "$tmp/err" || {
  cat "$tmp/err" >&2
  fail "the failed rank and its error are not named"
}
sleep 1
if pgrep -f "log.runs_dir=$tmp/bad" >/dev/null; then fail "processes of the failed job remain"; fi

# Repeatable options take one value each: the config after them stays the config.
"$launch" --dry-run -np 2 --mpi-arg --tag-output -x CDL_A=1 -x CDL_B=2 "$config" >"$tmp/cmd" ||
  fail "--dry-run with repeated --mpi-arg and -x failed"
grep -q -- "-x CDL_A=1 -x CDL_B=2 --tag-output .*cdl-train $config" "$tmp/cmd" ||
  { cat "$tmp/cmd"; fail "--mpi-arg and -x took more than their value"; }

"$launch" -np 2 "$config" -- --set train.lr=-1 2>"$tmp/err2"
[ $? -eq 2 ] || fail "a bad config did not exit with status 2"
grep -q "train.lr" "$tmp/err2" || fail "the bad key is not named"
grep -q "mpirun\|MPI_ABORT" "$tmp/err2" && fail "a bad config still started mpirun"
# A bad codec spec is refused by cdl-launch itself, in every mode, before anything starts.
"$launch" --slurm --dry-run "$config" -- --set comm.codec=qsgd:bits=99 2>"$tmp/err6" >/dev/null &&
  fail "a bad codec spec was accepted"
grep -q "comm.codec" "$tmp/err6" || { cat "$tmp/err6" >&2; fail "the bad codec spec is not named"; }
"$launch" -np 2 "$config" -- --set 'comm.overrides=[{pattern: "fc*", codec: "topk:density=0"}]' \
  2>"$tmp/err7"
[ $? -eq 2 ] || fail "a bad override codec did not exit with status 2"
grep -q "comm.overrides\[0\].codec" "$tmp/err7" || { cat "$tmp/err7" >&2; fail "the override is not named"; }
grep -q "mpirun\|MPI_ABORT\|rank [0-9]" "$tmp/err7" && fail "a bad codec spec still started mpirun"
# 4. SLURM settings come from the config's slurm section, and flags win over it.
"$launch" --slurm --dry-run "$config" -- --set slurm.nodes=2 --set slurm.tasks_per_node=3 \
  --set slurm.partition=gpu --set slurm.time=02:00:00 --set name=mlp-a >"$tmp/sbatch" ||
  fail "--slurm --dry-run with a slurm section failed"
for line in "--nodes=2" "--ntasks-per-node=3" "--partition=gpu" "--time=02:00:00" \
  "--job-name=mlp-a"; do
  grep -qx -- "#SBATCH $line" "$tmp/sbatch" || { cat "$tmp/sbatch" >&2; fail "no #SBATCH $line"; }
done
"$launch" --slurm --dry-run --partition cpu --time 30 "$config" -- --set slurm.partition=gpu \
  >"$tmp/sbatch2" || fail "--slurm --dry-run with flags failed"
grep -qx -- "#SBATCH --partition=cpu" "$tmp/sbatch2" ||
  fail "--partition did not win over the config"
grep -qx -- "#SBATCH --time=30" "$tmp/sbatch2" || fail "--time did not win over the config"
"$launch" --slurm --dry-run "$config" -- --set 'slurm.partition=a b' 2>"$tmp/err3" &&
  fail "a partition with a space was accepted"
grep -q "partition" "$tmp/err3" || fail "the bad partition is not named"
# 5. Every form of --set that cdl-train reads is checked by cdl-launch the same way.
for form in "--set=train.lr=-1" "--set name=x train.lr=-1"; do
  # shellcheck disable=SC2086
  "$launch" --slurm --dry-run "$config" -- $form 2>"$tmp/err4" >/dev/null &&
    fail "'$form' was not checked"
  grep -q "train.lr" "$tmp/err4" || { cat "$tmp/err4" >&2; fail "'$form': the bad key is not named"; }
done
"$launch" --slurm --dry-run "$config" -- --set=name=formed --set slurm.time=03:00:00 >"$tmp/sbatch3" ||
  fail "--set=key=value was refused"
grep -qx -- "#SBATCH --job-name=formed" "$tmp/sbatch3" || fail "--set=name=... was not read"
"$launch" --slurm --dry-run "$config" -- --bogus 2>"$tmp/err5" >/dev/null &&
  fail "an argument cdl-train does not take was accepted"
grep -q "not cdl-train's" "$tmp/err5" || { cat "$tmp/err5" >&2; fail "no error for --bogus"; }
echo "launch_check: ok"
