#!/usr/bin/env python3
"""PyTorch DDP over gloo on the same job as configs/fmnist_cnn_fp32.yaml: the baseline of cdl-bench.

It runs on the python of cdl's venv (scripts/torch-venv.sh), whose torch is cdl's LibTorch.

Runs as one process per rank under mpirun (it reads OMPI_COMM_WORLD_RANK/SIZE, else SLURM's or
torchrun's RANK/WORLD_SIZE), e.g. on the emulated cluster:

    cdl-launch --emulate 4 --bandwidth 100mbit --bench --program "$(scripts/torch-venv.sh)/bin/python" -- \\
        bench/ddp_baseline.py --store /tmp/ddp.store --steps 50 --json

The model is cdl's built-in cnn written in PyTorch (scripts/make_torchscript_model.py), the data
Fashion-MNIST normalized as cdl's loader does, the optimizer SGD with Nesterov momentum and weight
decay under a linear warm-up and cosine schedule over --epochs, and each rank trains on its own
shard of a shuffled epoch, as cdl-train does. The ranks meet through a FileStore (--store, a file
every rank can reach; it must not exist yet) or a TCPStore on rank 0 (--master HOST:PORT); gloo
talks on --iface (default: GLOO_SOCKET_IFNAME, else the first interface with an IPv4 address that
is not loopback).

With --allreduce it trains nothing: it times gloo's allreduce of fp32 tensors (torch.distributed
all_reduce, the collective under DDP) from --min-bytes to --max-bytes in steps of 4x, --iters times
each after --warmup untimed ones, and prints records in cdl-bench allreduce's format (codec
gloo_allreduce_fp32; the mean time of a call, the slowest rank's).

--hook SPEC registers a DDP communication hook, the only change to the script: none (plain
DDP, the default), fp16 (torch's fp16_compress_hook), powersgd:R (torch's powerSGD_hook at rank R,
error feedback and warm start on, exact fp32 allreduces for the first --hook-warmup steps),
cdl:SCHEME (cdl's hook, cdl.ddp, with a cdl scheme spec such as qsgd:bits=4,entropy=rans) or
cdl-adaptive[:ALPHA] (cdl's hook with L-GreCo rates over qsgd and PowerSGD from uniform 4-bit
qsgd, at ALPHA times its error, default 1: a plan after --hook-warmup steps, then every 100).
cdl's hooks need the cdl package on the path (PYTHONPATH=build/python, or pip install
./python); the records then carry the hook's stats().

With --steps N it times N steps after --warmup untimed ones and prints samples/s, the mean step
and the seconds an epoch of the train split takes at that rate, the figure cdl-bench train gives
for cdl. With --full it trains every epoch and tests after each, printing the wall seconds and the
test accuracy of each epoch and the first wall second each accuracy threshold was reached
(time_to_accuracy, as in cdl-train's summary.json).
"""
import argparse
import datetime
import fcntl
import gzip
import importlib.util
import json
import math
import os
import re
import socket
import struct
import sys
import time
import warnings

# torch warns at import when numpy is not installed; only PyTorch's PowerSGD hook needs it (for
# its random seeds), and the venv has none: Debian's python3-numpy (scripts/install-deps.sh) is
# taken from Debian's path, behind the venv's packages.
DEBIAN_PYTHON = "/usr/lib/python3/dist-packages"
if importlib.util.find_spec("numpy") is None and os.path.isdir(DEBIAN_PYTHON):
    sys.path.append(DEBIAN_PYTHON)
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from make_torchscript_model import Cnn  # noqa: E402  (the built-in cnn's layout)

PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530  # as core/data/batch.cc
THRESHOLDS = (0.50, 0.60, 0.70, 0.80, 0.85, 0.90, 0.95)  # as core/run/metrics_log.h


def fail(msg):
    rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("RANK", "?"))
    print(f"ddp_baseline: [rank {rank}] {msg}", file=sys.stderr)
    sys.exit(2)


