#!/usr/bin/env bash
# cdl-train and the Python scripts (the DDP baseline, the TorchScript models) run on one torch:
# same_torch_check.sh CDL_TRAIN SOURCE_DIR. cdl-train --version names its LibTorch's version and
# the library the loader found; bench/ddp_baseline.py --version, on the python of cdl's venv,
# names its torch's. Both must be the same version and the same file.
source "$(dirname "$0")/../support/check.sh"
train=$1 src=$2
python=$("$src/scripts/torch-venv.sh")/bin/python
cpp=$("$train" --version) || fail "cdl-train --version failed: $cpp"
py=$("$python" "$src/bench/ddp_baseline.py" --version) || fail "ddp_baseline.py --version failed: $py"
echo "$cpp"
echo "$py"
[[ $cpp =~ LibTorch\ ([0-9.]+)\ .*\ at\ (/[^ ]+)$ ]] || fail "cdl-train --version says '$cpp'"
cppVersion=${BASH_REMATCH[1]} cppLib=$(realpath "${BASH_REMATCH[2]}")
[[ $py =~ torch\ ([0-9.]+)(\+[a-z0-9]+)?\ at\ (/[^ ]+)$ ]] || fail "ddp_baseline.py --version says '$py'"
pyVersion=${BASH_REMATCH[1]} pyLib=$(realpath "${BASH_REMATCH[3]}")
[ "$cppVersion" = "$pyVersion" ] || fail "cdl-train runs LibTorch $cppVersion, the DDP baseline torch $pyVersion"
[ "$cppLib" = "$pyLib" ] || fail "cdl-train loads $cppLib, the DDP baseline $pyLib"
[ "$cppVersion" = "$("$src/scripts/torch-venv.sh" --version)" ] ||
  fail "the torch is $cppVersion, not the pinned $("$src/scripts/torch-venv.sh" --version)"
echo "same_torch_check: ok"
