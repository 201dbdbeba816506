"""The compiled float32 kernels (chainrule._native) against float64 references written here,
and against the NumPy code that runs where they are not built: GELU, the row softmax of
attention (causal or not), layer norm and the Adam step, each forward and backward, including
NaN, infinities and fully masked rows."""

from __future__ import annotations

import math
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import backend, optim

rng = np.random.default_rng(7)
K = backend._native
needs_native = pytest.mark.skipif(K is None, reason="chainrule._native was not built here")


def test_the_kernels_are_built_wherever_a_c_compiler_and_python_headers_exist():
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if shutil.which("cc") or shutil.which("gcc"):
        assert K is not None or not headers, "a C compiler is here but chainrule._native is not"


def _phi64(x):
    return 0.5 * np.vectorize(math.erfc)(-np.asarray(x, np.float64) / math.sqrt(2))


def _gelu_inputs():
    x = np.concatenate([rng.standard_normal(5000) * 3, np.linspace(-12, 12, 4001),
                        [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0]])
    return x.astype(np.float32)


def _gelu_kernel(x, g=None, cdf=None):
    k = K.pointwise_names().index("gelu")
    if g is None:
        y, cdf = np.empty_like(x), np.empty_like(x)
        K.pointwise(k, 0, x.itemsize, x, cdf, None, y, ())
        return y, cdf
    dx = np.empty_like(x)
    K.pointwise(k, 1, x.itemsize, x, cdf, g, dx, ())
    return dx


@needs_native
def test_gelu_kernel_matches_the_float64_function_and_its_derivative():
    x = _gelu_inputs()
    g = rng.standard_normal(x.size).astype(np.float32)
    y, cdf = _gelu_kernel(x)
    x64 = x.astype(np.float64)
    phi = _phi64(x64)
    # relative accuracy in both tails; in the far left, -x^2 / 2 rounded to float32 costs about
    # 1e-7 x^2 (1.4e-5 at x = -12, where Phi is 2e-33)
    tol = 2e-6 + 1.5e-7 * x64**2
    assert (np.abs(cdf - phi) <= tol * phi + 1e-38).all()
    assert (np.abs(y - x64 * phi) <= tol * np.abs(x64 * phi) + 1e-38).all()
    ref = g * (phi + x64 * np.exp(-x64**2 / 2) / math.sqrt(2 * math.pi))
    dx = _gelu_kernel(x, g, cdf)  # with Phi saved from the forward
    np.testing.assert_allclose(dx, ref, rtol=1e-5, atol=1e-6 * np.abs(g).max())


@needs_native
def test_gelu_kernel_keeps_nan_and_infinities_as_numpy_does():
    x = np.array([np.nan, np.inf, -np.inf, 100.0, -100.0], np.float32)
    y, _ = _gelu_kernel(x)
    with np.errstate(all="ignore"):
        ref = x.astype(np.float64) * _phi64(x)
    np.testing.assert_array_equal(y, ref.astype(np.float32))  # nan, inf, nan, 100, -0


def _softmax64(S, L=0):
    S = S.astype(np.float64)
    if L:  # query i sees keys j <= i
        allowed = np.arange(S.shape[-1])[None, :] <= np.arange(L)[:, None]
        S = np.where(allowed, S, -np.inf)
    with np.errstate(invalid="ignore"):
        e = np.exp(S - S.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


@needs_native
@pytest.mark.parametrize("L,n,scale", [(0, 37, 1.0), (64, 64, 0.177), (5, 9, 1.0), (1, 16, 2.0),
                                       (9, 5, 0.5)])
def test_softmax_rows_kernel_matches_float64_with_and_without_the_causal_mask(L, n, scale):
    rows = L or 6
    S = (rng.standard_normal((3, rows, n)) * 4).astype(np.float32)
    out = S.copy()
    K.softmax_rows(out, n, L, scale)
    ref = _softmax64(S.astype(np.float64) * scale, L)
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=1e-9)


@needs_native
def test_softmax_rows_kernel_spreads_nan_over_its_row_and_zeroes_minus_infinity():
    S = np.array([[0.0, np.nan, 1.0], [0.0, -np.inf, 1.0], [np.inf, 0.0, 0.0]], np.float32)
    K.softmax_rows(S, 3, 0)
    assert np.isnan(S[0]).all() and np.isnan(S[2, 0])
    np.testing.assert_allclose(S[1], [1 / (1 + math.e), 0.0, math.e / (1 + math.e)], rtol=1e-6)


@needs_native
def test_softmax_backward_kernel_matches_float64():
    A = _softmax64(rng.standard_normal((4, 7, 19))).astype(np.float32)
    gA = rng.standard_normal(A.shape).astype(np.float32)
    ref = A * (gA - (gA.astype(np.float64) * A).sum(-1, keepdims=True))
    out = gA.copy()
    K.softmax_backward(out, A, 19)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    out = gA.copy()
    K.softmax_backward(out, A, 19, 0.25)  # with the scale of softmax(scale S) folded in
    np.testing.assert_allclose(out, 0.25 * ref, rtol=1e-5, atol=1e-6)


