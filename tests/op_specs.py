"""The table of op specs: one row per differentiable ``chainrule.autograd.Op`` class.

Every differentiable Op defined inside the ``chainrule`` package must have a row here:
``tests/test_ops_gradcheck.py`` walks all Op subclasses and fails for any without one. A row says
how to call the op, on which inputs, and what it must equal:

- ``op``: the Op class name (the registry key; one row per class).
- ``fn(F, *inputs, **kw)``: calls the op through the public API. ``F`` is the ``chainrule``
  module, or ``torch`` when the forward values are compared with PyTorch, so write the call
  with names both share (``F.cat``, ``x.sum(dim)``, ``F.nn.functional.gelu``).
- ``cases``: ``case(*inputs, id=..., **kw)``. An input is a shape tuple (a float64 tensor that
  requires grad, values drawn uniformly from the row's ``domain``), an ``arg(...)`` (own range,
  a transposed non-contiguous view, explicit values, or no grad), or anything else, passed
  through unchanged (a Python scalar, an index array). ``kw`` go to ``fn`` and ``ref`` as is.
  Cover scalars ``()``, size-1 dims, broadcast pairs, negative dims and transposed views.
- ``ref(*arrays, **kw)``: the forward in plain NumPy, the independent reference.
- ``domain`` and ``kinks``: values are drawn from ``domain`` and pushed at least ``margin``
  away from every kink (0 for relu and abs, the clamp bounds) so finite differences are valid.
- ``gradgrad``: run ``gradgradcheck`` too (False only with a reason in ``why``).
- ``torch``: False when PyTorch has no op of the same name and meaning to compare against.

To add a row for a new op (say a fused ``LayerNorm`` in ``chainrule.nn.functional``), append to
the section at the end of this file::

    spec("LayerNorm",
         lambda F, x, w, b: F.nn.functional.layer_norm(x, (4,), w, b),
         case((3, 4), (4,), (4,)),
         case(arg((4, 3), transposed=True), (4,), (4,), id="noncontiguous"),
         ref=lambda x, w, b: (x - x.mean(-1, keepdims=True))
                             / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b)

Nothing else needs registering: the gradcheck, gradgradcheck, forward, dtype and registry
tests all read ``SPECS``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

import chainrule as cr

# ----------------------------------------------------------------------------- the machinery


@dataclass
class Arg:
    """One tensor input: a shape and how to fill it."""

    shape: tuple
    lo: float | None = None
    hi: float | None = None
    transposed: bool = False  # a transposed view of a reversed-shape array: non-contiguous
    values: object = None  # explicit values (shape then ignored)
    grad: bool = True

    def array(self, rng, domain, kinks, margin):
        if self.values is not None:
            return np.array(self.values, dtype=np.float64)
        lo = domain[0] if self.lo is None else self.lo
        hi = domain[1] if self.hi is None else self.hi
        shape = tuple(reversed(self.shape)) if self.transposed else tuple(self.shape)
        a = rng.uniform(lo, hi, shape)
        for k in kinks:  # push values out of (k - margin, k + margin)
            near = np.abs(a - k) < margin
            a[near] = k + np.where(a[near] >= k, margin, -margin)
        return a.T if self.transposed else a


def arg(shape=(), lo=None, hi=None, *, transposed=False, values=None, grad=True):
    """A tensor input with its own range, layout or values (see the module docstring)."""
    return Arg(tuple(shape), lo, hi, transposed, values, grad)


@dataclass
class Case:
    inputs: tuple
    kw: dict
    id: str
    gradgrad: bool = True
    torch: bool = True


def case(*inputs, id=None, gradgrad=True, torch=True, **kw):
    """One call of a row's ``fn``: inputs (shapes, ``arg``s or constants) and keyword args.
    ``gradgrad=False`` skips the second-order check for this case only (a tie, say, where the
    first derivative jumps); ``torch=False`` skips the PyTorch comparison for it."""
    if id is None:
        id = "-".join(
            "x".join(map(str, i)) or "scalar" if isinstance(i, tuple)
            else ("T" if i.transposed else "") + ("x".join(map(str, i.shape)) or "scalar")
            if isinstance(i, Arg) else type(i).__name__
            for i in inputs
        )
    return Case(inputs, kw, id, gradgrad, torch)


@dataclass
class Spec:
    op: str
    fn: object
    cases: list
    ref: object = None
    domain: tuple = (-2.0, 2.0)
    kinks: tuple = ()
    margin: float = 0.05
    gradgrad: bool = True
    torch: bool = True
    atol: float = 1e-5
    rtol: float = 1e-3
    why: str = ""
    extra: dict = field(default_factory=dict)

    def arrays(self, c: Case, dtype=np.float64):
        """The case's inputs as NumPy arrays (tensor inputs) or constants, reproducibly."""
        rng = np.random.default_rng(zlib.crc32(f"{self.op}/{c.id}".encode()))
        out = []
        for i in c.inputs:
            if isinstance(i, tuple):
                i = Arg(i)
            if isinstance(i, Arg):
                a = i.array(rng, self.domain, self.kinks, self.margin)
                out.append((a.astype(dtype) if dtype != np.float64 else a, i.grad))
            else:
                out.append((i, None))
        return out

    def tensors(self, c: Case, dtype=np.float64, lib=cr):
        """The case's inputs as ``lib`` tensors (chainrule or torch), grads where asked."""
        out = []
        for a, grad in self.arrays(c, dtype):
            if grad is None:
                out.append(a)
            elif lib is cr:
                out.append(cr.tensor(a, dtype=a.dtype, requires_grad=grad))
            else:
                t = lib.from_numpy(np.array(a))
                out.append(t.requires_grad_(grad))
        return out

    def call(self, inputs, c: Case, F=cr):
        return self.fn(F, *inputs, **c.kw)


SPECS: dict[str, Spec] = {}


def spec(op, fn, *cases, **options):
    """Add the row for Op class ``op`` (see the module docstring for the fields)."""
    if op in SPECS:
        raise ValueError(f"op_specs: a row for {op} exists already; add cases to it instead")
    if not cases:
        raise ValueError(f"op_specs: the row for {op} has no cases")
    SPECS[op] = Spec(op, fn, list(cases), **options)


def _nnf(F):
    """Where the activation functions live: chainrule itself, or torch.nn.functional."""
    return F if F is cr else F.nn.functional


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _erf(x):
    from math import erf

    return np.vectorize(erf)(x)


