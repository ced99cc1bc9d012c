"""A DDP communication hook that compresses gradients with cdl's codecs.

    state = cdl.ddp.HookState(process_group, codec="qsgd:bits=4,entropy=rans")
    model.register_comm_hook(state, cdl.ddp.hook)

codec is a cdl scheme spec: a codec or "powersgd:rank=R"; adaptive={"alpha": 1.0, ...} plans a
scheme per parameter with cdl's L-GreCo planner (Note [Adaptive rates in the hook]).

Each bucket's flat gradient goes through cdl's compressed allreduce (Note [Compressed allreduce]
in comm/reduce/compressed_allreduce.h), with the payloads moved over the process group itself:

- summable codecs (qsgd, fp16, bf16): x + residual is cut into one chunk per rank (on the
  codec's alignment), chunk j encoded for rank j (the residual keeps what that encoding lost),
  exchanged with all_to_all_single; rank j sums its chunk's payloads in rank order, re-encodes
  the sum, and every rank all_gathers and decodes the same bytes, so replicas stay identical;
- gather-only codecs (topk): one payload per rank, all_gathered and summed in rank order;
- "none": the group's own allreduce of fp32;
- "powersgd:rank=R": cdl's PowerSGD per parameter (Note [PowerSGD in the hook], cdl/_powersgd.py).

The encoding, summing and averaging are cdl's C++ functions (Note [Compressed chunks]), with
cdl's chunk boundaries and rounding keys (kernels::roundingKey(seed, step, bucket)), so the result
is bit for bit what cdl's C++ compressedAllreduce gives on the same inputs in one segment, and with
nearest rounding in any segment size. Collectives are issued from the hook in DDP's bucket order;
the returned future is already complete.

Residuals, the step counter and DDP's bucket layout are per rank: state_dict() of every rank goes
into that rank's checkpoint, and load_state_dict() restores it, so that a resumed run goes on
exactly (Note [Buckets across a resume]).
"""

import time
import warnings

import torch
import torch.distributed as dist

from cdl import _adaptive
from cdl import _cdl
from cdl import _powersgd

_STATE_VERSION = 2
_READS_VERSIONS = (1, 2)


