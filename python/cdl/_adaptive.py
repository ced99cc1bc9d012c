"""L-GreCo's adaptive rates inside cdl's DDP hook (Note [Adaptive rates in the hook])."""

import math

import torch
import torch.distributed as dist

from cdl import _cdl
from cdl import _powersgd

# Note [Adaptive rates in the hook]
# HookState(pg, codec=uniform, adaptive={...}) plans a scheme per parameter (not per bucket), as
# cdl's AdaptiveRates does per layer (Note [Adaptive rates] in comm/reduce/adaptive_rates.h):
# after warmup_steps steps and then every every_steps, the mean of each parameter's compensated
# gradient (gradient + error-feedback residual) over the `window` steps before is measured with
# every candidate of `families` (cdl's measureCandidate: real coded sizes, real errors); the
# costs are averaged over the ranks (one allreduce), rank 0 solves cdl's knapsack (planRates,
# budget alpha x the uniform scheme's error, the uniform scheme every parameter's default) and
# broadcasts the choice, so every rank applies the same plan. A plan that fails on rank 0 is the
# same ValueError on every rank.
#
# A bucket is reduced group by group: its parameters with the same scheme, in bucket order. A
# payload group's gradients are concatenated with their residuals and go through the hook's
# compressed allreduce (rounding key from the bucket and the group's place in it); a PowerSGD
# group as Note [PowerSGD in the hook]. Every parameter keeps one residual: moving between
# payload codecs it stays, between a payload codec and PowerSGD it moves into or out of the
# PowerSGD state, whose Q is drawn afresh when the rank changes. The plan, the window's sums and
# the residuals are in state_dict(), so a resume goes on exactly.

_DEFAULTS = {"alpha": 1.0, "warmup_steps": 100, "every_steps": 200, "window": 10,
             "families": ["qsgd", "powersgd"], "buckets": 10000}


def _option(config, key, kind, low):
    v = config.get(key, _DEFAULTS[key])
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if kind is int:
        ok = ok and float(v).is_integer()
    if not ok or v < low or (kind is float and v <= 0):
        raise ValueError(f"cdl.ddp: adaptive key '{key}' is {v!r}; it must be "
                         f"{'an integer' if kind is int else 'a number'} "
                         f"{'> 0' if kind is float else f'>= {low}'}")
    return kind(v)


class Adaptive:
    """The planner's options, its plan (parameter key -> scheme spec), the window's sums and the
    latest plan's report."""

    def __init__(self, config, uniform):
        if not isinstance(config, dict):
            raise ValueError(f"cdl.ddp: adaptive must be a dict, not {type(config).__name__}")
        unknown = sorted(set(config) - set(_DEFAULTS))
        if unknown:
            raise ValueError(f"cdl.ddp: adaptive key '{unknown[0]}' is unknown (known: "
                             f"{', '.join(_DEFAULTS)})")
        self.alpha = _option(config, "alpha", float, 0)
        self.warmup = _option(config, "warmup_steps", int, 0)
        self.every = _option(config, "every_steps", int, 1)
        self.window = _option(config, "window", int, 1)
        self.buckets = _option(config, "buckets", int, 1)
        if self.window > self.every:
            raise ValueError(f"cdl.ddp: adaptive key 'window' is {self.window}, more than "
                             f"every_steps {self.every}")
        families = config.get("families", _DEFAULTS["families"])
        if isinstance(families, str) or not all(isinstance(f, str) for f in families):
            raise ValueError(f"cdl.ddp: adaptive key 'families' must be a list of names, not "
                             f"{families!r}")
        self.families = list(families)
        grid = _cdl.candidate_grid(self.families, uniform, "adaptive key 'families'")
        self.uniform = uniform
        self.candidates = list(dict.fromkeys(grid + [uniform]))
        self.plan = {}
        self.sums = {}
        self.summed_steps = 0
        self.report = None

    def config(self):
        return {"alpha": self.alpha, "warmup_steps": self.warmup, "every_steps": self.every,
                "window": self.window, "families": list(self.families), "buckets": self.buckets}

    def next_plan(self, step):
        """The number of finished steps at which the plan after step `step` is made."""
        if step < self.warmup:
            return self.warmup
        return self.warmup + (step - self.warmup) // self.every * self.every + self.every

    def measuring(self, step):
        return step >= self.next_plan(step) - self.window

    def due(self, steps):
        return steps >= self.warmup and (steps - self.warmup) % self.every == 0

    def state_dict(self):
        return {"config": self.config(), "plan": dict(self.plan),
                "sums": {k: v.clone() for k, v in self.sums.items()},
                "summed_steps": self.summed_steps, "report": self.report}

    def load_state_dict(self, saved):
        self.plan = {int(k): str(v) for k, v in saved["plan"].items()}
        self.sums = {int(k): v.detach().to("cpu", torch.float32).clone()
                     for k, v in saved["sums"].items()}
        self.summed_steps = int(saved["summed_steps"])
        self.report = saved.get("report")


