"""The elementwise table (chainrule.backend.elementwise): every row's generated kernels
(compiled float32 and float64, forward and backward) against float64 closed forms written here
with the math module, over ranges that include both tails, NaN and infinities; the NumPy
fallback against the compiled code; the Tensor form (create_graph) by gradgradcheck; and the
table's language itself."""

from __future__ import annotations

import math
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule import backend
from chainrule.backend import elementwise as E
from chainrule.backend import numpy_ns

K = backend._native
needs_native = pytest.mark.skipif(K is None, reason="chainrule._native was not built here")

SELU_A, SELU_S = 1.6732632423543772, 1.0507009873554805


def _sig(u):
    return 1 / (1 + math.exp(-u)) if u >= 0 else math.exp(u) / (1 + math.exp(u))


def _exp(u):
    try:
        return math.exp(u)
    except OverflowError:
        return math.inf


def _softplus(u, beta=1.0, threshold=20.0):
    return u if u * beta > threshold else math.log1p(_exp(u * beta)) / beta


def _ncdf(u):
    return 0.5 * math.erfc(-u / math.sqrt(2))


def _gelu_tanh(u):
    return 0.5 * u * (1 + math.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))


def _dgelu_tanh(u):
    t = math.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3))
    return 0.5 * (1 + t) + 0.5 * u * (1 - t * t) * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715
                                                                            * u * u)


# name: (params, f(x, *p), df(x, *p), domain of x for the backward check)
REF = {
    "relu": ((), lambda x: max(x, 0.0), lambda x: float(x > 0)),
    "leaky_relu": ((0.1,), lambda x, s: x if x > 0 else s * x, lambda x, s: 1.0 if x > 0 else s),
    "sigmoid": ((), _sig, lambda x: _sig(x) * _sig(-x)),
    "tanh": ((), math.tanh, lambda x: 1 - math.tanh(x) ** 2),
    "silu": ((), lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * _sig(-x))),
    "gelu": ((), lambda x: x * _ncdf(x),
             lambda x: _ncdf(x) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    "gelu_tanh": ((), _gelu_tanh, _dgelu_tanh),
    "elu": ((0.7,), lambda x, a: x if x > 0 else a * math.expm1(x),
            lambda x, a: 1.0 if x > 0 else a * math.exp(x)),
    "selu": ((), lambda x: SELU_S * (x if x > 0 else SELU_A * math.expm1(x)),
             lambda x: SELU_S * (1.0 if x > 0 else SELU_A * math.exp(x))),
    "celu": ((0.5,), lambda x, a: x if x > 0 else a * math.expm1(x / a),
             lambda x, a: 1.0 if x > 0 else math.exp(x / a)),
    "softplus": ((1.5, 10.0), _softplus,
                 lambda x, b, t: 1.0 if x * b > t else _sig(x * b)),
    "mish": ((), lambda x: x * math.tanh(_softplus(x)),
             lambda x: math.tanh(_softplus(x)) + x * (1 - math.tanh(_softplus(x)) ** 2) * _sig(x)),
    "logsigmoid": ((), lambda x: min(x, 0.0) - math.log1p(math.exp(-abs(x))),
                   lambda x: _sig(-x)),
    "hardtanh": ((-0.5, 2.0), lambda x, lo, hi: min(max(x, lo), hi),
                 lambda x, lo, hi: 0.0 if (x <= lo or x >= hi) else 1.0),
    "hardsigmoid": ((), lambda x: min(max(x + 3, 0.0), 6.0) / 6,
                    lambda x: 1 / 6 if -3 < x < 3 else 0.0),
    "hardswish": ((), lambda x: x * min(max(x + 3, 0.0), 6.0) / 6,
                  lambda x: 0.0 if x <= -3 else (1.0 if x >= 3 else x / 3 + 0.5)),
    "softsign": ((), lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)) ** 2),
    "tanhshrink": ((), lambda x: x - math.tanh(x), lambda x: math.tanh(x) ** 2),
    "exp": ((), _exp, _exp),
    "expm1": ((), lambda x: math.expm1(x) if x < 700 else math.inf, _exp),
    "log": ((), lambda x: -math.inf if x == 0 else math.log(x), lambda x: 1 / x),
    "log1p": ((), lambda x: -math.inf if x == -1 else math.log1p(x), lambda x: 1 / (1 + x)),
    "sqrt": ((), math.sqrt, lambda x: 0.5 / math.sqrt(x)),
    "rsqrt": ((), lambda x: math.copysign(math.inf, x) if x == 0 else 1 / math.sqrt(x),
              lambda x: -0.5 * x ** -1.5),
    "reciprocal": ((), lambda x: math.copysign(math.inf, x) if x == 0 else 1 / x,
                   lambda x: -1 / (x * x)),
    "pow": ((3.0,), lambda x, p: x**p, lambda x, p: p * x ** (p - 1)),
}
POSITIVE = {"log", "sqrt", "rsqrt"}  # rows whose backward check takes x > 0 only


