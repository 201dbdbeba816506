"""The training doctor names mistakes in the training loop: gradients never cleared, the
optimizer stepping with cleared gradients, clipping that leaves nothing, a schedule that took
the learning rate to zero, updates going uphill, weight decay that swamps the gradient,
training in eval mode. Each broken run is diagnosed (kind and module), its fixed twin is
silent, the pathology is confirmed independently, and, where PyTorch is installed, the same
run misbehaves there too."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import chainrule as cr
from blas_threads import one_blas_thread_limits
from chainrule import nn
from chainrule.optim import SGD, Adam, AdamW, lr_scheduler
from test_doctor_healthy import (
    blobs,
    fit,
    head_mean,
    import_torch,
    loud,
    mlp,
    tail_mean,
    torch_fit,
    torch_mlp,
)

one_blas_thread = pytest.fixture(scope="module", autouse=True)(one_blas_thread_limits)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def finding(w, kind):
    """The one finding of ``kind`` (the test fails, listing them all, when there is none)."""
    got = [f for f in w.findings() if f.kind == kind]
    assert len(got) == 1, "\n".join(str(f) for f in w.findings())
    return got[0]


def fresh_grad_norm(model, x, y):
    """The norm of the gradient of one batch's loss, computed on its own."""
    loss = nn.functional.cross_entropy(model(cr.tensor(x)), cr.tensor(y))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = cr.autograd.grad([loss], params)
    return math.sqrt(sum(float((g.numpy() ** 2).sum()) for g in grads))


def _mlp_sgd(zero="before", lr=0.05, **kw):
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    w = fit(m, SGD(m.parameters(), lr=lr), blobs(0), zero=zero, **kw)
    return m, w


# ----------------------------------------------------------------------------- zero_grad


def test_missing_zero_grad_is_named_grad_accumulates_and_the_fixed_loop_is_silent():
    m, broken = _mlp_sgd(zero="none")
    f = finding(broken, "grad_accumulates")
    assert (f.module, f.severity, f.step) == ("", "error", 10)
    assert "x what this step's backward computed" in f.message and "zero_grad" in f.suggestion
    _, fixed = _mlp_sgd(zero="before")
    assert loud(fixed.findings()) == []
    _, kept = _mlp_sgd(zero="keep")  # zero_grad(set_to_none=False): zeros, not stale sums
    assert loud(kept.findings()) == []
    # independently: .grad now holds many times what one batch's backward makes
    x, y = blobs(0)
    stale = math.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in m.parameters()))
    assert stale > 5 * fresh_grad_norm(m, x[:32], y[:32])


def test_missing_zero_grad_accumulates_in_pytorch_too():
    torch = import_torch()
    m = torch_mlp(8, 32, 4)
    torch_fit(m, torch.optim.SGD(m.parameters(), lr=0.05), blobs(0), zero="none", steps=40)
    x, y = blobs(0)
    stale = math.sqrt(sum(float((p.grad ** 2).sum()) for p in m.parameters()))
    loss = torch.nn.functional.cross_entropy(m(torch.from_numpy(x[:32])), torch.from_numpy(y[:32]))
    fresh = torch.autograd.grad(loss, list(m.parameters()))
    assert stale > 5 * math.sqrt(sum(float((g ** 2).sum()) for g in fresh))


def test_zero_grad_between_backward_and_step_is_named_step_without_grad():
    m, broken = _mlp_sgd(zero="between", lr=0.1)
    f = finding(broken, "step_without_grad")
    assert (f.module, f.severity) == ("", "error")
    assert "between backward and step" in f.message
    assert [x.kind for x in loud(broken.findings())] == ["step_without_grad"]  # not symptoms
    # independently: no weight ever moved
    cr.manual_seed(0)
    assert all(np.array_equal(a.detach().numpy(), b.detach().numpy())
               for a, b in zip(m.parameters(), mlp(8, 32, 4).parameters()))


def test_step_before_backward_is_named_step_without_grad():
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    w = fit(m, Adam(m.parameters(), lr=1e-2), blobs(0), order="step_first")
    f = finding(w, "step_without_grad")
    assert "optimizer.step() ran before loss.backward()" in f.message
    assert tail_mean(w.losses) > 0.95 * head_mean(w.losses)  # it learns nothing


def test_step_without_grad_learns_nothing_in_pytorch_too():
    torch = import_torch()
    m = torch_mlp(8, 32, 4)
    before = [p.detach().clone() for p in m.parameters()]
    torch_fit(m, torch.optim.SGD(m.parameters(), lr=0.1), blobs(0), zero="between", steps=30)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))


