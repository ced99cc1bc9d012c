"""cdl.ddp.HookState in checkpoints: a DDP run stopped and resumed from torch.save'd state ends
bit for bit as the run straight through (and without the hook's state it does not); and the
hook's bad inputs on 2 gloo ranks, each one error naming the bucket and the ranks, never a hang."""

import io
import os
import sys
import tempfile
import unittest
import warnings

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import ranks

import cdl.ddp

WORLD = 2
STEPS, STOP = 6, 3
SPEC = "qsgd:bits=4,rounding=stochastic,entropy=rans"


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 64),
                         nn.ReLU(), nn.Linear(64, 10))


def batch(rank, step):
    g = torch.Generator().manual_seed(100 * step + rank)
    return torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)


def train(rank, world, out_dir, mode):
    """mode: "straight" (all steps, saving a checkpoint after STOP), "resume" (from it),
    "fresh_state" (from it, but with a new hook state) or "no_layout" (from it, without the hook
    state's bucket layout). The warnings the run gave are saved."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_steps(rank, out_dir, mode)
    with open(os.path.join(out_dir, f"{mode}_{rank}.warnings"), "w") as f:
        f.write("\n".join(str(w.message) for w in caught))


def run_steps(rank, out_dir, mode):
    model = make_model()
    # DDP reduces its first step as one bucket, then rebuilds its buckets (two here): a resume
    # meets Note [Buckets across a resume] (cdl/ddp.py).
    ddp = DDP(model, bucket_cap_mb=0.01)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    state = cdl.ddp.HookState(None, codec=SPEC, seed=3)
    ddp.register_comm_hook(state, cdl.ddp.hook)
    ckpt = os.path.join(out_dir, f"ckpt_{rank}.pt")
    first = 0
    if mode != "straight":
        saved = torch.load(ckpt)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        if mode == "no_layout":
            del saved["hook"]["layout"]
        if mode in ("resume", "no_layout"):
            state.load_state_dict(saved["hook"])
        first = STOP
    for step in range(first, STEPS):
        if mode == "straight" and step == STOP:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "hook": state.state_dict()}, ckpt)
        x, y = batch(rank, step)
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    torch.save({"params": [p.detach().clone() for p in model.parameters()],
                "buckets": len(state.residuals), "step": state.step, "stats": state.stats()},
               os.path.join(out_dir, f"{mode}_{rank}.pt"))


def expect_error(fn, kind, *parts):
    try:
        fn()
    except kind as e:
        for p in parts:
            assert p in str(e), f"{p!r} not in the error: {e}"
        return
    raise AssertionError(f"no {kind.__name__} raised")


def bad_inputs(rank, world, out_dir):
    bucket = ranks.Bucket
    # Buckets of different sizes across ranks.
    state = cdl.ddp.HookState(None, codec=SPEC)
    expect_error(lambda: cdl.ddp.hook(state, bucket(0, torch.ones(100 + rank), True)), ValueError,
                 "bucket 0", "size", "rank 0: 100", "rank 1: 101")
    # One rank's state from another step (another checkpoint).
    state = cdl.ddp.HookState(None, codec=SPEC)
    state.step = 5 * rank
    expect_error(lambda: cdl.ddp.hook(state, bucket(2, torch.ones(50), True)), ValueError,
                 "bucket 2", "step", "rank 0: 0", "rank 1: 5")
    # Different codecs across ranks.
    state = cdl.ddp.HookState(None, codec="fp16" if rank else "bf16")
    expect_error(lambda: cdl.ddp.hook(state, bucket(1, torch.ones(50), True)), ValueError,
                 "bucket 1", "codec", "rank 0: bf16", "rank 1: fp16")
    # Another rank's state, and a state of another world size.
    state = cdl.ddp.HookState(None, codec=SPEC)
    cdl.ddp.hook(state, bucket(0, torch.ones(64) * rank, True))
    torch.save(state.state_dict(), os.path.join(out_dir, f"state_{rank}.pt"))
    dist.barrier()
    every = [torch.load(os.path.join(out_dir, f"state_{r}.pt")) for r in range(world)]
    expect_error(lambda: state.load_state_dict(every[1 - rank]), ValueError,
                 f"rank {1 - rank}", f"rank {rank}")
    solo = dist.new_group([0])
    if rank == 0:
        one = cdl.ddp.HookState(solo, codec=SPEC)
        expect_error(lambda: one.load_state_dict(every[0]), ValueError, "world_size 2",
                     "world_size 1")
    # A bad spec, a bucket of another dtype.
    expect_error(lambda: cdl.ddp.HookState(None, codec="qsgd:bits=9"), ValueError,
                 "'qsgd:bits=9'", "bits")
    expect_error(lambda: cdl.ddp.hook(state, bucket(0, torch.ones(64).double(), True)), TypeError,
                 "bucket 0", "float64")
    # A bad bucket on one rank only: both ranks raise, naming it.
    x = torch.ones(64, dtype=torch.float64 if rank == 1 else torch.float32)
    expect_error(lambda: cdl.ddp.hook(state, bucket(3, x, True)), TypeError,
                 "bucket 3", "on rank(s) 1")
    # The group is still in step after all of these: the hook still reduces.
    out = cdl.ddp.hook(state, bucket(0, torch.full((64,), float(rank)), True)).wait()
    assert out.sub(0.5).abs().max() < 0.1, out
    # The whole state pickles (torch.save(state)) and comes back with the default group.
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert back.step == state.step and back.codec.spec == state.codec.spec
    assert all(torch.equal(back.residuals[i], r) for i, r in state.residuals.items())
    ranks.mark_ok(out_dir, "bad", rank)


def load(d, mode, rank):
    return torch.load(os.path.join(d, f"{mode}_{rank}.pt"))


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))


class Checkpoints(unittest.TestCase):
    def test_resume_equals_the_run_straight_through(self):
        with tempfile.TemporaryDirectory() as d:
            for mode in ("straight", "resume", "fresh_state"):
                ranks.run(train, WORLD, d, mode)
            for rank in range(WORLD):
                straight, resumed = load(d, "straight", rank), load(d, "resume", rank)
                self.assertGreaterEqual(straight["buckets"], 2, "the model should span buckets")
                self.assertEqual(resumed["step"], straight["step"])
                self.assertTrue(same(straight, resumed), f"rank {rank}: the resume differs")
                self.assertFalse(same(straight, load(d, "fresh_state", rank)),
                                 "without the hook's state the resume should differ")
                self.assertEqual(open(os.path.join(d, f"resume_{rank}.warnings")).read(), "")

    def test_a_resume_without_the_layout_warns(self):
        # DDP's first step after the resume has one bucket, the checkpoint's residuals other
        # buckets, and the state has no layout to map them: the hook says it dropped them.
        with tempfile.TemporaryDirectory() as d:
            for mode in ("straight", "no_layout"):
                ranks.run(train, WORLD, d, mode)
            self.assertFalse(same(load(d, "straight", 0), load(d, "no_layout", 0)))
            warned = open(os.path.join(d, "no_layout_0.warnings")).read()
            self.assertIn("bucket 0 has 9970 elements, its loaded residual", warned)
            self.assertIn("the resume is not exact", warned)


class BadInputs(unittest.TestCase):
    def test_each_bad_input_is_one_error_on_every_rank(self):
        with tempfile.TemporaryDirectory() as d:
            ranks.run(bad_inputs, WORLD, d)
            self.assertTrue(ranks.all_ok(d, "bad", WORLD))


if __name__ == "__main__":
    ranks.main_guard()
    unittest.main(argv=sys.argv[:1], verbosity=2)
