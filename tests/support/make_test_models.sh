#!/usr/bin/env bash
# make_test_models.sh SOURCE_DIR OUT_DIR: the TorchScript modules the tests load (cnn.pt, mlp.pt,
# wrong-out.pt, bigram.pt), made with Debian's python3-torch (scripts/install-deps.sh installs it).
set -euo pipefail
src=$1 out=$2
python=/usr/bin/python3
"$python" -c 'import torch' 2>/dev/null ||
  { echo "make_test_models: $python cannot import torch (scripts/install-deps.sh installs python3-torch)" >&2; exit 1; }
mkdir -p "$out"
for m in cnn mlp wrong-out bigram; do
  "$python" "$src/scripts/make_torchscript_model.py" "$m" "$out/$m.pt.tmp"
  mv "$out/$m.pt.tmp" "$out/$m.pt"
done
echo "make_test_models: $(ls "$out")"