# ----------------------------------------------------------------------------- clipping


def test_clipping_to_almost_nothing_is_named_clip_too_tight():
    _, broken = _mlp_sgd(clip=1e-5, lr=0.1)
    f = finding(broken, "clip_too_tight")
    assert (f.module, f.severity) == ("", "error")
    assert "x smaller than" in f.message and "backward computed" in f.message
    assert [x.kind for x in loud(broken.findings())] == ["clip_too_tight"]
    assert tail_mean(broken.losses) > 0.95 * head_mean(broken.losses)  # nothing learnt
    _, fixed = _mlp_sgd(clip=1.0, lr=0.1)
    assert loud(fixed.findings()) == []
    assert tail_mean(fixed.losses) < 0.3 * head_mean(fixed.losses)


def test_clipping_to_almost_nothing_learns_nothing_in_pytorch_too():
    torch = import_torch()
    m = torch_mlp(8, 32, 4)
    losses = torch_fit(m, torch.optim.SGD(m.parameters(), lr=0.1), blobs(0), clip=1e-5)
    assert tail_mean(losses) > 0.95 * head_mean(losses)


# ----------------------------------------------------------------------------- schedules


def _scheduled(every):
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    opt = SGD(m.parameters(), lr=0.1, momentum=0.9)
    sched = lr_scheduler.StepLR(opt, step_size=6, gamma=0.1)  # meant: every 6 epochs
    w = fit(m, opt, blobs(0, spread=1.5), sched=sched, sched_every=every, steps=160)
    return opt, w


def test_a_per_epoch_schedule_stepped_per_iteration_is_named_lr_decayed():
    opt, broken = _scheduled(every=1)
    f = finding(broken, "lr_decayed")
    assert (f.module, f.severity) == ("", "warning")
    assert "fell from 0.1 (step 0)" in f.message and "once per iteration" in f.message
    assert [x.kind for x in loud(broken.findings())] == ["lr_decayed"]
    assert opt.param_groups[0]["lr"] < 1e-20  # independently: the rate is gone
    _, fixed = _scheduled(every=8)  # 256 examples / 32 = 8 iterations an epoch
    assert loud(fixed.findings()) == []
    assert tail_mean(broken.losses) > 2 * tail_mean(fixed.losses)


def test_a_per_iteration_steplr_stops_learning_in_pytorch_too():
    torch = import_torch()
    out = {}
    for every in (1, 8):
        m = torch_mlp(8, 32, 4)
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=6, gamma=0.1)
        out[every] = torch_fit(m, opt, blobs(0, spread=1.5), sched=sched, sched_every=every,
                               steps=160)
    assert tail_mean(out[1]) > 2 * tail_mean(out[8])


def test_a_cosine_schedule_that_reaches_zero_at_the_end_is_not_a_decayed_rate():
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    opt = SGD(m.parameters(), lr=0.1, momentum=0.9)
    w = fit(m, opt, blobs(0), sched=lr_scheduler.CosineAnnealingLR(opt, T_max=120), steps=120,
            interval=5)
    assert opt.param_groups[0]["lr"] < 1e-3 * 0.1
    assert loud(w.findings()) == []


# ----------------------------------------------------------------------------- the update's sign


def test_maximize_true_is_named_uphill_update():
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    w = fit(m, SGD(m.parameters(), lr=0.05, maximize=True), blobs(0))
    f = finding(w, "uphill_update")
    assert (f.module, f.severity, f.step) == ("", "error", 0)
    assert "cosine +1.00 with the gradient" in f.message
    assert tail_mean(w.losses) > 10 * head_mean(w.losses)  # independently: the loss climbs


def _hand_written(sign):
    cr.manual_seed(0)
    m = mlp(8, 32, 4)

    class Plain:  # a loop without an optimizer object: it updates the weights itself
        param_groups = [{"params": list(m.parameters())}]

        def zero_grad(self):
            for p in m.parameters():
                p.grad = None

    def step(opt):
        with cr.no_grad():
            for p in m.parameters():
                p.data[...] += sign * 0.05 * p.grad.data

    return fit(m, Plain(), blobs(0), step_fn=step, watch_optimizer=False)


def test_a_hand_written_update_with_the_wrong_sign_is_named_uphill_update():
    broken = _hand_written(+1)
    assert finding(broken, "uphill_update").module == ""
    fixed = _hand_written(-1)
    assert loud(fixed.findings()) == []
    assert tail_mean(fixed.losses) < 0.3 * head_mean(fixed.losses)