def _ln64(x, w, b, g, eps):
    x, g = x.astype(np.float64), g.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    r = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xh = (x - mu) * r
    y = xh * (1 if w is None else w) + (0 if b is None else b)
    gh = g * (1 if w is None else w)
    gx = r * (gh - gh.mean(-1, keepdims=True) - xh * (gh * xh).mean(-1, keepdims=True))
    return y, gx, (g * xh).sum(0), g.sum(0)


@needs_native
@pytest.mark.parametrize("affine", ["none", "w", "wb"])
def test_layer_norm_kernels_match_float64(affine):
    R, n, eps = 50, 37, 1e-5
    x = (rng.standard_normal((R, n)) * 3 + 2).astype(np.float32)
    g = rng.standard_normal((R, n)).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32) if affine != "none" else None
    b = rng.standard_normal(n).astype(np.float32) if affine == "wb" else None
    y, xh, r = np.empty_like(x), np.empty_like(x), np.empty((R, 1), np.float32)
    K.layernorm_forward(x, w, b, y, xh, r, n, eps)
    gx, gw, gb = np.empty_like(x), np.zeros(n), np.zeros(n)
    K.layernorm_backward(g, xh, r, w, gx, gw, gb, n)
    y64, gx64, gw64, gb64 = _ln64(x, w, b, g, eps)
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, gx64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gw, gw64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gb, gb64, rtol=1e-6, atol=1e-6)


@needs_native
def test_kernels_reject_buffers_that_are_too_small():
    x = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="out holds 16 bytes, needs 32"):
        K.pointwise(0, 0, 4, x, None, None, np.zeros(4, np.float32), ())
    with pytest.raises(ValueError, match="bad row length"):
        K.softmax_rows(np.zeros(7, np.float32), 3, 0)


# ----------------------------------------------------------------------------- through the ops


def _run(fn, *arrays, native):
    """fn on float32 leaves made from arrays, with the kernels on or off: output, gradients."""
    with backend.use_native(native):
        ts = [cr.tensor(a, requires_grad=True) for a in arrays]
        y = fn(*ts)
        u = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
        (y * cr.tensor(u)).sum().backward()
        return [y._data] + [t.grad._data for t in ts]


@needs_native
@pytest.mark.parametrize("case", ["gelu", "layer_norm", "attention_causal", "attention",
                                  "attention_causal_fewer_queries", "attention_causal_fewer_keys"])
def test_ops_give_the_same_values_and_gradients_with_and_without_the_kernels(case):
    x = rng.standard_normal((2, 3, 8, 16)).astype(np.float32)
    y = rng.standard_normal((2, 3, 5, 16)).astype(np.float32)

    def causal(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    fns = {
        "gelu": (lambda a: F.gelu(a), [x]),
        "layer_norm": (lambda a, w, b: F.layer_norm(a, (16,), w, b),
                       [x, rng.standard_normal(16).astype(np.float32),
                        rng.standard_normal(16).astype(np.float32)]),
        "attention_causal": (causal, [x, x[::-1].copy(), x * 2]),
        "attention": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
                      [x, x[::-1].copy(), x * 2]),
        "attention_causal_fewer_queries": (causal, [y, x, x * 2]),  # 5 queries, 8 keys
        "attention_causal_fewer_keys": (causal, [x, y, y * 2]),  # 8 queries, 5 keys
    }
    fn, arrays = fns[case]
    on, off = _run(fn, *arrays, native=True), _run(fn, *arrays, native=False)
    for a, b in zip(on, off):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@needs_native
@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=0.1), dict(maximize=True),
                                dict(weight_decay=0.05, decoupled=False)])
def test_adam_step_kernel_follows_the_numpy_update(kw):
    kw = dict(kw)
    cls = optim.Adam if kw.pop("decoupled", True) is False else optim.AdamW
    p0 = rng.standard_normal((30, 7)).astype(np.float32)
    grads = [rng.standard_normal(p0.shape).astype(np.float32) for _ in range(5)]
    results = []
    for native in (True, False):
        with backend.use_native(native):
            p = cr.nn.Parameter(cr.tensor(p0.copy()))
            opt = cls([p], lr=0.01, betas=(0.9, 0.99), **kw)
            for g in grads:
                p.grad = cr.tensor(g)
                opt.step()
            results.append(p._data.copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-7)
    assert not np.allclose(results[0], p0)


@needs_native
@pytest.mark.parametrize("L,S", [(5, 6), (6, 5), (7, 7)])
def test_float32_causal_attention_follows_pytorch_where_queries_and_keys_differ(L, S):
    """PyTorch's is_causal: query i sees keys j <= i, whatever the number of keys."""
    torch = pytest.importorskip("torch")
    q, k, v = (rng.standard_normal(s).astype(np.float32)
               for s in ((2, 3, L, 4), (2, 3, S, 4), (2, 3, S, 2)))
    ours = F.scaled_dot_product_attention(cr.tensor(q), cr.tensor(k), cr.tensor(v),
                                          is_causal=True, scale=0.7)
    ref = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), is_causal=True, scale=0.7)
    np.testing.assert_allclose(ours._data, ref.numpy(), rtol=1e-5, atol=1e-6)



