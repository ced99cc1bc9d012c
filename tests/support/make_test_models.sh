#!/usr/bin/env bash
# make_test_models.sh SOURCE_DIR OUT_DIR: the TorchScript modules the tests load (cnn.pt, mlp.pt,
# wrong-out.pt, bigram.pt), made with the torch of cdl's venv (scripts/torch-venv.sh prints it;
# scripts/install-deps.sh makes it): the LibTorch the tests load them with.
set -euo pipefail
src=$1 out=$2
python=$("$src/scripts/torch-venv.sh")/bin/python
"$python" -W ignore -c 'import torch' 2>/dev/null ||
  { echo "make_test_models: $python cannot import torch (scripts/install-deps.sh installs it)" >&2; exit 1; }
mkdir -p "$out"
for m in cnn mlp wrong-out bigram; do
  "$python" "$src/scripts/make_torchscript_model.py" "$m" "$out/$m.pt.tmp"
  mv "$out/$m.pt.tmp" "$out/$m.pt"
done
echo "make_test_models: $(ls "$out")"
