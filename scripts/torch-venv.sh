#!/usr/bin/env bash
# Prints the virtual environment that holds cdl's LibTorch and its Python torch, the PyTorch wheel
# torch==2.11.0 (README: Dependencies): CDL_TORCH_VENV where it is set, else
# /opt/cdl/torch-2.11.0 as root and ~/.cache/cdl/torch-2.11.0 otherwise. `--version` prints the
# pinned version instead. scripts/install-deps.sh makes the venv; CMake, the tests and the bench
# scripts find it through this script.
set -euo pipefail
pin=2.11.0
if [ "${1:-}" = --version ]; then
  echo "$pin"
elif [ -n "${CDL_TORCH_VENV:-}" ]; then
  echo "$CDL_TORCH_VENV"
elif [ "$(id -u)" -eq 0 ]; then
  echo "/opt/cdl/torch-$pin"
else
  echo "${HOME:?HOME is not set}/.cache/cdl/torch-$pin"
fi