def world():
    for r, w in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                 ("SLURM_PROCID", "SLURM_NTASKS"), ("RANK", "WORLD_SIZE")):
        if r in os.environ and w in os.environ:
            return int(os.environ[r]), int(os.environ[w])
    return 0, 1


def ipv4_interface():
    """The first interface with an IPv4 address that is not loopback."""
    for _, name in socket.if_nameindex():
        if name == "lo":
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            req = struct.pack("256s", name.encode()[:15])
            fcntl.ioctl(s.fileno(), 0x8915, req)  # SIOCGIFADDR: fails without an IPv4 address
            return name
        except OSError:
            continue
        finally:
            s.close()
    return "lo"


def read_idx(path, dims):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != 0x800 + dims:
        fail(f"{path}: not an IDX file of {dims} dimensions (magic {magic:#x})")
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    count = math.prod(shape)
    if len(data) - 4 - 4 * dims != count:
        fail(f"{path}: {len(data) - 4 - 4 * dims} bytes of data, the header says {count}")
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def find(data_dir, name):
    for p in (os.path.join(data_dir, name + ".gz"), os.path.join(data_dir, name)):
        if os.path.isfile(p):
            return p
    fail(f"no {name}(.gz) in {data_dir} (Debian's dataset-fashion-mnist installs it)")


def load(data_dir, split):
    images = read_idx(find(data_dir, f"{split}-images-idx3-ubyte"), 3)
    labels = read_idx(find(data_dir, f"{split}-labels-idx1-ubyte"), 1)
    x = (images.float().div_(255.0).sub_(PIXEL_MEAN).div_(PIXEL_STD)).unsqueeze(1)
    return x, labels.long()


def byte_size(text):
    """'64K', '4M', '1G' (powers of 2) or a plain count, as cdl-bench takes them."""
    m = re.fullmatch(r"([0-9]+)([KkMmGg]?)", text)
    if not m:
        fail(f"'{text}' is not a byte size (e.g. 64K, 4M)")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]


