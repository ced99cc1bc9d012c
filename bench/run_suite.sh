#!/usr/bin/env bash
# run_suite.sh: the benchmark suite behind the README's headline table, on one machine (root: the
# links are emulated with cdl-launch --emulate). For each link rate, on --nodes emulated nodes:
#   allreduce   cdl-bench allreduce: MPI_Allreduce, the raw TCP ring (Note [Raw TCP ring]) and
#               cdl's allreduce per codec, --min-bytes to --max-bytes (links/RATE/allreduce.*)
#   train       cdl-bench train: samples/s and the step split of the config per codec
#               (links/RATE/train.*) with cdl's thread defaults
#   gloo        gloo's fp32 allreduce (torch.distributed) over the same sizes (links/RATE/gloo.json)
#   ddp         PyTorch DDP over gloo on the same job and thread count (bench/ddp_baseline.py;
#               links/RATE/ddp.json); gloo and ddp run on the torch of cdl's venv
#               (scripts/torch-venv.sh; where it has none they are left out, said); ddp is the job of configs/fmnist_cnn*.yaml: with another
#               --config, give --no-ddp
#   threads     at the first link only: the first compressed codec at 1 and 2 hand-set threads per
#               rank beside the defaults (links/RATE/threads-N.json)
# then time to accuracy (tta/, --tta-epochs E = 3 epochs of the config's schedule): on --nodes
# emulated nodes at each --tta-links rate, cdl-train of the config for each --tta-run NAME=SETS
# (SETS: KEY=VALUE settings separated by ';'; by default `defaults` (the config as it is),
# `uniform` (adaptive rates off), `adaptive-error` and `adaptive-time` (adaptive rates over qsgd
# and PowerSGD with L-GreCo's error budget or the time budget)) and PyTorch DDP with each
# --tta-hook (bench/ddp_baseline.py --full: none, fp16, powersgd:4; not with --no-ddp); the cdl runs
# again on loopback with the same ranks, and the accuracy reference `fp32` (cdl-train with
# comm.codec=none) on loopback only: cdl's arithmetic does not depend on the link
# (tta/LINK/NAME/, tta/LINK/ddp-HOOK.json, tta/loopback/NAME/). bench/suite_report.py gathers it
# all into summary.md, summary.json, summary.csv, speedup.png (speed-up against link rate) and
# tta.png (test accuracy against wall seconds, a panel per link).
#
#   bench/run_suite.sh [--out DIR] [--nodes N] [--links 100mbit,1gbit,10gbit] [--config F]
#                      [--min-bytes 64K] [--max-bytes 64M] [--steps 30] [--warmup 3]
#                      [--codec SPEC]... [--tta-run NAME=SETS]... [--tta-hook HOOK]...
#                      [--tta-links 100mbit,25mbit,1gbit] [--tta-epochs 3] [--tta-target 0.90]
#                      [--set KEY=VALUE]... [--step-timeout S] [--no-tta] [--no-ddp]
#                      [--no-threads]
#
# --set goes to every cdl training (bench rows and time-to-accuracy runs); --codec replaces the
# default rows of allreduce and train, --tta-run and --tta-hook the default runs. --tta-target is
# the test accuracy the report times each run to. Each step is stopped after --step-timeout
# seconds (default 3600; 0: never), which fails the suite naming the step and its log. The build
# folder is CDL_BUILD (default build/). Everything lands under --out (default
# build/bench-out/suite), which must be new, empty or an earlier suite's output (it is then
# replaced).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${CDL_BUILD:-$here/build}
prog=run_suite
die() {
  echo "$prog: $*" >&2
  exit 2
}

out=$build/bench-out/suite nodes=4 links=100mbit,1gbit,10gbit config=$here/configs/fmnist_cnn.yaml
minBytes=64K maxBytes=64M steps=30 warmup=3 ttaLinks=100mbit,25mbit,1gbit ttaEpochs=3
ttaTarget=0.90 tta=1 ddp=1 threads=1 stepTimeout=3600
codecs=() ttaRuns=() ttaHooks=() sets=()
while [ $# -gt 0 ]; do
  case $1 in
    --no-tta) tta=0 && shift && continue ;;
    --no-ddp) ddp=0 && shift && continue ;;
    --no-threads) threads=0 && shift && continue ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    --out | --nodes | --links | --config | --min-bytes | --max-bytes | --steps | --warmup | --codec | \
      --tta-run | --tta-hook | --tta-links | --tta-epochs | --tta-target | --set | --step-timeout)
      [ $# -ge 2 ] || die "$1 needs a value" ;;
    *) die "unknown argument '$1' (see $0 --help)" ;;
  esac
  case $1 in
    --out) out=$2 ;;
    --nodes) nodes=$2 ;;
    --links) links=$2 ;;
    --config) config=$2 ;;
    --min-bytes) minBytes=$2 ;;
    --max-bytes) maxBytes=$2 ;;
    --steps) steps=$2 ;;
    --warmup) warmup=$2 ;;
    --codec) codecs+=("$2") ;;
    --tta-run) ttaRuns+=("$2") ;;
    --tta-hook) ttaHooks+=("$2") ;;
    --tta-links) ttaLinks=$2 ;;
    --tta-epochs) ttaEpochs=$2 ;;
    --tta-target) ttaTarget=$2 ;;
    --set) sets+=("$2") ;;
    --step-timeout) stepTimeout=$2 ;;
  esac
  shift 2
