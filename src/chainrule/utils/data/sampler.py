"""Samplers: the order in which a loader visits a map-style dataset, with PyTorch's classes.

Orders fixed by their definition (sequential order, the grouping into batches, how many
samples and batches there are) are PyTorch's exactly. Random orders are drawn from NumPy
generators, so for one seed they are not the numbers PyTorch draws, but they are as
reproducible: a sampler without a ``generator`` draws from chainrule's default generator, so
``chainrule.manual_seed(s)`` fixes every shuffle after it.
"""

from __future__ import annotations

import itertools
import numbers
from typing import Generic, TypeVar

import numpy as np

from ...tensor import Tensor
from ._random import draw_seed, numpy_rng

T_co = TypeVar("T_co", covariant=True)


def _positive_int(value, name, where):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{where}: {name} should be a positive integer value, but got "
                         f"{name}={value!r}")
    return int(value)


class Sampler(Generic[T_co]):
    """Base class: subclasses define ``__iter__`` (the indices, or lists of indices for a
    batch sampler) and, where the count is known, ``__len__``."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} should implement __iter__")


class SequentialSampler(Sampler[int]):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler[int]):
    """A random order of the indices: each epoch a fresh permutation (``num_samples`` beyond
    the dataset's length continue with further permutations), or with ``replacement=True``
    ``num_samples`` independent uniform draws. Without a ``generator`` each epoch draws one
    seed from chainrule's default generator (as PyTorch's draws one from its default)."""

    def __init__(self, data_source, replacement: bool = False, num_samples=None,
                 generator=None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(self.replacement, bool):
            raise TypeError(f"RandomSampler: replacement should be a boolean value, but got "
                            f"replacement={self.replacement!r}")
        _positive_int(self.num_samples, "num_samples", "RandomSampler")
        if generator is not None:
            numpy_rng(generator, "RandomSampler")  # check its type now

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n = len(self.data_source)
        if self.generator is None:
            rng = np.random.default_rng(draw_seed(None, "RandomSampler"))
        else:
            rng = numpy_rng(self.generator, "RandomSampler")
        if self.replacement:
            for _ in range(self.num_samples // 32):
                yield from rng.integers(0, n, 32).tolist()
            yield from rng.integers(0, n, self.num_samples % 32).tolist()
        else:
            for _ in range(self.num_samples // n):
                yield from rng.permutation(n).tolist()
            yield from rng.permutation(n)[: self.num_samples % n].tolist()

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler[int]):
    """The given ``indices`` in a random order (a fresh one each epoch)."""

    def __init__(self, indices, generator=None):
        self.indices = indices
        self.generator = generator

    def __iter__(self):
        rng = numpy_rng(self.generator, "SubsetRandomSampler")
        for i in rng.permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self):
        return len(self.indices)


class WeightedRandomSampler(Sampler[int]):
    """``num_samples`` indices drawn with probabilities proportional to ``weights`` (which
    need not sum to 1), with replacement by default; without replacement each index is drawn
    at most once (``num_samples`` must not exceed the number of non-zero weights)."""

    def __init__(self, weights, num_samples, replacement: bool = True, generator=None):
        self.num_samples = _positive_int(num_samples, "num_samples", "WeightedRandomSampler")
        if not isinstance(replacement, bool):
            raise ValueError(f"WeightedRandomSampler: replacement should be a boolean value, "
                             f"but got replacement={replacement!r}")
        w = weights.detach().numpy() if isinstance(weights, Tensor) else weights
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(f"weights should be a 1d sequence but given weights have shape "
                             f"{tuple(w.shape)}")
        if not np.all(np.isfinite(w)) or (w < 0).any() or not w.sum() > 0:
            raise ValueError("WeightedRandomSampler: weights must be finite, non-negative and "
                             "not all zero")
        self.weights = Tensor._wrap(w)
        self.replacement = replacement
        self.generator = generator

    def __iter__(self):
        w = self.weights.detach().numpy()
        if not self.replacement and self.num_samples > np.count_nonzero(w):
            raise RuntimeError(f"WeightedRandomSampler: cannot draw {self.num_samples} "
                               f"samples without replacement from {np.count_nonzero(w)} "
                               "non-zero weights")
        rng = numpy_rng(self.generator, "WeightedRandomSampler")
        drawn = rng.choice(len(w), size=self.num_samples, replace=self.replacement,
                           p=w / w.sum())
        yield from drawn.tolist()

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler[list]):
    """Groups another sampler's indices into lists of ``batch_size``; the last, shorter list
    is kept unless ``drop_last``. ``list(BatchSampler(range(10), 3, False))`` is
    ``[[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]``."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        self.batch_size = _positive_int(batch_size, "batch_size", "BatchSampler")
        if not isinstance(drop_last, bool):
            raise ValueError(f"BatchSampler: drop_last should be a boolean value, but got "
                             f"drop_last={drop_last!r}")
        self.sampler = sampler
        self.drop_last = drop_last

    def __iter__(self):
        it = iter(self.sampler)
        while True:
            batch = list(itertools.islice(it, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield batch

    def __len__(self):
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size
