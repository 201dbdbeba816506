"""Learning-rate schedules: 20-step sequences equal the formulas (written here) and PyTorch's
schedulers; state dicts resume; warmup_cosine equals nanoGPT's get_lr."""

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import optim
from chainrule.optim import lr_scheduler as S

STEPS = 20
BASE = [0.1, 0.02]  # two parameter groups, two base rates


def make_opt(kind="SGD"):
    a = cr.zeros(2, requires_grad=True)
    b = cr.zeros(3, requires_grad=True)
    groups = [{"params": [a], "lr": BASE[0]}, {"params": [b], "lr": BASE[1]}]
    if kind == "SGD":
        return optim.SGD(groups, lr=0.5, momentum=0.9)
    return optim.Adam(groups, lr=0.5)


def lrs_over(make_sched, kind="SGD", steps=STEPS):
    """lr of each group at epochs 0..steps-1 (read after construction and after each step)."""
    opt = make_opt(kind)
    sched = make_sched(opt)
    out = [sched.get_last_lr()]
    for _ in range(steps - 1):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr())
        assert out[-1] == [g["lr"] for g in opt.param_groups]
    return np.array(out)


# -- the formulas, written out: lr(base, epoch) --------------------------------------------
def ref_step(base, t, step_size=3, gamma=0.5):
    return base * gamma ** math.floor(t / step_size)


def ref_cosine(base, t, T_max=7, eta_min=0.001):
    return eta_min + 0.5 * (base - eta_min) * (1 + math.cos(t / T_max * math.pi))


def ref_linear(base, t, s=0.25, e=0.75, n=8):
    return base * (s + (e - s) * (t if t < n else n) / n)


def ref_lambda(base, t):
    return base / (1 + t) ** 0.5


def ref_onecycle(t, max_lr, total=20, pct=0.3, div=25.0, final_div=1e4, cos=True,
                 mom=(0.85, 0.95), three_phase=False):
    """Smith & Topin's 1cycle: (lr, momentum) at step t, phases ending at pct*total - 1 and
    total - 1 (three_phase: 2 pct total - 2 in between)."""
    lo, hi = max_lr / div, max_lr
    end_lr = lo / final_div
    if three_phase:
        phases = [(pct * total - 1, lo, hi, mom[1], mom[0]),
                  (2 * pct * total - 2, hi, lo, mom[0], mom[1]),
                  (total - 1, lo, end_lr, mom[1], mom[1])]
    else:
        phases = [(pct * total - 1, lo, hi, mom[1], mom[0]),
                  (total - 1, hi, end_lr, mom[0], mom[1])]
    start = 0.0
    for i, (end, a, b, ma, mb) in enumerate(phases):
        if t <= end or i == len(phases) - 1:
            r = (t - start) / (end - start)
            if cos:
                w = (1 + math.cos(math.pi * r)) / 2
                return b + (a - b) * w, mb + (ma - mb) * w
            return a + (b - a) * r, ma + (mb - ma) * r
        start = end


