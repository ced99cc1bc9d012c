#!/usr/bin/env bash
# Builds the fuzz targets with clang (libFuzzer, ASan, UBSan) in build-fuzz/ and runs each briefly
# from a corpus of valid inputs: payload decoding, then coded model files. CDL_FUZZ_SECONDS sets
# the run time of each (default 15).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CDL_FUZZ_BUILD:-build-fuzz}
seconds=${CDL_FUZZ_SECONDS:-15}

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz-smoke: clang++ is missing (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
mkdir -p "$dir"
log="$dir/build.log"
if ! { test -f "$dir/build.ninja" || CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCDL_FUZZ=ON; } \
    >"$log" 2>&1 || ! cmake --build "$dir" -j 2 --target payload_fuzz make_fuzz_seeds model_file_fuzz make_model_seeds >>"$log" 2>&1; then
  cat "$log" >&2
  echo "fuzz-smoke: building the fuzz target failed (log above, kept in $log)" >&2
  exit 1
fi

# fuzz TARGET SEEDER CORPUS WHAT: seeds CORPUS with SEEDER's valid inputs, then fuzzes TARGET.
fuzz() {
  local corpus="$dir/$3"
  rm -rf "$corpus" && mkdir -p "$corpus"
  "$dir/bin/$2" "$corpus"
  echo "fuzz-smoke: $(ls "$corpus" | wc -l) seeds, ${seconds}s of sanitized fuzzing of $4"
  "$dir/bin/$1" -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$dir/" "$corpus" 2>&1 | tail -n 12
}
fuzz payload_fuzz make_fuzz_seeds corpus "payload decoding"
fuzz model_file_fuzz make_model_seeds model-corpus "model files"
# libFuzzer exits non-zero on a crash, leak or sanitizer report; pipefail carries it here.
echo "fuzz-smoke: no crash"
