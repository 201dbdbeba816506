"""Transformer layers against torch.nn with the weights copied as arrays: encoder and decoder
layers (post- and pre-norm, relu and gelu, batch_first), the stacks, nn.Transformer with a
causal mask and padding masks, values and gradients; the mask helper."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn

rng = np.random.default_rng(11)


def test_square_subsequent_mask():
    m = nn.Transformer.generate_square_subsequent_mask(3).numpy()
    ref = np.array([[0, -math.inf, -math.inf], [0, 0, -math.inf], [0, 0, 0]])
    np.testing.assert_array_equal(m, ref)


def test_parameter_names_follow_pytorch():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16)
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["self_attn.in_proj_weight", "self_attn.in_proj_bias",
                     "self_attn.out_proj.weight", "self_attn.out_proj.bias", "linear1.weight",
                     "linear1.bias", "linear2.weight", "linear2.bias", "norm1.weight",
                     "norm1.bias", "norm2.weight", "norm2.bias"]
    enc = nn.TransformerEncoder(layer, 2)
    assert "layers.1.linear2.bias" in dict(enc.named_parameters())


torch = pytest.importorskip("torch")


def _copy(ours, theirs):
    sd = theirs.state_dict()
    assert sorted(sd) == sorted(ours.state_dict())
    ours.load_state_dict({k: cr.tensor(v.detach().numpy().copy()) for k, v in sd.items()})


def _close(a, b, tol=2e-5):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("kw", [{}, {"norm_first": True, "activation": "gelu"},
                                {"batch_first": True}])
def test_encoder_and_decoder_layers_against_torch(kw):
    e, et = (nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, **kw),
             torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, **kw))
    d, dt = (nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, **kw),
             torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, **kw))
    _copy(e, et)
    _copy(d, dt)
    src = rng.standard_normal((5, 3, 8)).astype(np.float32)
    tgt = rng.standard_normal((4, 3, 8)).astype(np.float32)
    if kw.get("batch_first"):
        src, tgt = src.transpose(1, 0, 2).copy(), tgt.transpose(1, 0, 2).copy()
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    mask_t = torch.nn.Transformer.generate_square_subsequent_mask(4)
    sc, st = cr.tensor(src, requires_grad=True), torch.tensor(src, requires_grad=True)
    tc, tt = cr.tensor(tgt, requires_grad=True), torch.tensor(tgt, requires_grad=True)
    mc, mt = e(sc), et(st)
    _close(mc, mt)
    yc, yt = d(tc, mc, tgt_mask=mask), dt(tt, mt, tgt_mask=mask_t)
    _close(yc, yt)
    u = rng.standard_normal(yc.shape).astype(np.float32)
    (yc * cr.tensor(u)).sum().backward()
    (yt * torch.tensor(u)).sum().backward()
    _close(sc.grad, st.grad, 1e-4)
    _close(tc.grad, tt.grad, 1e-4)
    theirs = dict(et.named_parameters())
    for n, p in e.named_parameters():
        _close(p.grad, theirs[n].grad, 1e-4)


def test_transformer_against_torch_with_masks():
    ours = nn.Transformer(8, 2, 2, 2, 16, dropout=0.0, batch_first=True)
    theirs = torch.nn.Transformer(8, 2, 2, 2, 16, dropout=0.0, batch_first=True)
    _copy(ours, theirs)
    src = rng.standard_normal((2, 5, 8)).astype(np.float32)
    tgt = rng.standard_normal((2, 4, 8)).astype(np.float32)
    pad = np.array([[False] * 5, [False] * 3 + [True] * 2])
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    sc = cr.tensor(src, requires_grad=True)
    st = torch.tensor(src, requires_grad=True)
    yc = ours(sc, cr.tensor(tgt), tgt_mask=mask, src_key_padding_mask=cr.tensor(pad),
              memory_key_padding_mask=cr.tensor(pad))
    yt = theirs(st, torch.tensor(tgt),
                tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(4),
                src_key_padding_mask=torch.tensor(pad), memory_key_padding_mask=torch.tensor(pad))
    _close(yc, yt)
    yc.sum().backward()
    yt.sum().backward()
    _close(sc.grad, st.grad, 1e-4)


def test_train_mode_dropout_runs_and_eval_is_deterministic():
    m = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5), 2,
                              norm=nn.LayerNorm(8))
    x = cr.tensor(rng.standard_normal((4, 2, 8)).astype(np.float32))
    assert m(x).shape == (4, 2, 8)
    m.eval()
    np.testing.assert_array_equal(m(x).detach().numpy(), m(x).detach().numpy())


@pytest.mark.parametrize("separate", [False, True])
def test_multi_head_attention_forward_against_torch(separate):
    L, N, E, h = 4, 2, 6, 2
    q = rng.standard_normal((L, N, E)).astype(np.float32)
    k = rng.standard_normal((5, N, E)).astype(np.float32)
    W = (rng.standard_normal((3 * E, E)) * 0.3).astype(np.float32)
    b = rng.standard_normal(3 * E).astype(np.float32)
    Wo = (rng.standard_normal((E, E)) * 0.3).astype(np.float32)
    bo = rng.standard_normal(E).astype(np.float32)
    kpm = np.array([[False] * 5, [False] * 3 + [True] * 2])
    mask = np.triu(np.ones((L, 5), bool), 2)

    def run(lib, F):
        ws = [lib.tensor(a, requires_grad=True) for a in (q, W, b, Wo, bo)]
        kw = dict(key_padding_mask=lib.tensor(kpm), attn_mask=lib.tensor(mask))
        if separate:
            kw.update(use_separate_proj_weight=True, q_proj_weight=ws[1][:E],
                      k_proj_weight=ws[1][E:2 * E], v_proj_weight=ws[1][2 * E:])
        y, a = F.multi_head_attention_forward(ws[0], lib.tensor(k), lib.tensor(k), E, h, ws[1],
                                              ws[2], None, None, False, 0.0, ws[3], ws[4], **kw)
        (y.sum() + a.sum()).backward()
        return [y, a] + [w.grad for w in ws]

    for p, t in zip(run(cr, nn.functional), run(torch, torch.nn.functional)):
        _close(p, t, 1e-4)
