"""cdl's coded model files (.cdlm, written by `cdl-model export` and cdl-train) from Python."""

import json
import os

import torch

from cdl import _cdl


def load(path) -> "dict[str, torch.Tensor]":
    """Every parameter and buffer of the file by name, in file order: quantized weights as their
    levels times their step (float32), float tensors as float32, integer ones as int64.

    A missing, damaged or truncated file is a ValueError naming the file and, where one is at
    fault, the tensor.
    """
    return dict(_cdl.load_model_file(os.fspath(path)))


def inspect(path) -> dict:
    """What `cdl-model inspect --json` reports (per tensor: coder, bits, coded bytes, bits per
    element, entropy bound; totals and the ratio to fp32), with the file's description as
    "meta"."""
    return json.loads(_cdl.inspect_model_file(os.fspath(path)))


def save(path, tensors, meta=None, quantized=None):
    """Writes a .cdlm file: `tensors` (name -> tensor; float tensors as fp32, int64 ones as
    int64) and `quantized` (name -> (levels, step, bits): an int64 tensor of signed levels in
    -2^(bits-1) .. 2^(bits-1)-1, each standing for level * step, entropy-coded with rANS), with
    the JSON description `meta` (a dict). The file is written whole to path + ".tmp" and renamed.

    A level out of range, a bad step or shape is a ValueError naming the tensor.
    """
    items = [(name, t, 0, 0.0) for name, t in tensors.items()]
    for name, (levels, step, bits) in (quantized or {}).items():
        items.append((name, levels, int(bits), float(step)))
    data = _cdl.encode_model_file(json.dumps(meta or {}), items)
    path = os.fspath(path)
    with open(path + ".tmp", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
