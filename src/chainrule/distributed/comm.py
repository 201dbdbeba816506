"""Processes and collectives on MPI (through mpi4py), with PyTorch's names.

One process needs no MPI at all: :func:`init` then gives world size 1 and rank 0, and every
collective returns at once. Under ``mpiexec -n N`` (N > 1) mpi4py is required, and the
collectives move the tensors' arrays through mpi4py's buffer interface (the uppercase
methods: no pickling of arrays). Arrays that are not NumPy (CuPy) travel through host
buffers.

An exception that leaves a rank ends every rank: :func:`init` installs an exception hook that
prints the error once, prefixed with the rank, and calls ``MPI_Abort``, so no rank waits
forever in a collective.
"""

from __future__ import annotations

import os
import sys
import time
from enum import Enum

import numpy as np

from ..tensor import Tensor

_LAUNCH_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE")


class ReduceOp(Enum):
    """The reductions of :func:`all_reduce` (PyTorch's names). AVG is SUM divided by the
    world size."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"


class _State:
    initialized = False
    comm = None  # the mpi4py communicator, None on a single process without MPI
    rank = 0
    size = 1
    abort_installed = False


_state = _State()


def launched_size() -> int:
    """How many processes the launcher (mpiexec) started, read from its environment; 1 when
    this process was not started by an MPI launcher."""
    for var in _LAUNCH_SIZE_VARS:
        v = os.environ.get(var)
        if v and v.isdigit():
            return int(v)
    return 1


def is_available() -> bool:
    """Whether mpi4py can be imported (it is the only backend)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def init(backend: str = "mpi", abort_on_error: bool = True) -> None:
    """Join the process group: rank and world size from MPI. Outside ``mpiexec`` (no launcher
    in the environment: ``PMI_SIZE``, ``OMPI_COMM_WORLD_SIZE``, ...; ``CHAINRULE_MPI=1``
    forces MPI for other launchers) a single process of rank 0 in a world of 1, which does not
    load MPI at all. Idempotent.

    ``abort_on_error``: an uncaught exception on any rank prints it once, with the rank, and
    aborts every rank (``MPI_Abort``) instead of leaving the others waiting."""
    if backend not in ("mpi", "auto"):
        raise ValueError(f"distributed.init: backend must be 'mpi', got {backend!r}")
    if _state.initialized:
        return
    n = launched_size()
    MPI = None
    if n > 1 or os.environ.get("CHAINRULE_MPI") == "1":
        try:
            from mpi4py import MPI
        except ImportError:
            if n > 1:
                raise RuntimeError(
                    f"distributed.init: the launcher started {n} processes, but mpi4py is not "
                    "installed; install it with pip install 'chainrule[mpi]'") from None
    if MPI is not None:
        comm = MPI.COMM_WORLD
        _state.comm = comm if comm.Get_size() > 1 else None
        _state.rank, _state.size = comm.Get_rank(), comm.Get_size()
    _state.initialized = True
    if abort_on_error and _state.size > 1:
        _install_abort_hook()


init_process_group = init


def _require_init(where: str) -> None:
    if not _state.initialized:
        raise RuntimeError(f"distributed.{where}: the process group is not initialized; call "
                           "chainrule.distributed.init() first")


def is_initialized() -> bool:
    return _state.initialized


def get_rank() -> int:
    """This process's rank, 0 to world size - 1."""
    _require_init("get_rank")
    return _state.rank


def get_world_size() -> int:
    """How many processes take part."""
    _require_init("get_world_size")
    return _state.size


def is_main_process() -> bool:
    """True on rank 0 (and on a single process, initialized or not)."""
    return _state.rank == 0


def destroy_process_group() -> None:
    """Leave the process group (MPI itself is finalized when the process exits)."""
    _state.initialized, _state.comm, _state.rank, _state.size = False, None, 0, 1


# ----------------------------------------------------------------------------- failures


def abort(message: str, code: int = 1) -> None:
    """Print ``message`` prefixed with the rank and end every rank (``MPI_Abort``)."""
    sys.stdout.flush()
    print(f"[rank {_state.rank} of {_state.size}] {message}", file=sys.stderr, flush=True)
    if _state.comm is not None:
        _state.comm.Abort(code)
    raise SystemExit(code)