class HookState:
    """The state of cdl's DDP hook on one rank: the scheme (a codec spec or "powersgd:rank=R"),
    error-feedback residuals per bucket (PowerSGD and adaptive rates: their state per parameter),
    the planner (adaptive), the step counter that seeds stochastic rounding, and the statistics
    of stats()."""

    def __init__(self, process_group=None, codec="qsgd:bits=4,entropy=rans", seed=0,
                 adaptive=None):
        self.process_group = process_group
        self.world_size = dist.get_world_size(process_group)
        self.rank = dist.get_rank(process_group)
        kind, self.spec, rank = _cdl.parse_scheme(codec)
        self.powersgd_rank = rank if kind == "powersgd" else 0
        self.codec = None if self.powersgd_rank else _cdl.Codec(self.spec)
        self.powersgd = {}  # parameter key -> (rows, cols, _cdl.PowerSgdState)
        self._keys = {}  # id(parameter) -> key: the order the hook first saw it
        # L-GreCo's planner (Note [Adaptive rates in the hook]) and its per-parameter state.
        self.adaptive = None if adaptive is None else _adaptive.Adaptive(adaptive, self.spec)
        self.param_residuals = {}
        self._shapes = {}
        self._codecs = {}
        self.seed = int(seed)
        self.step = 0
        self.residuals = {}
        self.layout = {}  # Note [Buckets across a resume]
        self._positions = {}
        self._checked = {}
        self._loaded = set()
        self._totals = {"steps": 0, "bytes_sent": 0, "fp32_bytes": 0, "encode_seconds": 0.0,
                        "decode_seconds": 0.0, "wire_seconds": 0.0, "hook_seconds": 0.0}

    def state_dict(self):
        """What a checkpoint needs to resume the hook exactly: this rank's residuals, the step
        counter and the bucket layout (with the codec, seed, rank and world size they belong
        to)."""
        return {"version": _STATE_VERSION, "codec": self.spec, "seed": self.seed,
                "rank": self.rank, "world_size": self.world_size, "step": self.step,
                "residuals": {i: r.clone() for i, r in self.residuals.items()},
                "layout": {i: list(w) for i, w in self.layout.items()},
                "powersgd": _powersgd.state_dict(self),
                "param_residuals": {k: r.clone() for k, r in self.param_residuals.items()},
                "adaptive": self.adaptive.state_dict() if self.adaptive else None}

    def load_state_dict(self, state):
        """Restores state_dict()'s output. A state of another world size, rank, codec or format is
        a ValueError naming both sides (residuals are per rank: load each rank's own)."""
        if state.get("version") not in _READS_VERSIONS:
            raise ValueError(f"cdl hook state: format version {state.get('version')!r}, this "
                             f"cdl reads {', '.join(map(str, _READS_VERSIONS))}")
        for key, mine in (("world_size", self.world_size), ("rank", self.rank),
                          ("codec", self.spec)):
            if state[key] != mine:
                raise ValueError(f"cdl hook state: saved with {key} {state[key]!r}, loaded with "
                                 f"{key} {mine!r}; load each rank's own state into the same "
                                 f"job layout and codec")
        saved = state.get("adaptive")
        mine = self.adaptive.config() if self.adaptive else None
        if (saved and saved["config"]) != mine:
            raise ValueError(f"cdl hook state: saved with adaptive {saved and saved['config']!r}, "
                             f"loaded with adaptive {mine!r}")
        # First what validates (a damaged PowerSGD state is a ValueError naming the parameter).
        _powersgd.load_state_dict(self, state.get("powersgd", {}))
        self.seed = int(state["seed"])
        self.step = int(state["step"])
        self.residuals = {int(i): r.detach().to("cpu", torch.float32).clone()
                          for i, r in state["residuals"].items()}
        self.layout = {int(i): [int(p) for p in w] for i, w in state.get("layout", {}).items()}
        if saved:
            self.adaptive.load_state_dict(saved)
        self.param_residuals = {int(k): r.detach().to("cpu", torch.float32).clone()
                                for k, r in state.get("param_residuals", {}).items()}
        self._loaded = set(self.residuals)
        self._checked = {}

    def stats(self):
        """What the hook did, in total and per step (a step ends at DDP's last bucket):
        bytes this rank sent (payloads, size exchanges and all_gather padding), what a ring
        allreduce of fp32 would have sent, their ratio, and the seconds spent encoding (with
        error feedback), decoding (with summing) and in the collectives; hook_seconds is all the
        time inside the hook, so the rest of it is the Python around them (and the planner's)."""
        t = dict(self._totals)
        steps = max(t["steps"], 1)
        t["compression_ratio"] = t["fp32_bytes"] / t["bytes_sent"] if t["bytes_sent"] else 0.0
        for k in ("bytes_sent", "fp32_bytes", "encode_seconds", "decode_seconds",
                  "wire_seconds", "hook_seconds"):
            t[k + "_per_step"] = t[k] / steps
        t["codec"] = self.spec
        if self.adaptive:
            t["plan"] = self.adaptive.report
        return t

    def __getstate__(self):
        # Process groups do not pickle: a state pickled whole (torch.save(state)) takes the
        # default group when unpickled, as PyTorch's PowerSGD state does.
        s = self.state_dict()
        s["totals"] = dict(self._totals)
        return s

    def __setstate__(self, s):
        adaptive = s.get("adaptive")
        self.__init__(None, s["codec"], s["seed"], adaptive and adaptive["config"])
        self.load_state_dict(s)
        self._totals.update(s["totals"])


def _begin_bucket(state, index, x):
    """Checks the bucket, on the first sight of its index and size, against every rank's: each
    rank raises the same error, so none waits for the others in a collective."""
    usable = x.dtype == torch.float32 and x.device.type == "cpu"
    n = x.numel()
    if usable and state._checked.get(index) == n:
        return
    every = _all_gather_facts(state, n, usable)
    bad = [r for r, e in enumerate(every) if not e[3]]
    if bad:
        raise TypeError(f"cdl.ddp.hook: bucket {index} is not float32 on the CPU on rank(s) "
                        f"{', '.join(map(str, bad))} (here: {x.dtype} on {x.device}); the hook "
                        f"reduces float32 CPU buckets (a float32 CPU model, gloo)")
    for col, what, advice in ((0, "size", "every rank must build the same model and buckets"),
                              (1, "step", "load every rank's hook state from one checkpoint"),
                              (2, "codec", "every rank must use the same codec spec")):
        values = [e[col] for e in every]
        if len(set(values)) > 1:
            ranks = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            raise ValueError(f"cdl.ddp.hook: bucket {index} differs across ranks in {what} "
                             f"({ranks}); {advice}")
    res = state.residuals.get(index)
    if res is not None and res.numel() != n:
        # DDP rebuilds its buckets after the first step; a residual of another layout is dropped.
        if index in state._loaded:
            warnings.warn(f"cdl.ddp.hook: bucket {index} has {n} elements, its loaded residual "
                          f"{res.numel()}: the residual is dropped, the resume is not exact")
        del state.residuals[index]
    state._loaded.discard(index)
    state._checked[index] = n


