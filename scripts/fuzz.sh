#!/usr/bin/env bash
# Sanitized fuzzing (libFuzzer, ASan, UBSan; clang) of every reader of outside bytes, built in
# build-fuzz/ (cmake/CdlFuzz.cmake). Each target starts from a corpus of valid inputs.
#   scripts/fuzz.sh smoke   each target for CDL_FUZZ_SECONDS (default 10) seconds (make test)
#   scripts/fuzz.sh full    each target for CDL_FUZZ_RUNS (default 10000000) inputs (make fuzz),
#                           then a table of the inputs run per target
#   scripts/fuzz.sh MODE TARGET...   only those targets (e.g. full config_fuzz)
# CDL_FUZZ_JOBS=N (default 1) runs N processes per target over one corpus, each for its share of
# the inputs (full) or for the whole time (smoke); the table adds up their inputs.
# Any crash, leak or sanitizer report fails the script (the input is kept in build-fuzz/).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-smoke}
dir=${CDL_FUZZ_BUILD:-build-fuzz}
jobs=${CDL_FUZZ_JOBS:-1}
[[ $jobs =~ ^[1-9][0-9]?$ ]] || { echo "fuzz: CDL_FUZZ_JOBS='$jobs' is not 1 to 99" >&2; exit 2; }
case "$mode" in
  smoke) limit=(-max_total_time="${CDL_FUZZ_SECONDS:-10}") ;;
  full)
    runs=${CDL_FUZZ_RUNS:-10000000}
    limit=(-runs="$(((runs + jobs - 1) / jobs))")
    ;;
  *) echo "usage: scripts/fuzz.sh [smoke|full] [TARGET...]" >&2; exit 2 ;;
esac
targets=(payload_fuzz model_file_fuzz spec_fuzz config_fuzz idx_fuzz checkpoint_fuzz)
if [ $# -gt 1 ]; then
  for t in "${@:2}"; do
    case " ${targets[*]} " in
      *" $t "*) ;;
      *) echo "fuzz: no target $t (targets: ${targets[*]})" >&2; exit 2 ;;
    esac
  done
  targets=("${@:2}")
fi
seeders=(make_payload_seeds make_model_seeds make_idx_seeds make_checkpoint_seeds)

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ is missing (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
mkdir -p "$dir"
log="$dir/build.log"
if ! { test -f "$dir/build.ninja" || CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCDL_FUZZ=ON; } \
    >"$log" 2>&1 || ! cmake --build "$dir" -j 2 --target "${targets[@]}" "${seeders[@]}" >>"$log" 2>&1; then
  cat "$log" >&2
  echo "fuzz: building the fuzz targets failed (log above, kept in $log)" >&2
  exit 1
fi

# seed TARGET CORPUS: fills CORPUS with valid inputs for TARGET.
seed() {
  case "$1" in
    payload_fuzz) "$dir/bin/make_payload_seeds" "$2" ;;
    model_file_fuzz) "$dir/bin/make_model_seeds" "$2" ;;
    idx_fuzz) "$dir/bin/make_idx_seeds" "$2" ;;
    checkpoint_fuzz) "$dir/bin/make_checkpoint_seeds" "$2" ;;
    spec_fuzz)
      local i=0
      for s in none fp16 bf16 qsgd:bits=4 "qsgd:bits=2,bucket=512,rounding=stochastic,entropy=rans" \
        "topk:density=0.01,entropy=rans" powersgd:rank=4; do
        printf '%s' "$s" >"$2/spec$((i++))"
      done
      ;;
    config_fuzz)
      local i=0
      for f in configs/*.yaml; do cp "$f" "$2/config$((i++))"; done
      printf 'train:\n  lr: 0.1\n\0comm.codec=qsgd:bits=4' >"$2/config-set"
      ;;
  esac
}

# Checkpoints are fuzzed as found (a mutation must fail the content hash) and resealed (the
# mutated container reaches every check behind the hash), tests/fuzz/checkpoint_fuzz.cc.
options() {
  echo "-rss_limit_mb=3072"
}

summary=()
for t in "${targets[@]}"; do
  corpus="$dir/corpus-$t"
  rm -rf "$corpus" && mkdir -p "$corpus"
  seed "$t" "$corpus"
  echo "fuzz: $t from $(ls "$corpus" | wc -l) seeds (${limit[0]#-}, $jobs process(es))"
  pids=() logs=()
  for ((j = 0; j < jobs; j++)); do
    out="$dir/$t.log"
    [ "$j" -eq 0 ] || out="$dir/$t.$j.log"
    logs+=("$out")
    # shellcheck disable=SC2046
    "$dir/bin/$t" "${limit[@]}" $(options "$t") -timeout=30 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$dir/$t-" "$corpus" >"$out" 2>&1 &
    pids+=($!)
  done
  # The first process to fail stops the others; the logs that did not finish are shown.
  for ((j = 0; j < jobs; j++)); do
    if ! wait -n; then
      kill "${pids[@]}" 2>/dev/null || true
      wait || true
      for out in "${logs[@]}"; do
        grep -q '^Done [0-9]* runs' "$out" || { tail -n 40 "$out" >&2; echo "fuzz: $t failed (log: $out)" >&2; }
      done
      exit 1
    fi
  done
  runs=0 secs=0
  for out in "${logs[@]}"; do
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n 1)
    s=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$out" | tail -n 1)
    runs=$((runs + ${n:-0}))
    [ "${s:-0}" -le "$secs" ] || secs=$s
  done
  summary+=("$(printf '%-16s %12s inputs %7s s  0 crashes' "$t" "${runs:-?}" "${secs:-?}")")
done
printf 'fuzz: %s\n' "${summary[@]}"
echo "fuzz: no crash"