def _pad_widths(ndim, pad):
    widths = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        widths[ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return widths


def _pad_ref(x, pad, value=0.0):
    widths = _pad_widths(x.ndim, pad)
    y = np.pad(x, [(max(lo, 0), max(hi, 0)) for lo, hi in widths], constant_values=value)
    return y[tuple(slice(max(-lo, 0), y.shape[i] - max(-hi, 0))
                   for i, (lo, hi) in enumerate(widths))]


def _repeat_ref(x, sizes):
    return np.tile(x, sizes)


def _gather_ref(x, index, dim):
    index = np.asarray(index)
    if x.ndim == 0:  # a 0-d input and index: the element itself
        return x.copy()
    out = np.empty(index.shape)
    for pos in np.ndindex(*index.shape):
        src = list(pos)
        src[dim] = index[pos]
        out[pos] = x[tuple(src)]
    return out


def _scatter_add_ref(x, src, index, dim):
    out = x.copy()
    index = np.asarray(index)
    grids = list(np.indices(index.shape, sparse=True))
    grids[dim] = index
    np.add.at(out, tuple(grids), src[tuple(slice(0, n) for n in index.shape)])
    return out


# ----------------------------------------------------------------------------- elementwise

BINARY = (
    case((3, 4), (3, 4)),
    case((), (), id="scalars"),
    case((3, 1), (1, 4), id="broadcast-size1"),
    case((2, 3, 4), (4,), id="broadcast-rank"),
    case((), (2, 3), id="broadcast-scalar"),
    case(arg((3, 4), transposed=True), (1, 4), id="noncontiguous"),
)

spec("Add", lambda F, a, b: a + b, *BINARY, case((2, 3), 1.5, id="python-scalar"),
     ref=lambda a, b: a + b)
spec("Sub", lambda F, a, b: a - b, *BINARY, case(0.5, (2, 3), id="reflected-scalar"),
     ref=lambda a, b: a - b)
spec("Mul", lambda F, a, b: a * b, *BINARY, case((2, 3), -2.0, id="python-scalar"),
     ref=lambda a, b: a * b)
spec("Div", lambda F, a, b: a / b,
     case((3, 4), arg((3, 4), 0.5, 2.0)),
     case((), arg((), 0.5, 2.0), id="scalars"),
     case((3, 1), arg((1, 4), -2.0, -0.5), id="broadcast-size1"),
     case(arg((4, 3), transposed=True), arg((3,), 0.5, 2.0), id="noncontiguous"),
     case(1.5, arg((2, 3), 0.5, 2.0), id="reflected-scalar"),
     ref=lambda a, b: a / b)
spec("Neg", lambda F, x: -x, case((3, 4)), case(()), case(arg((3, 4), transposed=True)),
     ref=lambda x: -x)
spec("Pow", lambda F, a, b: a**b,
     case(arg((3, 4), 0.5, 2.0), (3, 4)),
     case(arg((), 0.5, 2.0), (), id="scalars"),
     case(arg((3, 1), 0.5, 2.0), (1, 4), id="broadcast-size1"),
     case((2, 3), 3.0, id="scalar-exponent-negative-base"),
     case(arg((2, 3), 0.5, 2.0), -0.5, id="scalar-fractional-exponent"),
     case(2.0, (2, 3), id="scalar-base"),
     ref=lambda a, b: np.power(a, b))
spec("Contiguous", lambda F, x: x.transpose(0, 1).contiguous(),
     case((3, 4), id="transposed"), case((2, 3), id="transposed-small"),
     ref=lambda x: x.T)
# dividends and divisors whose quotients stay away from the integers (where the result jumps)
_MOD_A = arg(values=[[5.5, -5.5, 7.0], [-7.2, 0.7, -0.7]])
_MOD_B = arg(values=[[3.0, 3.0, -2.2], [-2.5, 1.6, 1.6]])
spec("Remainder", lambda F, a, b: F.remainder(a, b),
     case(_MOD_A, _MOD_B),
     case(_MOD_A, arg(values=[[1.6], [-2.5]]), id="broadcast-size1"),
     case(_MOD_A, 2.3, id="python-scalar"),
     case(arg(values=4.3), arg(values=-1.7), id="scalars"),
     ref=np.remainder)
spec("Fmod", lambda F, a, b: F.fmod(a, b),
     case(_MOD_A, _MOD_B),
     case(_MOD_A, arg(values=[[1.6], [-2.5]]), id="broadcast-size1"),
     case(_MOD_A, 2.3, id="python-scalar"),
     case(arg(values=-4.3), arg(values=1.7), id="scalars"),
     ref=np.fmod)

UNARY = (
    case((3, 4)),
    case(()),
    case((1, 5), id="size1"),
    case(arg((4, 3), transposed=True), id="noncontiguous"),
)
spec("Exp", lambda F, x: x.exp(), *UNARY, ref=np.exp)
spec("Expm1", lambda F, x: F.expm1(x), *UNARY, ref=np.expm1)
spec("Log", lambda F, x: x.log(), *UNARY, domain=(0.3, 3.0), ref=np.log)
spec("Log1p", lambda F, x: x.log1p(), *UNARY, domain=(-0.6, 3.0), ref=np.log1p)
spec("Sqrt", lambda F, x: x.sqrt(), *UNARY, domain=(0.3, 3.0), ref=np.sqrt)
spec("Rsqrt", lambda F, x: x.rsqrt(), *UNARY, domain=(0.3, 3.0), ref=lambda x: 1 / np.sqrt(x))
spec("Abs", lambda F, x: x.abs(), *UNARY, kinks=(0.0,), ref=np.abs)
spec("Sin", lambda F, x: x.sin(), *UNARY, domain=(-4, 4), ref=np.sin)
spec("Cos", lambda F, x: x.cos(), *UNARY, domain=(-4, 4), ref=np.cos)
spec("Tanh", lambda F, x: x.tanh(), *UNARY, domain=(-3, 3), ref=np.tanh)
spec("Sigmoid", lambda F, x: x.sigmoid(), *UNARY,
     case(arg(values=[-40.0, -3.0, 0.5, 3.0, 40.0]), id="tails"),
     domain=(-4, 4), ref=_sigmoid)
spec("Relu", lambda F, x: x.relu(), *UNARY, kinks=(0.0,), ref=lambda x: np.maximum(x, 0))
spec("LeakyRelu", lambda F, x, s=0.01: _nnf(F).leaky_relu(x, s), *UNARY,
     case((2, 5), s=0.2, id="slope0.2"), kinks=(0.0,),
     ref=lambda x, s=0.01: np.where(x > 0, x, s * x))
spec("Softplus",
     lambda F, x, beta=1.0, threshold=20.0: _nnf(F).softplus(x, beta, threshold),
     *UNARY, case((3, 4), beta=2.0, threshold=3.0, id="beta2-threshold3"),
     domain=(-3, 3), kinks=(1.5,),
     ref=lambda x, beta=1.0, threshold=20.0: np.where(
         beta * x > threshold, x, np.log1p(np.exp(beta * x)) / beta))
spec("Silu", lambda F, x: _nnf(F).silu(x), *UNARY, domain=(-4, 4),
     ref=lambda x: x * _sigmoid(x))
spec("Elu", lambda F, x, alpha=1.0: _nnF(F).elu(x, alpha), *UNARY,
     case((2, 5), alpha=0.5, id="alpha0.5"), kinks=(0.0,),
     ref=lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(x)))