def _all_gather_facts(state, n, usable):
    """(bucket size, step, codec spec, whether the bucket is usable) of every rank."""
    spec = torch.tensor(list(_facts_spec(state).encode()), dtype=torch.uint8)
    facts = torch.tensor([n, state.step, int(usable)], dtype=torch.int64)
    every = [torch.empty_like(facts) for _ in range(state.world_size)]
    dist.all_gather(every, facts, group=state.process_group)
    specs, offsets, lens, _ = _all_gather_bytes(state, spec)
    return [(int(f[0]), int(f[1]), bytes(specs[o:o + k].tolist()).decode(), bool(f[2]))
            for f, o, k in zip(every, offsets, lens)]


def _facts_spec(state):
    """The scheme every rank must share: the spec, and the planner's options when adaptive."""
    if state.adaptive is None:
        return state.spec
    return f"{state.spec} adaptive {state.adaptive.config()}"


def _sizes_exchange(state, sizes):
    """all_to_all of the G int64 sizes each rank sends each other rank (sizes[j][g], G the same
    for every j): what each rank sends here, recv[j][g]."""
    g = len(sizes[0])
    send = torch.tensor(sizes, dtype=torch.int64).flatten()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=state.process_group)
    flat = recv.tolist()
    return [flat[j * g:(j + 1) * g] for j in range(state.world_size)]


def _all_gather_parts(state, parts):
    """Every rank's uint8 payloads (one or more parts back to back; lengths may differ), padded
    to the longest rank's, as one buffer with each rank's parts' offsets and sizes
    (offsets[r][g], lens[r][g]); and the bytes this rank sent."""
    w = state.world_size
    mine = torch.tensor([p.numel() for p in parts], dtype=torch.int64)
    every = [torch.empty_like(mine) for _ in range(w)]
    dist.all_gather(every, mine, group=state.process_group)
    lens = [t.tolist() for t in every]
    longest = max(sum(row) for row in lens)
    padded = torch.zeros(longest, dtype=torch.uint8)
    padded[:int(mine.sum())] = torch.cat(parts) if parts else padded[:0]
    out = [torch.empty(longest, dtype=torch.uint8) for _ in range(w)]
    dist.all_gather(out, padded, group=state.process_group)
    sent = (w - 1) * (longest + 8 * len(parts))
    offsets = [[r * longest + o for o in _offsets(row)] for r, row in enumerate(lens)]
    return torch.cat(out), offsets, lens, sent


def _all_gather_bytes(state, payload):
    """_all_gather_parts of one payload: the buffer, each rank's offset and size, bytes sent."""
    everyone, offsets, lens, sent = _all_gather_parts(state, [payload])
    return everyone, [o[0] for o in offsets], [n[0] for n in lens], sent


def _offsets(sizes):
    out, at = [], 0
    for s in sizes:
        out.append(at)
        at += s
    return out


