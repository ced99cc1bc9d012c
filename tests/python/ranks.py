"""Runs a function on N local processes joined in a gloo process group, for the Python tests."""

import datetime
import faulthandler
import os
import socket
import sys
import tempfile
import time
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# The longest a test's ranks may run before they are killed and the test fails.
DEADLINE_SECONDS = 240


class Bucket:
    """What DDP hands a comm hook: the flat gradient and its parameters (for their shapes)."""

    def __init__(self, index, x, last, params=()):
        self._index, self._x, self._last, self._params = index, x, last, list(params)

    def buffer(self):
        return self._x

    def index(self):
        return self._index

    def is_last(self):
        return self._last

    def parameters(self):
        return self._params


def mark_ok(out_dir, name, rank):
    """Leaves the mark that `rank` got through `name`, for all_ok."""
    open(os.path.join(out_dir, f"{name}_{rank}.ok"), "w").close()


def all_ok(out_dir, name, world):
    """Whether every rank left its mark for `name`."""
    return all(os.path.exists(os.path.join(out_dir, f"{name}_{r}.ok")) for r in range(world))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world, port, fn, args, error_dir):
    faulthandler.enable(all_threads=True)  # a rank that aborts shows where
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    code = 0
    try:
        fn(rank, world, *args)
        dist.barrier()
    except BaseException:
        with open(os.path.join(error_dir, f"rank{rank}.txt"), "w") as f:
            f.write(traceback.format_exc())
        code = 1
    # The process ends without tearing the group down, as bench/ddp_baseline.py's finish() does:
    # torch's teardown of a DDP reducer and gloo's worker threads aborted now and then at exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(fn, world, *args):
    """fn(rank, world, *args) on `world` processes; raises AssertionError with every failed
    rank's traceback, or when they outlive DEADLINE_SECONDS."""
    with tempfile.TemporaryDirectory() as errors:
        ctx = mp.start_processes(_entry, args=(world, free_port(), fn, args, errors),
                                 nprocs=world, join=False, start_method="spawn")
        deadline = time.monotonic() + DEADLINE_SECONDS
        try:
            while not ctx.join(timeout=1):
                if time.monotonic() > deadline:
                    for p in ctx.processes:
                        p.kill()
                    raise AssertionError(f"ranks still running after {DEADLINE_SECONDS} s")
        except (mp.ProcessRaisedException, mp.ProcessExitedException):
            pass
        failures = sorted(os.listdir(errors))
        if failures:
            text = "".join(open(os.path.join(errors, f)).read() for f in failures)
            raise AssertionError(f"ranks failed ({', '.join(failures)}):\n{text}")
        codes = [p.exitcode for p in ctx.processes]
        if any(c != 0 for c in codes):
            raise AssertionError(f"ranks exited with {codes}")


def main_guard():
    """Quiets torch's NumPy warning in the children too."""
    import warnings
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    sys.stdout.reconfigure(line_buffering=True)
