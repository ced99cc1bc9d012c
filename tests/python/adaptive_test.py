"""Adaptive rates in cdl.ddp.hook (HookState(..., adaptive={...}): L-GreCo per parameter) on 2
gloo ranks: both ranks hold the same plan (and end with the same weights), every plan is within
its error budget and no larger than the uniform scheme, training a small classifier still
converges, the plan is in state_dict() and a run resumed from it (inside a measuring window)
ends bit for bit as the run straight through; bad options are errors naming the key, and a
measurement that fails on one rank is one error on both."""

import io
import os
import sys
import tempfile
import unittest

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import ranks
import state_test

import cdl.ddp

WORLD = 2
STEPS = 70
UNIFORM = "qsgd:bits=4,entropy=rans"
ADAPTIVE = {"alpha": 1.0, "warmup_steps": 10, "every_steps": 20, "window": 5,
            "families": ["qsgd", "powersgd"]}
STOP = 28  # inside the window of the plan at step 30


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))


def data(seed, n):
    """A 4-class problem a small MLP learns: the class of a fixed random linear map's argmax."""
    teacher = torch.randn(20, 4, generator=torch.Generator().manual_seed(7))
    x = torch.randn(n, 20, generator=torch.Generator().manual_seed(seed))
    return x, (x @ teacher).argmax(1)


def train(rank, world, out_dir, mode):
    """mode: "straight" (saving a checkpoint after STOP steps) or "resume" (from it)."""
    model = make_model()
    ddp = DDP(model, bucket_cap_mb=0.001)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    state = cdl.ddp.HookState(None, codec=UNIFORM, seed=1, adaptive=ADAPTIVE)
    ddp.register_comm_hook(state, cdl.ddp.hook)
    ckpt = os.path.join(out_dir, f"ckpt_{rank}.pt")
    first, plans = 0, []
    if mode == "resume":
        saved = torch.load(ckpt)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        state.load_state_dict(saved["hook"])
        first = STOP
    for step in range(first, STEPS):
        if mode == "straight" and step == STOP:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "hook": state.state_dict()}, ckpt)
        x, y = data(1000 * step + rank, 64)
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
        report = state.stats().get("plan")
        if report and (not plans or plans[-1]["step"] != report["step"]):
            plans.append(report)
    x, y = data(99, 2000)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    torch.save({"params": [p.detach().clone() for p in model.parameters()], "plans": plans,
                "plan": dict(state.adaptive.plan), "saved": state.state_dict()["adaptive"],
                "accuracy": accuracy},
               os.path.join(out_dir, f"{mode}_{rank}.pt"))


def bad_options(rank, world, out_dir):
    for adaptive, parts in (({"alpha": 1.0, "windw": 3}, ("'windw'", "unknown")),
                            ({"families": ["qsgd", "lowrank"]}, ("'lowrank'", "families")),
                            ({"window": 50, "every_steps": 20}, ("'window'", "every_steps")),
                            ({"alpha": 0}, ("'alpha'", "> 0")),
                            ({"warmup_steps": 2.5}, ("'warmup_steps'", "integer"))):
        state_test.expect_error(lambda: cdl.ddp.HookState(None, codec=UNIFORM, adaptive=adaptive),
                                ValueError, *parts)
    # Ranks with different planner options: one error on both, naming the bucket.
    state = cdl.ddp.HookState(None, codec=UNIFORM, adaptive={"window": 3 + rank})
    params = [nn.Parameter(torch.zeros(8, 8))]
    bucket = ranks.Bucket(0, torch.ones(64), True, params)
    state_test.expect_error(lambda: cdl.ddp.hook(state, bucket), ValueError, "bucket 0",
                            "differs across ranks", "'window': 3", "'window': 4")
    # A measurement that fails on one rank (a NaN in its window): one error on both ranks.
    state = cdl.ddp.HookState(None, codec=UNIFORM,
                              adaptive={"warmup_steps": 2, "every_steps": 2, "window": 2})
    cdl.ddp.hook(state, ranks.Bucket(0, torch.ones(64), True, params))
    if rank == 1:
        state.adaptive.sums[0][5] = float("nan")
    bucket = ranks.Bucket(0, torch.ones(64), True, params)
    state_test.expect_error(lambda: cdl.ddp.hook(state, bucket),
                            ValueError, "measuring the adaptive candidates at step 2",
                            "failed on 1 rank(s)")
    # The group is still in step: the hook reduces the next step on both ranks.
    out = cdl.ddp.hook(state, ranks.Bucket(0, torch.full((64,), float(rank)), True, params)).wait()
    assert out.sub(0.5).abs().max() < 0.1, out
    ranks.mark_ok(out_dir, "bad", rank)


