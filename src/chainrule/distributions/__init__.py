"""chainrule.distributions: probability distributions with PyTorch's names and methods
(``torch.distributions``): Categorical, Bernoulli, Normal, Uniform, Gamma, Beta,
MultivariateNormal; ``sample``, ``rsample`` (reparameterized, differentiable in the
parameters; implicitly for Gamma and Beta), ``log_prob``, ``entropy``, ``mean``, ``variance``,
and ``kl_divergence`` for pairs of the same family (and Uniform against Normal). Samples
draw from chainrule's global generator (``chainrule.manual_seed``)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import ops as P
from ..autograd import no_grad
from ..creation import rand, randn
from ..nn import functional as F
from ..tensor import Tensor
from ._special import Cholesky, SolveTril, StandardGamma, digamma, lgamma

__all__ = ["Distribution", "Categorical", "Bernoulli", "Normal", "Uniform", "Gamma", "Beta",
           "MultivariateNormal", "kl_divergence", "register_kl"]


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


def _positive(t, name, where):
    if (t.detach().numpy() <= 0).any():
        raise ValueError(f"{where}: {name} must be positive, got {t.detach().numpy().min()!r} "
                         "among its values")


class Gamma(Distribution):
    """Gamma(concentration a, rate b): density b^a x^(a-1) e^(-b x) / Gamma(a); rsample =
    z / b with z ~ Gamma(a, 1), differentiable in a by implicit reparameterization."""

    has_rsample = True

    def __init__(self, concentration, rate, validate_args=None):
        a = _as_tensor(concentration, name="concentration", where="Gamma")
        b = _as_tensor(rate, a, "rate", "Gamma")
        shape = np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
        self.concentration, self.rate = a.expand(shape), b.expand(shape)
        if validate_args is not False:
            _positive(a, "concentration", "Gamma")
            _positive(b, "rate", "Gamma")
        self.batch_shape = tuple(shape)

    @property
    def mean(self):
        return self.concentration / self.rate

    @property
    def variance(self):
        return self.concentration / (self.rate * self.rate)

    def rsample(self, sample_shape=()):
        shape = self._extended(sample_shape)
        z = StandardGamma.apply(self.concentration.expand(shape))
        return z / self.rate

    def log_prob(self, value):
        x = _as_tensor(value, self.rate, "value", "Gamma.log_prob")
        a, b = self.concentration, self.rate
        return a * P.log(b) + (a - 1) * P.log(x) - b * x - lgamma(a)

    def entropy(self):
        a = self.concentration
        return a - P.log(self.rate) + lgamma(a) + (1.0 - a) * digamma(a)


class Beta(Distribution):
    """Beta(concentration1 a, concentration0 b): density x^(a-1) (1-x)^(b-1) / B(a, b);
    rsample = g1 / (g1 + g0) with g1 ~ Gamma(a, 1), g0 ~ Gamma(b, 1) (reparameterized through
    the gamma samples)."""

    has_rsample = True

    def __init__(self, concentration1, concentration0, validate_args=None):
        a = _as_tensor(concentration1, name="concentration1", where="Beta")
        b = _as_tensor(concentration0, a, "concentration0", "Beta")
        shape = np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
        self.concentration1, self.concentration0 = a.expand(shape), b.expand(shape)
        if validate_args is not False:
            _positive(a, "concentration1", "Beta")
            _positive(b, "concentration0", "Beta")
        self.batch_shape = tuple(shape)

    @property
    def mean(self):
        return self.concentration1 / (self.concentration1 + self.concentration0)

    @property
    def variance(self):
        a, b = self.concentration1, self.concentration0
        t = a + b
        return a * b / (t * t * (t + 1))

    def rsample(self, sample_shape=()):
        shape = self._extended(sample_shape)
        g1 = StandardGamma.apply(self.concentration1.expand(shape))
        g0 = StandardGamma.apply(self.concentration0.expand(shape))
        return g1 / (g1 + g0)

    def _lbeta(self):
        a, b = self.concentration1, self.concentration0
        return lgamma(a) + lgamma(b) - lgamma(a + b)

    def log_prob(self, value):
        x = _as_tensor(value, self.concentration1, "value", "Beta.log_prob")
        a, b = self.concentration1, self.concentration0
        return (a - 1) * P.log(x) + (b - 1) * P.log(1 - x) - self._lbeta()

    def entropy(self):
        a, b = self.concentration1, self.concentration0
        return (self._lbeta() - (a - 1) * digamma(a) - (b - 1) * digamma(b)
                + (a + b - 2) * digamma(a + b))


class MultivariateNormal(Distribution):
    """N(loc, Sigma) over the last dim, Sigma given as covariance_matrix (factored by a
    differentiable Cholesky) or scale_tril L (Sigma = L L^T); rsample = loc + L eps."""

    has_rsample = True

    def __init__(self, loc, covariance_matrix=None, precision_matrix=None, scale_tril=None,
                 validate_args=None):
        where = "MultivariateNormal"
        given = [m is not None for m in (covariance_matrix, precision_matrix, scale_tril)]
        if sum(given) != 1:
            raise ValueError(f"{where}: pass exactly one of covariance_matrix, "
                             "precision_matrix and scale_tril")
        if precision_matrix is not None:
            raise NotImplementedError(f"{where}: precision_matrix is not supported; pass "
                                      "covariance_matrix or scale_tril")
        loc = _as_tensor(loc, name="loc", where=where)
        if loc.ndim < 1:
            raise ValueError(f"{where}: loc must be at least 1-d, got shape {tuple(loc.shape)}")
        if scale_tril is not None:
            L = _as_tensor(scale_tril, loc, "scale_tril", where)
        else:
            cov = _as_tensor(covariance_matrix, loc, "covariance_matrix", where)
            if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
                raise ValueError(f"{where}: covariance_matrix must be (*, k, k), got shape "
                                 f"{tuple(cov.shape)}")
            try:
                L = Cholesky.apply(cov)
            except ValueError:
                raise ValueError(f"{where}: covariance_matrix is not positive definite") \
                    from None
        k = loc.shape[-1]
        if L.ndim < 2 or tuple(L.shape[-2:]) != (k, k):
            raise ValueError(f"{where}: the scale of shape {tuple(L.shape)} received, expected "
                             f"(*, {k}, {k}) for loc of shape {tuple(loc.shape)}")
        batch = np.broadcast_shapes(tuple(loc.shape[:-1]), tuple(L.shape[:-2]))
        self.loc = loc.expand(tuple(batch) + (k,))
        self.scale_tril = L.expand(tuple(batch) + (k, k))
        self.batch_shape, self.event_shape = tuple(batch), (k,)

    @property
    def covariance_matrix(self):
        L = self.scale_tril
        return L @ L.transpose(-1, -2)

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        return (self.scale_tril * self.scale_tril).sum(-1)

    def rsample(self, sample_shape=()):
        eps = randn(*self._extended(sample_shape), dtype=self.loc.dtype)
        return self.loc + (self.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def _half_log_det(self):
        """log det L = sum of log diag L (the diagonal picked by an identity mask)."""
        eye = Tensor._wrap(np.eye(self.event_shape[0], dtype=self.loc._data.dtype))
        return P.log((self.scale_tril * eye).sum(-1)).sum(-1)

    def _mahalanobis(self, diff):
        """||L^-1 diff||^2 for diff (*, k), broadcast against the batch."""
        shape = np.broadcast_shapes(tuple(diff.shape[:-1]), self.batch_shape)
        k = self.event_shape[0]
        L = self.scale_tril.expand(tuple(shape) + (k, k))
        z = SolveTril.apply(L, diff.expand(tuple(shape) + (k,)).unsqueeze(-1))
        return (z * z).sum((-2, -1))

    def log_prob(self, value):
        x = _as_tensor(value, self.loc, "value", "MultivariateNormal.log_prob")
        k = self.event_shape[0]
        return (-0.5 * (k * math.log(2 * math.pi) + self._mahalanobis(x - self.loc))
                - self._half_log_det())

    def entropy(self):
        k = self.event_shape[0]
        return 0.5 * k * (1.0 + math.log(2 * math.pi)) + self._half_log_det()


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


@register_kl(Gamma, Gamma)
def _kl_gamma_gamma(p, q):
    a1, b1, a2, b2 = p.concentration, p.rate, q.concentration, q.rate
    return (a2 * P.log(b1 / b2) + lgamma(a2) - lgamma(a1) + (a1 - a2) * digamma(a1)
            + (b2 - b1) * (a1 / b1))


@register_kl(Beta, Beta)
def _kl_beta_beta(p, q):
    a1, b1, a2, b2 = p.concentration1, p.concentration0, q.concentration1, q.concentration0
    s1, s2 = a1 + b1, a2 + b2
    t1 = lgamma(s1) - lgamma(a1) - lgamma(b1) - (lgamma(s2) - lgamma(a2) - lgamma(b2))
    t2 = (a1 - a2) * digamma(a1) + (b1 - b2) * digamma(b1) - (s1 - s2) * digamma(s1)
    return t1 + t2


@register_kl(MultivariateNormal, MultivariateNormal)
def _kl_mvn_mvn(p, q):
    """(tr(Sq^-1 Sp) + |Lq^-1 (mu_q - mu_p)|^2 - k) / 2 + log det Lq - log det Lp, with
    tr(Sq^-1 Sp) = |Lq^-1 Lp|_F^2."""
    k = p.event_shape[0]
    shape = np.broadcast_shapes(p.batch_shape, q.batch_shape)
    Lq = q.scale_tril.expand(tuple(shape) + (k, k))
    M = SolveTril.apply(Lq, p.scale_tril.expand(tuple(shape) + (k, k)))
    return (0.5 * ((M * M).sum((-2, -1)) + q._mahalanobis(p.loc - q.loc) - k)
            + q._half_log_det() - p._half_log_det())