spec("Selu", lambda F, x: _nnF(F).selu(x), *UNARY, kinks=(0.0,),
     ref=lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)))
spec("Celu", lambda F, x, alpha=1.0: _nnF(F).celu(x, alpha), *UNARY,
     case((2, 5), alpha=0.7, id="alpha0.7"), kinks=(0.0,),
     ref=lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(x / alpha)))
spec("Hardtanh", lambda F, x, lo=-1.0, hi=1.0: _nnF(F).hardtanh(x, lo, hi), *UNARY,
     case((3, 4), lo=-0.5, hi=0.8, id="bounds"), domain=(-2, 2), kinks=(-1.0, 1.0, -0.5, 0.8),
     ref=lambda x, lo=-1.0, hi=1.0: np.clip(x, lo, hi))
spec("Hardsigmoid", lambda F, x: _nnF(F).hardsigmoid(x), *UNARY, domain=(-5, 5),
     kinks=(-3.0, 3.0), ref=lambda x: np.clip(x / 6 + 0.5, 0, 1))
spec("Hardswish", lambda F, x: _nnF(F).hardswish(x), *UNARY, domain=(-5, 5),
     kinks=(-3.0, 3.0), ref=lambda x: x * np.clip(x + 3, 0, 6) / 6)
spec("Mish", lambda F, x: _nnF(F).mish(x), *UNARY, domain=(-4, 4),
     ref=lambda x: x * np.tanh(np.log1p(np.exp(x))))
spec("LogSigmoid", lambda F, x: _nnF(F).logsigmoid(x), *UNARY,
     case(arg(values=[-40.0, -3.0, 0.5, 3.0, 40.0]), id="tails"),
     domain=(-4, 4), ref=lambda x: -np.logaddexp(0, -x))
spec("Softsign", lambda F, x: _nnF(F).softsign(x), *UNARY, kinks=(0.0,),
     ref=lambda x: x / (1 + np.abs(x)))
spec("Tanhshrink", lambda F, x: _nnF(F).tanhshrink(x), *UNARY, domain=(-3, 3),
     ref=lambda x: x - np.tanh(x))
spec("Reciprocal", lambda F, x: F.reciprocal(x), *UNARY,
     case(arg((3, 4), -3.0, -0.5), id="negative"), domain=(0.5, 3.0), ref=lambda x: 1 / x)
spec("Gelu", lambda F, x, approximate="none", nn=False: (_nnF(F) if nn else _nnf(F)).gelu(
         x, approximate=approximate),
     *UNARY, case((3, 4), approximate="tanh", id="tanh"),
     # nn.functional.gelu is the same op, here over a wider range
     case(arg((3, 4), lo=-4, hi=4), nn=True, id="nn-functional"),
     case(arg((2, 3), lo=-4, hi=4), approximate="tanh", nn=True, id="nn-functional-tanh"),
     domain=(-3, 3), atol=1e-5, rtol=1e-3,
     ref=lambda x, approximate="none", nn=False: 0.5 * x * (1 + (
         np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)) if approximate == "tanh"
         else _erf(x / np.sqrt(2)))))
spec("Clamp", lambda F, x, min=None, max=None: x.clamp(min, max),
     case((3, 4), min=-0.5, max=0.7), case((), min=-0.5, id="min-only-scalar"),
     case(arg((4, 3), transposed=True), max=0.3, id="max-only-noncontiguous"),
     kinks=(-0.5, 0.3, 0.7), ref=lambda x, min=None, max=None: np.clip(x, min, max))
spec("Maximum", lambda F, a, b: F.maximum(a, b), *BINARY, ref=np.maximum)
spec("Minimum", lambda F, a, b: F.minimum(a, b), *BINARY, ref=np.minimum)
_COND = np.array([[True, False, True, False], [False, False, True, True], [True, True, False,
                                                                            False]])
spec("Where", lambda F, a, b, cond: F.where(F.tensor(cond), a, b),
     case((3, 4), (3, 4), cond=_COND),
     case((3, 1), (4,), cond=_COND, id="broadcast"),
     case((), arg((3, 4), transposed=True), cond=_COND, id="scalar-and-noncontiguous"),
     case((3, 4), 0.0, cond=_COND, id="python-scalar"),
     ref=lambda a, b, cond: np.where(cond, a, b))
spec("Cast", lambda F, x: F.ops.cast(x, F.float64) * x,
     case((3, 4)), case(()), torch=False,
     ref=lambda x: x * x)

# ----------------------------------------------------------------------------- reductions

REDUCE = (
    case((3, 4), dim=None),
    case((), dim=None, id="scalar"),
    case((3, 4), dim=1),
    case((2, 3, 4), dim=-1, keepdim=True, id="negdim-keepdim"),
    case((2, 3, 4), dim=(0, 2), id="two-dims"),
    case((1, 4), dim=0, id="size1"),
    case(arg((4, 3), transposed=True), dim=0, id="noncontiguous"),
)


def _np_reduce(name):
    def ref(x, dim=None, keepdim=False, **kw):
        return getattr(np, name)(x, axis=dim, keepdims=keepdim, **kw)

    return ref


def _call_reduce(method):
    def fn(F, x, dim=None, keepdim=False, **kw):
        if dim is None:
            return getattr(x, method)(**kw)
        return getattr(x, method)(dim, keepdim=keepdim, **kw)

    return fn


spec("Sum", _call_reduce("sum"), *REDUCE, ref=_np_reduce("sum"))
spec("Mean", _call_reduce("mean"), *REDUCE, ref=_np_reduce("mean"))
spec("Var", _call_reduce("var"),
     case((3, 4), dim=None), case((3, 4), dim=1),
     case((2, 3, 4), dim=-1, keepdim=True, correction=0, id="negdim-keepdim-correction0"),
     case((2, 3, 4), dim=(0, 2), correction=2, id="two-dims-correction2"),
     case(arg((5, 3), transposed=True), dim=0, id="noncontiguous"),
     ref=lambda x, dim=None, keepdim=False, correction=1: np.var(
         x, axis=dim, ddof=correction, keepdims=keepdim))


def _maxmin(F, x, how, dim=None, keepdim=False):
    if dim is None:
        return getattr(x, how)()
    if how in ("max", "min"):
        return getattr(x, how)(dim, keepdim=keepdim)[0]  # (values, indices)
    return getattr(x, how)(dim, keepdim=keepdim)


def _maxmin_ref(x, how, dim=None, keepdim=False):
    return getattr(np, how[-3:])(x, axis=dim, keepdims=keepdim)