def test_step_lr_follows_formula():
    got = lrs_over(lambda o: S.StepLR(o, step_size=3, gamma=0.5))
    want = [[ref_step(b, t) for b in BASE] for t in range(STEPS)]
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_cosine_annealing_lr_follows_formula_past_t_max():
    got = lrs_over(lambda o: S.CosineAnnealingLR(o, T_max=7, eta_min=0.001))
    want = [[ref_cosine(b, t) for b in BASE] for t in range(STEPS)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[7, 0] == pytest.approx(0.001)


def test_linear_lr_follows_formula_and_holds_after_total_iters():
    got = lrs_over(lambda o: S.LinearLR(o, start_factor=0.25, end_factor=0.75, total_iters=8))
    want = [[ref_linear(b, t) for b in BASE] for t in range(STEPS)]
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_lambda_lr_scales_base_rate_per_group():
    got = lrs_over(lambda o: S.LambdaLR(o, [lambda t: 1 / (1 + t) ** 0.5, lambda t: 0.5 ** t]))
    want = [[ref_lambda(BASE[0], t), BASE[1] * 0.5**t] for t in range(STEPS)]
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_sequential_lr_restarts_second_schedule_at_milestone():
    def make(o):
        warm = S.LinearLR(o, start_factor=0.25, end_factor=0.75, total_iters=8)
        cos = S.CosineAnnealingLR(o, T_max=7, eta_min=0.001)
        return S.SequentialLR(o, [warm, cos], milestones=[5])

    got = lrs_over(make)
    want = [[ref_linear(b, t) if t < 5 else ref_cosine(b, t - 5) for b in BASE]
            for t in range(STEPS)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("cos,three_phase", [(True, False), (False, False), (True, True)])
def test_one_cycle_lr_and_momentum_follow_1cycle_formula(cos, three_phase):
    opt = make_opt("SGD")
    sched = S.OneCycleLR(opt, max_lr=[1.0, 0.5], total_steps=STEPS,
                         anneal_strategy="cos" if cos else "linear", three_phase=three_phase)
    for t in range(STEPS):
        for g, top in zip(opt.param_groups, [1.0, 0.5]):
            lr, mom = ref_onecycle(t, top, cos=cos, three_phase=three_phase)
            assert g["lr"] == pytest.approx(lr, rel=1e-12)
            assert g["momentum"] == pytest.approx(mom, rel=1e-12)
        if t < STEPS - 1:
            sched.step()


def test_one_cycle_cycles_adam_beta1_and_refuses_to_step_past_total():
    opt = make_opt("Adam")
    sched = S.OneCycleLR(opt, max_lr=1.0, epochs=2, steps_per_epoch=5)
    assert opt.param_groups[0]["betas"] == (0.95, 0.999)
    for _ in range(5):
        sched.step()
    assert opt.param_groups[0]["betas"][0] == pytest.approx(ref_onecycle(5, 1.0, total=10)[1])
    for _ in range(5):
        sched.step()
    with pytest.raises(ValueError, match="total_steps=10"):
        sched.step()


def test_warmup_cosine_equals_nanogpt_get_lr():
    learning_rate, min_lr, warmup_iters, lr_decay_iters = 6e-4, 6e-5, 10, 50

    def get_lr(it):  # nanoGPT train.py, written out
        if it < warmup_iters:
            return learning_rate * (it + 1) / (warmup_iters + 1)
        if it > lr_decay_iters:
            return min_lr
        decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
        coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
        return min_lr + coeff * (learning_rate - min_lr)

    for it in range(70):
        got = S.warmup_cosine(it, warmup=warmup_iters, total=lr_decay_iters,
                              lr_max=learning_rate, lr_min=min_lr)
        assert got == pytest.approx(get_lr(it), rel=1e-14)
    assert S.warmup_cosine(10, warmup=10, total=50, lr_max=1.0, lr_min=0.1) == 1.0
    assert S.warmup_cosine(50, warmup=10, total=50, lr_max=1.0, lr_min=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup < total"):
        S.warmup_cosine(0, warmup=10, total=10, lr_max=1.0)


SCHEDULES = {
    "StepLR": (lambda m, o: m.StepLR(o, step_size=3, gamma=0.5)),
    "CosineAnnealingLR": (lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.001)),
    "LinearLR": (lambda m, o: m.LinearLR(o, start_factor=0.25, end_factor=0.75, total_iters=8)),
    "LambdaLR": (lambda m, o: m.LambdaLR(o, lambda t: 0.9**t)),
    "SequentialLR": (lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=4), m.CosineAnnealingLR(o, T_max=10)],
        milestones=[4])),
    "OneCycleLR": (lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=STEPS)),
    "OneCycleLR3": (lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=STEPS,
                                              anneal_strategy="linear", three_phase=True)),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_schedule_equals_pytorch(name, kind):
    torch = pytest.importorskip("torch")
    ta, tb = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    groups = [{"params": [ta], "lr": BASE[0]}, {"params": [tb], "lr": BASE[1]}]
    topt = (torch.optim.SGD(groups, lr=0.5, momentum=0.9) if kind == "SGD"
            else torch.optim.Adam(groups, lr=0.5))
    tsched = SCHEDULES[name](torch.optim.lr_scheduler, topt)
    opt = make_opt(kind)
    sched = SCHEDULES[name](S, opt)
    for _ in range(STEPS - 1):
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12)
        for g, tg in zip(opt.param_groups, topt.param_groups):
            key = "momentum" if kind == "SGD" else "betas"
            np.testing.assert_allclose(g[key], tg[key], rtol=1e-12)
        topt.step()
        tsched.step()
        sched.step()


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "SequentialLR", "OneCycleLR",
                                  "LambdaLR"])
def test_state_dict_resumes_schedule(name):
    opt = make_opt()
    sched = SCHEDULES[name](S, opt)
    for _ in range(7):
        sched.step()
    saved_opt, saved = opt.state_dict(), sched.state_dict()
    want = []
    for _ in range(6):
        sched.step()
        want.append(sched.get_last_lr())
    opt2 = make_opt()
    opt2.load_state_dict(saved_opt)
    sched2 = SCHEDULES[name](S, opt2)
    sched2.load_state_dict(saved)
    got = []
    for _ in range(6):
        sched2.step()
        got.append(sched2.get_last_lr())
    assert got == want


def test_resuming_with_last_epoch_needs_initial_lr():
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(make_opt(), step_size=2, last_epoch=4)
    opt = make_opt()
    S.StepLR(opt, step_size=2)
    sched = S.StepLR(opt, step_size=2, gamma=0.5, last_epoch=4)
    assert sched.get_last_lr() == pytest.approx([b * 0.5**2 for b in BASE])


@pytest.mark.parametrize("make,match", [
    (lambda o: S.StepLR(o, step_size=0), "step_size"),
    (lambda o: S.CosineAnnealingLR(o, T_max=0), "T_max"),
    (lambda o: S.LinearLR(o, start_factor=0.0), "start_factor"),
    (lambda o: S.LinearLR(o, end_factor=1.5), "end_factor"),
    (lambda o: S.LambdaLR(o, [lambda t: 1.0]), "one per group"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 2), S.StepLR(o, 3)], milestones=[]),
     "milestones"),
    (lambda o: S.SequentialLR(o, [S.StepLR(make_opt(), 2)], milestones=[]),
     "different optimizer"),
    (lambda o: S.OneCycleLR(o, max_lr=1.0), "total_steps"),
    (lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=10, anneal_strategy="exp"),
     "anneal_strategy"),
    (lambda o: S.OneCycleLR(optim.Adagrad(o.param_groups[0]["params"]), max_lr=1.0,
                            total_steps=10), "cycle_momentum"),
])
def test_bad_arguments_raise_value_error_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make(make_opt())
