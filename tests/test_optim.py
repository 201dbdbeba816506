"""Optimizers: 20-step trajectories equal the published update rules (written here in float64
NumPy) and PyTorch's optimizers; groups, state dicts, zero_grad and bad input."""

import numpy as np
import pytest

import chainrule as cr
from chainrule import optim

STEPS = 20
_rng = np.random.default_rng(1234)
X = _rng.standard_normal((16, 3))
Y = _rng.standard_normal((16, 2))
W0 = _rng.standard_normal((3, 2))
B0 = _rng.standard_normal(2)


def loss_fn(W, b):
    """The fixed problem: mean squared error of an affine map, recorded by chainrule."""
    return ((cr.tensor(X) @ W + b - cr.tensor(Y)) ** 2).mean()


def closed_form_grads(W, b):
    """d/dW and d/db of mean((XW + b - Y)^2), by hand."""
    R = X @ W + b - Y
    scale = 2.0 / R.size
    return [scale * X.T @ R, scale * R.sum(axis=0)]


# -- the published update rules, one function per optimizer: (params, grads, state, step, hp) --
def ref_sgd(p, g, s, t, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
            nesterov=False, maximize=False):
    g = -g if maximize else g
    g = g + weight_decay * p
    if momentum:
        s["b"] = g.copy() if t == 1 else momentum * s["b"] + (1 - dampening) * g
        g = g + momentum * s["b"] if nesterov else s["b"]
    return p - lr * g


def ref_adam(p, g, s, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             amsgrad=False, maximize=False, decoupled=False):
    b1, b2 = betas
    g = -g if maximize else g
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
    v = s["v"]
    if amsgrad:
        s["vmax"] = v = np.maximum(s.get("vmax", 0.0), v)
    m_hat = s["m"] / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def ref_adamw(p, g, s, t, weight_decay=1e-2, **hp):
    return ref_adam(p, g, s, t, weight_decay=weight_decay, decoupled=True, **hp)


def ref_rmsprop(p, g, s, t, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                centered=False, maximize=False):
    g = -g if maximize else g
    g = g + weight_decay * p
    s["sq"] = alpha * s.get("sq", 0.0) + (1 - alpha) * g**2
    if centered:
        s["ga"] = alpha * s.get("ga", 0.0) + (1 - alpha) * g
        denom = np.sqrt(s["sq"] - s["ga"] ** 2) + eps
    else:
        denom = np.sqrt(s["sq"]) + eps
    if momentum > 0:
        s["b"] = momentum * s.get("b", 0.0) + g / denom
        return p - lr * s["b"]
    return p - lr * g / denom


def ref_adagrad(p, g, s, t, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                initial_accumulator_value=0.0, eps=1e-10, maximize=False):
    g = -g if maximize else g
    g = g + weight_decay * p
    s["sum"] = s.get("sum", initial_accumulator_value) + g * g
    return p - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s["sum"]) + eps)


REFS = {"SGD": ref_sgd, "Adam": ref_adam, "AdamW": ref_adamw, "RMSprop": ref_rmsprop,
        "Adagrad": ref_adagrad}

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.01, momentum=0.5, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.5)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, amsgrad=True, weight_decay=0.05)),
    ("Adam", dict(lr=0.05, maximize=True)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=0.3, amsgrad=True)),
    ("AdamW", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("RMSprop", dict(lr=0.01, centered=True, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.3)),
    ("Adagrad", dict(lr=0.1, eps=1e-3, maximize=True)),
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
        out.append([W._data.copy(), b._data.copy()])
    return out


def run_reference(name, hp, steps=STEPS):
    params = [W0.copy(), B0.copy()]
    states = [{}, {}]
    out = []
    for t in range(1, steps + 1):
        grads = closed_form_grads(*params)
        params = [REFS[name](p, g, s, t, **hp) for p, g, s in zip(params, grads, states)]
        out.append([p.copy() for p in params])
    return out


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
def test_trajectory_equals_published_update_rule(name, hp):
    got, want = run_chainrule(name, hp), run_reference(name, hp)
    for step, (g, w) in enumerate(zip(got, want)):
        for a, r in zip(g, w):
            np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name} {hp} step {step + 1}")
    # and the problem really moved the parameters
    assert np.abs(got[-1][0] - W0).max() > 1e-3


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
def test_trajectory_equals_pytorch(name, hp):
    torch = pytest.importorskip("torch")
    got = run_chainrule(name, hp)
    W = torch.tensor(W0, requires_grad=True)
    b = torch.tensor(B0, requires_grad=True)
    opt = getattr(torch.optim, name)([W, b], **hp)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    for step in range(STEPS):
        opt.zero_grad()
        ((Xt @ W + b - Yt) ** 2).mean().backward()
        opt.step()
        np.testing.assert_allclose(got[step][0], W.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[step][1], b.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,hp", [CASES[2], CASES[8], CASES[11], CASES[15], CASES[18]],
                         ids=[IDS[2], IDS[8], IDS[11], IDS[15], IDS[18]])
