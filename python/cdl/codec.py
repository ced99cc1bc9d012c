"""cdl's payload codecs on tensors: encode(tensor, spec) -> bytes and decode(bytes) -> tensor.

Specs are cdl's: "none", "fp16", "bf16", "qsgd:bits=4,bucket=1024,rounding=stochastic,entropy=rans",
"topk:density=0.01,entropy=rans" (unnamed keys keep their defaults). A payload describes itself
(codec, rate, element count) and carries a hash; decoding checks all of it.
"""

import torch

from cdl import _cdl


def canonical(spec: str) -> str:
    """The spec with every key its codec reads; a bad spec is a ValueError naming it."""
    return _cdl.canonical_spec(spec)


def encode(tensor: torch.Tensor, spec: str, rounding_key: int = 0) -> bytes:
    """The payload of a float32 CPU tensor (flattened) under the codec spec.

    rounding_key chooses the stream of stochastic rounding. A bad spec is a ValueError naming the
    spec and the key; a tensor of another dtype or device is a TypeError.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"encode takes a torch.Tensor, not {type(tensor).__name__}")
    return _cdl.encode(tensor.detach(), spec, rounding_key)


def decode(data: bytes, shape=None) -> torch.Tensor:
    """The float32 tensor a payload holds: flat, or with `shape`. A payload that is damaged or
    not cdl's is a ValueError saying what is wrong."""
    out = _cdl.decode(bytes(data))
    return out if shape is None else out.reshape(shape)
