"""chainrule.distributions: probability distributions with PyTorch's names and methods
(``torch.distributions``): Categorical, Bernoulli, Normal, Uniform; ``sample``, ``rsample``
(reparameterized, differentiable in the parameters), ``log_prob``, ``entropy``, ``mean``,
``variance``, and ``kl_divergence`` for pairs of the same family (and Uniform against
Normal). Samples draw from chainrule's global generator (``chainrule.manual_seed``)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import ops as P
from ..autograd import no_grad
from ..creation import rand, randn
from ..nn import functional as F
from ..tensor import Tensor

__all__ = ["Distribution", "Categorical", "Bernoulli", "Normal", "Uniform", "kl_divergence",
           "register_kl"]


def _as_tensor(v, like=None, name="parameter", where="Distribution"):
    if isinstance(v, Tensor):
        return v if v._data.dtype.kind == "f" else v.float()
    if isinstance(v, (numbers.Real, list, tuple, np.ndarray)):
        dtype = like._data.dtype if like is not None else np.float32
        return Tensor._wrap(np.asarray(v, dtype=dtype))
    raise TypeError(f"{where}: {name} must be a Tensor or a number, got {type(v).__name__}")


def _shape(sample_shape):
    if isinstance(sample_shape, numbers.Integral):
        return (int(sample_shape),)
    return tuple(int(s) for s in sample_shape)


class Distribution:
    """The base: ``batch_shape``, ``event_shape``, ``sample(sample_shape)`` (no gradient),
    ``rsample`` where the family has one, ``log_prob``, ``entropy``."""

    has_rsample = False
    batch_shape: tuple = ()
    event_shape: tuple = ()

    def _extended(self, sample_shape):
        return _shape(sample_shape) + tuple(self.batch_shape) + tuple(self.event_shape)

    def sample(self, sample_shape=()):
        with no_grad():
            return self.rsample(sample_shape).detach()

    def rsample(self, sample_shape=()):
        raise NotImplementedError(f"{type(self).__name__} has no reparameterized sample "
                                  "(rsample); use sample()")

    @property
    def stddev(self):
        return P.sqrt(self.variance)

    def __repr__(self):
        return f"{type(self).__name__}(batch_shape={tuple(self.batch_shape)})"


class Normal(Distribution):
    """N(loc, scale^2); rsample = loc + scale eps with eps ~ N(0, 1)."""

    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        loc = _as_tensor(loc, name="loc", where="Normal")
        scale = _as_tensor(scale, loc, "scale", "Normal")
        shape = np.broadcast_shapes(tuple(loc.shape), tuple(scale.shape))
        self.loc, self.scale = loc.expand(shape), scale.expand(shape)
        if validate_args is not False and (scale.detach().numpy() <= 0).any():
            raise ValueError("Normal: scale must be positive")
        self.batch_shape = tuple(shape)

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        return self.scale * self.scale

    def rsample(self, sample_shape=()):
        eps = randn(*self._extended(sample_shape), dtype=self.loc.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, value):
        value = _as_tensor(value, self.loc, "value", "Normal.log_prob")
        z = (value - self.loc) / self.scale
        return -0.5 * z * z - P.log(self.scale) - 0.5 * math.log(2 * math.pi)

    def entropy(self):
        return 0.5 + 0.5 * math.log(2 * math.pi) + P.log(self.scale)



class Uniform(Distribution):
    """U[low, high); rsample = low + (high - low) u with u ~ U[0, 1)."""

    has_rsample = True

    def __init__(self, low, high, validate_args=None):
        low = _as_tensor(low, name="low", where="Uniform")
        high = _as_tensor(high, low, "high", "Uniform")
        shape = np.broadcast_shapes(tuple(low.shape), tuple(high.shape))
        self.low, self.high = low.expand(shape), high.expand(shape)
        if validate_args is not False and (
                high.detach().numpy() <= low.detach().numpy()).any():
            raise ValueError("Uniform: low must be below high")
        self.batch_shape = tuple(shape)

    @property
    def mean(self):
        return (self.low + self.high) / 2

    @property
    def variance(self):
        w = self.high - self.low
        return w * w / 12

    def rsample(self, sample_shape=()):
        u = rand(*self._extended(sample_shape), dtype=self.low.dtype)
        return self.low + (self.high - self.low) * u

    def log_prob(self, value):
        value = _as_tensor(value, self.low, "value", "Uniform.log_prob")
        inside = P.logical_and(value >= self.low, value < self.high)
        lp = -P.log(self.high - self.low)
        return P.where(inside, lp, -math.inf)

    def entropy(self):
        return P.log(self.high - self.low)


class Bernoulli(Distribution):
    """1 with probability ``probs`` (or sigmoid(``logits``)), else 0."""

    def __init__(self, probs=None, logits=None, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Bernoulli: pass exactly one of probs and logits")
        if probs is not None:
            self.probs = _as_tensor(probs, name="probs", where="Bernoulli")
            p = self.probs.detach().numpy()
            if validate_args is not False and ((p < 0) | (p > 1)).any():
                raise ValueError("Bernoulli: probs must be in [0, 1]")
            eps = float(np.finfo(p.dtype).eps)
            pc = P.clamp(self.probs, eps, 1 - eps)
            self.logits = P.log(pc) - P.log(1 - pc)
        else:
            self.logits = _as_tensor(logits, name="logits", where="Bernoulli")
            self.probs = P.sigmoid(self.logits)
        self.batch_shape = tuple(self.probs.shape)

    @property
    def mean(self):
        return self.probs

    @property
    def variance(self):
        return self.probs * (1 - self.probs)

    def sample(self, sample_shape=()):
        with no_grad():
            u = rand(*self._extended(sample_shape), dtype=self.probs.dtype)
            return (u < self.probs).type(self.probs.dtype)

    def log_prob(self, value):
        value = _as_tensor(value, self.logits, "value", "Bernoulli.log_prob")
        shape = tuple(np.broadcast_shapes(tuple(value.shape), tuple(self.logits.shape)))
        return -F.binary_cross_entropy_with_logits(self.logits.expand(shape),
                                                   value.expand(shape), reduction="none")

    def entropy(self):
        return F.binary_cross_entropy_with_logits(self.logits, self.probs, reduction="none")


class Categorical(Distribution):
    """An index in [0, K) with probabilities ``probs`` (normalized over the last dim) or
    softmax(``logits``)."""

    def __init__(self, probs=None, logits=None, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Categorical: pass exactly one of probs and logits")
        if probs is not None:
            probs = _as_tensor(probs, name="probs", where="Categorical")
            if probs.ndim < 1:
                raise ValueError("Categorical: probs must have at least one dim (the classes)")
            if validate_args is not False and (probs.detach().numpy() < 0).any():
                raise ValueError("Categorical: probs must be non-negative")
            self.probs = probs / probs.sum(-1, keepdim=True)
            eps = float(np.finfo(self.probs.detach().numpy().dtype).tiny)
            self.logits = P.log(P.clamp_min(self.probs, eps))
        else:
            logits = _as_tensor(logits, name="logits", where="Categorical")
            if logits.ndim < 1:
                raise ValueError("Categorical: logits must have at least one dim (the classes)")
            self.logits = logits - P.logsumexp(logits, -1, keepdim=True)
            self.probs = P.softmax(logits, -1)
        self.batch_shape = tuple(self.probs.shape[:-1])
        self._num_events = self.probs.shape[-1]

    @property
    def param_shape(self):
        return tuple(self.probs.shape)

    @property
    def mean(self):
        return Tensor._wrap(np.full(self.batch_shape, np.nan, self.probs.detach().numpy().dtype))

    def sample(self, sample_shape=()):
        sample_shape = _shape(sample_shape)
        with no_grad():
            cdf = np.cumsum(self.probs.detach().numpy().astype(np.float64), -1)
            u = rand(*(sample_shape + self.batch_shape), dtype=np.float64).numpy()
            idx = (cdf < u[..., None] * cdf[..., -1:]).sum(-1)
            return Tensor._wrap(np.minimum(idx, self._num_events - 1).astype(np.int64))

    def log_prob(self, value):
        v = value._data if isinstance(value, Tensor) else np.asarray(value)
        v = np.asarray(v).astype(np.int64)
        if v.size and (v.min() < 0 or v.max() >= self._num_events):
            raise ValueError(f"Categorical.log_prob: values must be in [0, {self._num_events})")
        shape = np.broadcast_shapes(v.shape, self.batch_shape)
        logits = self.logits.expand(tuple(shape) + (self._num_events,))
        idx = Tensor._wrap(np.broadcast_to(v, shape)[..., None].copy())
        return P.gather(logits, -1, idx).squeeze(-1)

    def entropy(self):
        eps = float(np.finfo(self.probs.detach().numpy().dtype).min)
        return -(self.probs * P.clamp_min(self.logits, eps)).sum(-1)

    def enumerate_support(self, expand=True):
        K = self._num_events
        v = np.arange(K).reshape((K,) + (1,) * len(self.batch_shape))
        if expand:
            v = np.broadcast_to(v, (K,) + self.batch_shape).copy()
        return Tensor._wrap(v.astype(np.int64))


# ----------------------------------------------------------------------------- KL

_KL: dict = {}


def register_kl(type_p, type_q):
    """Decorator: ``fn(p, q)`` computes KL(p || q) for the two distribution types."""
    def deco(fn):
        _KL[(type_p, type_q)] = fn
        return fn
    return deco


def kl_divergence(p, q):
    """KL(p || q) = E_p[log p - log q], per batch element."""
    for (tp, tq), fn in _KL.items():
        if isinstance(p, tp) and isinstance(q, tq):
            return fn(p, q)
    raise NotImplementedError(f"kl_divergence: no formula for {type(p).__name__} against "
                              f"{type(q).__name__}")


@register_kl(Normal, Normal)
def _kl_normal_normal(p, q):
    r = p.scale / q.scale
    d = (p.loc - q.loc) / q.scale
    return 0.5 * (r * r + d * d - 1) - P.log(r)


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p, q):
    out = P.log((q.high - q.low) / (p.high - p.low))
    bad = P.logical_or(q.low > p.low, q.high < p.high)
    return P.where(bad, math.inf, out)


@register_kl(Uniform, Normal)
def _kl_uniform_normal(p, q):
    w = p.high - p.low
    t = (p.high ** 3 - p.low ** 3) / (3 * w) - q.loc * (p.high + p.low) + q.loc * q.loc
    return -P.log(w) + P.log(q.scale) + 0.5 * math.log(2 * math.pi) \
        + t / (2 * q.scale * q.scale)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p, q):
    t1 = p.probs * (F.softplus(-q.logits) - F.softplus(-p.logits))
    t2 = (1 - p.probs) * (F.softplus(q.logits) - F.softplus(p.logits))
    return t1 + t2


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p, q):
    t = p.probs * (p.logits - q.logits)
    t = P.where(p.probs == 0, 0.0, t)
    return t.sum(-1)
