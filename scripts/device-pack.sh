#!/usr/bin/env bash
# Packs the Debian libraries cdl's build needs into one folder for scripts/device-check.sh on a GPU
# machine that has no Debian packages and no network (README: The GPU check). Run it on a Debian
# bookworm machine with apt; the folder travels with the check and nothing is installed there.
#   device-pack.sh [--debs FOLDER] [--limit-mib N] [--list] [DIR]
# DIR (default .carry/device-pack, which git ignores) gets each package of the list below unpacked
# (apt-get download + dpkg -x) under DIR/usr, with /lib merged into /usr/lib, absolute symbolic
# links made relative inside DIR, and without documentation and manual pages (static archives
# stay: the packages' CMake files check that they exist); DIR/PACK.txt names the packages, their
# versions and the size. DIR is replaced whole, once the new one is complete and within
# --limit-mib (64).
# --debs FOLDER unpacks the .deb files of FOLDER instead of downloading the list; --list prints
# the list and exits.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# cdl's build without MPI (CDL_WITH_MPI=OFF) with its tests and benchmarks: the -dev packages of
# cmake/cdlDependencies.cmake and cmake/CdlDeps.cmake, the runtime libraries their links name,
# and pkgconf (CMake's pkg_check_modules finds xxhash through it).
packages=(
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
  libyaml-cpp-dev libyaml-cpp0.7
  nlohmann-json3-dev libcli11-dev
  libxxhash-dev libxxhash0
  libzstd-dev libzstd1
  zlib1g-dev zlib1g
  libgtest-dev libgmock-dev
  pkgconf-bin libpkgconf3
)

die() {
  echo "device-pack: $*" >&2
  exit 1
}

dir=
debs=
limit_mib=64
while [ $# -gt 0 ]; do
  case $1 in
    --debs)
      [ $# -ge 2 ] || die "--debs needs a folder of .deb files"
      debs=$2
      shift 2
      ;;
    --limit-mib)
      [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] ||
        die "--limit-mib needs a positive whole number of MiB"
      limit_mib=$2
      shift 2
      ;;
    --list)
      printf '%s\n' "${packages[@]}"
      exit 0
      ;;
    -h | --help)
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
      exit 0
      ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *)
      [ -z "$dir" ] || die "one folder only; got '$dir' and '$1'"
      dir=$1
      shift
      ;;
  esac
done
dir=${dir:-$here/../.carry/device-pack}
mkdir -p "$(dirname "$dir")" || die "cannot make the folder above $dir"
dir=$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")

command -v dpkg >/dev/null 2>&1 || die "dpkg is missing: run this on a Debian machine"
work=$(mktemp -d "$(dirname "$dir")/.device-pack.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/debs" "$work/root"

if [ -n "$debs" ]; then
  [ -d "$debs" ] || die "--debs: no folder $debs"
  compgen -G "$debs/*.deb" >/dev/null || die "--debs: no .deb file in $debs"
  cp "$debs"/*.deb "$work/debs/"
else
  command -v apt-get >/dev/null 2>&1 || die "apt-get is missing: run this on a Debian machine"
  apt_opts=()
  # As root, apt downloads as the user _apt, which cannot write into a private scratch folder.
  [ "$(id -u)" -ne 0 ] || apt_opts=(-o APT::Sandbox::User=root)
  (cd "$work/debs" && apt-get "${apt_opts[@]}" download "${packages[@]}") >"$work/apt.log" 2>&1 ||
    { cat "$work/apt.log" >&2
      die "step 'apt-get download' failed (is a Debian mirror reachable, the package list" \
        "current: apt-get update?)"; }
fi

: >"$work/manifest"
for deb in "$work"/debs/*.deb; do
  dpkg -x "$deb" "$work/root" || die "step 'dpkg -x $(basename "$deb")' failed"
  echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >>"$work/manifest"
done

root=$work/root
# /lib/<triplet> into /usr/lib/<triplet> (Debian merges them on the machine itself).
if [ -d "$root/lib" ] && [ ! -L "$root/lib" ]; then
  mkdir -p "$root/usr/lib"
  cp -a "$root/lib/." "$root/usr/lib/"
  rm -rf "${root:?}/lib"
fi
rm -rf "$root"/usr/share/{doc,man,info,lintian,bug}
# Absolute links (libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13) point into DIR instead.
while IFS= read -r link; do
  target=$(readlink "$link")
  inside=$root${target#/usr}
  [ -e "$root$target" ] && inside=$root$target
  [ -e "$root/usr$target" ] && inside=$root/usr$target
  [ -e "$inside" ] ||
    die "the link ${link#"$root"} points to $target, which no package of the list holds"
  ln -sfn "$(realpath --relative-to="$(dirname "$link")" "$inside")" "$link"
done < <(find "$root" -type l -lname '/*')

bytes=$(du -sb "$root" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
[ "$bytes" -le $((limit_mib * 1048576)) ] ||
  die "the pack is $mib MiB, over the limit of $limit_mib MiB (what travels to the GPU machine," \
    "the tree included, is limited to 64 MiB); $dir is left as it was"
{
  echo "# cdl device pack: Debian packages for scripts/device-check.sh (scripts/device-pack.sh)"
  echo "# made $(date -u +%Y-%m-%dT%H:%M:%SZ) on" \
    "$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}"), $mib MiB unpacked"
  sort "$work/manifest"
} >"$root/PACK.txt"

rm -rf "$dir"
mv "$root" "$dir"
echo "device-pack: $dir: $(wc -l <"$work/manifest") packages, $mib MiB"