def scheme_moves(rank, world, out_dir):
    """A parameter moved by the plan from qsgd to PowerSGD and back takes its residual along."""
    state = cdl.ddp.HookState(None, codec=UNIFORM, adaptive={"warmup_steps": 1000})
    params = [nn.Parameter(torch.zeros(16, 12)), nn.Parameter(torch.zeros(5))]
    outs = []

    def step(seed):
        x = torch.randn(197, generator=torch.Generator().manual_seed(seed * 10 + rank))
        outs.append(cdl.ddp.hook(state, ranks.Bucket(0, x, True, params)).wait().clone())

    step(0)
    assert sorted(state.param_residuals) == [0, 1] and not state.powersgd
    state.adaptive.plan = {0: "powersgd:rank=2"}
    step(1)
    assert sorted(state.param_residuals) == [1] and sorted(state.powersgd) == [0]
    rank_, q, moved = state.powersgd[0][2].snapshot()
    assert rank_ == 2 and q.numel() == 2 * 12 and moved.abs().sum() > 0
    state.adaptive.plan = {0: "qsgd:bits=8,entropy=rans"}
    state.param_residuals[1].zero_()
    step(2)
    assert sorted(state.param_residuals) == [0, 1] and not state.powersgd
    # The whole state pickles with its plan and options (torch.save(state)).
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert back.adaptive.plan == state.adaptive.plan
    assert back.adaptive.config() == state.adaptive.config()
    assert all(torch.equal(back.param_residuals[k], r) for k, r in state.param_residuals.items())
    torch.save(outs, os.path.join(out_dir, f"moves_{rank}.pt"))


def load(d, mode, rank):
    return torch.load(os.path.join(d, f"{mode}_{rank}.pt"), weights_only=False)


class AdaptiveHook(unittest.TestCase):
    def test_plans_agree_fit_the_budget_converge_and_resume_exactly(self):
        with tempfile.TemporaryDirectory() as d:
            for mode in ("straight", "resume"):
                ranks.run(train, WORLD, d, mode)
            runs = [load(d, "straight", r) for r in range(WORLD)]
            resumed = [load(d, "resume", r) for r in range(WORLD)]
        a, b = runs
        self.assertEqual([p["step"] for p in a["plans"]], [10, 30, 50, 70])
        self.assertEqual(a["plans"], b["plans"], "the ranks' plans differ")
        self.assertTrue(all(torch.equal(x, y) for x, y in zip(a["params"], b["params"])))
        for p in a["plans"]:
            self.assertEqual(sorted(p["layers"]), [0, 1, 2, 3])
            self.assertAlmostEqual(p["budget"], ADAPTIVE["alpha"] * p["uniform_error"])
            self.assertLessEqual(p["error"], p["budget"] * (1 + 1e-9))
            self.assertLessEqual(p["bytes"], p["uniform_bytes"])
        self.assertEqual(a["saved"]["plan"], a["plans"][-1]["layers"])
        self.assertEqual(a["plan"], a["plans"][-1]["layers"])
        self.assertGreaterEqual(a["accuracy"], 0.85)
        for r in range(WORLD):
            self.assertTrue(all(torch.equal(x, y) for x, y in
                                zip(runs[r]["params"], resumed[r]["params"])),
                            f"rank {r}: the resumed run differs")
            # The resumed run starts with the checkpoint's plan (step 10) and plans as before.
            self.assertEqual(resumed[r]["plans"], runs[r]["plans"])

    def test_a_scheme_change_keeps_replicas_identical(self):
        with tempfile.TemporaryDirectory() as d:
            ranks.run(scheme_moves, WORLD, d)
            a, b = (load(d, "moves", r) for r in range(WORLD))
        for x, y in zip(a, b):
            self.assertTrue(torch.equal(x, y) and torch.isfinite(x).all())

    def test_bad_options_and_a_failed_measurement_are_one_error_on_every_rank(self):
        with tempfile.TemporaryDirectory() as d:
            ranks.run(bad_options, WORLD, d)
            self.assertTrue(ranks.all_ok(d, "bad", WORLD))


if __name__ == "__main__":
    ranks.main_guard()
    unittest.main(argv=sys.argv[:1], verbosity=2)