def _ref(f, x, *p):
    """f elementwise in float64 through the math module: NaN where it is undefined."""
    out = np.empty(x.shape, np.float64)
    for i, v in enumerate(x.astype(np.float64).ravel()):
        try:
            out.flat[i] = f(float(v), *p) if not math.isnan(v) else math.nan
        except (ValueError, ZeroDivisionError):
            out.flat[i] = math.nan
        except OverflowError:
            out.flat[i] = math.inf
    return out


def _inputs(dtype):
    rng = np.random.default_rng(1)
    big = 80.0 if dtype == np.float32 else 600.0
    x = np.concatenate([rng.normal(0, 3, 3000), np.linspace(-big, big, 2001),
                        [0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 3.0, -3.0, 20.0, -20.0,
                         1e30, -1e30]])
    return x.astype(dtype)


SPECIALS = np.array([np.nan, np.inf, -np.inf])
TOL = {np.float32: (4e-6, 3e-7), np.float64: (1e-12, 1e-15)}


def _close(got, ref, x, dtype, what):
    """|got - ref| <= rtol |ref| + atol (1 + |x|) where ref is finite in dtype; equal where it
    overflows or is NaN."""
    rtol, atol = TOL[dtype]
    ref_d = ref.astype(dtype)
    fin = np.isfinite(ref_d)
    with np.errstate(invalid="ignore"):
        err = np.abs(got.astype(np.float64) - ref)
    bound = rtol * np.abs(ref) + atol * (1 + np.abs(x.astype(np.float64)))
    bad = fin & ~(err <= bound)
    assert not bad.any(), (f"{what}: at x={x[bad][:5]} got {got[bad][:5]}, "
                           f"expected {ref[bad][:5]}")
    np.testing.assert_array_equal(got[~fin], ref_d[~fin], err_msg=what)


def test_every_row_has_a_reference_here():
    assert set(REF) == set(E.ROWS)


def test_every_row_has_a_compiled_kernel_where_a_compiler_is_found():
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if not (shutil.which("cc") or shutil.which("gcc")) or not headers:
        pytest.skip("no C compiler or Python headers here: the NumPy code runs")
    assert K is not None, "a C compiler is here but chainrule._native is not built"
    missing = set(E.ROWS) - set(K.pointwise_names())
    assert not missing, f"rows of the elementwise table without a compiled kernel: {missing}"


def _forward(name, x, params):
    y, kept = numpy_ns.pointwise_forward(name, x, params)
    assert y.dtype == x.dtype and y.shape == x.shape
    return y, kept


@pytest.mark.parametrize("native", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(E.ROWS))
def test_forward_matches_the_float64_closed_form(name, dtype, native):
    if native and K is None:
        pytest.skip("chainrule._native was not built here")
    params, f, _ = REF[name]
    x = np.concatenate([_inputs(dtype), SPECIALS.astype(dtype)])
    with backend.use_native(native):
        y, _ = _forward(name, x, params)
    _close(y, _ref(f, x, *params), x, dtype, f"{name} forward")


@pytest.mark.parametrize("native", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(E.ROWS))
def test_backward_matches_the_float64_derivative(name, dtype, native):
    if native and K is None:
        pytest.skip("chainrule._native was not built here")
    params, f, df = REF[name]
    x = _inputs(dtype)
    if name in POSITIVE:
        x = np.abs(x[x != 0])
    if name == "log1p":
        x = x[x > -0.99]
    if name in ("reciprocal", "pow"):
        x = x[np.abs(x) > 1e-6]
    if name == "gelu_tanh":  # x^3 overflows beyond: NaN there, as PyTorch's
        x = x[np.abs(x) < 1e12]
    g = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    with backend.use_native(native):
        y, kept = _forward(name, x, params)
        saved = y if E.ROWS[name].reads == "y" else x
        d = numpy_ns.pointwise_backward(name, saved, g, params, kept)
    assert d.dtype == dtype
    ref = g * _ref(df, x, *params)
    if E.ROWS[name].reads == "y":
        # a derivative read from y carries y's rounding: y (1 - y) of a sigmoid that rounded
        # to 1 is 0; compare against the derivative at the rounded output instead
        yref = _ref(f, x, *params).astype(dtype).astype(np.float64)
        ref = g * _dy(name, yref)
    _close(d, ref, x, dtype, f"{name} backward")


def _dy(name, y):
    return {"relu": (y > 0).astype(float), "sigmoid": y * (1 - y), "tanh": 1 - y * y,
            "exp": y, "expm1": y + 1, "sqrt": 0.5 / y, "rsqrt": -0.5 * y**3,
            "reciprocal": -(y * y)}[name]


@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_and_numpy_agree_on_nan_and_infinities(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype)
    for name in E.ROWS:
        params = REF[name][0]
        with backend.use_native(True):
            a, _ = _forward(name, x, params)
        with backend.use_native(False):
            b, _ = _forward(name, x, params)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("p", [-3.0, -2.5, -2, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3, 4, 7.5, 13])
