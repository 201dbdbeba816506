"""DistributedSampler: each of ``num_replicas`` processes visits its own share of a map-style
dataset, with ``torch.utils.data.distributed.DistributedSampler``'s semantics."""

from __future__ import annotations

import math
import numbers
import sys

from ... import random as _cr_random
from .sampler import Sampler


def _count(value, name, lo):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"DistributedSampler: {name} must be an integer of at least {lo}, got "
                         f"{value!r}")
    return int(value)


class DistributedSampler(Sampler[int]):
    """The indices of rank ``rank`` among ``num_replicas``: every rank gets ``len(self)``
    indices, ``ceil(N / num_replicas)`` of them, the list padded by repeating its first indices
    to a multiple of ``num_replicas`` (or, with ``drop_last=True``, cut to the largest multiple
    below N); rank r takes positions r, r + num_replicas, ... of it.

    ``shuffle=True`` permutes all N indices first, with a generator seeded by ``seed + epoch``,
    so every rank draws the same permutation and ``set_epoch(e)`` gives each epoch its own.
    (The permutation is drawn by NumPy: the same on every rank and run for a seed, not the one
    PyTorch draws.) ``num_replicas`` and ``rank`` default to the world size and rank of the
    initialised :mod:`chainrule.distributed` group."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        if num_replicas is None or rank is None:
            # a process group exists only once chainrule.distributed was imported (a layer
            # above this one, so it is looked up, not imported)
            distributed = sys.modules.get("chainrule.distributed")
            if distributed is None or not distributed.is_initialized():
                raise RuntimeError(
                    "DistributedSampler: num_replicas and rank default to the process group's, "
                    "but chainrule.distributed is not initialized; call "
                    "chainrule.distributed.init_process_group(...) first or pass both"
                )
            num_replicas = distributed.get_world_size() if num_replicas is None else num_replicas
            rank = distributed.get_rank() if rank is None else rank
        self.num_replicas = _count(num_replicas, "num_replicas", 1)
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not (
                0 <= rank < self.num_replicas):
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval "
                             f"[0, {self.num_replicas - 1}]")
        self.dataset, self.rank, self.epoch = dataset, int(rank), 0
        self.drop_last, self.shuffle, self.seed = bool(drop_last), bool(shuffle), int(seed)
        n = len(dataset)
        if self.drop_last and n % self.num_replicas:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            g = _cr_random.Generator().manual_seed(self.seed + self.epoch)
            indices = g.numpy.permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            pad = self.total_size - len(indices)
            if pad <= len(indices):
                indices += indices[:pad]
            else:
                indices += (indices * math.ceil(pad / len(indices)))[:pad]
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """The epoch whose permutation the next iteration draws (``seed + epoch``)."""
        self.epoch = int(epoch)