def _residual(state, key, n):
    """Parameter key's residual as a payload codec keeps it (taken out of a PowerSGD state)."""
    r = state.param_residuals.get(key)
    if r is None:
        entry = state.powersgd.pop(key, None)
        kept = entry[2].snapshot()[2] if entry else torch.empty(0)
        r = kept if kept.numel() == n else torch.zeros(n)
        state.param_residuals[key] = r
    return r


def _to_powersgd(state, key, rows, cols):
    """Moves a payload residual of parameter key into a new PowerSGD state."""
    r = state.param_residuals.pop(key, None)
    if r is not None and key not in state.powersgd:
        s = _cdl.PowerSgdState(f"parameter {key}", rows, cols)
        s.restore(0, torch.empty(0), r)
        state.powersgd[key] = (rows, cols, s)


def _capture(state, a, views):
    for key, rows, cols, g in views:
        if key in state.powersgd:
            res = state.powersgd[key][2].snapshot()[2]
        else:
            res = state.param_residuals.get(key, torch.empty(0))
        c = g + res if res.numel() == g.numel() else g.clone()
        if key in a.sums:
            a.sums[key].add_(c)
        else:
            a.sums[key] = c
    state._shapes.update({key: (rows, cols) for key, rows, cols, _ in views})


def reduce_tensors(state, index, views):
    """Averages the bucket's tensors ((key, rows, cols, flat view) each) in place, each with its
    planned scheme, group by group (Note [Adaptive rates in the hook])."""
    from cdl import ddp  # ddp imports this module

    a = state.adaptive
    if a.measuring(state.step):
        _capture(state, a, views)
    groups = {}
    for v in views:
        groups.setdefault(a.plan.get(v[0], a.uniform), []).append(v)
    items, copies = [], []
    for place, (spec, members) in enumerate(groups.items()):
        kind, _, rank = _cdl.parse_scheme(spec)
        if kind == "powersgd":
            for key, rows, cols, _ in members:
                _to_powersgd(state, key, rows, cols)
            _powersgd.reduce_tensors(state, members, rank, state._totals)
            continue
        codec = state._codecs.get(spec) or state._codecs.setdefault(spec, _cdl.Codec(spec))
        residuals = [_residual(state, k, g.numel()) for k, _, _, g in members]
        x = torch.cat([g for _, _, _, g in members])
        res = torch.cat(residuals)
        key = _cdl.rounding_key(state.seed, state.step, index * 256 + place)
        items.append((codec, x, res, key))
        copies.append((members, residuals, x, res))
    # Every payload group of the bucket in one exchange.
    ddp.reduce_payloads(state, items)
    for members, residuals, x, res in copies:
        at = 0
        for (k, _, _, g), r in zip(members, residuals):
            g.copy_(x[at:at + g.numel()])
            r.copy_(res[at:at + g.numel()])
            at += g.numel()