def _scatter_reduce(state, items, t):
    """Averages every (codec, x, residual, key) of items (summable codecs) in place, as one
    exchange: each rank's chunks of every item go to their owner in one all_to_all (one size per
    item and rank beforehand), and the owners' re-encoded sums come back in one all_gather, so a
    bucket of many schemes costs the collectives of one. Each item's bytes and result are what
    it would give alone."""
    w, rank = state.world_size, state.rank
    t0 = time.perf_counter()
    encoded = [codec.encode_chunks(x, res, key, rank, w) for codec, x, res, key in items]
    sizes = [[sz[j] for _, sz in encoded] for j in range(w)]  # sizes[j][g]: item g's chunk for j
    chunk_at = [_offsets(sz) for _, sz in encoded]
    send = torch.cat([buf[at[j]:at[j] + sz[j]]
                      for j in range(w) for (buf, sz), at in zip(encoded, chunk_at)])
    t1 = time.perf_counter()
    recv_sizes = _sizes_exchange(state, sizes)
    totals = [sum(row) for row in recv_sizes]
    recv = torch.empty(sum(totals), dtype=torch.uint8)
    dist.all_to_all_single(recv, send, output_split_sizes=totals,
                           input_split_sizes=[sum(row) for row in sizes],
                           group=state.process_group)
    t2 = time.perf_counter()
    starts = _offsets(totals)
    for g, (codec, x, _, _) in enumerate(items):
        offsets = [starts[j] + sum(recv_sizes[j][:g]) for j in range(w)]
        codec.sum_chunk(recv, offsets, [recv_sizes[j][g] for j in range(w)], x, rank, w)
    t3 = time.perf_counter()
    reduced = [codec.encode_own_chunk(x, key, rank, w) for codec, x, _, key in items]
    t4 = time.perf_counter()
    everyone, offsets, lens, sent = _all_gather_parts(state, reduced)
    t5 = time.perf_counter()
    for g, (codec, x, _, _) in enumerate(items):
        codec.decode_chunks(everyone, [o[g] for o in offsets], [n[g] for n in lens], x, w, True)
    t6 = time.perf_counter()
    t["bytes_sent"] += sum(sum(row) for row in sizes) - sum(sizes[rank]) + \
        8 * len(items) * (w - 1) + sent
    t["encode_seconds"] += (t1 - t0) + (t4 - t3)
    t["wire_seconds"] += (t2 - t1) + (t5 - t4)
    t["decode_seconds"] += (t3 - t2) + (t6 - t5)


def _gather(state, codec, x, residual, key, t):
    w, rank = state.world_size, state.rank
    t0 = time.perf_counter()
    payload = codec.encode_whole(x, residual, key, rank)
    t1 = time.perf_counter()
    everyone, offsets, lens, sent = _all_gather_bytes(state, payload)
    t2 = time.perf_counter()
    codec.decode_sum(everyone, offsets, lens, x, w, True)
    t3 = time.perf_counter()
    t["bytes_sent"] += sent
    t["encode_seconds"] += t1 - t0
    t["wire_seconds"] += t2 - t1
    t["decode_seconds"] += t3 - t2


def _plain(state, x, residual, t):
    t0 = time.perf_counter()
    x.add_(residual)
    residual.zero_()
    t1 = time.perf_counter()
    dist.all_reduce(x, group=state.process_group)
    t2 = time.perf_counter()
    _cdl.average(x, state.world_size)
    t["bytes_sent"] += 2 * (state.world_size - 1) * 4 * x.numel() // state.world_size
    t["encode_seconds"] += t1 - t0
    t["wire_seconds"] += t2 - t1
    t["decode_seconds"] += time.perf_counter() - t2


def reduce_payloads(state, items):
    """Averages each (codec, x, residual, key) of items (x with residual added) over the group,
    in place: the summable codecs' in one exchange (_scatter_reduce), the others each alone."""
    t = state._totals
    summable = []
    for codec, x, residual, key in items:
        if codec.lossless:
            _plain(state, x, residual, t)
        elif codec.summable:
            summable.append((codec, x, residual, key))
        else:
            _gather(state, codec, x, residual, key, t)
    if summable:
        _scatter_reduce(state, summable, t)


def reduce_bucket(state, index, x, last=True, tensors=None):
    """Averages the flat float32 tensor x over the state's group in place, as the hook does
    with bucket `index`; `last` ends a step (the step counter advances). PowerSGD needs the
    bucket's tensors: (key, shape) each, back to back in x."""
    _begin_bucket(state, index, x)
    if state.powersgd_rank or state.adaptive:
        _reduce_tensors(state, index, x, tensors)
        if last:
            state.step += 1
            state._totals["steps"] += 1
            if state.adaptive:
                _adaptive.after_step(state)
        return x
    residual = state.residuals.get(index)
    if residual is None:
        residual = state.residuals[index] = torch.zeros_like(x)
    key = _cdl.rounding_key(state.seed, state.step, index)
    t = state._totals
    w = state.world_size
    t["fp32_bytes"] += 2 * (w - 1) * 4 * x.numel() // w
    reduce_payloads(state, [(state.codec, x, residual, key)])
    if last:
        state.step += 1
        t["steps"] += 1
    return x


