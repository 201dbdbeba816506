"""Adadelta, Adamax, NAdam, RAdam and LBFGS: trajectories equal the published update rules
(written out here in float64 NumPy) and torch.optim's (where installed), with weight decay,
maximize and parameter groups; state dicts round-trip; bad options raise."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import optim

STEPS = 20
_rng = np.random.default_rng(4321)
X = _rng.standard_normal((16, 3))
Y = _rng.standard_normal((16, 2))
W0 = _rng.standard_normal((3, 2))
B0 = _rng.standard_normal(2)


def loss_fn(W, b):
    return ((cr.tensor(X, dtype=cr.float64) @ W + b - cr.tensor(Y, dtype=cr.float64)) ** 2).mean()


def closed_form_grads(W, b):
    R = X @ W + b - Y
    scale = 2.0 / R.size
    return [scale * X.T @ R, scale * R.sum(axis=0)]


# -- the update rules: (param, grad, state, step, **options) -> new param ---------------------
def ref_adadelta(p, g, s, t, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    g = -g if maximize else g
    g = g + weight_decay * p
    s["sq"] = rho * s.get("sq", 0.0) + (1 - rho) * g * g
    delta = np.sqrt(s.get("acc", 0.0) + eps) / np.sqrt(s["sq"] + eps) * g
    s["acc"] = rho * s.get("acc", 0.0) + (1 - rho) * delta * delta
    return p - lr * delta


def ref_adamax(p, g, s, t, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
               maximize=False):
    b1, b2 = betas
    g = -g if maximize else g
    g = g + weight_decay * p
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["u"] = np.maximum(b2 * s.get("u", 0.0), np.abs(g) + eps)
    return p - lr / (1 - b1**t) * s["m"] / s["u"]


def ref_nadam(p, g, s, t, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False):
    b1, b2 = betas
    g = -g if maximize else g
    if decoupled_weight_decay:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    s["P"] = s.get("P", 1.0) * mu
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
    denom = np.sqrt(s["v"] / (1 - b2**t)) + eps
    return (p - lr * (1 - mu) / (1 - s["P"]) * g / denom
            - lr * mu_next / (1 - s["P"] * mu_next) * s["m"] / denom)


def ref_radam(p, g, s, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              decoupled_weight_decay=False, maximize=False):
    b1, b2 = betas
    g = -g if maximize else g
    if decoupled_weight_decay:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
    m_hat = s["m"] / (1 - b1**t)
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
    if rho_t <= 5:
        return p - lr * m_hat
    r = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
    return p - lr * m_hat * r * np.sqrt(1 - b2**t) / (np.sqrt(s["v"]) + eps)


REFS = {"Adadelta": ref_adadelta, "Adamax": ref_adamax, "NAdam": ref_nadam, "RAdam": ref_radam}

CASES = [
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1)),
    ("Adadelta", dict(lr=0.7, maximize=True)),
    ("Adamax", dict(lr=0.05)),
    ("Adamax", dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    ("Adamax", dict(lr=0.02, maximize=True)),
    ("NAdam", dict(lr=0.05)),
    ("NAdam", dict(lr=0.05, betas=(0.8, 0.9), momentum_decay=0.01, weight_decay=0.1)),
    ("NAdam", dict(lr=0.05, weight_decay=0.2, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=0.02, maximize=True)),
    ("RAdam", dict(lr=0.05)),
    ("RAdam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("RAdam", dict(lr=0.05, weight_decay=0.2, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=0.02, maximize=True)),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in hp.items())}" for name, hp in CASES]


def run_chainrule(name, hp, steps=STEPS, dtype=cr.float64):
    W = cr.tensor(W0, dtype=dtype, requires_grad=True)
    b = cr.tensor(B0, dtype=dtype, requires_grad=True)
    opt = getattr(optim, name)([W, b], **hp)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(W, b).backward()
        opt.step()
        out.append([W.detach().numpy().copy(), b.detach().numpy().copy()])
    return out


def run_reference(name, hp, steps=STEPS):
    params, states, out = [W0.copy(), B0.copy()], [{}, {}], []
    for t in range(1, steps + 1):
        grads = closed_form_grads(*params)
        params = [REFS[name](p, g, s, t, **hp) for p, g, s in zip(params, grads, states)]
        out.append([p.copy() for p in params])
    return out


@pytest.fixture
def torch64():
    """torch with float64 as its default dtype (NAdam keeps its mu_product in the default
    dtype), restored afterwards."""
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(old)


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
def test_trajectory_equals_published_update_rule(name, hp):
    got, want = run_chainrule(name, hp), run_reference(name, hp)
    for step, (g, w) in enumerate(zip(got, want)):
        for a, r in zip(g, w):
            np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name} {hp} step {step + 1}")
    assert np.abs(got[-1][0] - W0).max() > 1e-3


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
def test_trajectory_equals_pytorch(name, hp, torch64):
    torch = torch64
    got = run_chainrule(name, hp)
    W = torch.tensor(W0, requires_grad=True)
    b = torch.tensor(B0, requires_grad=True)
    opt = getattr(torch.optim, name)([W, b], **hp)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    for step in range(STEPS):
        opt.zero_grad()
        ((Xt @ W + b - Yt) ** 2).mean().backward()
        opt.step()
        np.testing.assert_allclose(got[step][0], W.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"{name} {hp} step {step + 1}")
        np.testing.assert_allclose(got[step][1], b.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_defaults_are_pytorchs():
    W = cr.tensor(W0, requires_grad=True)
    d = optim.Adadelta([W]).defaults
    assert (d["lr"], d["rho"], d["eps"], d["weight_decay"]) == (1.0, 0.9, 1e-6, 0.0)
    d = optim.Adamax([W]).defaults
    assert (d["lr"], d["betas"], d["eps"], d["weight_decay"]) == (2e-3, (0.9, 0.999), 1e-8, 0)
    d = optim.NAdam([W]).defaults
    assert (d["lr"], d["betas"], d["momentum_decay"], d["decoupled_weight_decay"]) == (
        2e-3, (0.9, 0.999), 4e-3, False)
    d = optim.RAdam([W]).defaults
    assert (d["lr"], d["betas"], d["eps"], d["decoupled_weight_decay"]) == (
        1e-3, (0.9, 0.999), 1e-8, False)
    d = optim.LBFGS([W]).defaults
    assert (d["lr"], d["max_iter"], d["max_eval"], d["tolerance_grad"], d["tolerance_change"],
            d["history_size"], d["line_search_fn"]) == (1, 20, 25, 1e-7, 1e-9, 100, None)


@pytest.mark.parametrize("name,hp,group_hp", [
    ("Adadelta", dict(lr=0.5), dict(lr=1.0, rho=0.7, weight_decay=0.1)),
    ("Adamax", dict(lr=0.05), dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.2)),
    ("NAdam", dict(lr=0.05), dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=0.05, weight_decay=0.1), dict(lr=0.2, betas=(0.7, 0.9))),
])
def test_parameter_groups_use_their_own_options(name, hp, group_hp):
    W = cr.tensor(W0, dtype=cr.float64, requires_grad=True)
    b = cr.tensor(B0, dtype=cr.float64, requires_grad=True)
    opt = getattr(optim, name)([{"params": [W]}, {"params": [b], **group_hp}], **hp)
    p, s = [W0.copy(), B0.copy()], [{}, {}]
    for t in range(1, 11):
        opt.zero_grad()
        loss_fn(W, b).backward()
        opt.step()
        g = closed_form_grads(*p)
        p = [REFS[name](p[0], g[0], s[0], t, **hp),
             REFS[name](p[1], g[1], s[1], t, **{**hp, **group_hp})]
    np.testing.assert_allclose(W.detach().numpy(), p[0], rtol=1e-10)
    np.testing.assert_allclose(b.detach().numpy(), p[1], rtol=1e-10)


@pytest.mark.parametrize("name,hp", [CASES[1], CASES[4], CASES[7], CASES[11], CASES[12]],
                         ids=[IDS[1], IDS[4], IDS[7], IDS[11], IDS[12]])
def test_load_state_dict_then_continue_equals_uninterrupted_run(name, hp):
    full = run_chainrule(name, hp, steps=10)
    W = cr.tensor(W0, dtype=cr.float64, requires_grad=True)
    b = cr.tensor(B0, dtype=cr.float64, requires_grad=True)
    opt = getattr(optim, name)([W, b], **hp)
    for _ in range(5):
        opt.zero_grad()
        loss_fn(W, b).backward()
        opt.step()
    sd = opt.state_dict()
    W2 = cr.tensor(W.detach().numpy(), dtype=cr.float64, requires_grad=True)
    b2 = cr.tensor(b.detach().numpy(), dtype=cr.float64, requires_grad=True)
    opt2 = getattr(optim, name)([W2, b2], lr=123.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == hp["lr"]
    for _ in range(5):  # the first one keeps stepping: the copy's buffers must be its own
        opt.zero_grad()
        loss_fn(W, b).backward()
        opt.step()
    for _ in range(5):
        opt2.zero_grad()
        loss_fn(W2, b2).backward()
        opt2.step()
    np.testing.assert_array_equal(W2.detach().numpy(), full[-1][0])
    np.testing.assert_array_equal(b2.detach().numpy(), full[-1][1])


def test_state_keys_are_pytorchs():
    keys = {"Adadelta": {"step", "square_avg", "acc_delta"},
            "Adamax": {"step", "exp_avg", "exp_inf"},
            "NAdam": {"step", "mu_product", "exp_avg", "exp_avg_sq"},
            "RAdam": {"step", "exp_avg", "exp_avg_sq"}}
    for name, want in keys.items():
        W = cr.tensor(W0, dtype=cr.float64, requires_grad=True)
        opt = getattr(optim, name)([W])
        ((cr.tensor(X) @ W) ** 2).mean().backward()
        opt.step()
        assert set(opt.state_dict()["state"][0]) == want, name


def test_nadam_loads_pytorchs_state_dict_and_continues_as_it_does(torch64):
    torch = torch64
    tW = torch.tensor(W0, requires_grad=True)
    topt = torch.optim.NAdam([tW], lr=0.05, weight_decay=0.1)
    Xt = torch.tensor(X)
    for _ in range(3):
        topt.zero_grad()
        (Xt @ tW).pow(2).mean().backward()
        topt.step()
    sd = topt.state_dict()
    sd = {"param_groups": sd["param_groups"],
          "state": {i: {k: cr.tensor(v.numpy()) for k, v in s.items()}
                    for i, s in sd["state"].items()}}
    W = cr.tensor(tW.detach().numpy(), dtype=cr.float64, requires_grad=True)
    opt = optim.NAdam([W])
    opt.load_state_dict(sd)
    assert opt.state[W]["step"] == 3 and opt.param_groups[0]["lr"] == 0.05
    for _ in range(3):
        topt.zero_grad()
        (Xt @ tW).pow(2).mean().backward()
        topt.step()
        opt.zero_grad()
        ((cr.tensor(X, dtype=cr.float64) @ W) ** 2).mean().backward()
        opt.step()
    np.testing.assert_allclose(W.detach().numpy(), tW.detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize("name,hp", [CASES[1], CASES[4], CASES[7], CASES[11]],
                         ids=[IDS[1], IDS[4], IDS[7], IDS[11]])
def test_float32_trajectory_tracks_float64_reference(name, hp):
    got = run_chainrule(name, hp, dtype=cr.float32)
    want = run_reference(name, hp)
    assert got[-1][0].dtype == np.float32
    np.testing.assert_allclose(got[-1][0], want[-1][0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make,match", [
    (lambda ps: optim.Adadelta(ps, rho=1.5), "rho"),
    (lambda ps: optim.Adadelta(ps, lr=-1.0), "invalid learning rate"),
    (lambda ps: optim.Adamax(ps, betas=(0.9, 1.0)), "betas"),
    (lambda ps: optim.Adamax(ps, eps=-1.0), "eps"),
    (lambda ps: optim.NAdam(ps, momentum_decay=-1.0), "momentum_decay"),
    (lambda ps: optim.NAdam(ps, weight_decay=-0.1), "weight_decay"),
    (lambda ps: optim.RAdam(ps, betas=(-0.1, 0.9)), "betas"),
    (lambda ps: optim.RAdam(ps, differentiable=True), "differentiable=True"),
    (lambda ps: optim.LBFGS(ps, line_search_fn="backtracking"), "line_search_fn"),
    (lambda ps: optim.LBFGS(ps, history_size=0), "history_size"),
    (lambda ps: optim.LBFGS([{"params": ps[:1]}, {"params": ps[1:]}]), "parameter groups"),
])
def test_bad_options_raise_value_error_naming_them(make, match):
    ps = [cr.tensor(W0, requires_grad=True), cr.tensor(B0, requires_grad=True)]
    with pytest.raises(ValueError, match=match):
        make(ps)


def test_pytorch_only_keywords_are_accepted():
    W = cr.tensor(W0, requires_grad=True)
    optim.Adadelta([W], foreach=True, capturable=True)
    optim.Adamax([W], foreach=False)
    optim.NAdam([W], foreach=None, capturable=False, differentiable=False)
    optim.RAdam([W], foreach=True)


# -- LBFGS ------------------------------------------------------------------------------------
A0 = np.array([-1.2, 1.0])
C0 = np.array([0.5, -0.3, 0.8])


def rosenbrock(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def rosenbrock_grad(x):
    g = np.zeros_like(x)
    g[:-1] += -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g


def cr_rosenbrock(a, c):
    x = cr.cat([a, c])
    return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def ref_lbfgs(x, state, lr=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7,
              tolerance_change=1e-9, history_size=100):
    """One LBFGS.step with a fixed step length (no line search), on a flat float64 vector:
    returns (x, first loss); ``state`` carries the history between calls."""
    max_eval = max_iter * 5 // 4 if max_eval is None else max_eval
    f, g = rosenbrock(x), rosenbrock_grad(x)
    first = f
    evals = 1
    if np.abs(g).max() <= tolerance_grad:
        return x, first
    for n in range(1, max_iter + 1):
        state["n"] = state.get("n", 0) + 1
        if state["n"] == 1:
            d, S, Yh, H = -g, [], [], 1.0
        else:
            S, Yh, H, d, t = state["S"], state["Y"], state["H"], state["d"], state["t"]
            y, s = g - state["g"], d * t
            if y @ s > 1e-10:
                if len(S) == history_size:
                    S.pop(0)
                    Yh.pop(0)
                S.append(s)
                Yh.append(y)
                H = (y @ s) / (y @ y)
            q, al = -g.copy(), []
            for s_i, y_i in zip(reversed(S), reversed(Yh)):
                al.append((s_i @ q) / (y_i @ s_i))
                q = q - al[-1] * y_i
            r = q * H
            for s_i, y_i, a_i in zip(S, Yh, reversed(al)):
                r = r + (a_i - (y_i @ r) / (y_i @ s_i)) * s_i
            d = r
        state.update(S=S, Y=Yh, H=H, g=g.copy())
        t = min(1.0, 1.0 / np.abs(g).sum()) * lr if state["n"] == 1 else lr
        state["d"], state["t"] = d, t
        if g @ d > -tolerance_change:
            break
        prev_f = f
        x = x + t * d
        if n == max_iter:
            break
        f, g = rosenbrock(x), rosenbrock_grad(x)
        evals += 1
        if evals >= max_eval or np.abs(g).max() <= tolerance_grad:
            break
        if np.abs(d * t).max() <= tolerance_change or abs(f - prev_f) < tolerance_change:
            break
    return x, first


def _cr_lbfgs(a0=A0, c0=C0, **hp):
    a = cr.tensor(a0, dtype=cr.float64, requires_grad=True)
    c = cr.tensor(c0, dtype=cr.float64, requires_grad=True)
    opt = optim.LBFGS([a, c], **hp)

    def closure():
        opt.zero_grad()
        loss = cr_rosenbrock(a, c)
        loss.backward()
        return loss

    return a, c, opt, closure


@pytest.mark.parametrize("hp", [dict(lr=0.05, max_iter=7, history_size=3),
                                dict(lr=0.02, max_iter=4),
                                dict(lr=0.05, max_iter=30, max_eval=12, history_size=5)])
def test_lbfgs_equals_the_two_loop_recursion_written_out(hp):
    a, c, opt, closure = _cr_lbfgs(**hp)
    x, state = np.concatenate([A0, C0]), {}
    for call in range(4):
        loss = opt.step(closure)
        x, first = ref_lbfgs(x, state, **hp)
        assert loss.item() == pytest.approx(first, rel=1e-12)
        got = np.concatenate([a.detach().numpy(), c.detach().numpy()])
        np.testing.assert_allclose(got, x, rtol=1e-9, atol=1e-12, err_msg=f"call {call + 1}")
    assert rosenbrock(x) < rosenbrock(np.concatenate([A0, C0]))


@pytest.mark.parametrize("hp", [dict(), dict(lr=0.1, max_iter=5, history_size=2),
                                dict(line_search_fn="strong_wolfe"),
                                dict(line_search_fn="strong_wolfe", max_iter=6, history_size=3),
                                dict(line_search_fn="strong_wolfe", lr=0.5, tolerance_change=1e-5)])
def test_lbfgs_matches_pytorch(hp, torch64):
    torch = torch64
    a, c, opt, closure = _cr_lbfgs(**hp)
    ta, tc = torch.tensor(A0, requires_grad=True), torch.tensor(C0, requires_grad=True)
    topt = torch.optim.LBFGS([ta, tc], **hp)

    def tclosure():
        topt.zero_grad()
        x = torch.cat([ta, tc])
        loss = (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
        loss.backward()
        return loss

    for call in range(5):
        loss, tloss = opt.step(closure), topt.step(tclosure)
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-9, abs=1e-14)
        np.testing.assert_allclose(a.detach().numpy(), ta.detach().numpy(), rtol=1e-8, atol=1e-11,
                                   err_msg=f"step call {call + 1}")
        np.testing.assert_allclose(c.detach().numpy(), tc.detach().numpy(), rtol=1e-8, atol=1e-11)
        s, ts = opt.state[a], topt.state[ta]
        assert (s["func_evals"], s["n_iter"]) == (ts["func_evals"], ts["n_iter"])
        assert len(s["old_dirs"]) == len(ts["old_dirs"])


def test_lbfgs_strong_wolfe_minimises_rosenbrock():
    x = cr.tensor([-1.2, 1.0], dtype=cr.float64, requires_grad=True)  # the classic start
    opt = optim.LBFGS([x], line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                      tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        loss = 100.0 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    np.testing.assert_allclose(x.detach().numpy(), [1.0, 1.0], atol=1e-6)


def test_lbfgs_on_a_quadratic_reaches_the_least_squares_solution():
    W = cr.tensor(W0, dtype=cr.float64, requires_grad=True)
    b = cr.tensor(B0, dtype=cr.float64, requires_grad=True)
    opt = optim.LBFGS([W, b], line_search_fn="strong_wolfe", max_iter=100,
                      tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        loss = loss_fn(W, b)
        loss.backward()
        return loss

    opt.step(closure)
    A = np.hstack([X, np.ones((len(X), 1))])
    sol = np.linalg.lstsq(A, Y, rcond=None)[0]
    np.testing.assert_allclose(W.detach().numpy(), sol[:3], atol=1e-7)
    np.testing.assert_allclose(b.detach().numpy(), sol[3], atol=1e-7)


def test_lbfgs_stops_at_once_at_an_optimum():
    a = cr.tensor(np.ones(2), dtype=cr.float64, requires_grad=True)
    c = cr.tensor(np.ones(3), dtype=cr.float64, requires_grad=True)
    opt = optim.LBFGS([a, c])
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = cr_rosenbrock(a, c)
        loss.backward()
        return loss

    assert opt.step(closure).item() == 0.0
    assert len(calls) == 1 and opt.state[a]["n_iter"] == 0
    np.testing.assert_array_equal(a.detach().numpy(), np.ones(2))


def test_lbfgs_state_dict_round_trip_continues_the_same_trajectory():
    hp = dict(lr=0.05, max_iter=5, history_size=3)
    a, c, opt, closure = _cr_lbfgs(**hp)
    for _ in range(2):
        opt.step(closure)
    sd = opt.state_dict()
    assert set(sd["state"]) == {0}
    assert {"func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
            "prev_flat_grad", "prev_loss", "al"} <= set(sd["state"][0])
    a2, c2, opt2, closure2 = _cr_lbfgs(a.detach().numpy(), c.detach().numpy(), lr=9.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.05
    for _ in range(3):
        opt.step(closure)
        opt2.step(closure2)
    np.testing.assert_array_equal(a2.detach().numpy(), a.detach().numpy())
    np.testing.assert_array_equal(c2.detach().numpy(), c.detach().numpy())
    with pytest.raises(ValueError, match="'d' has shape"):
        optim.LBFGS([cr.zeros(2, requires_grad=True), cr.zeros(2, requires_grad=True)]
                    ).load_state_dict(sd)


def test_lbfgs_needs_a_closure():
    W = cr.tensor(W0, requires_grad=True)
    with pytest.raises(RuntimeError, match="closure is required"):
        optim.LBFGS([W]).step()
