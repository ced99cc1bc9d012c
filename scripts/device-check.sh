#!/usr/bin/env bash
# The GPU check (README: The GPU check): builds cdl on a GPU machine against that machine's own
# PyTorch, with the Debian libraries of scripts/device-pack.sh, runs the CUDA tests and the quick
# CPU tests, and the GPU benchmarks: the codecs (cdl-bench codec --device cuda), a training step
# per model against the same step in plain PyTorch (cdl-bench train, bench/torch_step_baseline.py)
# and the cost model (cdl-bench model).
#   device-check.sh [options] OUTDIR
#     --compile-only    configure, build and run the CPU-runnable tests only (no GPU needed)
#     --python PY       the python whose torch is the LibTorch to build against (python3)
#     --pack DIR        the folder of scripts/device-pack.sh (.carry/device-pack)
#     --build DIR       the build folder (build-device)
#     --jobs N          build and test jobs (all cores)
#     --budget S        seconds for the whole check, each step cut to its own limit and to what
#                       is left (470; with --compile-only 0: no limits)
#     --model-records F cdl-bench allreduce records for cdl-bench model, when this build has no
#                       allreduce of its own
# Every step runs under its own time limit and the check goes on past a failed one. OUTDIR gets
# at most 8 files: summary.md (the machine, each step's status and seconds, the figures),
# steps.json, build.log and tests.log (tails), bench.log, codec.json, train.json and model.json.
# The exit status is 1 when a step failed or ran out of time, 0 otherwise.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)

die() {
  echo "device-check: $*" >&2
  exit 2
}

out=
compile_only=0
python=python3
pack=$src/.carry/device-pack
build=$src/build-device
jobs=$(nproc)
budget=
model_records=
need() { [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
  case $1 in
    --compile-only) compile_only=1; shift ;;
    --python) need "$1" $#; python=$2; shift 2 ;;
    --pack) need "$1" $#; pack=$2; shift 2 ;;
    --build) need "$1" $#; build=$2; shift 2 ;;
    --jobs) need "$1" $#; jobs=$2; shift 2 ;;
    --budget) need "$1" $#; budget=$2; shift 2 ;;
    --model-records) need "$1" $#; model_records=$2; shift 2 ;;
    -h | --help)
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
      exit 0
      ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) [ -z "$out" ] || die "one OUTDIR only; got '$out' and '$1'"; out=$1; shift ;;
  esac
done
[ -n "$out" ] || die "usage: device-check.sh [options] OUTDIR (see --help)"
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die "--jobs needs a positive whole number, got '$jobs'"
[ -n "$budget" ] || { [ $compile_only = 1 ] && budget=0 || budget=470; }
[[ $budget =~ ^[0-9]+$ ]] || die "--budget needs a whole number of seconds, got '$budget'"
[ -z "$model_records" ] || [ -f "$model_records" ] || die "--model-records: no file $model_records"
[ "$(uname -m)" = x86_64 ] || die "the pack holds x86-64 libraries; this machine is $(uname -m)"
command -v "$python" >/dev/null 2>&1 || die "no python '$python' (--python names another)"
{ [ -x "$pack/usr/bin/pkgconf" ] && [ -f "$pack/PACK.txt" ]; } ||
  die "no pack in $pack: run scripts/device-pack.sh there first (on a Debian bookworm machine)"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is missing"
