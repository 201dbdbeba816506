"""F.ctc_loss and nn.CTCLoss: gradcheck and gradgradcheck in float64, the fused op against its
composition of primitives, and losses and gradients against torch.nn.functional.ctc_loss."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F
from chainrule.autograd import gradcheck, gradgradcheck
from chainrule.nn.ctc import CTCLossOp

rng = np.random.default_rng(5)
T, N, C = 9, 3, 5
TARGETS = np.array([[1, 2, 2, 0], [3, 1, 0, 0], [4, 4, 4, 0]])  # repeats need blanks between
IN_LEN, TG_LEN = [9, 7, 8], [3, 2, 3]


def _lp(dtype=np.float64, requires_grad=True):
    x = rng.standard_normal((T, N, C)).astype(dtype)
    return cr.tensor(x, requires_grad=requires_grad)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_gradcheck_and_gradgradcheck(reduction):
    def fn(x):
        return F.ctc_loss(F.log_softmax(x, -1), cr.tensor(TARGETS), IN_LEN, TG_LEN,
                          reduction=reduction)

    assert gradcheck(fn, [_lp()])
    assert gradgradcheck(fn, [_lp()])


def test_gradient_of_log_probs_is_the_true_derivative():
    """Differentiated in the log-probabilities themselves (no log_softmax), the gradient is
    that of the finite differences."""
    assert gradcheck(lambda lp: F.ctc_loss(lp, cr.tensor(TARGETS), IN_LEN, TG_LEN,
                                           reduction="sum"), [_lp()])


def test_fused_op_equals_its_composition():
    lp = _lp()
    kw = dict(targets=TARGETS, input_lengths=np.array(IN_LEN), target_lengths=np.array(TG_LEN),
              blank=0, zero_infinity=False)
    y = CTCLossOp.apply(lp, **kw)
    op = y.grad_fn
    z = op.composite(lp)
    np.testing.assert_allclose(y.detach().numpy(), z.detach().numpy(), rtol=1e-12)
    u = rng.standard_normal(N)
    (gy,) = cr.autograd.grad(y, [lp], cr.tensor(u))
    (gz,) = cr.autograd.grad(z, [lp], cr.tensor(u))
    np.testing.assert_allclose(gy.numpy(), gz.numpy(), atol=1e-12)


def test_bad_arguments_are_named():
    lp = _lp()
    with pytest.raises(ValueError, match=r"ctc_loss: input_lengths must be in \[1, 9\]"):
        F.ctc_loss(lp, cr.tensor(TARGETS), [10, 7, 8], TG_LEN)
    with pytest.raises(ValueError, match="ctc_loss: target labels must be classes"):
        F.ctc_loss(lp, cr.tensor(TARGETS), IN_LEN, [4, 2, 3])
    with pytest.raises(ValueError, match="ctc_loss: target_lengths must be 3 integers"):
        F.ctc_loss(lp, cr.tensor(TARGETS), IN_LEN, [3, 2])
    with pytest.raises(ValueError, match="CTCLoss: reduction='batchmean' is not valid"):
        nn.CTCLoss(reduction="batchmean")


torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _both(x, targets, in_len, tg_len, tol=1e-10, **kw):
    """Losses and gradients of the logits before a log_softmax, for a random covector."""
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    lc = F.ctc_loss(F.log_softmax(xc, -1), cr.tensor(targets), in_len, tg_len, **kw)
    lt = TF.ctc_loss(torch.log_softmax(xt, -1), torch.tensor(targets), torch.tensor(in_len),
                     torch.tensor(tg_len), **kw)
    np.testing.assert_allclose(lc.detach().numpy(), lt.detach().numpy(), rtol=tol, atol=tol)
    u = rng.standard_normal(tuple(lc.shape)).astype(x.dtype)
    (lc * cr.tensor(u)).sum().backward()
    (lt * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("blank", [0, 4])
def test_matches_torch_padded_targets(reduction, blank):
    targets = np.where(TARGETS == blank, (blank + 1) % C, TARGETS)
    _both(rng.standard_normal((T, N, C)), targets, IN_LEN, TG_LEN, blank=blank,
          reduction=reduction)


def test_matches_torch_concatenated_targets_and_empty_target():
    targets = np.array([1, 2, 2, 3, 4, 1, 1])
    _both(rng.standard_normal((T, 4, C)), targets, [9, 6, 9, 1], [3, 1, 3, 0],
          reduction="none")


def test_matches_torch_unbatched_and_float32():
    x = rng.standard_normal((T, C))
    _both(x, np.array([1, 3, 3]), [T], [3], reduction="none")
    _both(rng.standard_normal((T, N, C)).astype(np.float32), TARGETS, IN_LEN, TG_LEN,
          tol=2e-5)


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_impossible_alignments_match_torch(zero_infinity):
    """[2, 2, 2] needs 5 steps; 3 steps have no alignment: inf, or 0 with zero_infinity."""
    x = rng.standard_normal((T, 2, C))
    in_len, tg_len = [3, 9], [3, 3]
    targets = np.array([[2, 2, 2], [1, 2, 3]])
    xc = cr.tensor(x, requires_grad=True)
    lc = F.ctc_loss(F.log_softmax(xc, -1), cr.tensor(targets), in_len, tg_len,
                    reduction="none", zero_infinity=zero_infinity)
    lt = TF.ctc_loss(torch.log_softmax(torch.tensor(x), -1), torch.tensor(targets),
                     torch.tensor(in_len), torch.tensor(tg_len), reduction="none",
                     zero_infinity=zero_infinity)
    np.testing.assert_allclose(lc.detach().numpy(), lt.numpy(), rtol=1e-10)
    if zero_infinity:
        _both(x, targets, in_len, tg_len, zero_infinity=True, reduction="sum")
        _both(x, targets, in_len, tg_len, zero_infinity=True)


def test_log_probs_gradient_differs_from_torch_by_exp_log_probs():
    """PyTorch's kernel adds exp(log_probs) over each sample's input steps (a term that a
    log_softmax before the loss cancels); the rest is the same."""
    lp = np.log(rng.dirichlet(np.ones(C), (T, N)))
    lc, lt = cr.tensor(lp, requires_grad=True), torch.tensor(lp, requires_grad=True)
    F.ctc_loss(lc, cr.tensor(TARGETS), IN_LEN, TG_LEN, reduction="sum").backward()
    TF.ctc_loss(lt, torch.tensor(TARGETS), torch.tensor(IN_LEN), torch.tensor(TG_LEN),
                reduction="sum").backward()
    steps = (np.arange(T).reshape(T, 1) < np.array(IN_LEN)).reshape(T, N, 1)
    np.testing.assert_allclose(lc.grad.numpy() + np.exp(lp) * steps, lt.grad.numpy(),
                               atol=1e-10)


def test_module_matches_torch():
    x = rng.standard_normal((T, N, C))
    ours, theirs = nn.CTCLoss(blank=0, zero_infinity=True), torch.nn.CTCLoss(zero_infinity=True)
    lc = ours(F.log_softmax(cr.tensor(x), -1), cr.tensor(TARGETS), cr.tensor(IN_LEN),
              cr.tensor(TG_LEN))
    lt = theirs(torch.log_softmax(torch.tensor(x), -1), torch.tensor(TARGETS),
                torch.tensor(IN_LEN), torch.tensor(TG_LEN))
    np.testing.assert_allclose(lc.numpy(), lt.numpy(), rtol=1e-10)