# Note [Buckets across a resume]
# DDP reduces its first step as one bucket holding every parameter (in model order), then
# rebuilds its buckets in the order gradients became ready. A resumed run's DDP starts over, so
# its first step has one bucket where the checkpoint's residuals belong to the rebuilt ones. The
# state keeps the layout it saw: each bucket's parameters by their position in that first
# single bucket (state.layout, saved with the residuals). Given a single bucket and a layout of
# other buckets, the hook reduces the layout's buckets instead, each a copy of its parameters'
# gradients with its own index, residual and rounding key, and writes them back: the resumed
# step is then the one the uninterrupted run took. A layout that does not cover the bucket's
# parameters is not used (the residuals of other sizes are then dropped, with a warning).
# PowerSGD and adaptive rates keep their state per parameter, keyed by the same position; their
# per-bucket parts (a bucket's plain allreduce, an adaptive payload group and its rounding key)
# follow the layout's buckets too.


def _note_layout(state, index, params):
    """Records bucket `index`'s parameters by their position in DDP's first single bucket."""
    if not state._positions:
        return
    where = [state._positions.get(id(p)) for p in params]
    if params and None not in where:
        state.layout[index] = where


def _relayout(state, x, params):
    """Reduces the single bucket x as the buckets of state.layout (Note [Buckets across a
    resume]); False when the layout does not apply to it."""
    layout = state.layout
    covered = sorted(pos for where in layout.values() for pos in where)
    if len(layout) < 2 or covered != list(range(len(params))):
        return False
    views, at = [], 0
    for p in params:
        views.append(x[at:at + p.numel()])
        at += p.numel()
    if at != x.numel():
        return False
    indices = sorted(layout)
    for index in indices:
        flat = torch.cat([views[pos] for pos in layout[index]])
        tensors = [(pos, params[pos].shape) for pos in layout[index]]
        reduce_bucket(state, index, flat, index == indices[-1], tensors)
        at = 0
        for pos in layout[index]:
            views[pos].copy_(flat[at:at + views[pos].numel()])
            at += views[pos].numel()
    return True


def _reduce_tensors(state, index, x, tensors):
    if tensors is None:
        raise ValueError(f"cdl.ddp: bucket {index}: PowerSGD and adaptive rates need the "
                         f"bucket's tensors")
    views, at = [], 0
    for key, shape in tensors:
        rows, cols = _powersgd.matrix_shape(shape)
        views.append((int(key), rows, cols, x[at:at + rows * cols]))
        at += rows * cols
    if at != x.numel():
        raise ValueError(f"cdl.ddp: bucket {index} holds {x.numel()} elements, its tensors {at}")
    t = state._totals
    w = state.world_size
    t["fp32_bytes"] += 2 * (w - 1) * 4 * x.numel() // w
    if state.adaptive:
        _adaptive.reduce_tensors(state, index, views)
    else:
        _powersgd.reduce_tensors(state, views, state.powersgd_rank, t)


def hook(state, bucket):
    """DistributedDataParallel.register_comm_hook(state, cdl.ddp.hook): the bucket's gradient
    averaged over the group through cdl's codec, returned as a completed future."""
    t0 = time.perf_counter()
    x = bucket.buffer()
    params = list(bucket.parameters())
    single = bucket.index() == 0 and bucket.is_last()
    if single and not state._positions:
        state._positions = {id(p): i for i, p in enumerate(params)}
        if not state._keys:
            state._keys = dict(state._positions)
    if not (single and _relayout(state, x, params)):
        _note_layout(state, bucket.index(), params)
        tensors = None
        if state.powersgd_rank or state.adaptive:
            # A parameter's key: the order the hook first saw it (its position in DDP's first,
            # single bucket, as in state.layout).
            keys = [state._keys.setdefault(id(p), len(state._keys)) for p in params]
            tensors = [(k, p.shape) for k, p in zip(keys, params)]
        reduce_bucket(state, bucket.index(), x, bucket.is_last(), tensors)
    state._totals["hook_seconds"] += time.perf_counter() - t0
    fut = torch.futures.Future()
    fut.set_result(x)
    return fut
