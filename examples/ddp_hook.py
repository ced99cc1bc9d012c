#!/usr/bin/env python3
"""PyTorch DDP of cdl's CNN on Fashion-MNIST, its gradients compressed by cdl's DDP hook.

    torchrun --nproc-per-node 2 examples/ddp_hook.py --steps 300

A stock DDP script (torchrun's environment, gloo, SGD): what makes it cdl's is the
register_comm_hook line in main(); --hook none leaves it out, for the plain DDP run to compare.
--codec takes any cdl scheme spec (powersgd:rank=4 too); --adaptive plans a scheme per parameter.
The model and the data loading are bench/ddp_baseline.py's (cdl's built-in cnn, Debian's
dataset-fashion-mnist). Rank 0 prints the test accuracy on the whole test split, the hook's
statistics and the time per step; --min-accuracy and --min-ratio make it exit 1 below them.
"""
import argparse
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

import cdl.ddp  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(_HERE, "..", "bench"), os.path.join(_HERE, "..", "scripts")]
from ddp_baseline import load, lr_at  # noqa: E402
from make_torchscript_model import Cnn  # noqa: E402


def batches(x, y, rank, world, batch, seed):
    """This rank's shard of each epoch, reshuffled per epoch from a common seed, forever."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        mine = torch.randperm(len(x), generator=gen)[rank::world]
        for i in range(len(mine) // batch):
            idx = mine[i * batch:(i + 1) * batch]
            yield x[idx], y[idx]


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum())
                      for i in range(0, len(x), 1000))
    model.train()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hook", choices=["cdl", "none"], default="cdl")
    ap.add_argument("--codec", default="qsgd:bits=4,entropy=rans",
                    help="cdl's scheme spec: a codec or powersgd:rank=R")
    ap.add_argument("--adaptive", action="store_true",
                    help="L-GreCo per parameter (qsgd and powersgd; warm-up 50, a plan every 100)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64, help="per rank")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--lr-warmup", type=int, default=30)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-accuracy", type=float, default=0.0)
    ap.add_argument("--min-ratio", type=float, default=0.0)
    a = ap.parse_args()

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(a.seed)
    x, y = load(a.data, "train")
    model = DDP(Cnn(1, 28, 10))
    state = None
    if a.hook == "cdl":
        adaptive = {"warmup_steps": 50, "every_steps": 100, "window": 10} if a.adaptive else None
        state = cdl.ddp.HookState(None, codec=a.codec, adaptive=adaptive)
        model.register_comm_hook(state, cdl.ddp.hook)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    data = batches(x, y, rank, world, a.batch, a.seed)
    dist.barrier()
    t0 = time.perf_counter()
    for step in range(a.steps):
        xb, yb = next(data)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a.steps, a.lr, a.lr_warmup)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xb), yb).backward()
        opt.step()
    seconds = time.perf_counter() - t0
    report(a, rank, world, model, state, seconds)


def report(a, rank, world, model, state, seconds):
    ok = True
    if rank == 0:
        tx, ty = load(a.data, "t10k")
        out = {"hook": a.hook, "ranks": world, "steps": a.steps, "step_ms": 1e3 * seconds / a.steps,
               "test_accuracy": accuracy(model.module, tx, ty)}
        if state is not None:
            out["hook_stats"] = state.stats()
        print(json.dumps(out, indent=2), flush=True)
        ratio = state.stats()["compression_ratio"] if state is not None else 0.0
        if out["test_accuracy"] < a.min_accuracy or ratio < a.min_ratio:
            print(f"ddp_hook: test accuracy {out['test_accuracy']:.4f} (at least "
                  f"{a.min_accuracy}), compression ratio {ratio:.2f} (at least {a.min_ratio})",
                  file=sys.stderr)
            ok = False
    dist.barrier()
    # The process ends without tearing the group down, as bench/ddp_baseline.py's finish() does
    # (torch's teardown of a DDP reducer and gloo's threads has hung or aborted at exit).
    sys.stdout.flush()
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
