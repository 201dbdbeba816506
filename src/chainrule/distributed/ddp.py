"""DistributedDataParallel: a model copy on every rank, its gradients averaged across ranks.

As in PyTorch:

- at construction every rank checks that it holds the same parameters (names, shapes and
  dtypes; a clear error names the first difference), then takes rank 0's parameters and
  buffers (a broadcast), so every copy starts equal;
- the trainable parameters are laid out in flat buckets of about ``bucket_cap_mb`` (25 MB),
  in the reverse order of ``parameters()`` (roughly the order backward produces them). Each
  parameter has a post-accumulate-grad hook (:meth:`Tensor.register_post_accumulate_grad_hook`);
  when the last gradient of a bucket is ready the bucket is copied into its flat buffer and a
  non-blocking all-reduce (``MPI_Iallreduce``) starts, while backward goes on with the other
  layers. When every bucket has started, the hook of the last one waits for all of them and
  writes the averages (sum / world size) back into ``p.grad``, so the gradients are averaged
  before the optimizer step;
- :meth:`no_sync` turns the all-reduce off for the backward passes of its forwards: the
  gradients accumulate locally and the first backward outside it reduces their sum;
- a parameter the forward did not use: with ``find_unused_parameters=True`` the forward walks
  the graph from its outputs and marks the parameters it cannot reach as ready at once (they
  contribute zeros, and a parameter no rank used keeps ``grad`` None); without it, the next
  forward after a backward (or :meth:`wait_for_gradients`) raises an error that names them.
  A forward that no backward follows leaves nothing pending.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from ..autograd import count_consumers
from ..autograd.grad_mode import is_grad_enabled
from ..nn.module import Module
from ..tensor import Tensor
from . import comm

DEFAULT_BUCKET_CAP_MB = 25.0


class CollectiveError(RuntimeError):
    """An error every rank finds in the same way (a mismatch between ranks): rank 0 reports
    it; the other ranks stop without repeating it."""

    every_rank = True


def _describe(sig):
    name, shape, dtype, trainable = sig
    return f"{name} {tuple(shape)} {dtype}{'' if trainable else ' (frozen)'}"


def check_same_parameters(module, where: str = "DistributedDataParallel") -> None:
    """CollectiveError unless every rank's ``module`` has the same parameter names, shapes,
    dtypes and requires_grad flags as rank 0's; the message names the first difference."""
    mine = [(n, tuple(p.shape), str(p.dtype), bool(p.requires_grad))
            for n, p in module.named_parameters()]
    everyone: list = []
    comm.all_gather_object(everyone, mine)
    ref = everyone[0]
    for rank, theirs in enumerate(everyone[1:], start=1):
        if theirs == ref:
            continue
        for i in range(max(len(ref), len(theirs))):
            a = ref[i] if i < len(ref) else None
            b = theirs[i] if i < len(theirs) else None
            if a != b:
                ra = _describe(a) if a else "nothing"
                rb = _describe(b) if b else "nothing"
                raise CollectiveError(
                    f"{where}: rank {rank}'s model differs from rank 0's at parameter {i}: "
                    f"rank 0 has {ra}, rank {rank} has {rb} ({len(ref)} and {len(theirs)} "
                    "parameters); every rank must build the same model")


class _Bucket:
    __slots__ = ("params", "offsets", "buf", "ready", "work", "nbytes")

    def __init__(self, params):
        self.params = params
        self.offsets, n = [], 0
        for p in params:
            self.offsets.append(n)
            n += p._data.size
        self.buf = np.empty(n, dtype=np.dtype(params[0]._data.dtype.name))
        self.nbytes = self.buf.nbytes
        self.ready = 0
        self.work = None


def _output_tensors(out):
    if isinstance(out, Tensor):
        yield out
    elif isinstance(out, (tuple, list)):
        for o in out:
            yield from _output_tensors(o)
    elif isinstance(out, dict):
        for o in out.values():
            yield from _output_tensors(o)


def _host(a):
    return a if isinstance(a, np.ndarray) else comm._to_host(a)


