"""cdl.ddp.hook on 2 gloo processes gives, bit for bit, what cdl's C++ compressedAllreduce gives
on thread-ranks (cdl._cdl.reference_allreduce) for the same inputs, over several steps with
error feedback, for every codec; and the hook's statistics count what it sent."""

import os
import sys
import tempfile
import unittest

import torch

import ranks

import cdl.ddp
from cdl import _cdl

WORLD = 2
STEPS = 3
SEED = 7
# Specs with nearest rounding (and the lossless and top-k codecs, which do not round at random)
# must match at any segment size; the 1.3M-element bucket spans several of the C++ allreduce's
# 4 MiB segments. Stochastic rounding matches in one segment (buckets under 4 MiB).
SMALL = [3001, 70000]
CASES = {
    "qsgd4n": ("qsgd:bits=4,rounding=nearest,entropy=rans", SMALL + [1_300_000]),
    "qsgd3n": ("qsgd:bits=3,bucket=512,rounding=nearest,entropy=none", SMALL),
    "qsgd4s": ("qsgd:bits=4,rounding=stochastic,entropy=rans", SMALL),
    "fp16": ("fp16", SMALL),
    "bf16": ("bf16", SMALL),
    "topk": ("topk:density=0.05,entropy=rans", SMALL),
    "none": ("none", SMALL),
}


def gradient(rank, step, bucket, n):
    g = torch.Generator().manual_seed(1000 * rank + 100 * step + bucket)
    return torch.randn(n, generator=g) * (1 + bucket) + 0.1 * rank


def hook_ranks(rank, world, out_dir):
    for name, (spec, sizes) in CASES.items():
        state = cdl.ddp.HookState(None, codec=spec, seed=SEED)
        results = []
        for step in range(STEPS):
            for b, n in enumerate(sizes):
                bucket = ranks.Bucket(b, gradient(rank, step, b, n), b == len(sizes) - 1)
                fut = cdl.ddp.hook(state, bucket)
                results.append(fut.wait().clone())
        torch.save({"results": results, "stats": state.stats()},
                   os.path.join(out_dir, f"{name}_{rank}.pt"))


def reference(spec, sizes):
    residuals = [[torch.zeros(n) for _ in range(WORLD)] for n in sizes]
    out = []
    for step in range(STEPS):
        for b, n in enumerate(sizes):
            key = _cdl.rounding_key(SEED, step, b)
            inputs = [gradient(r, step, b, n) for r in range(WORLD)]
            results, residuals[b] = _cdl.reference_allreduce(spec, inputs, residuals[b], key)
            out.append(results)
    return out


class HookEqualsCppAllreduce(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        ranks.run(hook_ranks, WORLD, cls.dir.name)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def load(self, name, rank):
        return torch.load(os.path.join(self.dir.name, f"{name}_{rank}.pt"))

    def test_every_codec_bit_identical_to_cpp(self):
        for name, (spec, sizes) in CASES.items():
            with self.subTest(codec=spec):
                want = reference(spec, sizes)
                for rank in range(WORLD):
                    got = self.load(name, rank)["results"]
                    self.assertEqual(len(got), len(want))
                    for i, (g, w) in enumerate(zip(got, want)):
                        self.assertTrue(torch.equal(g, w[rank]),
                                        f"{spec}: rank {rank}, reduction {i} differs from C++ "
                                        f"(max |diff| {(g - w[rank]).abs().max().item()})")

    def test_lossy_codecs_change_the_average(self):
        # The comparison above would also pass if neither side compressed.
        for name in ("qsgd4n", "qsgd4s", "topk"):
            spec, sizes = CASES[name]
            got = self.load(name, 0)["results"][0]
            exact = (gradient(0, 0, 0, sizes[0]) + gradient(1, 0, 0, sizes[0])) / 2
            self.assertFalse(torch.equal(got, exact), spec)
            self.assertLess((got - exact).norm() / exact.norm(), 1.0, spec)

    def test_stats_count_what_was_sent(self):
        for name, (spec, sizes) in CASES.items():
            s = self.load(name, 0)["stats"]
            self.assertEqual(s["steps"], STEPS)
            fp32 = STEPS * sum(4 * n for n in sizes)  # 2 (W-1)/W * 4n with W = 2
            self.assertEqual(s["fp32_bytes"], fp32)
            self.assertGreater(s["bytes_sent"], 0)
            self.assertAlmostEqual(s["compression_ratio"], fp32 / s["bytes_sent"])
        self.assertGreater(self.load("qsgd4n", 0)["stats"]["compression_ratio"], 6)
        self.assertAlmostEqual(self.load("none", 0)["stats"]["compression_ratio"], 1.0)


if __name__ == "__main__":
    ranks.main_guard()
    unittest.main(argv=sys.argv[:1], verbosity=2)
