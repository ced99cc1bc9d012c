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