class DistributedDataParallel(Module):
    """Data parallelism with PyTorch's name and semantics (see the module docstring).

    ``module``: the model (every rank builds the same one); ``bucket_cap_mb``: the size of a
    gradient bucket; ``find_unused_parameters``: whether a forward may leave parameters out of
    the graph; ``broadcast_buffers``: rank 0's buffers go to every rank before each forward
    that will synchronize. ``device_ids``, ``output_device``, ``dim``, ``process_group``,
    ``check_reduction``, ``gradient_as_bucket_view`` and ``static_graph`` are accepted for
    PyTorch's signature and change nothing here (one process group, the world).

    ``stats``: what the all-reduces cost so far: ``steps`` (synchronized backward passes),
    ``bytes`` (gradient bytes reduced per rank), ``buckets``, and ``wait_s`` (seconds spent
    waiting for the all-reduces after the last bucket started: the communication backward
    did not hide).
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0,
                 broadcast_buffers=True, process_group=None, bucket_cap_mb=None,
                 find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected a Module, got "
                            f"{type(module).__name__}")
        if not comm.is_initialized():
            raise RuntimeError("DistributedDataParallel: the process group is not initialized; "
                               "call chainrule.distributed.init() first")
        cap = DEFAULT_BUCKET_CAP_MB if bucket_cap_mb is None else float(bucket_cap_mb)
        if not cap > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be > 0, got "
                             f"{bucket_cap_mb!r}")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.bucket_cap_mb = cap
        self.require_backward_grad_sync = True
        self.world_size = comm.get_world_size()
        check_same_parameters(module)
        for p in module.parameters():
            comm.broadcast(p._data, src=0)
        self._buffers_list = [b for _, b in module.named_buffers() if b is not None]
        for b in self._buffers_list:
            comm.broadcast(b._data, src=0)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("DistributedDataParallel: the module has no parameter that "
                             "requires grad")
        self._names = {id(p): n for n, p in named}
        self._buckets = self._make_buckets([p for _, p in reversed(named)], cap * 2**20)
        self._slot_of = {}
        for b in self._buckets:
            for i, p in enumerate(b.params):
                self._slot_of[id(p)] = (b, i)
        self._marked: set = set()
        self._sync_pass = False  # a synchronizing forward ran; its reduction is not done
        self._backward_seen = False  # ... and a backward pass has reached its parameters
        self._launched = 0
        self._used_map = None
        self._used_work = None
        self._index = {id(p): i for i, (_, p) in enumerate(named)}
        self.stats = {"steps": 0, "bytes": 0, "buckets": len(self._buckets), "wait_s": 0.0}
        self._handles = [p.register_post_accumulate_grad_hook(self._on_grad_ready)
                         for _, p in named]

    @staticmethod
    def _make_buckets(params, cap_bytes):
        buckets, current, size, dtype = [], [], 0, None
        for p in params:
            nbytes = p._data.nbytes
            if current and (p._data.dtype != dtype or size + nbytes > cap_bytes):
                buckets.append(_Bucket(current))
                current, size = [], 0
            current.append(p)
            size += nbytes
            dtype = p._data.dtype
        if current:
            buckets.append(_Bucket(current))
        return buckets

    # -- forward ---------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self._sync_pass and self._backward_seen:
            self._raise_unfinished("forward")
        sync = self.require_backward_grad_sync and is_grad_enabled()
        if sync and self.broadcast_buffers and self.world_size > 1:
            for b in self._buffers_list:
                comm.broadcast(b._data, src=0)
        out = self.module(*args, **kwargs)
        if sync:
            self._start_pass(out)
        return out

    def _start_pass(self, out):
        self._sync_pass, self._launched, self._backward_seen = True, 0, False
        self._marked.clear()
        for b in self._buckets:
            b.ready, b.work = 0, None
        if not self.find_unused_parameters:
            return
        roots = [t.grad_fn if t.grad_fn is not None else t
                 for t in _output_tensors(out) if t.requires_grad]
        reached = count_consumers(roots)
        reached.update((r, 1) for r in roots)
        used = np.zeros(len(self._index), dtype=np.int32)
        unused = []
        for b in self._buckets:
            for p in b.params:
                if p in reached:
                    used[self._index[id(p)]] = 1
                else:
                    unused.append(p)
        self._used_map = used
        self._used_work = comm.all_reduce(used, comm.ReduceOp.MAX, async_op=True)
        for p in unused:
            self._mark_ready(p)

    # -- backward: the hooks ---------------------------------------------------------------
    def _on_grad_ready(self, p):
        if self._sync_pass:
            self._backward_seen = True
            self._mark_ready(p)

    def _mark_ready(self, p):
        key = id(p)
        if key in self._marked:
            raise RuntimeError(
                f"DistributedDataParallel: parameter {self._names[key]!r} got a gradient twice "
                "in one synchronized iteration (two backward passes after one forward?); call "
                "backward once per forward, or run the earlier ones under no_sync()")
        self._marked.add(key)
        bucket, _ = self._slot_of[key]
        bucket.ready += 1
        for b in self._buckets:  # give MPI a chance to progress the ones in flight
            if b.work is not None:
                b.work.is_completed()
        if bucket.ready == len(bucket.params):
            self._launch(bucket)
            self._launched += 1
            if self._launched == len(self._buckets):
                self._finish()

    def _launch(self, bucket):
        buf = bucket.buf
        for p, off in zip(bucket.params, bucket.offsets):
            n = p._data.size
            if p.grad is None:
                buf[off:off + n] = 0
            else:
                buf[off:off + n] = _host(p.grad._data).reshape(-1)
        bucket.work = comm.all_reduce(buf, comm.ReduceOp.SUM, async_op=True)

    def _finish(self):
        t0 = time.perf_counter()
        for b in self._buckets:
            b.work.wait()
        used = None
        if self._used_work is not None:
            self._used_work.wait()
            used = self._used_map
        self.stats["wait_s"] += time.perf_counter() - t0
        inv = 1.0 / self.world_size
        for b in self._buckets:
            buf = b.buf
            if self.world_size > 1:
                buf *= inv
            for p, off in zip(b.params, b.offsets):
                if used is not None and not used[self._index[id(p)]]:
                    continue  # no rank used it: grad stays as it is (None)
                g = buf[off:off + p._data.size].reshape(p._data.shape)
                if p.grad is None or p.grad.requires_grad:
                    arr = g.copy()
                    if not isinstance(p._data, np.ndarray):
                        arr = comm._from_host(arr, p._data)
                    p.grad = Tensor._wrap(arr)
                else:
                    p.grad._data[...] = g if isinstance(p.grad._data, np.ndarray) else \
                        comm._from_host(g, p.grad._data)
            self.stats["bytes"] += b.nbytes
        self.stats["steps"] += 1
        self._sync_pass = False
        self._used_work = self._used_map = None

    def _raise_unfinished(self, where):
        missing = [self._names[id(p)] for b in self._buckets for p in b.params
                   if id(p) not in self._marked]
        missing.reverse()  # in the order of parameters()
        self._sync_pass = False
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")
        raise RuntimeError(
            f"DistributedDataParallel.{where}: the gradients of the last synchronized "
            f"iteration were not reduced: {len(missing)} parameter(s) got no gradient in "
            f"backward ({shown}). If the forward does not use every parameter, pass "
            "find_unused_parameters=True; if backward was not called, call it (or run the "
            "forward under no_grad() or no_sync())")

    def wait_for_gradients(self) -> None:
        """Make sure the last synchronized backward pass has reduced every gradient (before
        clipping and the optimizer step); an error names the parameters that got none."""
        if self._sync_pass and self._backward_seen:
            self._raise_unfinished("wait_for_gradients")

    @contextlib.contextmanager
    def no_sync(self):
        """Forwards inside skip the all-reduce in their backward passes: the gradients
        accumulate locally, and the next synchronized backward reduces their sum."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    def remove_hooks(self) -> None:
        """Take the gradient hooks off the parameters (the module is then free of DDP)."""
        for h in self._handles:
            h.remove()
        self._handles = []


__all__ = ["DistributedDataParallel", "CollectiveError", "check_same_parameters",
           "DEFAULT_BUCKET_CAP_MB"]
