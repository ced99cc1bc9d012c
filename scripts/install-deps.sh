#!/usr/bin/env bash
# Installs what cdl builds, tests and runs with (README: Dependencies). Idempotent: only what is
# missing is installed.
#   1. Debian packages (root or passwordless sudo; CDL_DEPS_EXTRA adds packages, for example the
#      SLURM daemons for tests).
#   2. The PyTorch wheel torch==2.11.0 (cdl's LibTorch, with CUDA 13.0, and the torch of every
#      Python script) into one venv outside the clone, shared by every clone: the folder
#      scripts/torch-venv.sh prints (/opt/cdl/torch-2.11.0 as root, ~/.cache/cdl/torch-2.11.0
#      otherwise, CDL_TORCH_VENV to choose). A venv is whole once it holds the marker file
#      .cdl-complete naming the version; one without it (an install cut short) is made anew.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

packages=(
  build-essential cmake ninja-build pkg-config
  python3 python3-venv python3-dev
  python3-numpy  # PyTorch's PowerSGD hook needs it (bench/ddp_baseline.py --hook powersgd:R)
  libopenmpi-dev openmpi-bin
  libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev
  libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  libxxhash-dev libzstd-dev zlib1g-dev
  libbenchmark-dev
  gnuplot-nox
  dataset-fashion-mnist
  fortunes
  clang libclang-rt-14-dev
)
# shellcheck disable=SC2206
packages+=(${CDL_DEPS_EXTRA:-})

die() {
  echo "install-deps: $*" >&2
  exit 1
}

install_debian() {
  local missing=() p sudo=
  for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "install-deps: missing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=sudo
    else
      echo "install-deps: not root and no passwordless sudo; install them with:" >&2
      echo "  sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq || die "step 'apt-get update' failed (is a Debian mirror reachable?)"
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
    die "step 'apt-get install ${missing[*]}' failed"
}

# free_mib DIR: the MiB free on DIR's file system (DIR or its nearest existing parent).
free_mib() {
  local d=$1
  while [ ! -d "$d" ]; do d=$(dirname "$d"); done
  df -Pm "$d" | awk 'NR == 2 { print $4 }'
}

# The venv's installed torch version (from its metadata, without importing it), or nothing.
venv_torch_version() {
  "$1/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true
}

# Room the wheel and its CUDA libraries need: about 4.6 GiB installed, and pip unpacks each
# wheel in TMPDIR first (the largest, cuDNN's, about 0.9 GiB).
need_venv_mib=5500
need_tmp_mib=1500

install_torch() {
  local venv version log tmp
  venv=$("$here/torch-venv.sh")
  version=$("$here/torch-venv.sh" --version)
  if [ -f "$venv/.cdl-complete" ] && [ "$(venv_torch_version "$venv")" = "$version" ]; then
    return 0
  fi
  tmp=${TMPDIR:-/tmp}
  if [ -e "$venv" ]; then
    echo "install-deps: $venv is not a whole torch $version venv (no .cdl-complete, or another torch); making it anew"
    rm -rf "$venv" || die "step 'remove the incomplete venv' failed: cannot remove $venv"
  fi
  local room
  room=$(free_mib "$(dirname "$venv")")
  [ "$room" -ge "$need_venv_mib" ] ||
    die "step 'check disk space' failed: the torch $version venv needs about $need_venv_mib MiB in $(dirname "$venv"), which has $room MiB free (free some, or set CDL_TORCH_VENV to a folder elsewhere)"
  room=$(free_mib "$tmp")
  [ "$room" -ge "$need_tmp_mib" ] ||
    die "step 'check disk space' failed: pip unpacks wheels in $tmp, which has $room MiB free (needs about $need_tmp_mib; set TMPDIR elsewhere)"

  echo "install-deps: installing torch==$version (LibTorch with CUDA 13.0, about 3.5 GiB from PyPI) into $venv"
  mkdir -p "$(dirname "$venv")" || die "step 'make $(dirname "$venv")' failed"
  log=$(mktemp "$tmp/cdl-install-torch.XXXXXX.log")
  # Whatever stops the install from here on, the venv is removed: nothing half-installed stays.
  trap 'rm -rf "$venv"' EXIT
  /usr/bin/python3 -m venv "$venv" >"$log" 2>&1 ||
    { cat "$log" >&2; die "step 'python3 -m venv $venv' failed (is python3-venv installed?)"; }
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --no-cache-dir \
      --progress-bar off "torch==$version" >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    if grep -qi "no space left on device" "$log"; then
      die "step 'pip install torch==$version' failed: the disk is full ($(free_mib "$venv") MiB free in $(dirname "$venv"), $(free_mib "$tmp") MiB in $tmp)"
    elif grep -qiE "NewConnectionError|Name or service not known|Temporary failure in name resolution|Network is unreachable|ConnectTimeout|ReadTimeout|ProxyError|SSLError|Max retries exceeded" "$log"; then
      die "step 'pip install torch==$version' failed: PyPI cannot be reached (log: $log)"
    fi
    die "step 'pip install torch==$version' failed (log: $log)"
  fi
  local got
  got=$(venv_torch_version "$venv")
  [ "$got" = "$version" ] || die "step 'check the venv' failed: it holds torch '$got', not $version (log: $log)"
  "$venv/bin/python" -W ignore -c 'import torch' >>"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; die "step 'import torch' failed in $venv (log: $log)"; }
  echo "$version" >"$venv/.cdl-complete"
  trap - EXIT
  rm -f "$log"
  echo "install-deps: torch $version in $venv ($(du -sm "$venv" | cut -f1) MiB)"
}

install_debian
install_torch