def test_float32_trajectory_tracks_float64_reference(name, hp):
    got = run_chainrule(name, hp, dtype=cr.float32)
    want = run_reference(name, hp)
    assert got[-1][0].dtype == np.float32
    np.testing.assert_allclose(got[-1][0], want[-1][0], rtol=1e-4, atol=1e-5)


def test_step_updates_parameter_array_in_place():
    W = cr.tensor(W0, requires_grad=True)
    b = cr.tensor(B0, requires_grad=True)
    arrays = [W._data, b._data]
    opt = optim.AdamW([W, b], lr=0.1)
    loss_fn(W, b).backward()
    opt.step()
    assert W._data is arrays[0] and b._data is arrays[1]
    assert not np.allclose(W._data, W0.astype(np.float32))


def test_parameter_groups_use_their_own_options():
    W = cr.tensor(W0, dtype=cr.float64, requires_grad=True)
    b = cr.tensor(B0, dtype=cr.float64, requires_grad=True)
    opt = optim.SGD([{"params": [W]}, {"params": [b], "lr": 0.01, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[0]["momentum"] == 0.0 and opt.param_groups[1]["lr"] == 0.01
    p, s = [W0.copy(), B0.copy()], [{}, {}]
    for t in range(1, 6):
        opt.zero_grad()
        loss_fn(W, b).backward()
        opt.step()
        g = closed_form_grads(*p)
        p = [ref_sgd(p[0], g[0], s[0], t, lr=0.1),
             ref_sgd(p[1], g[1], s[1], t, lr=0.01, momentum=0.9)]
    np.testing.assert_allclose(W._data, p[0], rtol=1e-12)
    np.testing.assert_allclose(b._data, p[1], rtol=1e-12)


def test_add_param_group_fills_defaults_and_rejects_overlap():
    W = cr.tensor(W0, requires_grad=True)
    b = cr.tensor(B0, requires_grad=True)
    opt = optim.Adam([W], lr=0.01)
    opt.add_param_group({"params": b, "weight_decay": 0.5})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["weight_decay"] == 0.5
    assert opt.param_groups[1]["params"][0] is b
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [W]})


def test_parameters_without_gradient_are_skipped_and_hold_no_state():
    W = cr.tensor(W0, requires_grad=True)
    unused = cr.tensor(np.ones(4), requires_grad=True)
    frozen = cr.tensor(np.ones(2))
    opt = optim.Adam([W, unused, frozen], lr=0.1)
    (cr.tensor(X) @ W).sum().backward()
    opt.step()
    assert list(opt.state) == [W]
    np.testing.assert_array_equal(unused._data, np.ones(4, np.float32))
    assert set(opt.state_dict()["state"]) == {0}


def test_zero_grad_sets_none_or_zeros():
    W = cr.tensor(W0, requires_grad=True)
    opt = optim.SGD([W], lr=0.1)
    (cr.tensor(X) @ W).sum().backward()
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(W.grad._data, np.zeros_like(W0))
    opt.zero_grad()
    assert W.grad is None


def test_closure_is_evaluated_with_grad_and_its_loss_returned():
    W = cr.tensor(W0, dtype=cr.float64, requires_grad=True)
    b = cr.tensor(B0, dtype=cr.float64, requires_grad=True)
    opt = optim.SGD([W, b], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = loss_fn(W, b)
        loss.backward()
        return loss

    with cr.no_grad():
        loss = opt.step(closure)
    R = X @ W0 + B0 - Y
    assert loss.item() == pytest.approx(np.mean(R**2), rel=1e-12)
    np.testing.assert_allclose(W._data, W0 - 0.1 * closed_form_grads(W0, B0)[0], rtol=1e-12)


def test_state_dict_has_pytorch_layout():
    W = cr.tensor(W0, requires_grad=True)
    b = cr.tensor(B0, requires_grad=True)
    opt = optim.Adam([{"params": [W]}, {"params": [b], "lr": 0.5}], amsgrad=True)
    loss_fn(W, b).backward()
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.5 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][1]["step"] == 1
    g = closed_form_grads(W0, B0)[0]
    np.testing.assert_allclose(sd["state"][0]["exp_avg"].numpy(), 0.1 * g, rtol=1e-5)


@pytest.mark.parametrize("name,hp", [CASES[3], CASES[8], CASES[12], CASES[15], CASES[18]],
                         ids=[IDS[3], IDS[8], IDS[12], IDS[15], IDS[18]])
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
    W2 = cr.tensor(W._data, dtype=cr.float64, requires_grad=True)
    b2 = cr.tensor(b._data, dtype=cr.float64, requires_grad=True)
    opt2 = getattr(optim, name)([W2, b2], lr=123.0)  # options come from the state dict
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == hp["lr"]
    for _ in range(5):  # keep stepping the first one: the copy's buffers must be its own
        opt.zero_grad()
        loss_fn(W, b).backward()
        opt.step()
    for _ in range(5):
        opt2.zero_grad()
        loss_fn(W2, b2).backward()
        opt2.step()
    np.testing.assert_array_equal(W2._data, full[-1][0])
    np.testing.assert_array_equal(b2._data, full[-1][1])


def test_load_state_dict_accepts_pytorch_state_dict():
    torch = pytest.importorskip("torch")
    tW = torch.tensor(W0, requires_grad=True)
    topt = torch.optim.AdamW([tW], lr=0.05)
    for _ in range(3):
        topt.zero_grad()
        (torch.tensor(X) @ tW).pow(2).mean().backward()
        topt.step()
    sd = topt.state_dict()
    sd = {"param_groups": sd["param_groups"],
          "state": {i: {k: cr.tensor(v.numpy()) for k, v in s.items()}
                    for i, s in sd["state"].items()}}
    W = cr.tensor(tW.detach().numpy(), dtype=cr.float64, requires_grad=True)
    opt = optim.AdamW([W])
    opt.load_state_dict(sd)
    assert opt.state[W]["step"] == 3 and opt.param_groups[0]["lr"] == 0.05
    for _ in range(3):
        topt.zero_grad()
        (torch.tensor(X) @ tW).pow(2).mean().backward()
        topt.step()
        opt.zero_grad()
        ((cr.tensor(X) @ W) ** 2).mean().backward()
        opt.step()
    np.testing.assert_allclose(W._data, tW.detach().numpy(), rtol=1e-10)


def test_load_state_dict_rejects_mismatched_groups_and_shapes():
    W = cr.tensor(W0, requires_grad=True)
    b = cr.tensor(B0, requires_grad=True)
    opt = optim.Adam([W, b])
    loss_fn(W, b).backward()
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="1 parameter groups.*has 2|2 parameter groups"):
        optim.Adam([{"params": [W]}, {"params": [b]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="group 0 has 2 parameters"):
        optim.Adam([W]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"exp_avg' of parameter 0 has shape \(3, 2\)"):
        optim.Adam([cr.zeros(2, 3, requires_grad=True), b]).load_state_dict(sd)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


def test_gradient_accumulation_over_microbatches_equals_big_batch_gradient():
    W = cr.tensor(W0, dtype=cr.float64, requires_grad=True)
    b = cr.tensor(B0, dtype=cr.float64, requires_grad=True)
    parts = 4
    for Xi, Yi in zip(np.split(X, parts), np.split(Y, parts)):
        loss = ((cr.tensor(Xi) @ W + b - cr.tensor(Yi)) ** 2).mean() / parts
        loss.backward()
    gW, gb = closed_form_grads(W0, B0)
    np.testing.assert_allclose(W.grad._data, gW, rtol=1e-12)
    np.testing.assert_allclose(b.grad._data, gb, rtol=1e-12)
    opt = optim.SGD([W, b], lr=0.1)
    opt.step()
    np.testing.assert_allclose(W._data, W0 - 0.1 * gW, rtol=1e-12)


@pytest.mark.parametrize("make,match", [
    (lambda ps: optim.SGD(ps, lr=-1.0), "invalid learning rate"),
    (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), "nesterov"),
    (lambda ps: optim.SGD(ps, momentum=-0.5), "momentum"),
    (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), "betas"),
    (lambda ps: optim.Adam(ps, eps=-1.0), "eps"),
    (lambda ps: optim.AdamW(ps, weight_decay=-0.1), "weight_decay"),
    (lambda ps: optim.RMSprop(ps, alpha=-0.1), "alpha"),
    (lambda ps: optim.Adagrad(ps, lr_decay=-1.0), "lr_decay"),
    (lambda ps: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda ps: optim.SGD(ps + ps, lr=0.1), "same tensor twice"),
])
def test_bad_options_raise_value_error_naming_them(make, match):
    ps = [cr.tensor(W0, requires_grad=True)]
    with pytest.raises(ValueError, match=match):
        make(ps)


def test_bad_parameters_raise_type_or_value_error():
    W = cr.tensor(W0, requires_grad=True)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(W, lr=0.1)
    with pytest.raises(TypeError, match="ndarray"):
        optim.SGD([W0], lr=0.1)
    with pytest.raises(ValueError, match="not a leaf"):
        optim.SGD([W * 2], lr=0.1)
    with pytest.raises(TypeError, match="not a set"):
        optim.SGD({W}, lr=0.1)


def test_step_bumps_version_so_stale_graph_backward_raises():
    W = cr.tensor(W0, requires_grad=True)
    loss = (W * W).sum()  # saves W for backward
    W.grad = cr.ones(3, 2)
    optim.SGD([W], lr=0.1).step()
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()
