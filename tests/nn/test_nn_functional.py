"""nn.functional and modules against PyTorch: values and gradients in float64, float32 GELU, and
default initializations sampled side by side."""

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
    np.testing.assert_allclose(cr_out._data, t_out.detach().numpy(), rtol=rtol, atol=atol)
    u = np.random.default_rng(seed).standard_normal(t_out.shape)
    (cr_out * cr.tensor(u, dtype=cr.float64)).sum().backward()
    (t_out * torch.tensor(u)).sum().backward()
    for c, t in zip(cr_in, t_in):
        if t.grad is None:
            continue
        np.testing.assert_allclose(c.grad._data, t.grad.numpy(), rtol=rtol, atol=atol)


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


def test_modules_match_torch_given_the_same_weights():
    cr.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.LayerNorm(6), nn.Linear(6, 3)).double()
    t = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.GELU(), torch.nn.LayerNorm(6),
                            torch.nn.Linear(6, 3)).double()
    t.load_state_dict({k: torch.tensor(v._data) for k, v in m.state_dict().items()})
    x = rng.standard_normal((5, 4))
    (cx,), (tx,) = _pair(x)
    _check(m(cx), t(tx), [cx] + list(m.parameters()), [tx] + list(t.parameters()), rtol=1e-6)


def test_default_linear_init_std_matches_torchs_samples():
    torch.manual_seed(0)
    t = torch.nn.Linear(256, 512).weight.detach().numpy()
    c = nn.Linear(256, 512).weight._data
    assert abs(c.std() / t.std() - 1) < 0.02
    assert abs(np.abs(c).max() - np.abs(t).max()) < 1e-3


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_float32_matches_torch(approximate):
    a = np.linspace(-8, 8, 4001).astype(np.float32)
    c, t = cr.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    y, yt = F.gelu(c, approximate), TF.gelu(t, approximate=approximate)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y._data, yt.detach().numpy(), rtol=1e-5, atol=2e-6)
    y.sum().backward()
    yt.sum().backward()
    np.testing.assert_allclose(c.grad._data, t.grad.numpy(), rtol=1e-5, atol=2e-6)


def test_cross_entropy_and_nll_read_classes_last_for_targets_shaped_like_the_leading_dims():
    x = rng.standard_normal((2, 3, 5))
    t = rng.integers(0, 5, (2, 3))
    (cx,), (tx,) = _pair(x)
    for red in ("mean", "none"):
        _check(F.cross_entropy(cx, cr.tensor(t), reduction=red, label_smoothing=0.1),
               TF.cross_entropy(tx.reshape(-1, 5), torch.tensor(t).reshape(-1), reduction=red,
                                label_smoothing=0.1).reshape((2, 3) if red == "none" else ()),
               [cx], [tx])
        cx.grad, tx.grad = None, None
    tt = torch.tensor(t).reshape(-1)
    _check(F.nll_loss(cx, cr.tensor(t)), TF.nll_loss(tx.reshape(-1, 5), tt), [cx], [tx])