def after_step(state):
    """At the end of a step: counts the window's steps and plans when one is due (collective)."""
    a = state.adaptive
    if a.measuring(state.step - 1):
        a.summed_steps += 1
    if a.due(state.step) and a.sums:
        _replan(state)


def _costs(state, keys):
    """[layers, candidates, 3]: (valid on every rank, mean error, mean bytes) over the ranks. A
    measurement that fails on any rank is one ValueError on every rank, after the allreduce."""
    a, w = state.adaptive, state.world_size
    costs = torch.zeros(len(keys) * len(a.candidates) * 3 + 1, dtype=torch.float64)
    grid = costs[:-1].view(len(keys), len(a.candidates), 3)
    failure = ""
    try:
        for l, key in enumerate(keys):
            rows, cols = state._shapes[key]
            mean = (a.sums[key] / max(a.summed_steps, 1)).contiguous()
            for c, spec in enumerate(a.candidates):
                valid, error, size = _cdl.measure_candidate(mean, rows, cols, spec, w,
                                                            spec == a.uniform)
                grid[l, c] = torch.tensor([float(valid), error, float(size)],
                                          dtype=torch.float64)
    except ValueError as e:
        failure = f"parameter {key}, candidate {spec}: {e}"
        costs[-1] = 1
    dist.all_reduce(costs, group=state.process_group)
    if costs[-1] > 0:
        a.sums, a.summed_steps = {}, 0
        where = f" (here: {failure})" if failure else ""
        raise ValueError(f"cdl.ddp: measuring the adaptive candidates at step {state.step} "
                         f"failed on {int(costs[-1])} rank(s){where}")
    grid[:, :, 1:] /= w
    return grid


def _replan(state):
    a = state.adaptive
    keys = sorted(a.sums)
    costs = _costs(state, keys)
    # Rank 0's plan as [ok, feasible, error, budget, bytes, uniform bytes, uniform error,
    # choice...] in float64 (every field exact), then its error message if it failed.
    head = torch.zeros(7 + len(keys), dtype=torch.float64)
    message = torch.zeros(_MESSAGE_BYTES, dtype=torch.uint8)
    if state.rank == 0:
        try:
            plan = _cdl.plan_rates(*_planner_inputs(a, keys, costs, state.world_size), a.alpha,
                                   a.buckets)
            feasible, choice, error, budget, size, uniform_bytes, uniform_error = plan
            head[:7] = torch.tensor([1, feasible, error, budget, size, uniform_bytes,
                                     uniform_error], dtype=torch.float64)
            head[7:] = torch.tensor(choice, dtype=torch.float64)
        except ValueError as e:
            text = str(e).encode()[:_MESSAGE_BYTES]
            message[:len(text)] = torch.tensor(list(text), dtype=torch.uint8)
    dist.broadcast(head, group=state.process_group, group_src=0)
    a.sums, a.summed_steps = {}, 0
    if head[0] != 1:
        dist.broadcast(message, group=state.process_group, group_src=0)
        text = bytes(message.tolist()).rstrip(b"\0").decode(errors="replace")
        raise ValueError(f"cdl.ddp: the adaptive plan at step {state.step} failed on rank 0: "
                         f"{text}")
    v = head.tolist()
    a.report = {"step": state.step, "feasible": bool(v[1]), "budget": v[3], "error": v[2],
                "uniform_error": v[6], "bytes": int(v[4]), "uniform_bytes": int(v[5]),
                "layers": {k: a.candidates[int(c)] for k, c in zip(keys, v[7:])}}
    a.plan = dict(a.report["layers"])


_MESSAGE_BYTES = 1024


def _planner_inputs(a, keys, costs, world):
    """planRates' errors, bytes, validity (on every rank) and defaults from the mean costs."""
    valid = (costs[:, :, 0] == world).tolist()
    errors = costs[:, :, 1].tolist()
    sizes = [[int(round(b)) for b in row] for row in costs[:, :, 2].tolist()]
    default = a.candidates.index(a.uniform)
    return errors, sizes, valid, [default] * len(keys)
