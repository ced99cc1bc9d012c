"""PowerSGD as a cdl scheme in cdl.ddp.hook ("powersgd:rank=R"), on 2 gloo ranks: the averaged
gradients equal cdl's C++ PowerSGD scheme (makeScheme over an in-process group) bit for bit over
several steps (warm start and error feedback included: with 2 ranks every sum is the same bits
in either order); a DDP run resumed from the hook's state_dict ends bit for bit as the run
straight through; bad specs and states are errors naming the spec, key or parameter."""

import os
import sys
import tempfile
import unittest

import torch
import torch.nn as nn

import ranks
import state_test

import cdl.ddp
from cdl import _cdl

WORLD = 2
SEED = 5
SPEC = "powersgd:rank=2"
# A conv weight (8 x 18), a matrix (32 x 20), a bias, a matrix too small to gain at rank 2
# (3 x 3), a scalar and one more matrix: compressed and plain tensors in one bucket.
SHAPES = [(8, 2, 3, 3), (32, 20), (10,), (3, 3), (), (12, 40)]
STEPS = 4


def inputs(step, rank):
    g = torch.Generator().manual_seed(1000 * step + rank)
    n = sum(_matrix_numel(s) for s in SHAPES)
    # A shared low-rank part, so the factors carry signal, plus per-rank noise.
    return torch.randn(n, generator=torch.Generator().manual_seed(step)) + \
        0.3 * torch.randn(n, generator=g)


def _matrix_numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def hook_ranks(rank, world, out_dir):
    params = [nn.Parameter(torch.zeros(s)) for s in SHAPES]
    state = cdl.ddp.HookState(None, codec=SPEC, seed=SEED)
    out = []
    for step in range(STEPS):
        x = inputs(step, rank)
        out.append(cdl.ddp.hook(state, ranks.Bucket(0, x, True, params)).wait().clone())
    torch.save({"out": out, "state": state.state_dict(), "stats": state.stats()},
               os.path.join(out_dir, f"hook_{rank}.pt"))
    bad_specs(rank)


def expect_error(fn, kind, *parts):
    state_test.expect_error(fn, kind, *parts)


def bad_specs(rank):
    expect_error(lambda: cdl.ddp.HookState(None, codec="powersgd:rank=0"), ValueError,
                 "powersgd:rank=0", "rank")
    expect_error(lambda: cdl.ddp.HookState(None, codec="powersgd:rnk=4"), ValueError,
                 "powersgd:rnk=4", "rnk")
    expect_error(lambda: cdl.ddp.HookState(None, codec="powersgd:rank=x"), ValueError,
                 "powersgd:rank=x", "rank")
    # Ranks with different schemes: one error naming both, on both ranks.
    state = cdl.ddp.HookState(None, codec="powersgd:rank=1" if rank else "powersgd:rank=2")
    params = [nn.Parameter(torch.zeros(8, 8))]
    expect_error(lambda: cdl.ddp.hook(state, ranks.Bucket(0, torch.ones(64), True, params)),
                 ValueError, "bucket 0", "codec", "rank 0: powersgd:rank=2",
                 "rank 1: powersgd:rank=1")
    # A saved state of another shape names the parameter.
    state = cdl.ddp.HookState(None, codec=SPEC)
    cdl.ddp.hook(state, ranks.Bucket(0, torch.ones(64), True, params))
    saved = state.state_dict()
    saved["powersgd"][0]["q"] = torch.ones(3)
    fresh = cdl.ddp.HookState(None, codec=SPEC)
    expect_error(lambda: fresh.load_state_dict(saved), ValueError, "parameter 0", "Q")


def train(rank, world, out_dir, mode):
    state_test.SPEC = SPEC
    state_test.run_steps(rank, out_dir, mode)


class PowerSgdHook(unittest.TestCase):
    def test_hook_equals_the_cpp_scheme_bit_for_bit(self):
        with tempfile.TemporaryDirectory() as d:
            ranks.run(hook_ranks, WORLD, d)
            got = [torch.load(os.path.join(d, f"hook_{r}.pt")) for r in range(WORLD)]
        shapes = [cdl._powersgd.matrix_shape(s) for s in SHAPES]
        steps = [[inputs(s, r) for r in range(WORLD)] for s in range(STEPS)]
        want = _cdl.reference_powersgd(SPEC, shapes, steps, SEED)
        for s in range(STEPS):
            for r in range(WORLD):
                self.assertTrue(torch.equal(got[r]["out"][s], want[s][r]),
                                f"step {s}, rank {r}: the hook differs from cdl's C++ scheme")
            # Compressed: the result is not the plain average.
            mean = (steps[s][0] + steps[s][1]) / 2
            self.assertFalse(torch.equal(want[s][0], mean))
        saved = got[0]["state"]["powersgd"]
        self.assertEqual(sorted(saved), list(range(len(SHAPES))))
        self.assertEqual(saved[1]["rank"], 2)
        self.assertEqual(saved[3]["rank"], 0, "3 x 3 is not compressed at rank 2")
        stats = got[0]["stats"]
        self.assertEqual(stats["codec"], SPEC)
        self.assertGreater(stats["compression_ratio"], 1.5)
        # The hook's own time holds the times nested in it.
        inner = stats["encode_seconds"] + stats["decode_seconds"] + stats["wire_seconds"]
        self.assertGreaterEqual(stats["hook_seconds"], inner)

    def test_resume_equals_the_run_straight_through(self):
        with tempfile.TemporaryDirectory() as d:
            for mode in ("straight", "resume", "fresh_state"):
                ranks.run(train, WORLD, d, mode)
            for rank in range(WORLD):
                straight = state_test.load(d, "straight", rank)
                self.assertTrue(state_test.same(straight, state_test.load(d, "resume", rank)),
                                f"rank {rank}: the resume differs")
                self.assertFalse(state_test.same(straight, state_test.load(d, "fresh_state", rank)),
                                 "without the hook's state the resume should differ")


if __name__ == "__main__":
    ranks.main_guard()
    unittest.main(argv=sys.argv[:1], verbosity=2)