done
[[ $nodes =~ ^[0-9]+$ ]] && [ "$nodes" -ge 2 ] || die "--nodes '$nodes' must be at least 2"
[[ $steps =~ ^[0-9]+$ ]] && [ "$steps" -ge 1 ] || die "--steps '$steps' must be at least 1"
[[ $warmup =~ ^[0-9]+$ ]] || die "--warmup '$warmup' must be a count"
[[ $ttaEpochs =~ ^[1-9][0-9]*$ ]] || die "--tta-epochs '$ttaEpochs' must be at least 1"
[[ $ttaTarget =~ ^0\.[0-9]+$ ]] || die "--tta-target '$ttaTarget' must be an accuracy in (0, 1)"
[[ $stepTimeout =~ ^[0-9]+$ ]] || die "--step-timeout '$stepTimeout' must be a count of seconds"
[ -f "$config" ] || die "no config $config"
[ ${#codecs[@]} -gt 0 ] || codecs=(none "qsgd:bits=8,entropy=rans" "qsgd:bits=4,entropy=rans" "powersgd:rank=4")
mixed='comm.adaptive.enabled=true;comm.adaptive.families=[qsgd,powersgd]'
[ ${#ttaRuns[@]} -gt 0 ] || ttaRuns=(defaults= uniform=comm.adaptive.enabled=false
  "adaptive-error=$mixed;comm.adaptive.budget=error" "adaptive-time=$mixed;comm.adaptive.budget=time")
[ ${#ttaHooks[@]} -gt 0 ] || ttaHooks=(none fp16 powersgd:4)
ttaNames=" "
for r in "${ttaRuns[@]}"; do
  [[ ${r%%=*} =~ ^[A-Za-z0-9_.-]+$ ]] && [[ $r == *=* ]] && [ "${r%%=*}" != fp32 ] ||
    die "--tta-run '$r' must be NAME=SETS, NAME of letters, digits, '.', '_' or '-', not fp32"
  [[ $ttaNames != *" ${r%%=*} "* ]] || die "--tta-run: two runs named '${r%%=*}'"
  ttaNames+="${r%%=*} "
done
IFS=, read -r -a linkList <<<"$links"
[ ${#linkList[@]} -ge 1 ] || die "--links is empty"
IFS=, read -r -a ttaLinkList <<<"$ttaLinks"
[ "$tta" -eq 0 ] || [ ${#ttaLinkList[@]} -ge 1 ] || die "--tta-links is empty"
for tool in cdl-launch cdl-bench cdl-train cdl-emulate; do
  [ -x "$build/bin/$tool" ] || die "$build/bin/$tool is missing: build first (make build)"
done
[ "$(id -u)" -eq 0 ] || die "the emulated links need root (network namespaces and tc)"
python=$("$here/scripts/torch-venv.sh")/bin/python
if [ "$ddp" -eq 1 ] && ! "$python" -c "import torch.distributed as d; assert d.is_gloo_available()" 2>/dev/null; then
  echo "$prog: no PyTorch with gloo in $python (cdl's venv: scripts/install-deps.sh): the DDP baseline is left out" >&2
  ddp=0
fi

if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ] && [ ! -f "$out/.cdl-suite" ]; then
  die "--out $out holds something that is not a suite's output: give a new folder"
fi
rm -rf "$out"
mkdir -p "$out/links" "$out/tta"
: >"$out/.cdl-suite"
launch=$build/bin/cdl-launch
setArgs=()
for s in "${sets[@]}"; do setArgs+=(--set "$s"); done
codecArgs=()
for c in "${codecs[@]}"; do codecArgs+=(--codec "$c"); done
# step NAME CMD...: runs CMD with stdout to NAME.$ext (json unless ext says) and stderr to
# NAME.log in $dir, for at most $stepTimeout seconds (then SIGTERM, and SIGKILL 30 s later); a
# failure stops the suite naming the step and its log's last lines. Each step's seconds are said.
ext=json
step() {
  local name=$1 start=$SECONDS rc=0
  shift
  echo "$prog: $dir/$name" >&2
  local bound=()
  [ "$stepTimeout" -eq 0 ] || bound=(timeout -k 30 "$stepTimeout")
  "${bound[@]}" "$@" >"$dir/$name.$ext" 2>"$dir/$name.log" || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n 5 "$dir/$name.log" >&2
    if [ "$stepTimeout" -ne 0 ] && { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; }; then
      die "$name did not finish within --step-timeout $stepTimeout s (log: $dir/$name.log)"
    fi
    die "$name failed (log: $dir/$name.log)"
  fi
  echo "$prog: $name took $((SECONDS - start)) s" >&2
}
first=1
for link in "${linkList[@]}"; do
  dir=$out/links/$link
  mkdir -p "$dir"
  emu=(--emulate "$nodes" --bandwidth "$link")
  step allreduce "$launch" "${emu[@]}" --bench -- allreduce --min-bytes "$minBytes" \
    --max-bytes "$maxBytes" "${codecArgs[@]}" --json --csv "$dir/allreduce.csv" \
    --plot "$dir/allreduce.png"
  step train "$launch" "${emu[@]}" --bench -- train "$config" "${codecArgs[@]}" "${setArgs[@]}" \
    --steps "$steps" --warmup "$warmup" --json --csv "$dir/train.csv" --plot "$dir/train.png"
  # The thread count cdl's defaults chose, for the DDP run and the sweep.
  chosen=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["threads"])' "$dir/train.json")
  if [ "$ddp" -eq 1 ]; then
    rm -f "$dir/gloo.store" "$dir/ddp.store"
    step gloo "$launch" "${emu[@]}" --bench --program "$python" -- "$here/bench/ddp_baseline.py" \
      --store "$dir/gloo.store" --allreduce --min-bytes "$minBytes" --max-bytes "$maxBytes" \
      --warmup 1 --json
    step ddp "$launch" "${emu[@]}" --bench --program "$python" -- "$here/bench/ddp_baseline.py" \
      --store "$dir/ddp.store" --threads "$chosen" --steps "$steps" --warmup "$warmup" --json
  fi
  if [ "$threads" -eq 1 ] && [ "$first" -eq 1 ]; then
    sweepCodec=${codecs[-1]}
    for c in "${codecs[@]}"; do
      [ "$c" = none ] || { sweepCodec=$c && break; }
    done
    for t in 1 2; do
      step "threads-$t" "$launch" "${emu[@]}" --bench -- train "$config" --codec "$sweepCodec" \
        "${setArgs[@]}" --set "train.threads=$t" --steps "$steps" --warmup "$warmup" --json
    done
  fi
  first=0
done

if [ "$tta" -eq 1 ]; then
  # ttaTrain NAME SETS PLACEMENT...: one cdl-train of the config into $dir/NAME.
  ttaTrain() {
    local name=$1 sets=$2 runSets=() kv s
    shift 2
    IFS=';' read -r -a kv <<<"$sets"
    for s in "${kv[@]}"; do [ -z "$s" ] || runSets+=(--set "$s"); done
    step "$name" "$launch" "$@" "$config" -- "${setArgs[@]}" --set "log.runs_dir=$dir" \
      --set "train.epochs=$ttaEpochs" "${runSets[@]}" --set "name=$name"
  }
  hookRun() { echo "ddp-$(tr -c 'A-Za-z0-9_.\n-' _ <<<"$1")"; }  # DDP's run of hook $1
  ext=out
  for link in loopback "${ttaLinkList[@]}"; do
    dir=$out/tta/$link
    mkdir -p "$dir"
    if [ "$link" = loopback ]; then
      placement=(-np "$nodes")
      ttaTrain fp32 "comm.codec=none;comm.adaptive.enabled=false" "${placement[@]}"
    else
      placement=(--emulate "$nodes" --bandwidth "$link")
    fi
    for r in "${ttaRuns[@]}"; do ttaTrain "${r%%=*}" "${r#*=}" "${placement[@]}"; done
    if [ "$ddp" -eq 1 ] && [ "$link" != loopback ]; then
      for h in "${ttaHooks[@]}"; do
        name=$(hookRun "$h")
        rm -f "$dir/$name.store"
        ext=json step "$name" "$launch" "${placement[@]}" --bench \
          -x "PYTHONPATH=$build/python" --program "$python" -- "$here/bench/ddp_baseline.py" \
          --store "$dir/$name.store" --threads "$chosen" --hook "$h" --hook-warmup 2 --full \
          --epochs "$ttaEpochs" --json
      done
    fi
  done
  for r in "${ttaRuns[@]}"; do printf '%s\t%s\n' "${r%%=*}" "${r#*=}"; done >"$out/tta/runs.txt"
  printf '%s\n' "${ttaLinkList[@]}" >"$out/tta/links.txt"
  if [ "$ddp" -eq 1 ]; then
    for h in "${ttaHooks[@]}"; do printf '%s\t%s\n' "$(hookRun "$h")" "$h"; done >"$out/tta/hooks.txt"
  fi
  printf '%s\t%s\t%s\n' "$ttaTarget" "$ttaEpochs" "$nodes" >"$out/tta/target.txt"
fi

"$python" "$here/bench/suite_report.py" "$out" || die "the report failed"
echo "$prog: $out/summary.md" >&2