def abort_on(exc: BaseException, prefix: str = "", traceback: bool = True) -> None:
    """End every rank because of ``exc``: print it once (its traceback, or with
    ``traceback=False`` one line ``prefix + message``) and call ``MPI_Abort``. An error that
    every rank finds alike (``exc.every_rank``) is printed by rank 0 alone."""
    if getattr(exc, "every_rank", False) and _state.rank != 0 and _state.comm is not None:
        time.sleep(5.0)  # rank 0 found the same error and aborts for everyone; a fallback
        sys.stderr.flush()
        _state.comm.Abort(1)
    if traceback:
        import traceback as tb

        text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
        abort(f"{prefix}error, stopping all {_state.size} ranks:\n{text}", 1)
    abort(f"{prefix}error: {exc} (stopping all {_state.size} ranks)", 1)


def _install_abort_hook() -> None:
    if _state.abort_installed:
        return
    _state.abort_installed = True
    previous = sys.excepthook

    def on_error(kind, value, tb):
        if _state.comm is None or issubclass(kind, SystemExit):
            return previous(kind, value, tb)
        abort_on(value)

    sys.excepthook = on_error


# ----------------------------------------------------------------------------- collectives


def _as_op(op) -> ReduceOp:
    if isinstance(op, str) and op.upper() in ReduceOp.__members__:
        op = ReduceOp[op.upper()]
    if not isinstance(op, ReduceOp):
        raise TypeError(f"distributed.all_reduce: op must be a ReduceOp (SUM, AVG, PRODUCT, MIN, "
                        f"MAX, BAND, BOR, BXOR), got {op!r}")
    return op


def _mpi_op(op: ReduceOp):
    from mpi4py import MPI

    return {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
            ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX, ReduceOp.BAND: MPI.BAND,
            ReduceOp.BOR: MPI.BOR, ReduceOp.BXOR: MPI.BXOR}[op]


def _array(t, where: str):
    if isinstance(t, Tensor):
        return t._data
    if isinstance(t, np.ndarray):
        return t
    raise TypeError(f"distributed.{where}: expected a Tensor (or a NumPy array), got "
                    f"{type(t).__name__}")


class _Staged:
    """A C-contiguous NumPy buffer for an array, and how to put the result back."""

    def __init__(self, arr):
        self.arr = arr
        self.host = isinstance(arr, np.ndarray)
        buf = arr if self.host else _to_host(arr)
        self.copied = not (buf.flags.c_contiguous and buf.flags.writeable)
        self.buf = np.ascontiguousarray(buf).copy() if self.copied else buf

    def finish(self, scale=None):
        if scale is not None:
            self.buf /= scale
        if self.copied or not self.host:
            self.arr[...] = self.buf if self.host else _from_host(self.buf, self.arr)


def _to_host(arr):
    get = getattr(arr, "get", None)
    return get() if get is not None else np.asarray(arr)


def _from_host(buf, like):
    import importlib

    xp = importlib.import_module(type(like).__module__.split(".")[0])
    return xp.asarray(buf)


class Work:
    """A collective in flight (``async_op=True``): ``wait()`` ends it and puts the result in
    place; ``is_completed()`` asks without waiting. ``wait_s``: seconds spent in ``wait``."""

    def __init__(self, request=None, finish=None):
        self._request, self._finish, self._done = request, finish, request is None
        self.wait_s = 0.0
        if self._done and finish is not None:
            finish()

    def is_completed(self) -> bool:
        if not self._done and self._request.Test():
            self._complete()
        return self._done

    def wait(self, timeout=None) -> bool:
        if not self._done:
            t0 = time.perf_counter()
            self._request.Wait()
            self.wait_s += time.perf_counter() - t0
            self._complete()
        return True

    def _complete(self):
        self._done = True
        if self._finish is not None:
            self._finish()


