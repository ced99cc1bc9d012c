#!/usr/bin/env bash
# scripts/install-deps.sh's torch step on a full disk (root: a 64 MiB tmpfs; skips with 77
# otherwise): one error naming the step and the free space, no venv left behind; and on the
# installed venv, nothing to do. install_deps_check.sh SOURCE_DIR
source "$(dirname "$0")/../support/check.sh"
src=$1
"$src/scripts/install-deps.sh" >"$tmp/again.log" 2>&1 || { cat "$tmp/again.log"; fail "install-deps.sh failed on an installed machine"; }
[ ! -s "$tmp/again.log" ] || { cat "$tmp/again.log"; fail "install-deps.sh did something on an installed machine"; }

[ "$(id -u)" -eq 0 ] || { echo "install_deps_check: SKIP: mounting a small tmpfs needs root"; exit 77; }
mkdir -p "$tmp/small"
mount -t tmpfs -o size=64m cdl-small "$tmp/small" 2>/dev/null ||
  { echo "install_deps_check: SKIP: cannot mount a tmpfs here"; exit 77; }
trap 'umount "$tmp/small" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir "$tmp/small/venv"
touch "$tmp/small/venv/half-installed"
if CDL_TORCH_VENV=$tmp/small/venv "$src/scripts/install-deps.sh" >"$tmp/full.log" 2>&1; then
  cat "$tmp/full.log"
  fail "install-deps.sh went on with a full disk"
fi
cat "$tmp/full.log"
grep -q "install-deps: step 'check disk space' failed: .* needs about [0-9]* MiB in $tmp/small, which has [0-9]* MiB free" "$tmp/full.log" ||
  fail "the error does not name the step and the free space"
[ ! -e "$tmp/small/venv" ] || fail "the half-installed venv was left in place"
echo "install_deps_check: ok"