mkdir -p "$out" "$build/check" || die "cannot make $out or $build/check"
out=$(cd "$out" && pwd)
pack=$(cd "$pack" && pwd)
build=$(cd "$build" && pwd)
python=$(command -v "$python")
work=$build/check
rm -f "$out"/{summary.md,steps.json,build.log,tests.log,bench.log,codec.json,train.json,model.json}
rm -rf "${work:?}"/*

start=$(date +%s)
failed=0
steps_json=()
steps_md=()

# The seconds left before the budget runs out.
left() { echo $((start + budget - $(date +%s))); }

# A JSON string of $1: backslashes and quotes escaped, control characters as spaces.
json_str() {
  local s
  s=$(printf '%s' "$1" | tr '\000-\037' ' ')
  s=${s//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

# record NAME STATUS SECONDS NOTE
record() {
  steps_json+=("{\"step\": $(json_str "$1"), \"status\": $(json_str "$2"), \"seconds\": $3,\
 \"note\": $(json_str "$4")}")
  steps_md+=("| $1 | $2 | $3 | ${4//|//} |")
  [[ $2 != failed* && $2 != "timed out"* ]] || failed=1
  echo "device-check: $1: $2 (${3} s)${4:+ $4}" >&2
}

# step NAME CAP LOG CMD...: runs CMD with its output in LOG, for at most CAP seconds or what is
# left of the budget (without a budget, as long as it takes); records ok, failed (exit status) or
# timed out. Returns CMD's status.
step() {
  local name=$1 cap=$2 log=$3
  shift 3
  local t=0 t0 rc=0
  if [ "$budget" -gt 0 ]; then
    t=$(left)
    [ "$t" -lt "$cap" ] || t=$cap
    if [ "$t" -lt 10 ]; then
      record "$name" "skipped" 0 "the check's budget of $budget s is spent"
      return 1
    fi
  fi
  t0=$(date +%s)
  if [ -n "${step_stdout:-}" ]; then
    timeout -k 10 "$t" "$@" >"$step_stdout" 2>>"$log" || rc=$?
  else
    timeout -k 10 "$t" "$@" >>"$log" 2>&1 || rc=$?
  fi
  local secs=$(($(date +%s) - t0))
  if [ $rc -eq 0 ]; then
    record "$name" ok "$secs" ""
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    record "$name" "timed out" "$secs" "stopped after $t s (log: $(basename "$log"))"
  else
    record "$name" "failed ($rc)" "$secs" \
      "$({ grep -m1 -iE 'error|fail' "$log" || tail -n1 "$log"; } | cut -c1-200)"
  fi
  return $rc
}

# step_to FILE NAME CAP LOG CMD...: step, with CMD's standard output in FILE.
step_to() {
  local step_stdout=$1
  shift
  step "$@"
}

# not_run NAME STATUS NOTE: a step that did not start (not built, skipped).
not_run() { record "$1" "$2" 0 "$3"; }

# --- The machine -------------------------------------------------------------------------------
facts() {
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host: $(uname -n), kernel $(uname -r)"
  echo "- system: $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}")," \
    "glibc $(getconf GNU_LIBC_VERSION 2>/dev/null | cut -d' ' -f2)"
  echo "- cores: $(nproc); memory:" \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm \
      --format=csv,noheader 2>&1 | paste -sd';')"
  else
    echo "- GPU: none (no nvidia-smi)"
  fi
  echo "- nvcc: ${nvcc:-none}${nvcc:+, $("$nvcc" --version | grep -m1 release |
    sed 's/.*release //')}"
  echo "- python: $python ($("$python" --version 2>&1))"
  echo "- torch: $torch_facts"
  echo "- cmake: $(cmake --version | head -n1 | sed 's/cmake version //');" \
    "ninja: $(ninja --version 2>/dev/null || echo none);" \
    "c++: $(c++ --version 2>/dev/null | head -n1 || echo none)"
  echo "- pack: $pack ($(sed -n 2p "$pack/PACK.txt" | sed 's/.*, //')," \
    "$(grep -vc '^#' "$pack/PACK.txt") packages)"
}

nvcc=$(command -v nvcc || true)
[ -n "$nvcc" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || nvcc=/usr/local/cuda/bin/nvcc
torch_probe='import sys, torch, torch.utils
print(torch.__version__, torch.version.cuda, torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print(torch.utils.cmake_prefix_path)
print(sys.prefix)'
torch_facts="none"
torch_dir=
venv=
if "$python" -c "$torch_probe" >"$work/torch.txt" 2>"$work/torch.err"; then
  read -r tv tc tgpu tname <"$work/torch.txt" || true
  torch_facts="$tv (CUDA $tc, GPU visible: $tgpu, $tname)"
  torch_dir=$(sed -n 2p "$work/torch.txt")/Torch
  venv=$(sed -n 3p "$work/torch.txt")
else
  torch_facts="cannot import torch: $(tail -n1 "$work/torch.err")"
fi
facts >"$work/facts.md"
record machine ok 0 ""

# --- Configure and build -----------------------------------------------------------------------
# Note [Device pack]
# The pack's libraries are found before the machine's: CMAKE_PREFIX_PATH names the pack's /usr
# first for the CMake packages and FindZLIB, pkg-config is the pack's pkgconf reading only the
# pack's .pc files (its paths prefixed with the pack's folder), and the programs' RUNPATH names
# the pack's library folder. The libraries that the machine itself lacks (ldconfig does not know
# their names) are also put on LD_LIBRARY_PATH for the build's and tests' programs, so that a
# pack library's own needs (spdlog's fmt) are found too; the machine's zlib and zstd, newer and
# compatible, are left in place for everything else.
libdir=$pack/usr/lib/x86_64-linux-gnu
mkdir -p "$work/pack-runtime"
ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
"$ldconfig" -p 2>/dev/null | awk '{ print $1 }' >"$work/ldconfig.txt" || true
for f in "$libdir"/lib*.so.*; do
  grep -qxF "$(basename "$f")" "$work/ldconfig.txt" || ln -sfn "$f" "$work/pack-runtime/"
done
export LD_LIBRARY_PATH=$work/pack-runtime${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cat >"$work/pkg-config" <<EOF
#!/bin/sh
export LD_LIBRARY_PATH="$libdir"
export PKG_CONFIG_LIBDIR="$libdir/pkgconfig:$pack/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$pack"
unset PKG_CONFIG_PATH
exec "$pack/usr/bin/pkgconf" "\$@"
EOF
chmod +x "$work/pkg-config"

# NCCL: the toolkit's, or else the one of the machine's PyTorch (the nvidia-nccl wheel), through
# a folder of links that CdlNccl.cmake reads as NCCL_ROOT.
nccl_flags=()
nccl_root() {
  local d
  d=$("$python" -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null) || return 1
  [ -f "$d/include/nccl.h" ] && [ -e "$d/lib/libnccl.so.2" ] || return 1
  mkdir -p "$work/nccl/lib"
  ln -sfn "$d/include" "$work/nccl/include"
  ln -sfn "$d/lib/libnccl.so.2" "$work/nccl/lib/libnccl.so"
  ln -sfn "$d/lib/libnccl.so.2" "$work/nccl/lib/libnccl.so.2"
}
if [ -n "$nvcc" ] && [ ! -f "$(dirname "$nvcc")/../include/nccl.h" ] && nccl_root; then
  nccl_flags=(-DNCCL_ROOT="$work/nccl")
fi

configure_flags=(
  -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
  -DCDL_WITH_MPI=OFF -DCDL_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
  -DCMAKE_PREFIX_PATH="$pack/usr" -DPKG_CONFIG_EXECUTABLE="$work/pkg-config"
  -DTorch_DIR="$torch_dir" -DCDL_TORCH_VENV="$venv"
  "${nccl_flags[@]}"
)
[ -z "$nvcc" ] || configure_flags+=(-DCMAKE_CUDA_COMPILER="$nvcc")
built=0
if [ -z "$torch_dir" ]; then
  not_run configure "failed" "$python has no torch: $torch_facts"
  failed=1
elif [ -z "$nvcc" ]; then
  not_run configure "failed" "no nvcc on PATH or in /usr/local/cuda/bin"
  failed=1
elif step configure 60 "$work/configure.log" cmake "${configure_flags[@]}"; then
  step build 240 "$work/build.log" cmake --build "$build" -j "$jobs" && built=1
fi
{
  echo "# configure (last 40 lines)"
  tail -n 40 "$work/configure.log" 2>/dev/null || true
  echo
  echo "# build (last 150 lines)"
  tail -n 150 "$work/build.log" 2>/dev/null || true
} >"$out/build.log"

# --- Tests -------------------------------------------------------------------------------------
# The GPU tests (label cuda), then the CPU tests that take seconds: kernels, codecs, transport,
# reduction, the worker's units and the cost model. Left out: the tests that configure or build
# another tree (label layout), install packages or need mpirun (deps, mpi).
tests_summary=()
run_tests() {
  local name=$1 labels=$2 cap=$3 log=$work/$1.log
  if [ $built = 0 ]; then
    not_run "$name" "not run" "the build did not finish"
    return
  fi
  step "$name" "$cap" "$log" ctest --test-dir "$build" -L "$labels" -j "$jobs" --timeout 90 \
    --output-on-failure --no-tests=error || true
  tests_summary+=("- $name (\`ctest -L '$labels'\`):\
 $(grep -E 'tests passed|No tests were found' "$log" | tail -n1 || echo "no result");\
 $(grep -c '(Skipped)$' "$log" || true) skipped")
  {
    echo "# $name: ctest -L '$labels' (last 150 lines)"
    tail -n 150 "$log"
    echo
  } >>"$out/tests.log"
}
: >"$out/tests.log"
run_tests tests-cuda '^cuda$' 40
run_tests tests-cpu '^(kernels|comm|core|bench)$' 80

# --- Benchmarks --------------------------------------------------------------------------------
bench=$build/bin/cdl-bench
: >"$out/bench.log"
bench_log() {
  {
    echo "# $1 (last 40 lines)"
    tail -n 40 "$2"
    echo
  } >>"$out/bench.log"
}
# has_command SUBCOMMAND: whether this cdl-bench has SUBCOMMAND (its help lists it).
has_command() {
  "$bench" --help 2>&1 | sed -n '/^Subcommands:/,$p' | grep -qE "^ +$1( |$)"
}
# has_flag SUBCOMMAND FLAG: whether cdl-bench SUBCOMMAND exists and knows FLAG.
has_flag() {
  has_command "$1" && "$bench" "$1" --help 2>&1 | grep -qE -- "(^|[ ,])$2([ ,=]|$)"
}
# config_value FILE SECTION KEY: a scalar of a two-level YAML config (e.g. train batch_size).
config_value() {
  awk -v s="$2:" -v k="$3:" '/^[^ #]/ { in_s = ($1 == s) } in_s && $1 == k { print $2; exit }' "$1"
}

bench_codec() {
  if [ ! -x "$bench" ]; then
    not_run codec "not built" "$bench is missing"
  elif ! has_flag codec --device; then
    not_run codec "not built" \
      "cdl-bench codec has no --device in this build (no GPU codec benchmark)"
  else
    # P5: 4-bit qsgd with rANS (and the casts) on 16M elements against a device copy.
    step_to "$work/codec.json" codec 30 "$work/codec.err" "$bench" codec --device cuda --json \
      --sizes 16M --data gauss --codec qsgd:bits=4,entropy=rans --codec fp16 --codec none || true
    bench_log codec "$work/codec.err"
    [ ! -s "$work/codec.json" ] || cp "$work/codec.json" "$out/codec.json"
  fi
}

# One row per model: cdl's training step (cdl-bench train, codec none, one rank, on the GPU)
# against the same model's step in plain PyTorch on the same GPU, with the config's batch size.
# Neither machine has Fashion-MNIST or fortunes: the image models train on the synthetic set, the
# char LM on the text of this source tree.
bench_train() {
  local model=$1 config=$src/configs/$2 sets=() shape=() key value
  for key in train:batch_size model:width model:layers model:heads data:context; do
    value=$(config_value "$config" "${key%%:*}" "${key#*:}")
    [ -n "$value" ] || continue
    if [ "$key" = train:batch_size ]; then
      shape+=(--batch "$value")
    else
      shape+=("--${key#*:}" "$value")
    fi
  done
  case $model in
    charlm)
      mkdir -p "$work/corpus"
      find "$src" -path "$src/build*" -prune -o -path "$src/.*" -prune -o -type f \
        \( -name '*.md' -o -name '*.cc' -o -name '*.h' -o -name '*.py' \) -print0 |
        sort -z | xargs -0 cat >"$work/corpus/text"
      sets=(--set "data.text_path=$work/corpus")
      ;;
    *) sets=(--set data.dataset=synthetic) ;;
  esac
  if [ ! -x "$bench" ]; then
    not_run "train-$model" "not built" "$bench is missing"
  elif ! has_command train; then
    not_run "train-$model" "not built" \
      "cdl-bench has no train subcommand in this build"
  else
    step_to "$work/train-$model-cdl.json" "train-$model" 30 "$work/train-$model.err" \
      "$bench" train "$config" --set train.device=cuda "${sets[@]}" --codec none --warmup 10 \
      --steps 100 --json || true
    bench_log "train-$model (cdl-bench)" "$work/train-$model.err"
  fi
  step_to "$work/train-$model-torch.json" "torch-$model" 30 "$work/torch-$model.err" \
    "$python" "$src/bench/torch_step_baseline.py" "$model" "${shape[@]}" --device cuda \
    --warmup 10 --steps 100 || true
  bench_log "torch-$model (bench/torch_step_baseline.py)" "$work/torch-$model.err"
}

bench_model() {
  local records=$model_records
  if [ ! -x "$bench" ]; then
    not_run model "not built" "$bench is missing"
    return
  fi
  if [ -z "$records" ] && has_command allreduce; then
    step_to "$work/allreduce.json" allreduce 40 "$work/allreduce.err" "$bench" allreduce \
      --max-bytes 64M --json && records=$work/allreduce.json
    bench_log allreduce "$work/allreduce.err"
  fi
  if [ -z "$records" ]; then
    local why="cdl-bench allreduce is not in this build (it needs MPI)"
    not_run model "not run" "no allreduce records: $why; --model-records FILE gives some"
    return
  fi
  step_to "$work/model.json" model 20 "$work/model.err" "$bench" model "$records" --json || true
  bench_log model "$work/model.err"
  [ ! -s "$work/model.json" ] || cp "$work/model.json" "$out/model.json"
}

# train.json: per model, cdl's records, PyTorch's record and cdl's samples/s over PyTorch's.
merge_train() {
  "$python" - "$work" "$out/train.json" <<'EOF'
import json, os, sys
work, dest = sys.argv[1], sys.argv[2]
def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
rows = {}
for model in ("cnn", "resnet20", "charlm"):
    cdl = load(os.path.join(work, f"train-{model}-cdl.json"))
    torch = load(os.path.join(work, f"train-{model}-torch.json"))
    row = {"cdl": cdl, "torch": torch}
    first = cdl[0] if isinstance(cdl, list) and cdl else cdl
    if isinstance(first, dict) and isinstance(torch, dict) and torch.get("samples_per_s"):
        row["cdl_over_torch"] = first.get("samples_per_s", 0) / torch["samples_per_s"]
    rows[model] = row
with open(dest, "w") as f:
    json.dump(rows, f, indent=2)
for model, row in rows.items():
    def fmt(r):
        return f"{r['samples_per_s']:,.0f}" if isinstance(r, dict) and "samples_per_s" in r else "-"
    first = row["cdl"][0] if isinstance(row["cdl"], list) and row["cdl"] else row["cdl"]
    ratio = f"{row['cdl_over_torch']:.2f}x" if "cdl_over_torch" in row else "-"
    print(f"| {model} | {fmt(first)} | {fmt(row['torch'])} | {ratio} |")
EOF
}

train_md=()
if [ $compile_only = 1 ]; then
  for s in codec train-{cnn,resnet20,charlm} torch-{cnn,resnet20,charlm} model; do
    not_run "$s" skipped "--compile-only"
  done
else
  bench_codec
  bench_train cnn fmnist_cnn.yaml
  bench_train resnet20 fmnist_resnet20_lgreco.yaml
  bench_train charlm fortunes_charlm.yaml
  bench_model
  mapfile -t train_md < <(merge_train 2>>"$out/bench.log" || true)
fi

# --- Summary -----------------------------------------------------------------------------------
total=$(($(date +%s) - start))
{
  printf '[\n'
  for i in "${!steps_json[@]}"; do
    printf '  %s%s\n' "${steps_json[$i]}" "$([ "$i" -lt $((${#steps_json[@]} - 1)) ] && echo ,)"
  done
  printf ']\n'
} >"$out/steps.json"
{
  echo "# cdl GPU check"
  echo
  echo "$([ $compile_only = 1 ] && echo "Compile-only run" || echo "Run")" \
    "of scripts/device-check.sh" \
    "in $total s (budget: $([ "$budget" -eq 0 ] && echo none || echo "$budget s")); result:" \
    "$([ $failed = 0 ] && echo "every step that ran passed" || echo "SOME STEPS FAILED")."
  echo
  echo "## Machine"
  cat "$work/facts.md"
  echo
  echo "## Steps"
  echo "| step | status | seconds | note |"
  echo "|---|---|---|---|"
  printf '%s\n' "${steps_md[@]}"
  echo
  echo "## Tests"
  [ ${#tests_summary[@]} -eq 0 ] || printf '%s\n' "${tests_summary[@]}"
  if [ -f "$out/tests.log" ]; then
    grep -hE '^\s+[0-9]+ - .*\((Failed|Timeout|Not Run|SEGFAULT|Subprocess aborted|Exception)\)' \
      "$out/tests.log" | head -n 30 | sed 's/^ */  - failed: /' || true
  fi
  if [ $compile_only = 0 ]; then
    echo
    echo "## Training step, samples/s on the GPU (train.json)"
    echo "| model | cdl (codec none, 1 rank) | PyTorch | cdl / PyTorch |"
    echo "|---|---|---|---|"
    [ ${#train_md[@]} -eq 0 ] || printf '%s\n' "${train_md[@]}"
  fi
  echo
  echo "## Pack"
  grep -v '^#' "$pack/PACK.txt" | paste -sd',' | sed 's/,/, /g'
} >"$out/summary.md"
cat "$out/summary.md"
exit $failed