def test_maximize_true_climbs_in_pytorch_too():
    torch = import_torch()
    m = torch_mlp(8, 32, 4)
    losses = torch_fit(m, torch.optim.SGD(m.parameters(), lr=0.05, maximize=True), blobs(0))
    assert tail_mean(losses) > 10 * head_mean(losses)


# ----------------------------------------------------------------------------- weight decay


def _decayed(opt_cls, wd, lr):
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    w = fit(m, opt_cls(m.parameters(), lr=lr, weight_decay=wd), blobs(0))
    return m, w


@pytest.mark.parametrize("opt_cls, wd, lr", [(SGD, 5.0, 0.1), (AdamW, 50.0, 1e-2)])
def test_weight_decay_that_swamps_the_gradient_is_named(opt_cls, wd, lr):
    cr.manual_seed(0)
    start = mlp(8, 32, 4)[0].weight.detach().numpy().copy()
    m, broken = _decayed(opt_cls, wd, lr)
    f = finding(broken, "weight_decay_dominates")
    assert (f.module, f.severity) == ("", "warning")
    assert f"weight decay {wd:g}" in f.message and "norm fell from" in f.message
    assert [x.kind for x in loud(broken.findings())] == ["weight_decay_dominates"]
    # independently: the first layer's weights have all but vanished, and nothing was learnt
    assert np.linalg.norm(m[0].weight.detach().numpy()) < 0.3 * np.linalg.norm(start)
    assert tail_mean(broken.losses) > 0.9 * math.log(4)
    _, fixed = _decayed(opt_cls, wd * 1e-4, lr)
    assert loud(fixed.findings()) == []


def test_weight_decay_that_swamps_the_gradient_stops_learning_in_pytorch_too():
    torch = import_torch()
    m = torch_mlp(8, 32, 4)
    losses = torch_fit(m, torch.optim.SGD(m.parameters(), lr=0.1, weight_decay=5.0), blobs(0))
    assert tail_mean(losses) > 0.9 * math.log(4)
    assert float(m[0].weight.detach().norm()) < 1e-3


# ----------------------------------------------------------------------------- eval mode


def _dropout_run(eval_at_start, eval_every=0):
    cr.manual_seed(0)
    m = mlp(8, 64, 64, 4, dropout=0.5)
    w = fit(m, Adam(m.parameters(), lr=3e-3), blobs(0), eval_at_start=eval_at_start,
            eval_every=eval_every)
    return m, w


def test_training_in_eval_mode_is_named_and_evaluation_in_between_is_not():
    m, broken = _dropout_run(eval_at_start=True)  # model.eval() and never model.train()
    f = finding(broken, "eval_mode_training")
    assert (f.module, f.severity, f.step) == ("", "warning", 0)
    assert "Dropout (p=0.5)" in f.message and "model.train()" in f.suggestion
    _, fixed = _dropout_run(eval_at_start=False, eval_every=15)  # evaluates, then train()
    assert loud(fixed.findings()) == []
    # independently: with dropout off the training forward is deterministic
    x = cr.tensor(blobs(0)[0][:16])
    with cr.no_grad():
        assert not m.training and np.array_equal(m(x).numpy(), m(x).numpy())


def test_an_evaluation_pass_with_grad_on_between_training_steps_is_not_eval_training():
    cr.manual_seed(0)
    m = mlp(8, 64, 64, 4, dropout=0.5)
    w = fit(m, Adam(m.parameters(), lr=3e-3), blobs(0), eval_every=5, eval_no_grad=False)
    assert loud(w.findings()) == []


def test_training_in_eval_mode_switches_dropout_off_in_pytorch_too():
    torch = import_torch()
    m = torch_mlp(8, 64, 64, 4, dropout=0.5)
    torch_fit(m, torch.optim.Adam(m.parameters(), lr=3e-3), blobs(0), eval_at_start=True,
              steps=20)
    x = torch.from_numpy(blobs(0)[0][:16])
    with torch.no_grad():
        assert not m.training and torch.equal(m(x), m(x))


def test_a_loop_that_never_calls_backward_is_named_no_gradient_once():
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    opt = SGD(m.parameters(), lr=0.1)
    from chainrule.diagnostics import watch

    w = watch(m, opt, interval=5)
    x, y = blobs(0)
    for s in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(cr.tensor(x[:32])), cr.tensor(y[:32]))
        opt.step()  # no loss.backward()
        w.step(s, loss.item())
    (f,) = loud(w.findings())
    assert (f.kind, f.module, f.severity) == ("no_gradient", "", "error")
    assert "backward never ran" in f.message
    assert all(p.grad is None for p in m.parameters())
