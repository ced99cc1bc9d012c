"""cdl for PyTorch: cdl's codecs, a DDP communication hook and .cdlm model files.

    import cdl.ddp
    state = cdl.ddp.HookState(process_group, codec="qsgd:bits=4,entropy=rans")
    model.register_comm_hook(state, cdl.ddp.hook)

The native module cdl._cdl is built against one torch version; another is refused here, before
the module is loaded (a module built for another torch could fail in obscure ways).
"""

import torch

from cdl._build_info import CDL_VERSION, TORCH_VERSION


def _check_torch(found, built):
    if found != built:
        raise ImportError(
            f"cdl was built against torch {built}, but this Python has torch {found}: "
            f"rebuild cdl (make python) with this torch, or use the torch it was built with")


_check_torch(torch.__version__, TORCH_VERSION)

from cdl import _cdl  # noqa: E402  (after the version check)

__version__ = CDL_VERSION
__all__ = ["codec", "ddp", "model_file"]
