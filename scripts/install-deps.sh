#!/usr/bin/env bash
# Installs the Debian packages cdl builds, tests and runs with (README). Idempotent: only what is
# missing is installed. Set CDL_DEPS_EXTRA to add packages (for example the SLURM daemons for tests).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev
  libopenmpi-dev openmpi-bin
  libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev
  libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  libxxhash-dev libzstd-dev zlib1g-dev
  libbenchmark-dev
  gnuplot-nox
  dataset-fashion-mnist
  python3-torch
  fortunes
  clang libclang-rt-14-dev
)
# shellcheck disable=SC2206
packages+=(${CDL_DEPS_EXTRA:-})

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "install-deps: not root and no passwordless sudo; install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
