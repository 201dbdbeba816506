"""Fused ops against their compositions of primitive chainrule ops (value, gradient and the
create_graph path), dropout statistics, float32 behaviour and default init distributions:
checks that need no PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn

rng = np.random.default_rng(43)

def test_cross_entropy_keeps_float32_and_rejects_out_of_range_targets():
    x = cr.randn(4, 3, requires_grad=True)
    loss = F.cross_entropy(x, cr.tensor([0, 1, 2, 1]))
    loss.backward()
    assert loss.dtype == np.float32 and x.grad.dtype == np.float32
    with pytest.raises(IndexError, match="class 3.*3 classes"):
        F.cross_entropy(x, cr.tensor([0, 1, 3, 1]))
    with pytest.raises(ValueError, match=r"target of shape \(3,\).*\(4,\)"):
        F.cross_entropy(x, cr.tensor([0, 1, 2]))


def test_dropout_zeroes_about_p_scales_the_rest_is_seeded_and_passes_the_same_mask_back():
    x = cr.ones(200, 200, requires_grad=True)
    cr.manual_seed(3)
    y = F.dropout(x, 0.3)
    kept = y._data != 0
    assert abs(1 - kept.mean() - 0.3) < 0.01
    np.testing.assert_allclose(y._data[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad._data, y._data)
    cr.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.3)._data, y._data)
    assert F.dropout(x, 0.3, training=False) is x


# ----------------------------------------------------------------------------- fused vs composite


def _composite_check(y, leaves, rtol=1e-10, graph_rtol=1e-10):
    """A recorded fused output ``y``: its op's composite, re-run on the saved inputs, gives the
    same value and the same vector-Jacobian product."""
    op = y.grad_fn
    inner = [cr.tensor(s, dtype=s.dtype, requires_grad=s.dtype.kind == "f") for s in op.saved]
    yc = op.composite(*inner)
    np.testing.assert_allclose(y._data, yc._data, rtol=rtol, atol=1e-12)
    u = cr.tensor(np.random.default_rng(1).standard_normal(y.shape), dtype=cr.float64)
    gf = cr.grad((y * u).sum(), leaves, retain_graph=True)
    gin = [t for t in inner if t.requires_grad]
    gc = cr.grad((yc * u).sum(), gin)
    for a, b in zip(gf, gc):
        np.testing.assert_allclose(a._data, b._data, rtol=rtol, atol=1e-12)
    g2 = cr.grad((y * u).sum(), leaves, create_graph=True)
    for a, b in zip(g2, gf):
        np.testing.assert_allclose(a._data, b._data, rtol=graph_rtol, atol=1e-12)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_fused_pass_equals_its_formula_and_its_recorded_rule(approximate):
    """GELU is one op (chainrule.gelu is F.gelu): its fused float64 forward and backward
    against the formula with math.erf, and its create_graph rule (Phi recomputed on Tensors,
    whose erf is the 1e-7 one) against the first-order gradient."""
    import math

    a = rng.standard_normal((4, 5)) * 3
    x = cr.tensor(a, dtype=cr.float64, requires_grad=True)
    y = F.gelu(x, approximate)
    assert type(y.grad_fn) is type(cr.gelu(x, approximate).grad_fn)
    if approximate == "tanh":
        t = np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3))
        ref = 0.5 * a * (1 + t)
        du = np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * a * a)
        dref = 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * du
    else:
        phi = 0.5 * (1 + np.vectorize(math.erf)(a / math.sqrt(2)))
        ref = a * phi
        dref = phi + a * np.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(y._data, ref, rtol=1e-10, atol=1e-12)
    u = np.random.default_rng(1).standard_normal(a.shape)
    (gf,) = cr.grad((y * cr.tensor(u, dtype=cr.float64)).sum(), [x], retain_graph=True)
    np.testing.assert_allclose(gf._data, u * dref, rtol=1e-10, atol=1e-12)
    (g2,) = cr.grad((y * cr.tensor(u, dtype=cr.float64)).sum(), [x], create_graph=True)
    np.testing.assert_allclose(g2._data, gf._data, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_fused_equals_its_composite(affine):
    x, w, b = (cr.tensor(rng.standard_normal(s), dtype=cr.float64, requires_grad=True)
               for s in ((3, 2, 6), (6,), (6,)))
    if affine:
        _composite_check(F.layer_norm(x, (6,), w, b), [x, w, b])
    else:
        _composite_check(F.layer_norm(x, (6,)), [x])


@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.2, "ignore_index": 0},
                                {"weight": np.array([1.0, 2.0, 0.5, 1.5]), "reduction": "none"}])
def test_cross_entropy_fused_equals_its_composite(kw):
    x = cr.tensor(rng.standard_normal((6, 4)), dtype=cr.float64, requires_grad=True)
    y = F.cross_entropy(x, cr.tensor([0, 1, 2, 3, 0, 1]), **kw)
    _composite_check(y, [x])


def test_soft_cross_entropy_fused_equals_its_composite():
    x = cr.tensor(rng.standard_normal((5, 3)), dtype=cr.float64, requires_grad=True)
    p = cr.tensor(rng.dirichlet(np.ones(3), 5), dtype=cr.float64, requires_grad=True)
    _composite_check(F.cross_entropy(x, p, label_smoothing=0.1), [x, p])


@pytest.mark.parametrize("kw", [{}, {"is_causal": True}, {"dropout_p": 0.3}])
def test_attention_fused_equals_its_composite(kw):
    q, k, v = (cr.tensor(rng.standard_normal(s), dtype=cr.float64, requires_grad=True)
               for s in ((2, 4, 3), (2, 5, 3), (2, 5, 2)))
    _composite_check(F.scaled_dot_product_attention(q, k, v, **kw), [q, k, v])


def test_attention_with_float_mask_fused_equals_composite_including_the_mask_gradient():
    q, k, v, m = (cr.tensor(rng.standard_normal(s), dtype=cr.float64, requires_grad=True)
                  for s in ((2, 4, 3), (2, 5, 3), (2, 5, 2), (4, 5)))
    _composite_check(F.scaled_dot_product_attention(q, k, v, attn_mask=m), [q, k, v, m])


@pytest.mark.parametrize("make,ref_std,name", [
    (lambda: nn.Linear(300, 200).weight, 1 / np.sqrt(3 * 300), "linear weight U(+-1/sqrt(in))"),
    (lambda: nn.Linear(300, 2000).bias, 1 / np.sqrt(3 * 300), "linear bias"),
    (lambda: nn.Embedding(400, 100).weight, 1.0, "embedding N(0, 1)"),
])
def test_default_init_has_pytorchs_distribution(make, ref_std, name):
    cr.manual_seed(0)
    w = make()._data
    assert abs(w.std() / ref_std - 1) < 0.03, name
    assert abs(w.mean()) < 0.05 * ref_std * 3


def test_rms_norm_fused_equals_its_composite():
    x, w = (cr.tensor(rng.standard_normal(s), dtype=cr.float64, requires_grad=True)
            for s in ((3, 2, 6), (6,)))
    _composite_check(F.rms_norm(x, (6,), w, eps=1e-6), [x, w])


@pytest.mark.parametrize("C", [4, 24])  # per-sample GEMMs, and the one-GEMM layout
@pytest.mark.parametrize("kw", [{"padding": 1}, {"stride": 2, "dilation": 2, "groups": 2}])
def test_conv2d_fused_equals_its_composite(kw, C):
    x, w, b = (cr.tensor(rng.standard_normal(s), dtype=cr.float64, requires_grad=True)
               for s in ((2, C, 7, 6), (6, C // kw.get("groups", 1), 3, 2), (6,)))
    _composite_check(F.conv2d(x, w, b, **kw), [x, w, b])


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}])
def test_pooling_fused_ops_equal_their_composites(kw):
    x = cr.tensor(rng.standard_normal((2, 3, 7, 6)), dtype=cr.float64, requires_grad=True)
    _composite_check(F.max_pool2d(x, **kw), [x])
    _composite_check(F.avg_pool2d(x, **kw), [x])


def _value_and_grad_equal(y, y_ref, leaves):
    np.testing.assert_allclose(y._data, y_ref._data, rtol=1e-12, atol=1e-14)
    u = cr.tensor(rng.standard_normal(y.shape), dtype=cr.float64)
    for a, b in zip(cr.grad((y * u).sum(), leaves), cr.grad((y_ref * u).sum(), leaves)):
        np.testing.assert_allclose(a._data, b._data, rtol=1e-12, atol=1e-14)


def test_linear_embedding_and_dropout_equal_their_primitive_compositions():
    x, w, b = (cr.tensor(rng.standard_normal(s), dtype=cr.float64, requires_grad=True)
               for s in ((2, 3, 4), (5, 4), (5,)))
    _value_and_grad_equal(F.linear(x, w, b), x @ w.T + b, [x, w, b])
    table = cr.tensor(rng.standard_normal((6, 3)), dtype=cr.float64, requires_grad=True)
    idx = cr.tensor([[0, 5, 0], [2, 2, 1]])
    _value_and_grad_equal(F.embedding(idx, table), table[idx], [table])
    cr.manual_seed(1)
    y = F.dropout(x, 0.4)
    cr.manual_seed(1)
    keep = np.random.default_rng(1).random(x.shape, dtype=np.float32) >= 0.4
    _value_and_grad_equal(y, x * cr.tensor(keep / 0.6, dtype=cr.float64), [x])


def test_second_derivatives_through_fused_ops_match_finite_differences():
    x = cr.tensor(rng.standard_normal((3, 4)), dtype=cr.float64, requires_grad=True)
    w = cr.tensor(rng.standard_normal((2, 4)), dtype=cr.float64, requires_grad=True)
    t = cr.tensor([0, 1, 1])
    assert cr.autograd.gradgradcheck(
        lambda x, w: F.cross_entropy(F.gelu(F.layer_norm(F.linear(x, w), (2,))), t), (x, w))
