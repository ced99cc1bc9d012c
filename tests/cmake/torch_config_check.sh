#!/usr/bin/env bash
# How CMake picks the LibTorch (Note [LibTorch]): torch_config_check.sh SOURCE_DIR
#   - one older than 2.0, named with Torch_DIR, is one configure error naming its version and
#     folder, and nothing is built;
#   - without the CUDA path (CDL_WITH_CUDA=OFF, as on a machine with no CUDA toolkit) the venv's
#     CUDA LibTorch still configures, CPU only, and the summary says so.
source "$(dirname "$0")/../support/check.sh"
src=$1

old=$tmp/libtorch-1.13/share/cmake/Torch
mkdir -p "$old"
echo 'set(PACKAGE_VERSION "1.13.1")' >"$old/TorchConfigVersion.cmake"
echo 'message(FATAL_ERROR "the old TorchConfig.cmake was loaded")' >"$old/TorchConfig.cmake"
if cmake -S "$src" -B "$tmp/old-build" -G Ninja -DCDL_BUILD_TESTS=OFF -DCDL_BUILD_BENCH=OFF \
    -DTorch_DIR="$old" >"$tmp/old.log" 2>&1; then
  cat "$tmp/old.log"
  fail "a LibTorch 1.13.1 was taken"
fi
# CMake wraps a message's lines: the check reads the log as one line.
tr -s ' \n' '  ' <"$tmp/old.log" | grep -qF "cdl needs LibTorch 2.0 or newer; found LibTorch 1.13.1 at $old." ||
  { cat "$tmp/old.log"; fail "the refusal does not name the version and folder"; }
grep -q "the old TorchConfig.cmake was loaded" "$tmp/old.log" &&
  fail "the old LibTorch's package was loaded before its version was checked"
[ ! -e "$tmp/old-build/build.ninja" ] || fail "a build was generated for the refused LibTorch"

cmake -S "$src" -B "$tmp/cpu-build" -G Ninja -DCDL_BUILD_TESTS=OFF -DCDL_BUILD_BENCH=OFF \
  -DCDL_WITH_CUDA=OFF >"$tmp/cpu.log" 2>&1 || { cat "$tmp/cpu.log"; fail "the CPU-only configure failed"; }
version=$("$src/scripts/torch-venv.sh" --version)
grep -q "cdl: LibTorch $version (CPU only) at $("$src/scripts/torch-venv.sh")/" "$tmp/cpu.log" ||
  { cat "$tmp/cpu.log"; fail "the CPU-only configure does not say it uses the venv's LibTorch, CPU only"; }
grep -q "CUDA path OFF" "$tmp/cpu.log" || { cat "$tmp/cpu.log"; fail "the summary does not say CUDA is off"; }
grep -q "libtorch_cuda" "$tmp/cpu-build/build.ninja" &&
  fail "the CPU-only build links LibTorch's CUDA library"
grep -q "libtorch_cpu.so" "$tmp/cpu-build/build.ninja" || fail "the CPU-only build does not link torch_cpu"
echo "torch_config_check: ok"