spec("MaxMin", _maxmin,
     case((3, 4), how="max"), case((), how="max", id="scalar"),
     case((3, 4), how="max", dim=1, id="max-dim"), case((), how="min", dim=0, id="min-dim-scalar"),
     case((2, 3, 4), how="min", dim=-1, keepdim=True, id="min-negdim-keepdim"),
     case((2, 3, 4), how="amax", dim=(0, 2), id="amax-two-dims"),
     case((1, 4), how="amin", dim=0, keepdim=True, id="amin-size1"),
     case(arg((4, 3), transposed=True), how="max", dim=0, id="max-noncontiguous"),
     case(arg(values=[[1.0, 3.0, 3.0], [2.0, 0.5, 2.0]]), how="amax", dim=1, id="ties-split",
          gradgrad=False),
     ref=_maxmin_ref)
spec("Logsumexp", lambda F, x, dim, keepdim=False: x.logsumexp(dim, keepdim=keepdim),
     case((3, 4), dim=1), case((2, 3, 4), dim=-1, keepdim=True, id="negdim-keepdim"),
     case((2, 3, 4), dim=(0, 2), id="two-dims"), case((1, 4), dim=0, id="size1"),
     case(arg((4, 3), transposed=True), dim=0, id="noncontiguous"),
     ref=lambda x, dim, keepdim=False: np.log(np.exp(x).sum(axis=dim, keepdims=keepdim)))


spec("Norm", lambda F, x, dim=None, keepdim=False: x.norm(2, dim, keepdim),
     case((3, 4)), case((), id="scalar"), case((3, 4), dim=1, id="dim"),
     case((2, 3, 4), dim=(-1, 0), keepdim=True, id="two-negdims-keepdim"),
     case(arg((4, 3), transposed=True), dim=0, id="noncontiguous"),
     kinks=(0.0,), ref=lambda x, dim=None, keepdim=False: np.sqrt(
         (x * x).sum(axis=dim, keepdims=keepdim)))


def _prod(F, x, dim=None, keepdim=False):
    return x.prod() if dim is None else x.prod(dim, keepdim=keepdim)


spec("Prod", _prod,
     case((3, 4)), case((), id="scalar"), case((3, 4), dim=1, id="dim"),
     case((2, 3, 4), dim=-1, keepdim=True, id="negdim-keepdim"),
     case((1, 4), dim=0, id="size1"),
     case(arg((4, 3), transposed=True), dim=0, id="noncontiguous"),
     case(arg(values=[[0.0, 2.0, -1.5], [0.0, 0.0, 3.0], [1.2, -0.7, 0.9]]), dim=1,
          id="exact-zeros"),
     domain=(-1.5, 1.5),
     ref=lambda x, dim=None, keepdim=False: np.prod(x, axis=dim, keepdims=keepdim))
spec("Cumsum", lambda F, x, dim: x.cumsum(dim),
     case((3, 4), dim=1), case((2, 3, 4), dim=-2, id="negdim"), case((1, 4), dim=0, id="size1"),
     case((), dim=-1, id="scalar"),
     case(arg((4, 3), transposed=True), dim=1, id="noncontiguous"),
     ref=lambda x, dim: np.cumsum(x, axis=dim).reshape(x.shape))  # a 0-d input stays 0-d


def _softmax_ref(x, dim):
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


SOFTMAX = (
    case((3, 4), dim=-1), case((2, 3, 4), dim=1, id="middle-dim"), case((), dim=0, id="scalar"),
    case((1, 5), dim=0, id="size1"), case(arg((4, 3), transposed=True), dim=0, id="noncontiguous"),
    case(arg(values=[[1000.0, 999.0, 998.0], [-1000.0, -999.0, -1001.0]]), dim=1, id="large"),
)
spec("Softmax", lambda F, x, dim: x.softmax(dim), *SOFTMAX, domain=(-3, 3), ref=_softmax_ref)
spec("LogSoftmax", lambda F, x, dim: x.log_softmax(dim), *SOFTMAX, domain=(-3, 3),
     ref=lambda x, dim: np.log(_softmax_ref(x, dim)))

# ----------------------------------------------------------------------------- shapes


def _reshape(F, x, how, arg=None):
    if how == "reshape":
        return x.reshape(*arg)
    if how == "view":
        return x.view(arg)
    if how == "flatten":
        return x.flatten(*arg)
    if how == "squeeze":
        return x.squeeze(arg)
    return x.unsqueeze(arg)


def _reshape_ref(x, how, arg=None):
    if how in ("reshape", "view"):
        return x.reshape(arg)
    if how == "flatten":
        s, e = arg[0] % x.ndim, arg[1] % x.ndim
        return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1:])
    if how == "squeeze":
        return np.squeeze(x, arg) if x.shape[arg] == 1 else x
    return np.expand_dims(x, arg)


spec("Reshape", _reshape,
     case((3, 4), how="reshape", arg=(2, 6)), case((3, 4), how="view", arg=(-1,), id="view-1"),
     case((), how="reshape", arg=(1, 1), id="scalar"),
     case((2, 3, 4), how="flatten", arg=(1, -1), id="flatten-negdim"),
     case((3, 1, 4), how="squeeze", arg=-2, id="squeeze-negdim"),
     case((3, 4), how="unsqueeze", arg=-1, id="unsqueeze-negdim"),
     case(arg((4, 3), transposed=True), how="reshape", arg=(12,), id="noncontiguous"),
     ref=_reshape_ref)


def _permute(F, x, how, dims=None):
    if how == "permute":
        return x.permute(*dims)
    if how == "transpose":
        return x.transpose(*dims)
    if how == "T":
        return x.T
    return x.mT


spec("Permute", _permute,
     case((2, 3, 4), how="permute", dims=(2, 0, 1)),
     case((2, 3, 4), how="permute", dims=(-1, 0, -2), id="negdims"),
     case((2, 3, 4), how="transpose", dims=(0, -1), id="transpose"),
     case((3, 4), how="T", id="T"), case((2, 3, 4), how="mT", id="mT"),
     case(arg((4, 3), transposed=True), how="transpose", dims=(0, 1), id="noncontiguous"),
     ref=lambda x, how, dims=None: (
         np.transpose(x, dims) if how == "permute"
         else np.swapaxes(x, *dims) if how == "transpose"
         else x.T if how == "T" else np.swapaxes(x, -1, -2)))
spec("Expand", lambda F, x, shape: x.expand(*shape),
     case((3, 1), shape=(3, 4)), case((), shape=(2, 3), id="scalar"),
     case((1, 4), shape=(2, 3, -1), id="new-dims-and-minus1"),
     case(arg((3, 1), transposed=True), shape=(3, 5), id="noncontiguous"),
     ref=lambda x, shape: np.broadcast_to(
         x, tuple(x.shape[i - len(shape) + x.ndim] if n == -1 else n
                  for i, n in enumerate(shape))))


def _getitem(F, x, index=None, tensor_index=None):
    if tensor_index is not None:  # an index given as a tensor of the library under test
        return x[F.tensor(tensor_index)]
    return x[index]


