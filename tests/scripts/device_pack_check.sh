#!/usr/bin/env bash
# scripts/device-pack.sh on packages made here (--debs, no download): the pack merges /lib into
# /usr/lib, makes absolute links relative inside it, drops documentation and manual pages and
# names its packages; a pack over --limit-mib, or with a link to a file no package holds, is one
# error that leaves the earlier pack in place. And scripts/device-check.sh's argument errors, each
# one line before anything is built. device_pack_check.sh SOURCE_DIR
source "$(dirname "$0")/../support/check.sh"
src=$1
pack=$src/scripts/device-pack.sh

# fake_deb NAME VERSION SET: a package of the files under $tmp/root-NAME, into $tmp/debs-SET.
fake_deb() {
  local root=$tmp/root-$1
  mkdir -p "$root/DEBIAN" "$tmp/debs-$3"
  printf '%s\n' "Package: $1" "Version: $2" "Architecture: amd64" \
    "Maintainer: cdl tests <cdl@localhost>" "Description: a test package" >"$root/DEBIAN/control"
  dpkg-deb --root-owner-group --build "$root" "$tmp/debs-$3/$1.deb" >/dev/null ||
    fail "dpkg-deb could not build the test package $1"
}

lib=usr/lib/x86_64-linux-gnu
mkdir -p "$tmp/root-libfake-dev/usr/include" "$tmp/root-libfake-dev/$lib" \
  "$tmp/root-libfake-dev/usr/share/doc/libfake-dev" "$tmp/root-libfake-dev/usr/share/man/man3" \
  "$tmp/root-libfake1/lib/x86_64-linux-gnu"
echo 'int fake(void);' >"$tmp/root-libfake-dev/usr/include/fake.h"
echo 'the licence' >"$tmp/root-libfake-dev/usr/share/doc/libfake-dev/copyright"
echo '.TH fake 3' >"$tmp/root-libfake-dev/usr/share/man/man3/fake.3"
ln -s /lib/x86_64-linux-gnu/libfake.so.1 "$tmp/root-libfake-dev/$lib/libfake.so"
echo 'not really a library' >"$tmp/root-libfake1/lib/x86_64-linux-gnu/libfake.so.1"
fake_deb libfake-dev 1.2-3 good
fake_deb libfake1 1.2-3 good

"$pack" --debs "$tmp/debs-good" "$tmp/pack" >"$tmp/good.log" 2>&1 ||
  { cat "$tmp/good.log"; fail "device-pack.sh failed on two good packages"; }
grep -q "device-pack: $tmp/pack: 2 packages, [0-9.]* MiB" "$tmp/good.log" ||
  { cat "$tmp/good.log"; fail "device-pack.sh does not say what it packed and its size"; }
[ -f "$tmp/pack/usr/include/fake.h" ] || fail "the header is not in the pack"
[ ! -e "$tmp/pack/lib" ] || fail "/lib was not merged into /usr/lib"
[ -f "$tmp/pack/$lib/libfake.so.1" ] || fail "the runtime library is not in the pack's /usr/lib"
[ "$(readlink "$tmp/pack/$lib/libfake.so")" = libfake.so.1 ] ||
  fail "the absolute link was not made relative: $(readlink "$tmp/pack/$lib/libfake.so")"
[ ! -e "$tmp/pack/usr/share/doc" ] && [ ! -e "$tmp/pack/usr/share/man" ] ||
  fail "documentation or manual pages were left in the pack"
grep -qx "libfake-dev 1.2-3" "$tmp/pack/PACK.txt" &&
  grep -qx "libfake1 1.2-3" "$tmp/pack/PACK.txt" ||
  { cat "$tmp/pack/PACK.txt"; fail "PACK.txt does not name the packages and their versions"; }

# Over the limit: one error naming the size and the limit; the earlier pack stays.
mkdir -p "$tmp/root-big/usr/share/big"
head -c 3145728 /dev/urandom >"$tmp/root-big/usr/share/big/blob"
fake_deb big 1 big
if "$pack" --debs "$tmp/debs-big" --limit-mib 2 "$tmp/pack" >"$tmp/big.log" 2>&1; then
  cat "$tmp/big.log"
  fail "device-pack.sh made a pack over its limit"
fi
grep -q "device-pack: the pack is 3.0 MiB, over the limit of 2 MiB" "$tmp/big.log" ||
  { cat "$tmp/big.log"; fail "the error does not name the size and the limit"; }
grep -qx "libfake1 1.2-3" "$tmp/pack/PACK.txt" ||
  fail "a pack over the limit replaced the earlier one"

# A link to a file that no package holds.
mkdir -p "$tmp/root-dangling/$lib"
ln -s /lib/x86_64-linux-gnu/libnone.so.1 "$tmp/root-dangling/$lib/libnone.so"
fake_deb dangling 1 dangling
if "$pack" --debs "$tmp/debs-dangling" "$tmp/pack2" >"$tmp/dangling.log" 2>&1; then
  fail "device-pack.sh packed a link to a file no package holds"
fi
grep -q "the link /$lib/libnone.so points to /lib/x86_64-linux-gnu/libnone.so.1, which no package" \
  "$tmp/dangling.log" || { cat "$tmp/dangling.log"; fail "the error does not name the link"; }
[ ! -e "$tmp/pack2" ] || fail "a failed pack left its folder"
[ -z "$(find "$tmp" -maxdepth 1 -name '.device-pack.*')" ] ||
  fail "a failed pack left its scratch folder"

# expect_error WHAT MESSAGE COMMAND...: COMMAND fails with one line holding MESSAGE.
expect_error() {
  local what=$1 message=$2
  shift 2
  if "$@" >"$tmp/err.log" 2>&1; then
    fail "$what was accepted"
  fi
  [ "$(wc -l <"$tmp/err.log")" -eq 1 ] && grep -qF -- "$message" "$tmp/err.log" ||
    { cat "$tmp/err.log"; fail "$what: not one line saying '$message'"; }
}
expect_error "device-pack.sh --limit-mib 0" "--limit-mib needs a positive whole number" \
  "$pack" --limit-mib 0 "$tmp/pack3"
expect_error "device-pack.sh with an unknown option" "unknown option '--fast'" "$pack" --fast
expect_error "device-pack.sh --debs of an empty folder" "no .deb file in $tmp/empty" \
  sh -c 'mkdir -p "$1" && "$2" --debs "$1" "$3"' sh "$tmp/empty" "$pack" "$tmp/pack3"
"$pack" --list | grep -x libspdlog-dev >/dev/null || fail "device-pack.sh --list does not list libspdlog-dev"

check=$src/scripts/device-check.sh
expect_error "device-check.sh without OUTDIR" "usage: device-check.sh [options] OUTDIR" "$check"
expect_error "device-check.sh --jobs 0" "--jobs needs a positive whole number" \
  "$check" --jobs 0 "$tmp/out"
expect_error "device-check.sh without a pack" "no pack in $tmp/nopack: run scripts/device-pack.sh" \
  "$check" --pack "$tmp/nopack" --build "$tmp/build" "$tmp/out"
expect_error "device-check.sh --python of no python" "no python '$tmp/none'" \
  "$check" --pack "$tmp/pack" --python "$tmp/none" --build "$tmp/build" "$tmp/out"
[ ! -e "$tmp/out" ] && [ ! -e "$tmp/build" ] || fail "device-check.sh made folders before failing"
log ok
