"""Where the training doctor points: an explosion at the layer it comes from (a recurrence
that multiplies the gradient at every pass, even when another layer's gradient is larger and
when gradients are huge from the first check), vanishing gradients that are not also called
'not updated'; and the rules that must not cry wolf: minibatch noise at a low loss is not a
spike, an adaptive optimizer's first steps are not a learning rate too high."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import chainrule as cr
from blas_threads import one_blas_thread_limits
from chainrule import nn
from chainrule.diagnostics import diagnose
from chainrule.optim import SGD, Adagrad, Adam
from test_doctor_healthy import LoopRNN, blobs, fit, import_torch, loud, mlp, sequences
from test_doctor_loop import finding

one_blas_thread = pytest.fixture(scope="module", autouse=True)(one_blas_thread_limits)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# ----------------------------------------------------------------------------- explosions


def _rnn(gain, head_scale=1.0, interval=5, act="relu", lr=1e-2, steps=40):
    cr.manual_seed(0)
    m = LoopRNN(gain=gain, act=act)
    with cr.no_grad():
        m.head.weight.data[...] *= head_scale
    x, y = sequences(0, T=12)
    return m, fit(m, SGD(m.parameters(), lr=lr), (x, y), steps=steps, interval=interval)


def test_an_exploding_recurrence_is_blamed_not_the_head():
    _, w = _rnn(gain=3.0)
    f = finding(w, "exploding")
    assert (f.module, f.severity) == ("wh", "error")
    assert "multiplied by 3 on average each of the 11 times" in f.message
    first = w.records[0]["modules"]
    later = w.records[2]["modules"]  # step 10
    # independently: every norm grew by orders of magnitude, and the per-call gain is the
    # recurrent weight's scale (an orthogonal matrix times 3)
    assert all(later[p]["grad"]["norm"] > 1e6 * first[p]["grad"]["norm"] for p in first)


def test_gradients_huge_from_the_first_check_are_blamed_on_the_recurrence():
    # the head's gradient is the largest, the run never reaches a non-finite value
    _, w = _rnn(gain=3.0, head_scale=0.1, interval=10)
    first = w.records[0]["modules"]
    assert first["head"]["grad"]["norm"] > 5 * first["wh"]["grad"]["norm"]
    f = finding(w, "exploding")
    assert f.module == "wh" and "explode through this recurrence" in f.message
    assert [k.kind for k in loud(w.findings())] == ["exploding"]


def test_a_recurrence_with_gain_one_is_silent():
    _, w = _rnn(gain=1.0, act="tanh", lr=0.05, steps=100)
    assert loud(w.findings()) == []


def test_an_exploding_recurrence_explodes_in_pytorch_too():
    torch = import_torch()
    torch.manual_seed(0)
    wx, wh, head = torch.nn.Linear(2, 16), torch.nn.Linear(16, 16, bias=False), \
        torch.nn.Linear(16, 2)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((16, 16)))
    with torch.no_grad():
        wh.weight.copy_(torch.from_numpy((3.0 * q).astype(np.float32)))
    x, y = sequences(0, T=12)
    h = torch.zeros(32, 16)
    xt = torch.from_numpy(x[:32])
    states = []
    for t in range(12):
        h = torch.relu(wx(xt[:, t]) + wh(h))
        h.retain_grad()
        states.append(h)
    loss = torch.nn.functional.cross_entropy(head(h), torch.from_numpy(y[:32]))
    loss.backward()
    # the gradient grows by orders of magnitude on its way back through the recurrence
    assert states[0].grad.norm() > 100 * states[-1].grad.norm()
    assert loss.item() > 10 * math.log(2)


# ----------------------------------------------------------------------------- vanishing


def test_vanishing_gradients_are_not_also_called_not_updated():
    cr.manual_seed(0)
    m = mlp(8, *[32] * 15, 4, act=nn.Sigmoid)
    w = fit(m, SGD(m.parameters(), lr=1e-3), blobs(0), steps=30, interval=5)
    f = finding(w, "vanishing_gradient")
    assert f.module == "0"
    assert "not_updated" not in {k.kind for k in w.findings()}
    # independently: some early weights did not change at all in float32 (rounding), yet
    # their gradients are not zero
    rec = w.records[-1]["params"]
    frozen_by_rounding = [n for n, s in rec.items() if s.get("update_norm") == 0.0
                          and s.get("norm", 0) > 0]
    assert frozen_by_rounding


# ----------------------------------------------------------------------------- no false alarms

_EMPTY = {"params": {}, "modules": {}, "order": [], "activations": {}}


def _loss_kinds(losses):
    return [(f.kind, f.step) for f in diagnose(_EMPTY, [], (list(range(len(losses))), losses))]


def test_minibatch_noise_at_a_low_loss_is_not_a_spike_but_a_return_to_the_start_is():
    rng = np.random.default_rng(0)
    n = 300
    base = 2.0 * np.exp(-np.arange(n) / 30) + 0.002
    noisy = base * rng.lognormal(0.0, 0.8, n)  # heavy-tailed batch-to-batch noise
    noisy[200] = 12 * base[200]  # a hard batch: 12x the median, but far below the start
    assert _loss_kinds(list(noisy)) == []
    jump = noisy.copy()
    jump[250] = 1.8  # most of the way back to where training started
    assert _loss_kinds(list(jump)) == [("loss_spike", 250)]


@pytest.mark.parametrize("opt, lr", [(Adagrad, 0.05), (Adam, 1e-2)])
def test_an_adaptive_optimizers_first_steps_are_not_a_learning_rate_too_high(opt, lr):
    # a wide first layer has small weights: the first adaptive step (about lr per weight)
    # is a large share of them, and the run is healthy
    cr.manual_seed(0)
    x, y = blobs(0, d=256)
    m = mlp(256, 32, 4)
    w = fit(m, opt(m.parameters(), lr=lr), (x, y), steps=60, interval=5)
    assert w.records[0]["params"]["0.weight"]["update_ratio"] > 0.25
    assert loud(w.findings()) == []
