"""Malformed optimizer state in a checkpoint: Optimizer.load_state_dict checks every entry
before it changes anything and names the one that is wrong; a valid state dict (PyTorch's
included) loads with PyTorch's semantics."""

import copy

import numpy as np
import pytest

import chainrule as cr
from chainrule import optim


def _trained(cls=optim.Adam, **kw):
    rng = np.random.default_rng(0)
    W = cr.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    b = cr.tensor(rng.standard_normal(2), requires_grad=True)
    opt = cls([W, b], lr=0.01, **kw)
    for _ in range(2):
        opt.zero_grad()
        ((W.sum(0) + b) ** 2).sum().backward()
        opt.step()
    return opt, W, b


def _fresh(cls=optim.Adam, **kw):
    return cls([cr.zeros(3, 2, dtype=cr.float64, requires_grad=True),
                cr.zeros(2, dtype=cr.float64, requires_grad=True)], lr=0.5,
               **kw)


def _edit(sd, fn):
    sd = copy.deepcopy(sd)
    fn(sd)
    return sd


MALFORMED = [
    ("missing_buffer", lambda sd: sd["state"][0].pop("exp_avg_sq"),
     r"state of parameter 0 lacks 'exp_avg_sq'"),
    ("missing_step", lambda sd: sd["state"][1].pop("step"), r"parameter 1 lacks 'step'"),
    ("wrong_shape", lambda sd: sd["state"][0].update(exp_avg=cr.zeros(2, 3)),
     r"'exp_avg' of parameter 0 has shape \(2, 3\) but the parameter has shape \(3, 2\)"),
    ("buffer_is_a_string", lambda sd: sd["state"][1].update(exp_avg="zeros"),
     r"'exp_avg' of parameter 1 is a str"),
    ("buffer_is_a_list", lambda sd: sd["state"][1].update(exp_avg_sq=[0.0, 0.0]),
     r"'exp_avg_sq' of parameter 1 is a list"),
    ("step_is_a_string", lambda sd: sd["state"][0].update(step="2"),
     r"'step' of parameter 0 is a str .*expected a number >= 0"),
    ("step_negative", lambda sd: sd["state"][0].update(step=-1), r"'step' of parameter 0"),
    ("step_nan", lambda sd: sd["state"][0].update(step=float("nan")), r"'step' of parameter 0"),
    ("extra_param", lambda sd: sd["state"].update({7: dict(sd["state"][0])}),
     r"parameter index 7, which no parameter group lists"),
    ("state_key_not_an_index", lambda sd: sd["state"].update({"w": {}}),
     r"state key 'w' is not a parameter index"),
    ("entry_not_a_dict", lambda sd: sd["state"].update({1: [1, 2]}),
     r"state of parameter 1 must be a dict"),
    ("state_not_a_dict", lambda sd: sd.update(state=[1]), r"'state' must be a dict"),
    ("groups_not_a_list", lambda sd: sd.update(param_groups={"lr": 1}),
     r"'param_groups' must be a list of dicts"),
    ("params_not_indices", lambda sd: sd["param_groups"][0].update(params=["a", "b"]),
     r"param_groups\[0\]\['params'\] must be a list of parameter indices"),
    ("params_twice", lambda sd: sd["param_groups"][0].update(params=[0, 0]),
     r"parameter index 0 is listed twice"),
    ("lr_negative", lambda sd: sd["param_groups"][0].update(lr=-1.0),
     r"param_groups\[0\]: .*lr=-1.0"),
    ("betas_malformed", lambda sd: sd["param_groups"][0].update(betas=(0.9,)),
     r"param_groups\[0\]: .*betas"),
    ("lr_a_string", lambda sd: sd["param_groups"][0].update(lr="fast"),
     r"param_groups\[0\]: .*lr='fast'"),
    ("amsgrad_without_its_buffer", lambda sd: sd["param_groups"][0].update(amsgrad=True),
     r"lacks 'max_exp_avg_sq'"),
]


@pytest.mark.parametrize("name,edit,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_optimizer_state_is_one_line_naming_the_entry(name, edit, message):
    opt, _, _ = _trained()
    bad = _edit(opt.state_dict(), edit)
    target = _fresh()
    before_groups = copy.deepcopy([{k: v for k, v in g.items() if k != "params"}
                                   for g in target.param_groups])
    with pytest.raises(ValueError, match=message) as e:
        target.load_state_dict(bad)
    assert "\n" not in str(e.value) and str(e.value).startswith("Adam.load_state_dict: ")
    # nothing changed: the options and the (empty) state are as before
    assert target.state == {}
    assert [{k: v for k, v in g.items() if k != "params"}
            for g in target.param_groups] == before_groups


def test_a_valid_state_dict_still_loads_and_continues_identically():
    opt, W, b = _trained()
    target = _fresh()
    target.load_state_dict(opt.state_dict())
    for p, q in zip(target.param_groups[0]["params"], (W, b)):
        p._data[...] = q._data
    grads = [np.ones((3, 2)), np.full(2, 0.5)]
    for o in (opt, target):
        for p, g in zip(o.param_groups[0]["params"], grads):
            p.grad = cr.tensor(g)
        o.step()
    assert target.param_groups[0]["lr"] == 0.01
    for p, q in zip(target.param_groups[0]["params"], (W, b)):
        np.testing.assert_array_equal(p._data, q._data)


def test_sgd_momentum_buffer_may_be_absent_as_in_pytorch():
    opt = _fresh(optim.SGD, momentum=0.9)
    opt.load_state_dict({"state": {}, "param_groups": [
        {**{k: v for k, v in opt.param_groups[0].items() if k != "params"}, "params": [0, 1]}]})
    assert opt.state == {}
    with pytest.raises(ValueError, match="'momentum_buffer' of parameter 0 has shape"):
        opt.load_state_dict({"state": {0: {"momentum_buffer": cr.zeros(4)}},
                             "param_groups": opt.state_dict()["param_groups"]})


def test_pytorch_adam_state_with_tensor_steps_and_integer_buffers_loads():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((3, 2))
    wt = torch.tensor(w0, requires_grad=True)
    topt = torch.optim.Adam([wt], lr=0.1)
    for _ in range(3):
        topt.zero_grad()
        (wt ** 2).sum().backward()
        topt.step()
    sd = topt.state_dict()
    state = {0: {k: (v.numpy().copy() if hasattr(v, "numpy") else v)
                 for k, v in sd["state"][0].items()}}
    w = cr.tensor(wt.detach().numpy().copy(), requires_grad=True)
    opt = optim.Adam([w], lr=0.5)
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    assert opt.state[w]["step"] == 3 and opt.param_groups[0]["lr"] == 0.1
    topt.zero_grad()
    (wt ** 2).sum().backward()
    topt.step()
    w.grad = cr.tensor(2 * w._data)
    opt.step()
    np.testing.assert_allclose(w._data, wt.detach().numpy(), rtol=1e-12)
    # an integer buffer is cast to the parameter's dtype (PyTorch casts every buffer)
    state[0]["exp_avg"] = np.zeros((3, 2), dtype=np.int64)
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    assert opt.state[w]["exp_avg"].dtype == cr.float64