def _single(where: str) -> bool:
    _require_init(where)
    return _state.comm is None


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``tensor`` across every rank, in place (every rank gets the result)."""
    arr = _array(tensor, "all_reduce")
    op = _as_op(op)
    if _single("all_reduce"):
        return Work() if async_op else None
    from mpi4py import MPI

    mop = _mpi_op(op)
    avg = op is ReduceOp.AVG
    if avg and arr.dtype.kind not in "fc":
        raise TypeError(f"distributed.all_reduce: ReduceOp.AVG needs a floating tensor, got "
                        f"{arr.dtype}")
    s = _Staged(arr)

    def finish():
        s.finish(_state.size if avg else None)

    if async_op:
        return Work(_state.comm.Iallreduce(MPI.IN_PLACE, s.buf, op=mop), finish)
    _state.comm.Allreduce(MPI.IN_PLACE, s.buf, op=mop)
    finish()
    return None


def broadcast(tensor, src: int = 0, group=None, async_op=False):
    """Every rank's ``tensor`` gets rank ``src``'s values, in place."""
    arr = _array(tensor, "broadcast")
    if _single("broadcast"):
        if src != 0:
            raise ValueError(f"distributed.broadcast: src must be a rank of 0 to 0, got {src}")
        return Work() if async_op else None
    if not 0 <= src < _state.size:
        raise ValueError(f"distributed.broadcast: src must be a rank of 0 to {_state.size - 1}, "
                         f"got {src}")
    s = _Staged(arr)
    if async_op:
        return Work(_state.comm.Ibcast(s.buf, root=src), s.finish)
    _state.comm.Bcast(s.buf, root=src)
    s.finish()
    return None


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """``tensor_list[r]`` gets rank r's ``tensor`` (same shape and dtype on every rank)."""
    arr = _array(tensor, "all_gather")
    n = 1 if _single("all_gather") else _state.size
    if not isinstance(tensor_list, list) or len(tensor_list) != n:
        raise ValueError(f"distributed.all_gather: tensor_list must be a list of {n} tensors "
                         f"(the world size), got {type(tensor_list).__name__} of "
                         f"{len(tensor_list) if isinstance(tensor_list, list) else '?'}")
    outs = [_array(t, "all_gather") for t in tensor_list]
    for o in outs:
        if o.shape != arr.shape or o.dtype != arr.dtype:
            raise ValueError(f"distributed.all_gather: every tensor of tensor_list must have "
                             f"shape {tuple(arr.shape)} and dtype {arr.dtype}, got "
                             f"{tuple(o.shape)} {o.dtype}")
    send = np.ascontiguousarray(_to_host(arr))
    recv = np.empty((n,) + send.shape, dtype=send.dtype)

    def finish():
        for o, r in zip(outs, recv):
            o[...] = r if isinstance(o, np.ndarray) else _from_host(r, o)

    if n == 1:
        recv[0] = send
        return Work(None, finish) if async_op else finish()
    if async_op:
        return Work(_state.comm.Iallgather(send, recv), finish)
    _state.comm.Allgather(send, recv)
    finish()
    return None


def barrier(group=None) -> None:
    """Wait until every rank reaches this point."""
    if not _single("barrier"):
        _state.comm.Barrier()


def all_gather_object(object_list: list, obj, group=None) -> None:
    """``object_list[r]`` gets rank r's ``obj`` (pickled: for small Python values such as
    configs, never for arrays)."""
    if _single("all_gather_object"):
        object_list[:] = [obj]
        return
    object_list[:] = _state.comm.allgather(obj)


def broadcast_object_list(object_list: list, src: int = 0, group=None) -> None:
    """Every rank's ``object_list`` gets rank ``src``'s items (pickled, small values only)."""
    if _single("broadcast_object_list"):
        return
    object_list[:] = _state.comm.bcast(list(object_list), root=src)


__all__ = ["ReduceOp", "Work", "init", "init_process_group", "is_available", "is_initialized",
           "get_rank", "get_world_size", "is_main_process", "destroy_process_group",
           "launched_size", "barrier", "all_reduce", "broadcast", "all_gather",
           "all_gather_object", "broadcast_object_list", "abort", "abort_on"]
