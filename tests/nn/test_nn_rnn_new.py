"""RNN, LSTM, GRU and their cells: parameter names, shapes and init range; values and
gradients against a step-by-step NumPy reference and against torch.nn (weights copied as
arrays); num_layers, batch_first, bidirectional, initial states, unbatched inputs."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
from chainrule.autograd import gradcheck

rng = np.random.default_rng(5)


def _sig(x):
    return 1 / (1 + np.exp(-x))


def test_parameter_names_shapes_and_init_range():
    m = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    names = [n for n, _ in m.named_parameters()]
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert "weight_ih_l0_reverse" in names and "bias_hh_l1_reverse" in names
    assert m.weight_ih_l0.shape == (16, 3) and m.weight_ih_l1.shape == (16, 8)
    for p in m.parameters():
        assert np.abs(p.detach().numpy()).max() <= 0.5
    assert nn.GRU(3, 4).weight_hh_l0.shape == (12, 4)
    p = nn.LSTM(3, 4, proj_size=2, num_layers=2)
    assert p.weight_hr_l0.shape == (2, 4) and p.weight_hh_l0.shape == (16, 2)
    assert p.weight_ih_l1.shape == (16, 2)
    with pytest.raises(ValueError, match="proj_size"):
        nn.RNNBase("GRU", 3, 4, proj_size=2)
    assert [n for n, _ in nn.RNN(2, 3, bias=False).named_parameters()] == [
        "weight_ih_l0", "weight_hh_l0"]


def test_lstm_matches_a_numpy_loop():
    m = nn.LSTM(3, 2).double()
    x = rng.standard_normal((5, 2, 3))
    y, (h, c) = m(cr.tensor(x))
    W, U = m.weight_ih_l0.detach().numpy(), m.weight_hh_l0.detach().numpy()
    b = m.bias_ih_l0.detach().numpy() + m.bias_hh_l0.detach().numpy()
    hh, cc = np.zeros((2, 2)), np.zeros((2, 2))
    outs = []
    for t in range(5):
        a = x[t] @ W.T + hh @ U.T + b
        i, f, g, o = np.split(a, 4, 1)
        cc = _sig(f) * cc + _sig(i) * np.tanh(g)
        hh = _sig(o) * np.tanh(cc)
        outs.append(hh)
    np.testing.assert_allclose(y.detach().numpy(), np.stack(outs), atol=1e-12)
    np.testing.assert_allclose(h.detach().numpy()[0], hh, atol=1e-12)
    np.testing.assert_allclose(c.detach().numpy()[0], cc, atol=1e-12)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_gradcheck_through_time(cls):
    m = getattr(nn, cls)(2, 3, num_layers=2, bidirectional=True).double()
    x = cr.tensor(rng.standard_normal((4, 2, 2)), dtype=cr.float64, requires_grad=True)
    h = cr.tensor(rng.standard_normal((4, 2, 3)), dtype=cr.float64, requires_grad=True)

    def f(x, h):
        out = m(x, (h, h * 0.5) if cls == "LSTM" else h)
        return out[0]

    assert gradcheck(f, [x, h])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="LSTM.*input_size = 3"):
        nn.LSTM(3, 4)(cr.zeros(5, 2, 2))
    with pytest.raises(TypeError, match="packed sequences are not supported"):
        nn.GRU(3, 4)([1, 2])
    with pytest.raises(ValueError, match="h_0 of shape"):
        nn.LSTM(3, 4)(cr.zeros(5, 2, 3), (cr.zeros(1, 3, 4), cr.zeros(1, 2, 4)))


# ----------------------------------------------------------------------------- PyTorch

torch = pytest.importorskip("torch")


def _copy(ours, theirs):
    sd = theirs.state_dict()
    assert list(sd) == list(ours.state_dict())
    ours.load_state_dict({k: cr.tensor(v.detach().numpy().copy()) for k, v in sd.items()})


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("cls, kw", [
    ("LSTM", {}), ("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    ("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 3}),
    ("GRU", {}), ("GRU", {"num_layers": 2, "bidirectional": True}),
    ("RNN", {"nonlinearity": "relu", "num_layers": 2}), ("RNN", {"bias": False}),
])
@pytest.mark.parametrize("init_state", [False, True])
def test_against_torch(cls, kw, init_state):
    ours, theirs = getattr(nn, cls)(3, 4, **kw), getattr(torch.nn, cls)(3, 4, **kw)
    _copy(ours, theirs)
    shape = (2, 5, 3) if kw.get("batch_first") else (5, 2, 3)
    x = rng.standard_normal(shape).astype(np.float32)
    L = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    hx = hxt = None
    if init_state:
        h0 = rng.standard_normal((L, 2, kw.get("proj_size") or 4)).astype(np.float32)
        c0 = rng.standard_normal((L, 2, 4)).astype(np.float32)
        hxt = (torch.tensor(h0, requires_grad=True), torch.tensor(c0)) if cls == "LSTM" \
            else torch.tensor(h0, requires_grad=True)
        hx = (cr.tensor(h0, requires_grad=True), cr.tensor(c0)) if cls == "LSTM" \
            else cr.tensor(h0, requires_grad=True)
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yc, sc = ours(xc, hx)
    yt, st = theirs(xt, hxt)
    _close(yc, yt)
    u = rng.standard_normal(yc.shape).astype(np.float32)
    lc = (yc * cr.tensor(u)).sum()
    lt = (yt * torch.tensor(u)).sum()
    if cls == "LSTM":
        _close(sc[0], st[0])
        _close(sc[1], st[1])
        lc, lt = lc + sc[1].sum(), lt + st[1].sum()
    else:
        _close(sc, st)
        lc, lt = lc + sc.sum(), lt + st.sum()
    lc.backward()
    lt.backward()
    _close(xc.grad, xt.grad, 1e-4)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        _close(p.grad, q.grad, 1e-4)
    if init_state:
        h0c, h0t = (hx[0], hxt[0]) if cls == "LSTM" else (hx, hxt)
        _close(h0c.grad, h0t.grad, 1e-4)


def test_unbatched_and_dropout_in_eval():
    ours, theirs = nn.GRU(3, 4, num_layers=2, dropout=0.5), torch.nn.GRU(3, 4, num_layers=2,
                                                                       dropout=0.5)
    _copy(ours, theirs)
    ours.eval(), theirs.eval()
    x = rng.standard_normal((5, 3)).astype(np.float32)
    yc, hc = ours(cr.tensor(x))
    yt, ht = theirs(torch.tensor(x))
    _close(yc, yt)
    _close(hc, ht)
    ours.train()
    a, _ = ours(cr.tensor(x))
    assert a.shape == (5, 4)


@pytest.mark.parametrize("cls, kw", [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}),
                                     ("LSTMCell", {}), ("GRUCell", {}),
                                     ("GRUCell", {"bias": False})])
def test_cells_against_torch(cls, kw):
    ours, theirs = getattr(nn, cls)(3, 4, **kw), getattr(torch.nn, cls)(3, 4, **kw)
    _copy(ours, theirs)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    h = rng.standard_normal((2, 4)).astype(np.float32)
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    if cls == "LSTMCell":
        yc = ours(xc, (cr.tensor(h), cr.tensor(h * 0.5)))
        yt = theirs(xt, (torch.tensor(h), torch.tensor(h * 0.5)))
        _close(yc[1], yt[1])
        (yc[0].sum() + (yc[1] * 2).sum()).backward()
        (yt[0].sum() + (yt[1] * 2).sum()).backward()
        yc, yt = yc[0], yt[0]
    else:
        yc, yt = ours(xc, cr.tensor(h)), theirs(xt, torch.tensor(h))
        yc.sum().backward()
        yt.sum().backward()
    _close(yc, yt)
    _close(xc.grad, xt.grad, 1e-4)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        _close(p.grad, q.grad, 1e-4)
    assert ours(cr.tensor(x[0])) is not None  # unbatched


@pytest.mark.parametrize("batch_first, side", [(False, "right"), (True, "left")])
def test_pad_sequence_against_torch_and_packed_sequences_error(batch_first, side):
    from chainrule.nn.utils.rnn import pack_padded_sequence, pad_sequence

    arrays = [rng.standard_normal((n, 2)).astype(np.float32) for n in (3, 1, 2)]
    ours = pad_sequence([cr.tensor(a) for a in arrays], batch_first, -1.0, padding_side=side)
    theirs = torch.nn.utils.rnn.pad_sequence([torch.tensor(a) for a in arrays], batch_first,
                                             -1.0, padding_side=side)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    with pytest.raises(NotImplementedError, match="pad the batch with pad_sequence"):
        pack_padded_sequence(ours, [3, 1, 2])