def _getitem_ref(x, index=None, tensor_index=None):
    return x[tensor_index] if tensor_index is not None else x[index]


spec("GetItem", _getitem,
     case((4, 5), index=1, id="int"),
     case((4, 5), index=-1, id="negative-int"),
     case((4, 5), index=(slice(1, 3), slice(None, None, 2)), id="slices-step"),
     case((2, 3, 4), index=(Ellipsis, 1), id="ellipsis"),
     case((3, 4), index=(None, slice(None), None, 2), id="none"),
     case((4, 5), index=np.array([0, 2, 0, 3]), id="int-array-repeated"),
     case((4, 5), index=(np.array([[0, 1], [3, 0]]), slice(1, 4)), id="int-array-2d-and-slice"),
     case((4, 5), index=(np.array([1, 1, 2]), np.array([0, 0, 4])), id="two-arrays-repeated"),
     case((4, 5), tensor_index=[3, 1, 3], id="tensor-index-repeated"),
     case((3, 4), tensor_index=_COND, id="bool-mask-tensor"),
     case((3, 4), index=np.array([True, False, True]), id="bool-mask-rows"),
     case(arg((4, 5), transposed=True), index=(slice(None), np.array([0, 4, 4])),
          id="noncontiguous"),
     case((), index=None, id="scalar-none"),
     ref=_getitem_ref)


def _index_put_add(F, g, shape, index):
    from chainrule.ops.tensor_ns import index_put_add

    return index_put_add(shape, index, g)


def _index_put_add_ref(g, shape, index):
    out = np.zeros(shape)
    np.add.at(out, index, g)
    return out


spec("IndexPutAdd", _index_put_add,
     case((3, 5), shape=(4, 5), index=np.array([0, 2, 0]), id="repeated-rows"),
     case((2,), shape=(3, 4), index=(1, slice(1, 3)), id="basic"),
     torch=False, ref=_index_put_add_ref)
spec("Cat", lambda F, *xs, dim=0: F.cat(xs, dim),
     case((2, 3), (4, 3)), case((2, 3), (2, 1), (2, 2), dim=-1, id="three-negdim"),
     case(arg((2, 3), transposed=True), (2, 5), dim=1, id="noncontiguous"),
     case((1, 3), (1, 3), id="size1"),
     ref=lambda *xs, dim=0: np.concatenate(xs, axis=dim))
spec("Stack", lambda F, *xs, dim=0: F.stack(xs, dim),
     case((2, 3), (2, 3)), case((), (), (), id="scalars"),
     case((2, 3), arg((2, 3), transposed=True), dim=-1, id="negdim-noncontiguous"),
     ref=lambda *xs, dim=0: np.stack(xs, axis=dim))
_IDX = np.array([[0, 0, 3], [2, 1, 1], [3, 3, 3]])
spec("Gather", lambda F, x, dim, index: x.gather(dim, F.tensor(index)),
     case((3, 4), dim=1, index=_IDX, id="dim1-repeated"),
     case((4, 3), dim=0, index=_IDX.T[:, :2].clip(0, 3), id="dim0"),
     case((2, 3, 4), dim=-1, index=np.stack([_IDX[:2]] * 2)[:, :, :2], id="negdim"),
     case(arg((3, 4), transposed=True), dim=-1, index=_IDX, id="noncontiguous"),
     case((), dim=0, index=np.array(0), id="scalar"),
     ref=_gather_ref)
spec("ScatterAdd",
     lambda F, x, src, dim, index: x.scatter_add(dim, F.tensor(index), src),
     case((3, 4), (3, 3), dim=1, index=_IDX, id="dim1-repeated"),
     case((4, 4), (3, 3), dim=0, index=_IDX, id="dim0-repeated"),
     case((3, 4), (3, 2), dim=-1, index=_IDX[:, :2], id="negdim"),
     # PyTorch's own backward rejects a src larger than index, so no comparison with it
     case((3, 4), (3, 3), dim=1, index=_IDX[:, :2], id="src-larger-than-index", torch=False),
     case(arg((3, 4), transposed=True), arg((3, 3), transposed=True), dim=1, index=_IDX,
          id="noncontiguous"),
     ref=lambda x, src, dim, index: _scatter_add_ref(x, src, index, dim))
spec("IndexSelect", lambda F, x, dim, index: x.index_select(dim, F.tensor(index)),
     case((4, 3), dim=0, index=[0, 3, 0], id="dim0-repeated"),
     case((2, 3, 4), dim=-1, index=[3, 1], id="negdim"),
     case(arg((4, 3), transposed=True), dim=1, index=[2, 2], id="noncontiguous"),
     case((), dim=0, index=[0], id="scalar"),
     ref=lambda x, dim, index: np.take(x, index, axis=dim) if x.ndim else x.copy())
_MASK = np.array([[True, False, False, True], [False, True, False, False], [True, True,
                                                                            False, False]])
spec("MaskedFill", lambda F, x, mask, value: x.masked_fill(F.tensor(mask), value),
     case((3, 4), mask=_MASK, value=0.5), case((2, 3, 4), mask=_MASK[0], value=-1.0,
                                               id="broadcast-mask"),
     case(arg((3, 4), transposed=True), mask=_MASK, value=2.0, id="noncontiguous"),
     ref=lambda x, mask, value: np.where(mask, value, x))
spec("Pad", lambda F, x, pad, value=0.0: _nnf(F).pad(x, pad, value=value),
     case((3, 4), pad=(1, 2)), case((2, 3, 4), pad=(0, 1, 2, 0), value=1.5, id="two-dims-value"),
     case((1, 4), pad=(0, 0, 2, 1), id="size1-only-first-dim"),
     case((3, 5), pad=(-1, 2, 1, -2), id="negative-crops"),
     case(arg((4, 3), transposed=True), pad=(2, 0, 0, 1), id="noncontiguous"),
     ref=_pad_ref)
spec("Flip", lambda F, x, dims: x.flip(dims),
     case((3, 4), dims=(0,)), case((2, 3, 4), dims=(-1, 0), id="negdims"),
     case(arg((4, 3), transposed=True), dims=(1,), id="noncontiguous"),
     ref=lambda x, dims: np.flip(x, dims))
spec("Roll", lambda F, x, shifts, dims=None: x.roll(shifts, dims),
     case((3, 4), shifts=1, dims=1), case((3, 4), shifts=-5, id="flat"),
     case((2, 3, 4), shifts=(1, -2), dims=(0, -1), id="two-dims"),
     case(arg((4, 3), transposed=True), shifts=2, dims=0, id="noncontiguous"),
     ref=lambda x, shifts, dims=None: np.roll(x, shifts, dims))
spec("Tile", lambda F, x, sizes: x.repeat(*sizes),
     case((2, 3), sizes=(2, 3)), case((3,), sizes=(2, 1, 2), id="new-lead-dims"),
     case((), sizes=(3,), id="scalar"),
     case(arg((3, 2), transposed=True), sizes=(1, 2), id="noncontiguous"),
     ref=lambda x, sizes: _repeat_ref(x, sizes))