def test_small_powers_are_exact_products_and_roots(p):
    x = np.random.default_rng(3).uniform(0.2, 3, 500)
    t = cr.tensor(x, requires_grad=True)
    y = t**p
    y.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), x**p, rtol=1e-13)
    np.testing.assert_allclose(t.grad.numpy(), p * x ** (p - 1) if p else 0 * x, rtol=1e-12)
    assert type(y.grad_fn).__name__ == "Pow"
    x32 = x.astype(np.float32)
    np.testing.assert_allclose((cr.tensor(x32) ** p).numpy(), x32.astype(np.float64) ** p,
                               rtol=1e-6)


def test_negative_bases_and_zero_follow_numpy_power():
    """C's pow (NumPy's), except x ** -0.5, which PyTorch computes as 1 / sqrt(x)."""
    x = np.array([-2.0, -0.5, 0.0, -0.0, 0.5, np.inf, -np.inf, np.nan])
    for p in (2, 3, -1, -2, 0.5, -0.5, 1.5, -1.5, 2.5, 0):
        with np.errstate(all="ignore"):
            ref = np.power(x, p) if p != -0.5 else 1 / np.sqrt(x)
        got = (cr.tensor(x) ** p).numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=str(p))
        np.testing.assert_allclose(got[~np.isnan(got)], ref[~np.isnan(ref)], rtol=1e-15,
                                   err_msg=str(p))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref), err_msg=str(p))


@pytest.mark.parametrize("name", sorted(set(E.ROWS) - {"relu", "hardtanh"}))
def test_the_tensor_form_is_differentiable_twice(name):
    """Under create_graph the Tensor namespace runs the row's expressions as ops: the second
    derivative by finite differences of the first."""
    from chainrule.ops.pointwise import pointwise

    params = REF[name][0]
    rng = np.random.default_rng(4)
    x = rng.uniform(0.3, 2.5, 7) * rng.choice([-1, 1], 7)
    if name in POSITIVE or name in ("log1p", "pow"):
        x = np.abs(x)
    t = cr.tensor(x, requires_grad=True)
    assert cr.autograd.gradgradcheck(lambda v: pointwise(name, v, *params), (t,))


def test_a_row_is_all_it_takes(monkeypatch):
    """A new row gets its C, its NumPy code, its Tensor code and its CUDA statements."""
    row = E.Row("square_plus", "SquarePlus", "x * x + a", "2 * x", params=("a",))
    fwd = E.python_function(row, "forward")
    bwd = E.python_function(row, "backward")
    x = np.array([1.0, -2.0, 3.0])
    np.testing.assert_array_equal(fwd(x, (0.5,), np), x * x + 0.5)
    np.testing.assert_array_equal(bwd(x, np.ones(3), (0.5,), np), 2 * x)
    spec = E.cuda_kernel_spec(row)
    assert spec["forward"] == ("T x, T a", "T y", "y = ((x * x) + a);")
    monkeypatch.setattr(E, "TABLE", E.TABLE + (row,))
    src = E.c_source()
    assert "ew_square_plus_fwd_f32" in src and "ew_square_plus_bwd_f64" in src


@pytest.mark.parametrize("bad", ["foo(x)", "x ** 2", "x if x else 0", "where(x, 1)",
                                 "y + 1", "1e400 * x"])
def test_the_language_rejects_what_it_cannot_translate(bad, monkeypatch):
    row = E.Row("bad", "Bad", bad, "1")
    monkeypatch.setattr(E, "TABLE", (row,))
    with pytest.raises(ValueError, match="elementwise table"):
        E.c_source()


@needs_native
def test_threads_split_the_work_without_changing_a_value():
    x = np.random.default_rng(5).standard_normal(300_001).astype(np.float32)
    g = np.random.default_rng(6).standard_normal(x.shape).astype(np.float32)
    before = cr.get_num_threads()
    out = {}
    try:
        for n in (1, 2, 3):
            cr.set_num_threads(n)
            assert cr.get_num_threads() == n == K.get_num_threads()
            y, kept = numpy_ns.pointwise_forward("gelu", x)
            out[n] = (y, numpy_ns.pointwise_backward("gelu", x, g, (), kept))
    finally:
        cr.set_num_threads(before)
    for n in (2, 3):
        np.testing.assert_array_equal(out[n][0], out[1][0])
        np.testing.assert_array_equal(out[n][1], out[1][1])
    with pytest.raises(ValueError, match="set_num_threads: expected a positive int, got 0"):
        cr.set_num_threads(0)


@needs_native
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_runs_the_threaded_kernels():
    import os

    x = np.random.default_rng(7).standard_normal(200_000)
    before = cr.get_num_threads()
    cr.set_num_threads(2)
    try:
        ref, _ = numpy_ns.pointwise_forward("tanh", x)  # the pool exists in the parent now
        pid = os.fork()
        if pid == 0:  # the child: its pool is started afresh
            y, _ = numpy_ns.pointwise_forward("tanh", x)
            os._exit(0 if np.array_equal(y, ref) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        cr.set_num_threads(before)