def time_allreduces(a, lo, hi, rank, size):
    """gloo's allreduce of fp32 from lo to hi bytes: cdl-bench allreduce's records."""
    records, n = [], lo
    while n <= hi:
        x = torch.ones(n // 4, dtype=torch.float32)
        for _ in range(a.warmup):
            dist.all_reduce(x)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(a.iters):
            dist.all_reduce(x)
        seconds = torch.tensor([(time.perf_counter() - t0) / a.iters], dtype=torch.float64)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        t = seconds.item()
        algbw = n / t / 1e9
        records.append({"codec": "gloo_allreduce_fp32", "bytes": n, "ranks": size,
                        "time_us": t * 1e6, "algbw_gbps": algbw,
                        "busbw_gbps": algbw * 2 * (size - 1) / size})
        if rank == 0 and not a.json:
            print(f"{n:>10} B  {t * 1e6:12.1f} us  busbw {records[-1]['busbw_gbps']:.3f} GB/s",
                  flush=True)
        n *= 4
    return records


def finish(a, rank):
    """Ends the process once every rank is here."""
    dist.barrier()
    # Every rank is past the last collective, so none reads the store again. The process ends
    # without tearing the process group down: a DDP reducer's destructor that joins gloo's worker
    # threads while holding the GIL, with a worker dropping the last reference to a tensor with a
    # Python object and waiting for the GIL, deadlocked at exit (PyTorch 1.13, one run in six).
    if rank == 0 and a.store:
        try:
            os.remove(a.store)
        except OSError:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def register_hook(model, spec, warmup):
    """Registers --hook SPEC on the DDP model; returns cdl's hook state (for its stats) or None."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
    if spec == "none":
        return None
    if spec == "fp16":
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
        return None
    if spec.startswith("powersgd:"):
        try:
            rank = int(spec[len("powersgd:"):])
        except ValueError:
            rank = 0
        if rank < 1:
            fail(f"--hook {spec}: the rank must be an integer >= 1")
        if importlib.util.find_spec("numpy") is None:
            fail(f"--hook {spec}: PyTorch's PowerSGD hook needs numpy (Debian's python3-numpy, "
                 f"which scripts/install-deps.sh installs)")
        state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=rank,
                                            start_powerSGD_iter=max(2, warmup))
        model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
        return None
    if spec.startswith("cdl:") or spec.split(":")[0] == "cdl-adaptive":
        try:
            import cdl.ddp
        except ImportError as e:
            fail(f"--hook {spec} needs the cdl package (PYTHONPATH=build/python): {e}")
        adaptive = None
        if not spec.startswith("cdl:"):
            adaptive = {"warmup_steps": warmup, "every_steps": 100, "window": 10}
            if ":" in spec:
                try:
                    adaptive["alpha"] = float(spec.split(":", 1)[1])
                except ValueError:
                    fail(f"--hook {spec}: the error budget after cdl-adaptive: must be a number")
        codec = spec[len("cdl:"):] if spec.startswith("cdl:") else "qsgd:bits=4,entropy=rans"
        try:
            state = cdl.ddp.HookState(None, codec=codec, adaptive=adaptive)
        except ValueError as e:
            fail(f"--hook {spec}: {e}")
        model.register_comm_hook(state, cdl.ddp.hook)
        return state
    fail(f"--hook {spec}: not one of none, fp16, powersgd:R, cdl:SCHEME, cdl-adaptive[:ALPHA]")


def lr_at(step, total, base, warmup):
    """core/step/lr_schedule.h's cosine schedule with a linear warm-up."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    span = total - warmup
    if span <= 0:
        return base
    t = min(1.0, (step - warmup) / span)
    return 0.5 * base * (1.0 + math.cos(math.pi * t))


def torch_info():
    """The torch this runs on, as cdl-train --version says its LibTorch: version and library."""
    lib = os.path.realpath(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
    return f"ddp_baseline: torch {torch.__version__} at {lib}"


class PrintVersion(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        print(torch_info())
        sys.exit(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="a FileStore path every rank reaches (must not exist yet)")
    ap.add_argument("--master", help="HOST:PORT of a TCPStore on rank 0, instead of --store")
    ap.add_argument("--iface", default=os.environ.get("GLOO_SOCKET_IFNAME"))
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--batch", type=int, default=64, help="per rank")
    ap.add_argument("--epochs", type=int, default=5, help="the schedule's length")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--lr-warmup", type=int, default=100, help="warm-up steps of the schedule")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    ap.add_argument("--steps", type=int, default=50, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5,
                    help="untimed steps (with --allreduce: calls per size) before the timed ones")
    ap.add_argument("--full", action="store_true", help="train every epoch, testing after each")
    ap.add_argument("--allreduce", action="store_true",
                    help="time gloo's fp32 allreduce by size instead of training")
    ap.add_argument("--min-bytes", default="64K", help="with --allreduce: the smallest size")
    ap.add_argument("--max-bytes", default="64M", help="with --allreduce: the largest size")
    ap.add_argument("--iters", type=int, default=5, help="with --allreduce: timed calls per size")
    ap.add_argument("--hook", default="none",
                    help="none, fp16, powersgd:R, cdl:SCHEME or cdl-adaptive[:ALPHA] (see above)")
    ap.add_argument("--hook-warmup", type=int, default=50,
                    help="powersgd:R's fp32 steps; cdl-adaptive's steps before its first plan")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--version", nargs=0, action=PrintVersion,
                    help="print the torch it runs on (version and library) and exit")
    a = ap.parse_args()
    rank, size = world()
    if (a.store is None) == (a.master is None):
        fail("give one of --store FILE or --master HOST:PORT")
    if (a.batch < 1 or a.epochs < 1 or a.steps < 1 or a.iters < 1 or a.warmup < 0 or a.threads < 1
            or a.hook_warmup < 0):
        fail("--batch, --epochs, --steps, --iters and --threads must be >= 1, --warmup and "
             "--hook-warmup >= 0")
    if a.allreduce and a.full:
        fail("give one of --allreduce or --full")
    lo, hi = byte_size(a.min_bytes), byte_size(a.max_bytes)
    if lo < 4 or hi < lo:
        fail("need 4 <= --min-bytes <= --max-bytes")
    torch.set_num_threads(a.threads)
    os.environ["GLOO_SOCKET_IFNAME"] = a.iface or ipv4_interface()
    if a.store:
        store = dist.FileStore(a.store, size)
    else:
        host, _, port = a.master.rpartition(":")
        store = dist.TCPStore(host, int(port), size, rank == 0,
                              timeout=datetime.timedelta(seconds=120))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=size)
    if a.allreduce:
        records = time_allreduces(a, lo, hi, rank, size)
        if rank == 0 and a.json:
            print(json.dumps(records, indent=2))
        finish(a, rank)

    torch.manual_seed(a.seed)
    x, y = load(a.data, "train")
    model = nn.parallel.DistributedDataParallel(Cnn(1, 28, 10))
    hook_state = register_hook(model, a.hook, a.hook_warmup)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, nesterov=True,
                          weight_decay=a.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    per_epoch = len(x) // (a.batch * size)
    total = per_epoch * a.epochs
    gen = torch.Generator().manual_seed(a.seed)

    def batches(epoch):
        perm = torch.randperm(len(x), generator=gen)
        mine = perm[rank::size]
        for i in range(per_epoch):
            idx = mine[i * a.batch:(i + 1) * a.batch]
            yield x[idx], y[idx]

    step = 0

    def train_step(xb, yb):
        nonlocal step
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, a.lr, a.lr_warmup)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        step += 1
        return loss

    out = {"tool": "pytorch_ddp_gloo", "torch": torch.__version__, "ranks": size,
           "threads": a.threads, "batch_per_rank": a.batch, "global_batch": a.batch * size,
           "iface": os.environ["GLOO_SOCKET_IFNAME"], "hook": a.hook}
    if not a.full:
        it = iter(())
        epoch = 0

        def next_batch():
            nonlocal it, epoch
            while True:
                try:
                    return next(it)
                except StopIteration:
                    it = batches(epoch)
                    epoch += 1

        for _ in range(a.warmup):
            train_step(*next_batch())
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            train_step(*next_batch())
        dist.barrier()
        seconds = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        s = seconds.item()
        sps = a.steps * a.batch * size / s
        out.update({"steps": a.steps, "warmup": a.warmup, "samples_per_s": sps,
                    "step_ms": 1e3 * s / a.steps, "epoch_s": len(x) / sps})
    else:
        tx, ty = load(a.data, "t10k")
        records, reached = [], {}
        dist.barrier()
        t0 = time.perf_counter()
        for epoch in range(a.epochs):
            model.train()
            for xb, yb in batches(epoch):
                train_step(xb, yb)
            model.eval()
            with torch.no_grad():
                correct = sum(int((model.module(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum())
                              for i in range(0, len(tx), 1000))
            acc = correct / len(tx)
            wall = time.perf_counter() - t0
            records.append({"epoch": epoch + 1, "step": step, "wall_s": wall, "test_accuracy": acc})
            for th in THRESHOLDS:
                if acc >= th and f"{th:.2f}" not in reached:
                    reached[f"{th:.2f}"] = wall
            if rank == 0 and not a.json:
                print(f"epoch {epoch + 1}: {wall:.1f} s, test accuracy {acc:.4f}", flush=True)
        out.update({"epochs": a.epochs, "epoch_samples": per_epoch * a.batch * size,
                    "records": records, "time_to_accuracy": reached,
                    "epoch_s": records[-1]["wall_s"] / a.epochs})
    if hook_state is not None:
        out["hook_stats"] = hook_state.stats()
    if rank == 0:
        if a.json:
            print(json.dumps(out, indent=2))
        elif not a.full:
            print(f"pytorch DDP (gloo), {size} ranks x {a.threads} threads: "
                  f"{out['samples_per_s']:.0f} samples/s, {out['step_ms']:.1f} ms per step, "
                  f"{out['epoch_s']:.1f} s per epoch")
    finish(a, rank)


if __name__ == "__main__":
    main()