spec("TriMask", lambda F, x, upper, k=0: x.triu(k) if upper else x.tril(k),
     case((4, 4), upper=False), case((3, 5), upper=True, k=1, id="triu-k1"),
     case((2, 3, 3), upper=False, k=-1, id="batched-tril-k-1"),
     case(arg((4, 3), transposed=True), upper=True, id="noncontiguous"),
     ref=lambda x, upper, k=0: np.triu(x, k) if upper else np.tril(x, k))

# ----------------------------------------------------------------------------- linear algebra

spec("Matmul", lambda F, a, b: a @ b,
     case((3, 4), (4, 2)), case((4,), (4,), id="1d-1d"), case((4,), (4, 3), id="1d-2d"),
     case((3, 4), (4,), id="2d-1d"), case((4,), (2, 4, 3), id="1d-batched"),
     case((2, 3, 4), (4,), id="batched-1d"),
     case((2, 1, 3, 4), (5, 4, 2), id="broadcast-batch"),
     case((2, 3, 4), (4, 2), id="batched-2d-folded"),
     case((3, 4), (2, 4, 5), id="2d-batched"),
     case(arg((3, 4), transposed=True), arg((4, 2), transposed=True), id="noncontiguous"),
     case((1, 4), (4, 1), id="size1"),
     ref=np.matmul)
spec("Einsum", lambda F, *xs, eq: F.einsum(eq, *xs),
     case((3, 4), (4, 2), eq="ij,jk->ik"), case((2, 3, 4), (2, 4, 2), eq="bij,bjk->bik",
                                                   id="batched"),
     case((3,), (4,), eq="i,j->ij", id="outer"), case((3, 4), eq="ij->", id="total"),
     case((2, 3, 4), (4, 5), eq="...ij,jk->...ik", id="ellipsis"),
     case((3, 4), (2,), eq="ij,k->ik", id="index-in-one-operand-only"),
     case((3, 4), (4, 2), eq="ij,jk", id="implicit-output"),
     case(arg((4, 3), transposed=True), (3, 4), (4,), eq="ij,jk,k->i", id="three-operands"),
     ref=lambda *xs, eq: np.einsum(eq, *xs))

# ----------------------------------------------------------------------------- engine helpers


def _to_device(F, x):
    from chainrule.ops.device import ToDevice

    return ToDevice.apply(x * x, device="cpu")


spec("ToDevice", _to_device, case((3, 4)), torch=False, ref=lambda x: x * x)


def _scatter_add_zeros(F, x, shape, dim, index):
    from chainrule.ops import tensor_ns
    from chainrule.ops.index import _scatter_index

    return tensor_ns.scatter_add_zeros(shape, _scatter_index(np, np.asarray(index), dim), x)


spec("_ScatterAddZeros", _scatter_add_zeros,
     case((3, 3), shape=(3, 4), dim=1, index=_IDX, id="dim1-repeated"),
     case((3, 3), shape=(4, 3), dim=0, index=_IDX, id="dim0-repeated"),
     torch=False,
     ref=lambda x, shape, dim, index: _scatter_add_ref(np.zeros(shape), x, index, dim))


class Cube(cr.autograd.Function):
    """y = x**3 * w;  dx = 3 x**2 w g, dw = x**3 g (written with tensor ops, so it twice
    differentiates)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * x * x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return 3 * x * x * w * g, x * x * x * g


spec("_CustomOp", lambda F, x, w: Cube.apply(x, w),
     case((3, 4), (3, 4)), case((), (), id="scalars"),
     torch=False, ref=lambda x, w: x**3 * w)

# ----------------------------------------------------------------------------- other packages
# Rows for ops defined outside chainrule.ops (nn.functional and the like) go here.


def _nnF(F):
    """chainrule.nn.functional or torch.nn.functional."""
    return F.nn.functional


def _ints(F, a):
    """An integer index array as the library's tensor (class targets, embedding indices)."""
    return F.tensor(np.asarray(a))


