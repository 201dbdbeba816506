"""nn.functional against PyTorch (values and gradients, float64) and each fused op against its
composition of primitive ops (value, gradient, and the create_graph path)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _pair(*arrays, grad=True):
    """The same float64 arrays as chainrule and torch leaves."""
    c = [cr.tensor(a, dtype=cr.float64, requires_grad=grad) for a in arrays]
    t = [torch.tensor(a, dtype=torch.float64, requires_grad=grad) for a in arrays]
    return c, t


def _check(cr_out, t_out, cr_in, t_in, rtol=1e-9, atol=1e-11, seed=0):
    """Values equal, and gradients of sum(u * out) for a random u equal."""
    np.testing.assert_allclose(cr_out.data, t_out.detach().numpy(), rtol=rtol, atol=atol)
    u = np.random.default_rng(seed).standard_normal(t_out.shape)
    (cr_out * cr.tensor(u, dtype=cr.float64)).sum().backward()
    (t_out * torch.tensor(u)).sum().backward()
    for c, t in zip(cr_in, t_in):
        if t.grad is None:
            continue
        np.testing.assert_allclose(c.grad.data, t.grad.numpy(), rtol=rtol, atol=atol)


rng = np.random.default_rng(42)


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(shape, bias):
    x, w, b = rng.standard_normal(shape), rng.standard_normal((3, 4)), rng.standard_normal(3)
    (cx, cw, cb), (tx, tw, tb) = _pair(x, w, b)
    _check(F.linear(cx, cw, cb if bias else None), TF.linear(tx, tw, tb if bias else None),
           [cx, cw, cb], [tx, tw, tb])


@pytest.mark.parametrize("name,kw", [("relu", {}), ("gelu", {}), ("gelu", {"approximate": "tanh"}),
                                     ("silu", {}), ("tanh", {}), ("sigmoid", {}),
                                     ("softmax", {"dim": 1}), ("log_softmax", {"dim": 0})])
def test_activations_match_torch(name, kw):
    x = rng.standard_normal((4, 5)) * 3
    (cx,), (tx,) = _pair(x)
    _check(getattr(F, name)(cx, **kw), getattr(TF, name)(tx, **kw), [cx], [tx], rtol=1e-6)


@pytest.mark.parametrize("kw", [
    {}, {"reduction": "sum"}, {"reduction": "none"}, {"ignore_index": 2},
    {"label_smoothing": 0.2}, {"weight": True}, {"weight": True, "label_smoothing": 0.1},
    {"weight": True, "ignore_index": 1, "reduction": "none"},
    {"weight": True, "ignore_index": 1, "label_smoothing": 0.3},
])
@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 2, 2), (5,)])
def test_cross_entropy_with_class_indices_matches_torch(kw, shape):
    kw = dict(kw)
    x = rng.standard_normal(shape) * 2
    C = 5
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, C, tshape)
    t.flat[0] = kw.get("ignore_index", 0)
    if kw.pop("weight", False):
        w = rng.uniform(0.5, 2.0, C)
        kw_c = dict(kw, weight=cr.tensor(w, dtype=cr.float64))
        kw_t = dict(kw, weight=torch.tensor(w))
    else:
        kw_c = kw_t = kw
    (cx,), (tx,) = _pair(x)
    _check(F.cross_entropy(cx, cr.tensor(t), **kw_c), TF.cross_entropy(tx, torch.tensor(t), **kw_t),
           [cx], [tx])


@pytest.mark.parametrize("kw", [{}, {"reduction": "none"}, {"label_smoothing": 0.2},
                                {"weight": True, "reduction": "sum"}])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4)])
def test_cross_entropy_with_class_probabilities_matches_torch_for_logits_and_targets(kw, shape):
    kw = dict(kw)
    x = rng.standard_normal(shape)
    p = rng.uniform(0, 1, shape)
    p /= p.sum(axis=1, keepdims=True)
    if kw.pop("weight", False):
        w = rng.uniform(0.5, 2.0, 3)
        kw_c = dict(kw, weight=cr.tensor(w, dtype=cr.float64))
        kw_t = dict(kw, weight=torch.tensor(w))
    else:
        kw_c = kw_t = kw
    (cx, cp), (tx, tp) = _pair(x, p)
    _check(F.cross_entropy(cx, cp, **kw_c), TF.cross_entropy(tx, tp, **kw_t), [cx, cp], [tx, tp])


def test_cross_entropy_keeps_float32_and_rejects_out_of_range_targets():
    x = cr.randn(4, 3, requires_grad=True)
    loss = F.cross_entropy(x, cr.tensor([0, 1, 2, 1]))
    loss.backward()
    assert loss.dtype == np.float32 and x.grad.dtype == np.float32
    with pytest.raises(IndexError, match="class 3.*3 classes"):
        F.cross_entropy(x, cr.tensor([0, 1, 3, 1]))
    with pytest.raises(ValueError, match=r"target of shape \(3,\).*\(4,\)"):
        F.cross_entropy(x, cr.tensor([0, 1, 2]))


@pytest.mark.parametrize("shape,norm,affine", [((3, 6), (6,), True), ((2, 3, 4, 5), (4, 5), True),
                                               ((3, 6), (6,), False)])
def test_layer_norm_matches_torch(shape, norm, affine):
    x = rng.standard_normal(shape) * 2 + 1
    w, b = rng.standard_normal(norm), rng.standard_normal(norm)
    (cx, cw, cb), (tx, tw, tb) = _pair(x, w, b)
    if affine:
        _check(F.layer_norm(cx, norm, cw, cb), TF.layer_norm(tx, norm, tw, tb), [cx, cw, cb],
               [tx, tw, tb], rtol=1e-8)
    else:
        _check(F.layer_norm(cx, norm), TF.layer_norm(tx, norm), [cx], [tx], rtol=1e-8)


def test_embedding_matches_torch_with_repeats_and_padding_idx():
    w = rng.standard_normal((7, 3))
    idx = np.array([[1, 2, 1], [0, 6, 1]])
    (cw,), (tw,) = _pair(w)
    _check(F.embedding(cr.tensor(idx), cw, padding_idx=1),
           TF.embedding(torch.tensor(idx), tw, padding_idx=1), [cw], [tw])


@pytest.mark.parametrize("mask", [None, "causal", "bool", "float"])
def test_scaled_dot_product_attention_matches_torch(mask):
    q, k, v = (rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 6, 4)),
               rng.standard_normal((2, 3, 6, 2)))
    (cq, ck, cv), (tq, tk, tv) = _pair(q, k, v)
    kw_c, kw_t = {}, {}
    if mask == "causal":
        kw_c = kw_t = {"is_causal": True}
    elif mask == "bool":
        m = rng.uniform(size=(5, 6)) > 0.3
        m[:, 0] = True
        kw_c, kw_t = {"attn_mask": cr.tensor(m)}, {"attn_mask": torch.tensor(m)}
    elif mask == "float":
        m = rng.standard_normal((3, 5, 6))
        kw_c, kw_t = {"attn_mask": cr.tensor(m, dtype=cr.float64)}, {"attn_mask": torch.tensor(m)}
    _check(F.scaled_dot_product_attention(cq, ck, cv, scale=0.7, **kw_c),
           TF.scaled_dot_product_attention(tq, tk, tv, scale=0.7, **kw_t),
           [cq, ck, cv], [tq, tk, tv], rtol=1e-8)


def test_dropout_zeroes_about_p_scales_the_rest_is_seeded_and_passes_the_same_mask_back():
    x = cr.ones(200, 200, requires_grad=True)
    cr.manual_seed(3)
    y = F.dropout(x, 0.3)
    kept = y.data != 0
    assert abs(1 - kept.mean() - 0.3) < 0.01
    np.testing.assert_allclose(y.data[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, y.data)
    cr.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.3).data, y.data)
    assert F.dropout(x, 0.3, training=False) is x


# ----------------------------------------------------------------------------- fused vs composite


def _composite_check(y, leaves, rtol=1e-10, graph_rtol=1e-10):
    """A recorded fused output ``y``: its op's composite, re-run on the saved inputs, gives the
    same value and the same vector-Jacobian product."""
    op = y.grad_fn
    inner = [cr.tensor(s, dtype=s.dtype, requires_grad=s.dtype.kind == "f") for s in op.saved]
    yc = op.composite(*inner)
    np.testing.assert_allclose(y.data, yc.data, rtol=rtol, atol=1e-12)
    u = cr.tensor(np.random.default_rng(1).standard_normal(y.shape), dtype=cr.float64)
    gf = cr.grad((y * u).sum(), leaves, retain_graph=True)
    gin = [t for t in inner if t.requires_grad]
    gc = cr.grad((yc * u).sum(), gin)
    for a, b in zip(gf, gc):
        np.testing.assert_allclose(a.data, b.data, rtol=rtol, atol=1e-12)
    g2 = cr.grad((y * u).sum(), leaves, create_graph=True)
    for a, b in zip(g2, gf):
        np.testing.assert_allclose(a.data, b.data, rtol=graph_rtol, atol=1e-12)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_fused_equals_its_composite_and_float32_matches_torch(approximate):
    x = cr.tensor(rng.standard_normal((4, 5)) * 3, dtype=cr.float64, requires_grad=True)
    # create_graph runs the op library's gelu rule on Tensors, whose erf is the 1e-7 one
    _composite_check(F.gelu(x, approximate), [x], graph_rtol=1e-6)
    a = np.linspace(-8, 8, 4001).astype(np.float32)
    c, t = cr.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    y, yt = F.gelu(c, approximate), TF.gelu(t, approximate=approximate)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-5, atol=2e-6)
    y.sum().backward()
    yt.sum().backward()
    np.testing.assert_allclose(c.grad.data, t.grad.numpy(), rtol=1e-5, atol=2e-6)


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


def test_modules_match_torch_given_the_same_weights():
    cr.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.LayerNorm(6), nn.Linear(6, 3)).double()
    t = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.GELU(), torch.nn.LayerNorm(6),
                            torch.nn.Linear(6, 3)).double()
    t.load_state_dict({k: torch.tensor(v.data) for k, v in m.state_dict().items()})
    x = rng.standard_normal((5, 4))
    (cx,), (tx,) = _pair(x)
    _check(m(cx), t(tx), [cx] + list(m.parameters()), [tx] + list(t.parameters()), rtol=1e-6)


@pytest.mark.parametrize("make,ref_std,name", [
    (lambda: nn.Linear(300, 200).weight, 1 / np.sqrt(3 * 300), "linear weight U(+-1/sqrt(in))"),
    (lambda: nn.Linear(300, 2000).bias, 1 / np.sqrt(3 * 300), "linear bias"),
    (lambda: nn.Embedding(400, 100).weight, 1.0, "embedding N(0, 1)"),
])
def test_default_init_has_pytorchs_distribution(make, ref_std, name):
    cr.manual_seed(0)
    w = make().data
    assert abs(w.std() / ref_std - 1) < 0.03, name
    assert abs(w.mean()) < 0.05 * ref_std * 3


def test_default_linear_init_std_matches_torchs_samples():
    torch.manual_seed(0)
    t = torch.nn.Linear(256, 512).weight.detach().numpy()
    c = nn.Linear(256, 512).weight.data
    assert abs(c.std() / t.std() - 1) < 0.02
    assert abs(np.abs(c).max() - np.abs(t).max()) < 1e-3


def test_rms_norm_fused_equals_its_composite():
    x, w = (cr.tensor(rng.standard_normal(s), dtype=cr.float64, requires_grad=True)
            for s in ((3, 2, 6), (6,)))
    _composite_check(F.rms_norm(x, (6,), w, eps=1e-6), [x, w])


@pytest.mark.parametrize("kw", [{"padding": 1}, {"stride": 2, "dilation": 2, "groups": 2}])
def test_conv2d_fused_equals_its_composite(kw):
    x, w, b = (cr.tensor(rng.standard_normal(s), dtype=cr.float64, requires_grad=True)
               for s in ((2, 4, 7, 6), (6, 4 // kw.get("groups", 1), 3, 2), (6,)))
    _composite_check(F.conv2d(x, w, b, **kw), [x, w, b])


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}])
def test_pooling_fused_ops_equal_their_composites(kw):
    x = cr.tensor(rng.standard_normal((2, 3, 7, 6)), dtype=cr.float64, requires_grad=True)
    _composite_check(F.max_pool2d(x, **kw), [x])
    _composite_check(F.avg_pool2d(x, **kw), [x])


def _value_and_grad_equal(y, y_ref, leaves):
    np.testing.assert_allclose(y.data, y_ref.data, rtol=1e-12, atol=1e-14)
    u = cr.tensor(rng.standard_normal(y.shape), dtype=cr.float64)
    for a, b in zip(cr.grad((y * u).sum(), leaves), cr.grad((y_ref * u).sum(), leaves)):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)


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
