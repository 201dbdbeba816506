"""chainrule.distributions against closed forms and torch.distributions (log_prob, entropy,
KL, moments of samples, rsample gradients), and chainrule.utils.checkpoint (same values and
gradients as without it, dropout masks repeated)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
import chainrule.distributions as D
import chainrule.nn as nn
from chainrule.utils.checkpoint import checkpoint, checkpoint_sequential

rng = np.random.default_rng(2)


def test_normal_log_prob_entropy_and_rsample_gradient():
    loc = cr.tensor([0.5, -1.0], requires_grad=True)
    scale = cr.tensor([1.5, 0.3], requires_grad=True)
    d = D.Normal(loc, scale)
    v = np.array([0.2, -0.7], np.float32)
    ref = -0.5 * ((v - [0.5, -1.0]) / [1.5, 0.3]) ** 2 - np.log([1.5, 0.3]) - 0.5 * math.log(
        2 * math.pi)
    np.testing.assert_allclose(d.log_prob(cr.tensor(v)).detach().numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(d.entropy().detach().numpy(),
                               0.5 + 0.5 * math.log(2 * math.pi) + np.log([1.5, 0.3]), rtol=1e-6)
    cr.manual_seed(0)
    s = d.rsample((4000,))
    assert s.shape == (4000, 2)
    np.testing.assert_allclose(s.detach().numpy().mean(0), [0.5, -1.0], atol=0.06)
    s.mean().backward()
    np.testing.assert_allclose(loc.grad.numpy(), [0.5, 0.5], rtol=1e-4)
    assert not d.sample().requires_grad


def test_categorical_and_bernoulli_sample_frequencies():
    cr.manual_seed(1)
    c = D.Categorical(probs=cr.tensor([0.2, 0.5, 0.3]))
    s = c.sample((20000,)).numpy()
    np.testing.assert_allclose(np.bincount(s, minlength=3) / 20000, [0.2, 0.5, 0.3], atol=0.015)
    b = D.Bernoulli(logits=cr.tensor([0.0, 2.0]))
    s = b.sample((20000,)).numpy()
    np.testing.assert_allclose(s.mean(0), [0.5, 1 / (1 + math.exp(-2))], atol=0.015)
    u = D.Uniform(cr.tensor(-1.0), cr.tensor(3.0)).sample((10000,)).numpy()
    assert u.min() >= -1 and u.max() < 3 and abs(u.mean() - 1) < 0.05


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="Categorical: pass exactly one"):
        D.Categorical()
    with pytest.raises(ValueError, match="Normal: scale must be positive"):
        D.Normal(0.0, -1.0)
    with pytest.raises(NotImplementedError, match="kl_divergence: no formula"):
        D.kl_divergence(D.Normal(0.0, 1.0), D.Categorical(logits=cr.zeros(3)))


def test_checkpoint_equals_plain_forward_with_dropout():
    cr.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 2))
    x = cr.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    cr.manual_seed(5)
    y = net(x)
    y.sum().backward()
    ref_x, ref_w = x.grad.numpy().copy(), net[0].weight.grad.numpy().copy()
    x.grad = None
    net.zero_grad()
    cr.manual_seed(5)
    y2 = checkpoint(net, x)
    np.testing.assert_allclose(y2.detach().numpy(), y.detach().numpy(), rtol=1e-6)
    cr.rand(7)  # the stream moves on before backward: the recomputation restores it
    y2.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), ref_x, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net[0].weight.grad.numpy(), ref_w, rtol=1e-5, atol=1e-7)
    net.zero_grad()
    y3 = checkpoint_sequential(net, 2, x.detach())
    y3.sum().backward()
    assert net[0].weight.grad is not None


torch = pytest.importorskip("torch")
TD = torch.distributions


def _pairs():
    p = rng.dirichlet(np.ones(4), size=3).astype(np.float32)
    q = rng.dirichlet(np.ones(4), size=3).astype(np.float32)
    bl, bq = rng.uniform(0.1, 0.9, 3).astype(np.float32), rng.uniform(0.1, 0.9, 3).astype(
        np.float32)
    mu, sd = rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    return [
        (lambda L, a: L.Categorical(probs=a), (p,), (q,)),
        (lambda L, a: L.Categorical(logits=a), (np.log(p),), (np.log(q),)),
        (lambda L, a: L.Bernoulli(probs=a), (bl,), (bq,)),
        (lambda L, a: L.Bernoulli(logits=a), (bl - 0.5,), (bq - 0.5,)),
        (lambda L, a, b: L.Normal(a, b), (mu, sd), (mu[::-1].copy(), sd[::-1].copy())),
        (lambda L, a, b: L.Uniform(a, b), (mu - 3, mu + 3), (mu - 1, mu + 1)),
    ]


@pytest.mark.parametrize("i", range(6))
def test_against_torch_distributions(i):
    make, pa, qa = _pairs()[i]
    ours = make(D, *[cr.tensor(a) for a in pa])
    theirs = make(TD, *[torch.tensor(a) for a in pa])
    with torch.no_grad():
        v = theirs.sample((5,))
    lp = ours.log_prob(cr.tensor(v.numpy())).detach().numpy()
    np.testing.assert_allclose(lp, theirs.log_prob(v).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.entropy().detach().numpy(), theirs.entropy().numpy(),
                               rtol=1e-5, atol=1e-5)
    q_ours = make(D, *[cr.tensor(a) for a in qa])
    q_theirs = make(TD, *[torch.tensor(a) for a in qa])
    for a, b in ((ours, q_ours), (q_ours, ours)):
        ta, tb = (theirs, q_theirs) if a is ours else (q_theirs, theirs)
        np.testing.assert_allclose(D.kl_divergence(a, b).detach().numpy(),
                                   TD.kl_divergence(ta, tb).numpy(), rtol=1e-4, atol=1e-5)


def test_uniform_normal_kl_against_torch():
    u, n = D.Uniform(cr.tensor([-1.0]), cr.tensor([2.0])), D.Normal(cr.tensor([0.3]),
                                                                  cr.tensor([1.2]))
    ut, nt = TD.Uniform(torch.tensor([-1.0]), torch.tensor([2.0])), TD.Normal(
        torch.tensor([0.3]), torch.tensor([1.2]))
    np.testing.assert_allclose(D.kl_divergence(u, n).detach().numpy(),
                               TD.kl_divergence(ut, nt).numpy(), rtol=1e-5)
