"""PowerSGD inside cdl's DDP hook (Note [PowerSGD in the hook])."""

import time

import torch
import torch.distributed as dist

from cdl import _cdl

# Note [PowerSGD in the hook]
# A bucket is reduced as cdl's Reducer reduces a PowerSGD bucket (comm/reduce/reducer.h): each
# parameter as a rows x cols matrix (its first dimension by the rest, a scalar 1 x 1) with a
# PowerSgdState of its own, keyed by the parameter's key (the order in which the hook first saw
# it: its position in DDP's first bucket). The arithmetic is cdl's C++, phase by phase (Note
# [PowerSGD phases] in comm/reduce/powersgd.h); the hook runs the collectives over the process
# group: one allreduce of every compressed parameter's P, one of their Q, and one of the
# parameters PowerSGD does not compress (vectors, matrices too small to gain: their residual
# folded in, then averaged with cdl's averageOverRanks). A tensor's factors are drawn from
# powerSgdSeed(state seed, key), as the Reducer draws them from its registration index. Sums of
# two floats do not depend on their order, so with 2 ranks the result is the C++ scheme's bit for
# bit; with more, the group's summation order may differ from cdl's ring in the last bits.


def matrix_shape(shape):
    """(rows, cols) of a tensor of this shape: its first dimension by the rest; a scalar 1 x 1."""
    if len(shape) == 0:
        return 1, 1
    cols = 1
    for d in shape[1:]:
        cols *= int(d)
    return int(shape[0]), cols


def state_of(state, key, rows, cols):
    """The PowerSgdState of parameter `key`, made on first use; a saved state of another shape is
    a ValueError naming the parameter and both shapes."""
    entry = state.powersgd.get(key)
    if entry is None:
        entry = state.powersgd[key] = (rows, cols, _cdl.PowerSgdState(f"parameter {key}", rows,
                                                                     cols))
    elif entry[:2] != (rows, cols):
        raise ValueError(f"cdl.ddp.hook: PowerSGD state of parameter {key} is for a "
                         f"{entry[0]}x{entry[1]} matrix, the gradient is {rows}x{cols}; was the "
                         f"model changed since the state was saved?")
    return entry[2]


def _all_reduce_split(state, parts):
    """parts summed over the group in one allreduce; the sums, split as parts were."""
    flat = torch.cat(parts)
    dist.all_reduce(flat, group=state.process_group)
    return list(torch.split(flat, [p.numel() for p in parts]))


def reduce_tensors(state, tensors, rank, t):
    """Averages the gradients of `tensors` ((key, rows, cols, flat view) each) in place with
    PowerSGD at `rank`, with error feedback, adding its costs to the totals t."""
    w = state.world_size
    t0 = time.perf_counter()
    compressed, plain = [], []
    for key, rows, cols, g in tensors:
        s = state_of(state, key, rows, cols)
        if _cdl.powersgd_compresses(rows, cols, rank):
            compressed.append((key, rows, cols, g, s))
        else:
            s.fold_residual(g, True)
            plain.append(g)
    ps = [s.local_p(g, rank, _cdl.powersgd_seed(state.seed, key), True)
          for key, _, _, g, s in compressed]
    wire = 0.0
    t1 = time.perf_counter()
    if ps:
        ps = _all_reduce_split(state, ps)
        t2 = time.perf_counter()
        qs = [s.local_q(g, p) for (_, _, _, g, s), p in zip(compressed, ps)]
        t3 = time.perf_counter()
        qs = _all_reduce_split(state, qs)
        t4 = time.perf_counter()
        for (_, _, _, g, s), q in zip(compressed, qs):
            s.finish(g, q, w, True)
        t["encode_seconds"] += t3 - t2
        t["wire_seconds"] += (t2 - t1) + (t4 - t3)
        t["decode_seconds"] += time.perf_counter() - t4
        wire += sum(4 * rank * (rows + cols) for _, rows, cols, _, _ in compressed)
    if plain:
        t5 = time.perf_counter()
        sums = _all_reduce_split(state, plain)
        t6 = time.perf_counter()
        for g, s in zip(plain, sums):
            g.copy_(s)
            _cdl.average(g, w)
        t["wire_seconds"] += t6 - t5
        t["decode_seconds"] += time.perf_counter() - t6
        wire += sum(4 * g.numel() for g in plain)
    t["encode_seconds"] += t1 - t0
    t["bytes_sent"] += int(2 * (w - 1) * wire // w)


def state_dict(state):
    """Every parameter's PowerSGD state: {key: {rows, cols, rank, q, residual}}."""
    out = {}
    for key, (rows, cols, s) in state.powersgd.items():
        rank, q, residual = s.snapshot()
        out[key] = {"rows": rows, "cols": cols, "rank": rank, "q": q, "residual": residual}
    return out


def load_state_dict(state, saved):
    """Restores state_dict()'s output; a damaged entry is a ValueError naming the parameter."""
    loaded = {}
    for key, e in saved.items():
        key, rows, cols = int(key), int(e["rows"]), int(e["cols"])
        s = _cdl.PowerSgdState(f"parameter {key}", rows, cols)
        s.restore(int(e["rank"]), e["q"].detach().to("cpu", torch.float32).contiguous(),
                  e["residual"].detach().to("cpu", torch.float32).contiguous())
        loaded[key] = (rows, cols, s)
    state.powersgd = loaded
