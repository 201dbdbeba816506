"""The loader's worker processes: what each one runs, and what it knows about itself.

A worker receives ``(task index, sampler entry)`` on its own index queue, fetches and collates
that batch, and puts ``(task index, batch)`` on the shared result queue, pickled by the worker
itself so that a batch that cannot be pickled comes back as an error instead of being lost.
``None`` on the index queue stops it; :class:`_ResumeIteration` starts a new epoch (persistent
workers). Each worker seeds Python's, NumPy's and chainrule's random state from the epoch's base
seed plus its id, so workers draw different random augmentations, reproducibly."""

from __future__ import annotations

import os
import pickle
import queue
import random

import numpy as np

from .... import random as _cr_random
from . import ExceptionWrapper
from .fetch import ITERABLE, create_fetcher

# how often (seconds) the waiting loader checks that its workers are alive, and how long it
# waits for each to exit at shutdown
STATUS_CHECK_INTERVAL = 5.0
# how often (seconds) an idle worker checks whether the loader has shut down or is gone
WORKER_POLL_INTERVAL = 0.1


class WorkerInfo:
    """What :func:`get_worker_info` returns inside a worker: ``id`` (0 .. num_workers - 1),
    ``num_workers``, ``seed`` (this worker's, for this epoch) and ``dataset`` (this worker's
    copy of it). Read-only."""

    __slots__ = ("id", "num_workers", "seed", "dataset", "_initialized")

    def __init__(self, **kwargs):
        for key, value in kwargs.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_initialized", True)

    def __setattr__(self, key, value):
        raise RuntimeError(f"Cannot assign attributes to {type(self).__name__} objects")

    def __repr__(self):
        return (f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed}, "
                f"dataset={self.dataset!r})")


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """Inside a DataLoader worker process, its :class:`WorkerInfo`; ``None`` in the main
    process (including while a loader with ``num_workers=0`` loads). An IterableDataset uses
    it to give each worker its own share of the data."""
    return _worker_info


class _ResumeIteration:
    """Sent to persistent workers at the start of a new epoch; echoed back as the
    acknowledgement."""


class _IterableDatasetStopIteration:
    """A worker's signal that its copy of the iterable dataset is exhausted."""

    def __init__(self, worker_id):
        self.worker_id = worker_id


def _seed_worker(base_seed: int, worker_id: int) -> int:
    seed = (base_seed + worker_id) % 2**63
    random.seed(seed)
    _cr_random.manual_seed(seed)
    np.random.seed(np.random.SeedSequence([worker_id, base_seed]).generate_state(4))
    return seed


def _worker_loop(kind, dataset, index_queue, data_queue, done_event, auto_collation,
                 collate_fn, drop_last, base_seed, init_fn, worker_id, num_workers):
    global _worker_info
    try:
        seed = _seed_worker(base_seed, worker_id)
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed,
                                  dataset=dataset)
        init_exception = None
        fetcher = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = create_fetcher(kind, dataset, auto_collation, collate_fn, drop_last)
        except Exception:
            init_exception = ExceptionWrapper(where=f"in DataLoader worker process {worker_id}")
        iteration_end = False
        parent = os.getppid()
        while True:
            try:
                r = index_queue.get(timeout=WORKER_POLL_INTERVAL)
            except queue.Empty:
                # the loader shut down (its None may never arrive when the loader is collected
                # with its queues), or the main process is gone
                if done_event.is_set() or os.getppid() != parent:
                    break
                continue
            if isinstance(r, _ResumeIteration):
                data_queue.put(pickle.dumps((r, None), pickle.HIGHEST_PROTOCOL))
                iteration_end = False
                if init_exception is None:
                    fetcher = create_fetcher(kind, dataset, auto_collation, collate_fn,
                                             drop_last)
                continue
            if r is None:
                break
            if done_event.is_set() or iteration_end:
                continue
            idx, index = r
            if init_exception is not None:
                data, init_exception = init_exception, None
            else:
                try:
                    data = fetcher.fetch(index)
                except Exception as e:
                    if isinstance(e, StopIteration) and kind == ITERABLE:
                        data = _IterableDatasetStopIteration(worker_id)
                        iteration_end = True
                    else:
                        data = ExceptionWrapper(where=f"in DataLoader worker process "
                                                      f"{worker_id}")
            try:
                payload = pickle.dumps((idx, data), pickle.HIGHEST_PROTOCOL)
            except Exception:
                payload = pickle.dumps((idx, ExceptionWrapper(
                    where=f"in DataLoader worker process {worker_id} while sending a batch "
                          "to the main process (batches must be picklable)")),
                    pickle.HIGHEST_PROTOCOL)
            data_queue.put(payload)
            del data, idx, index, r
    except KeyboardInterrupt:
        pass
    if done_event.is_set():
        data_queue.cancel_join_thread()
        data_queue.close()
