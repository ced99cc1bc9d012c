#!/usr/bin/env bash
# A full disk (root: a 5 MiB tmpfs as the runs folder, a checkpoint takes 3.2 MB): full_disk_check.sh CDL_TRAIN CONFIG
# The second checkpoint does not fit: the run must fail with one error naming the file and the
# free space, keep the first checkpoint intact and the metrics free of a half line, and once the
# file system has room, --resume must end exactly as the uninterrupted run.
source "$(dirname "$0")/../support/check.sh"
train=$1 config=$2
[ "$(id -u)" -eq 0 ] || skip "mounting a small tmpfs needs root"
mkdir -p "$tmp/small"
mount -t tmpfs -o size=5m cdl-full "$tmp/small" 2>/dev/null || skip "cannot mount a tmpfs here"
trap 'umount "$tmp/small" 2>/dev/null; rm -rf "$tmp"' EXIT
run() {
  local dir=$1
  shift
  timeout 120 mpirun "${mpirun_flags[@]}" -np 1 "$train" "$config" --set log.runs_dir="$dir" \
    --set name=run --set data.dataset=synthetic --set train.epochs=1 --set train.threads=1 \
    --set checkpoint.every_steps=8 --set checkpoint.keep=1 --set log.every_steps=2 \
    --set comm.codec=none "$@"
}
records() {
  grep '"kind":"step"' "$1/metrics.jsonl" |
    sed -E 's/"ms":\{[^}]*\},?//; s/"(samples_per_s|wall_s)":[^,}]*,?//g'
}

mkdir -p "$tmp/big"
run "$tmp/big" >"$tmp/whole.log" 2>&1 || { cat "$tmp/whole.log"; fail "the uninterrupted run failed"; }
if run "$tmp/small" >"$tmp/full.log" 2>&1; then
  cat "$tmp/full.log"
  fail "the run on a full disk exited 0"
fi
grep -qE "writing $tmp/small/run/checkpoints/ckpt-0000000016.rank0.ckpt failed: No space left on device \([0-9.]+ MiB free on its file system\); the previous file is intact" "$tmp/full.log" ||
  { cat "$tmp/full.log"; fail "the error does not name the checkpoint and the free space"; }
[ -f "$tmp/small/run/checkpoints/ckpt-0000000008.rank0.ckpt" ] || fail "the first checkpoint is gone"
[ ! -e "$tmp/small/run/checkpoints/ckpt-0000000016.rank0.ckpt.tmp" ] ||
  fail "the partial checkpoint was left behind"
if grep -vq '}$' "$tmp/small/run/metrics.jsonl"; then
  fail "metrics.jsonl holds a partial line"
fi
mount -o remount,size=64m "$tmp/small"
run "$tmp/small" --resume >"$tmp/resume.log" 2>&1 || { cat "$tmp/resume.log"; fail "--resume failed"; }
grep -q "resumed from .*(step 8," "$tmp/resume.log" || { cat "$tmp/resume.log"; fail "not resumed from step 8"; }
diff <(records "$tmp/big/run") <(records "$tmp/small/run") >"$tmp/diff" ||
  { cat "$tmp/diff"; fail "the resumed run's step records differ from the uninterrupted run's"; }
log "a full disk at the second checkpoint: one error naming it and the free space, the first intact, resumed exactly once there was room"
log "ok"