def _np_log_softmax(x, axis=-1):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _ce_ref(x, t, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    logp = _np_log_softmax(x, 1)
    C = x.shape[1]
    valid = t != ignore_index
    ti = np.where(valid, t, 0)
    loss = -(1 - label_smoothing) * logp[np.arange(len(t)), ti] - label_smoothing / C * logp.sum(1)
    loss = loss * valid
    return {"none": loss, "sum": loss.sum(), "mean": loss.sum() / valid.sum()}[reduction]


def _attention_ref(q, k, v, is_causal=False):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if is_causal:
        s = np.where(np.triu(np.ones(s.shape[-2:], bool), 1), -np.inf, s)
    a = np.exp(s - s.max(-1, keepdims=True))
    return a / a.sum(-1, keepdims=True) @ v


def _conv_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct convolution: a sum over kernel offsets of strided input slices times weights."""
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Ho = (H + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    Wo = (W + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    y = np.zeros((N, O, Ho, Wo))
    og = O // groups
    for o in range(O):
        c0 = (o // og) * Cg
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, c0:c0 + Cg, i * dilation:i * dilation + stride * (Ho - 1) + 1:stride,
                           j * dilation:j * dilation + stride * (Wo - 1) + 1:stride]
                y[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
    return y if b is None else y + b.reshape(1, O, 1, 1)


def _pool_ref(x, k, s, p, how):
    N, C, H, W = x.shape
    fill = -np.inf if how == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = np.empty((N, C, Ho, Wo))
    for a in range(Ho):
        for c in range(Wo):
            win = xp[:, :, a * s:a * s + k, c * s:c * s + k]
            out[:, :, a, c] = win.max((2, 3)) if how == "max" else win.mean((2, 3))
    return out


def _dropout(F, x, p):
    cr.manual_seed(0)  # the same mask on every call, so finite differences see one function
    return cr.nn.functional.dropout(x, p)


def _dropout_ref(x, p):
    keep = np.random.default_rng(0).random(x.shape, dtype=np.float32) >= p
    return x * keep / (1 - p)


def _hook_identity(F, x):
    from chainrule.nn.module import _HookIdentity

    return _HookIdentity.apply(x)


spec("LinearOp", lambda F, x, w, b=None: _nnF(F).linear(x, w, b),
     case((3, 4), (2, 4), (2,)), case((2, 3, 4), (5, 4), (5,), id="batched"),
     case((4,), (3, 4), id="1d-no-bias"),
     case(arg((3, 4), transposed=True), (2, 4), (2,), id="noncontiguous"),
     ref=lambda x, w, b=None: x @ w.T + (0 if b is None else b))
spec("EmbeddingOp", lambda F, w, idx: _nnF(F).embedding(_ints(F, idx), w),
     case((5, 3), np.array([[0, 4, 0], [2, 1, 0]]), id="repeated"),
     ref=lambda w, idx: w[idx])
spec("DropoutOp", _dropout, case((4, 5), p=0.3), torch=False, ref=_dropout_ref)
spec("LayerNormOp", lambda F, x, w, b: _nnF(F).layer_norm(x, (4,), w, b),
     case((3, 4), (4,), (4,)), case((2, 3, 4), (4,), (4,), id="batched"),
     case(arg((3, 4), transposed=True), (4,), (4,), id="noncontiguous"),
     ref=lambda x, w, b: (x - x.mean(-1, keepdims=True))
     / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b)
spec("RMSNormOp", lambda F, x, w: _nnF(F).rms_norm(x, (4,), w, eps=1e-6),
     case((3, 4), (4,)), case((2, 3, 4), (4,), id="batched"),
     ref=lambda x, w: x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * w)
spec("CrossEntropyOp", lambda F, x, t, **kw: _nnF(F).cross_entropy(x, _ints(F, t), **kw),
     case((4, 3), np.array([0, 2, 1, 2])),
     case((4, 3), np.array([0, 2, 1, 2]), label_smoothing=0.2, ignore_index=1, id="smooth-ignore"),
     case((4, 3), np.array([0, 2, 1, 2]), reduction="none", id="none"),
     domain=(-3, 3), ref=_ce_ref)
spec("SoftCrossEntropyOp", lambda F, x, y: _nnF(F).cross_entropy(x, y, label_smoothing=0.1),
     case((4, 3), arg((4, 3), 0.0, 1.0)),
     ref=lambda x, y: -((0.9 * y + 0.1 / 3) * _np_log_softmax(x, 1)).sum(1).mean())
spec("AttentionOp",
     lambda F, q, k, v, **kw: _nnF(F).scaled_dot_product_attention(q, k, v, **kw),
     case((2, 3, 4), (2, 5, 4), (2, 5, 2)),
     case((2, 4, 3), (2, 4, 3), (2, 4, 3), is_causal=True, id="causal"),
     ref=_attention_ref)
spec("_HookIdentity", _hook_identity, case((3, 2)), torch=False, ref=lambda x: x)
spec("Conv2dOp", lambda F, x, w, b=None, **kw: _nnF(F).conv2d(x, w, b, **kw),
     case((2, 2, 5, 5), (3, 2, 3, 3), (3,), padding=1),
     case((1, 4, 6, 5), (4, 2, 2, 3), stride=2, dilation=1, groups=2, id="strided-grouped"),
     case((1, 2, 6, 6), (2, 2, 2, 2), dilation=2, padding=1, id="dilated"),
     ref=_conv_ref)
spec("MaxPool2dOp", lambda F, x, **kw: _nnF(F).max_pool2d(x, **kw),
     case((2, 2, 4, 4), kernel_size=2),
     case((1, 2, 5, 5), kernel_size=3, stride=2, padding=1, id="overlapping-padded"),
     ref=lambda x, kernel_size, stride=None, padding=0: _pool_ref(
         x, kernel_size, stride or kernel_size, padding, "max"))
spec("AvgPool2dOp", lambda F, x, **kw: _nnF(F).avg_pool2d(x, **kw),
     case((2, 2, 4, 4), kernel_size=2),
     case((1, 2, 5, 5), kernel_size=3, stride=2, padding=1, id="overlapping-padded"),
     ref=lambda x, kernel_size, stride=None, padding=0: _pool_ref(
         x, kernel_size, stride or kernel_size, padding, "avg"))
def _rotary(F, x, theta=10000.0, start=0):
    from chainrule.models.llama import apply_rotary, rope_tables

    cos, sin = rope_tables(x.shape[-2], x.shape[-1], theta, start, dtype=np.float64)
    return apply_rotary(x, cos, sin)


def _rotary_ref(x, theta=10000.0, start=0):
    """Each pair (x_i, x_{i+d/2}) at position p rotated by p * theta**(-2i/d)."""
    T, d = x.shape[-2:]
    h = d // 2
    ang = np.outer(np.arange(start, start + T), theta ** (-2.0 * np.arange(h) / d))
    x1, x2 = x[..., :h], x[..., h:]
    return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang),
                           x2 * np.cos(ang) + x1 * np.sin(ang)], axis=-1)


spec("Rotary", _rotary,
     case((3, 4)), case((2, 2, 5, 6), theta=100.0, start=3, id="batched-offset"),
     case(arg((3, 4), transposed=True), theta=10.0, id="noncontiguous"),
     torch=False, ref=_rotary_ref)


# ----------------------------------------------------------------------------- channel norms,
# recurrent cells


def _batch_norm(F, x, w=None, b=None, how="batch", groups=1):
    if how == "group":
        return _nnF(F).group_norm(x, groups, w, b)
    if how == "instance":
        return _nnF(F).instance_norm(x, weight=w, bias=b)
    return _nnF(F).batch_norm(x, None, None, w, b, training=True)


def _batch_norm_ref(x, w=None, b=None, how="batch", groups=1):
    N, C = x.shape[:2]
    if how == "group":
        x3 = x.reshape(N, groups, -1)
        axes = (2,)
    elif how == "instance":
        x3 = x.reshape(N, C, -1)
        axes = (2,)
    else:
        x3 = x.reshape(N, C, -1)
        axes = (0, 2)
    y = (x3 - x3.mean(axes, keepdims=True)) / np.sqrt(x3.var(axes, keepdims=True) + 1e-5)
    y = y.reshape(N, C, -1)
    if w is not None:
        y = y * w[:, None]
    if b is not None:
        y = y + b[:, None]
    return y.reshape(x.shape)


spec("BatchNormOp", _batch_norm,
     case((4, 3), (3,), (3,), id="1d"),
     case((2, 3, 4, 2), (3,), (3,), id="2d"),
     case((3, 2, 5), id="no-affine"),
     case(arg((5, 3), transposed=True), (3,), (3,), id="noncontiguous"),
     ref=_batch_norm_ref)


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _lstm_cell(F, gates, c):
    if F is cr:
        return cr.nn.fused.LSTMCellOp.apply(gates, c)
    i, f, g, o = gates.chunk(4, 1)  # torch: the same step from its ops
    c2 = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return F.cat([o.sigmoid() * c2.tanh(), c2], 1)


def _lstm_cell_ref(gates, c):
    i, f, g, o = np.split(gates, 4, 1)
    c2 = _sig(f) * c + _sig(i) * np.tanh(g)
    return np.concatenate([_sig(o) * np.tanh(c2), c2], 1)


def _gru_cell(F, gi, gh, h):
    if F is cr:
        return cr.nn.fused.GRUCellOp.apply(gi, gh, h)
    ir, iz, inn = gi.chunk(3, 1)
    hr, hz, hn = gh.chunk(3, 1)
    r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
    n = (inn + r * hn).tanh()
    return (1 - z) * n + z * h


def _gru_cell_ref(gi, gh, h):
    ir, iz, inn = np.split(gi, 3, 1)
    hr, hz, hn = np.split(gh, 3, 1)
    r, z = _sig(ir + hr), _sig(iz + hz)
    n = np.tanh(inn + r * hn)
    return (1 - z) * n + z * h


spec("LSTMCellOp", _lstm_cell, case((3, 8), (3, 2)), case((1, 4), (1, 1), id="size-1"),
     ref=_lstm_cell_ref)
spec("GRUCellOp", _gru_cell, case((3, 6), (3, 6), (3, 2)), case((1, 3), (1, 3), (1, 1),
                                                                id="size-1"),
     ref=_gru_cell_ref)


spec("Atan2", lambda F, y, x: F.atan2(y, x),
     case((3, 4), (3, 4)), case((2, 1), (1, 3), id="broadcast"), case((), (), id="scalar"),
     case(arg((3, 2), transposed=True), (3, 2), id="noncontiguous"),
     domain=(0.3, 2.0), ref=np.arctan2)
spec("Cumprod", lambda F, x, dim: F.cumprod(x, dim),
     case((3, 4), 1), case((4, 2), -2, id="neg-dim"), case((5,), 0, id="1d"),
     case(arg(values=[[1.5, 0.0, 2.0, -1.0], [0.0, 0.5, 0.0, 3.0]]), 1, id="zeros"),
     case(arg((3, 2), transposed=True), 0, id="noncontiguous"),
     ref=lambda x, dim: np.cumprod(x, axis=dim))


def _scatter_prod_ref(x, src, dim, index, include_self=True):
    out = x.copy()
    where = tuple(index if d == dim else np.indices(index.shape, sparse=True)[d]
                  for d in range(index.ndim))
    part = src[tuple(slice(0, n) for n in index.shape)]
    if not include_self:
        out[where] = 1.0
    np.multiply.at(out, where, part)
    return out


spec("ScatterProd",
     lambda F, x, src, dim, index, include_self=True:
         x.scatter_reduce(dim, F.tensor(index), src, "prod", include_self=include_self),
     case((3, 4), (3, 3), dim=1, index=_IDX, id="dim1-repeated"),
     case((4, 4), (3, 3), dim=0, index=_IDX, include_self=False, id="dim0-without-self"),
     case(arg(values=[[1.5, 0.0, 2.0, -1.0], [0.5, 1.2, 0.0, 3.0], [1.1, 0.9, 1.3, 0.7]]),
          arg(values=[[0.0, 1.4, 0.8], [2.0, 0.0, 0.6], [1.2, 1.7, 0.9]]), dim=1, index=_IDX,
          id="zeros"),
     case(arg((3, 4), transposed=True), (3, 3), dim=1, index=_IDX, id="noncontiguous"),
     gradgrad=False, why="the products of the other factors are read from the arrays",
     ref=_scatter_prod_ref)


_CTC_TARGETS = np.array([[1, 2, 2], [3, 1, 0]])


def _ctc_ref(lp, targets=_CTC_TARGETS, in_len=(5, 4), tg_len=(3, 2), blank=0):
    """-log of the summed probability of every path that collapses to the target (all C^T
    paths enumerated: an independent reference for tiny T)."""
    import itertools

    out = []
    for n in range(lp.shape[1]):
        want = tuple(targets[n, :tg_len[n]])
        total = 0.0
        for path in itertools.product(range(lp.shape[2]), repeat=in_len[n]):
            merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
            if tuple(c for c in merged if c != blank) == want:
                total += np.exp(sum(lp[t, n, c] for t, c in enumerate(path)))
        out.append(-np.log(total))
    return np.array(out)


spec("CTCLossOp",
     lambda F, lp: F.nn.functional.ctc_loss(lp, F.tensor(_CTC_TARGETS), (5, 4), (3, 2),
                                            reduction="none"),
     case((5, 2, 4)), case(arg((5, 2, 4), transposed=True), id="noncontiguous"),
     domain=(-2.0, 0.0), ref=_ctc_ref, torch=False,
     why="PyTorch's gradient adds exp(log_probs) (see chainrule.nn.ctc); compared with "
         "PyTorch after a log_softmax in tests/nn/test_nn_ctc.py")


def _spd(F, a):
    """a a^T + 3 I: a symmetric positive definite matrix from any square a."""
    return a @ a.transpose(-1, -2) + 3.0 * F.tensor(np.eye(a.shape[-1])).to(a.dtype)


def _spd_ref(a):
    return a @ np.swapaxes(a, -1, -2) + 3.0 * np.eye(a.shape[-1])


def _dist_op(name):
    from chainrule.distributions import _special

    return getattr(_special, name)


spec("Lgamma", lambda F, x: _dist_op("Lgamma").apply(x),
     case((3, 4)), case((), id="scalar"), case(arg((3, 2), transposed=True), id="noncontiguous"),
     domain=(0.2, 8.0), torch=False, ref=lambda x: _lgamma_ref(x))
spec("Digamma", lambda F, x: _dist_op("Digamma").apply(x),
     case((3, 4)), case((), id="scalar"), domain=(0.2, 8.0), torch=False,
     ref=lambda x: np.vectorize(lambda v: _digamma_ref(v))(x))
spec("Cholesky", lambda F, a: _dist_op("Cholesky").apply(_spd(F, a)),
     case((3, 3)), case((2, 4, 4), id="batched"), torch=False,
     ref=lambda a: np.linalg.cholesky(_spd_ref(a)))
spec("SolveTril",
     lambda F, a, b: _dist_op("SolveTril").apply(
         a.tril() + 3.0 * F.tensor(np.eye(a.shape[-1])).to(a.dtype), b),
     case((3, 3), (3, 2)), case((2, 4, 4), (2, 4, 1), id="batched"), torch=False,
     ref=lambda a, b: np.linalg.solve(np.tril(a) + 3.0 * np.eye(a.shape[-1]), b))
spec("Solve",
     lambda F, a, b: _dist_op("Solve").apply(a + 3.0 * F.tensor(np.eye(a.shape[-1])).to(a.dtype),
                                             b),
     case((3, 3), (3, 2)), case((2, 4, 4), (2, 4, 1), id="batched"), torch=False,
     ref=lambda a, b: np.linalg.solve(a + 3.0 * np.eye(a.shape[-1]), b))


def _lgamma_ref(x):
    from math import lgamma

    return np.vectorize(lgamma)(x)


def _digamma_ref(v):
    """psi(v) from an independent series: sum_{n>=0} 1/(n+1) - 1/(n+v) minus Euler's gamma,
    the tail beyond N = 2e5 as its integral log((N+v-0.5)/(N+0.5))."""
    n = np.arange(200000.0)
    return float(np.sum(1 / (n + 1) - 1 / (n + v)) - 0.5772156649015329
                 + np.log((200000 + v - 0.5) / (200000 + 0.5)))