@needs_native
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 7, 9), (1, 2, 2, 2)])
def test_max_pool_kernel_gives_the_numpy_values_gradients_and_indices(shape):
    """2x2 windows with stride 2, tiling the plane or leaving a row and a column out; ties go
    to the first maximum in the window, as in PyTorch."""
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, :2, :2] = [[0.5, 1.5], [1.5, 1.5]]  # a three-way tie inside the first window
    x[-1, -1, :2, :2] = 2.0  # all four equal
    on = _run(lambda a: F.max_pool2d(a, 2), x, native=True)
    off = _run(lambda a: F.max_pool2d(a, 2), x, native=False)
    for a, b in zip(on, off):
        np.testing.assert_array_equal(a, b)
    with backend.use_native(True):
        y, idx = F.max_pool2d(cr.tensor(x), 2, return_indices=True)
    with backend.use_native(False):
        y0, idx0 = F.max_pool2d(cr.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(idx._data, idx0._data)
    assert idx._data[0, 0, 0, 0] == 1 and idx._data[-1, -1, 0, 0] == 0


@needs_native
def test_max_pool_kernel_spreads_nan_to_its_window_and_keeps_infinities():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 2, 2] = -np.inf
    x[0, 0, 3, 3] = np.inf
    with backend.use_native(True):
        y = F.max_pool2d(cr.tensor(x), 2)._data
    np.testing.assert_array_equal(y[0, 0], [[np.nan, 7], [13, np.inf]])


# ----------------------------------------------------------------------------- the kernel functions


def _namespace_copy():
    """A namespace module with numpy_ns's functions that is not numpy_ns: the kernels bound to
    it run the code that another namespace (CuPy's) runs."""
    import types

    from chainrule.backend import numpy_kernels, numpy_ns

    ns = types.ModuleType("copy_ns")
    for name in backend.NUMPY_NAMES + backend.EXTENSIONS:
        setattr(ns, name, getattr(numpy_ns, name))
    for name, fn in numpy_kernels.bind(ns).items():
        setattr(ns, name, fn)
    return ns


def test_kernels_bound_to_another_namespace_give_the_numpy_namespace_values():
    from chainrule.backend import numpy_ns

    ns = _namespace_copy()
    assert set(backend.KERNELS) <= set(dir(ns))
    x = rng.standard_normal((6, 16)).astype(np.float32)
    g = rng.standard_normal((6, 16)).astype(np.float32)
    w, b = rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    q, k = rng.standard_normal((2, 5, 8)).astype(np.float32), rng.standard_normal((2, 7, 8))
    k = k.astype(np.float32)
    with backend.use_native(False):
        results = []
        for xp in (numpy_ns, ns):
            out = []
            for name in ("gelu", "gelu_tanh", "silu", "sigmoid"):
                y, kept = xp.pointwise_forward(name, x)
                s = y if name == "sigmoid" else x
                out += [y, xp.pointwise_backward(name, s, g, (), kept)]
            y, saved = xp.layer_norm_forward(x, w, b, 1e-5)
            out += [y, *xp.layer_norm_backward(g, saved, w, True, True, True)]
            A, saved = xp.attention_softmax(q, k, 0.3, True)
            gA = np.random.default_rng(5).standard_normal(A.shape).astype(np.float32)
            gS, sc = xp.attention_softmax_backward(gA, A, 0.3, saved)
            out += [A, gS, np.float32(sc)]
            out += [xp.row_sum(x), xp.row_dot(x, g), xp.channel_sums(x.reshape(2, 3, 4, 4))]
            out += [xp.embedding_backward((4, 16), np.array([3, 0, 3, 1, 0, 3]), g)]
            buf = xp.scratch_buffer("test", (3, 4), np.float32, zeros=True)
            out += [buf]
            out += [np.array(xp.max_pool2x2(x.reshape(1, 6, 4, 4), 2, 2) is None)]
            results.append(out)
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_kernels_take_zero_dim_arrays(approximate, dtype):
    x = np.array(0.7, dtype)
    name = "gelu" if approximate == "none" else "gelu_tanh"
    y, kept = backend.numpy_ns.pointwise_forward(name, x)
    d = backend.numpy_ns.pointwise_backward(name, x, np.array(2.0, dtype), (), kept)
    assert y.shape == d.shape == ()
    exact = 0.7 * 0.5 * (1 + math.erf(0.7 / math.sqrt(2)))
    np.testing.assert_allclose(y, exact, rtol=1e-3 if approximate == "tanh" else 1e-6)
    dexact = 2 * (0.5 * (1 + math.erf(0.7 / math.sqrt(2)))
                  + 0.7 * math.exp(-0.245) / math.sqrt(2 * math.pi))
    np.testing.assert_allclose(d, dexact, rtol=1e-3 if approximate == "tanh" else 1e-6)
