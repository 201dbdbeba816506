"""The training doctor names problems of the data and the initialisation, seen at the first
step: inputs far from unit scale, inputs that are all zero or one example repeated, weights
initialised to a constant (units that stay copies of each other), a dropout probability that
drops nearly everything. Each broken run is diagnosed, its fixed twin is silent, the
pathology is confirmed independently and, where PyTorch is installed, in PyTorch."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import chainrule as cr
from blas_threads import one_blas_thread_limits
from chainrule.optim import SGD, Adam
from test_doctor_healthy import blobs, fit, import_torch, loud, mlp, tail_mean, torch_fit, torch_mlp
from test_doctor_loop import finding

one_blas_thread = pytest.fixture(scope="module", autouse=True)(one_blas_thread_limits)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def pixels(seed=0):
    """The blobs as raw 'pixel' values around 128: the same task, not normalised."""
    x, y = blobs(seed)
    return (x * 50 + 128).astype(np.float32), y


# ----------------------------------------------------------------------------- input scale


def test_inputs_in_raw_pixel_units_are_named_input_not_normalized():
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    w = fit(m, SGD(m.parameters(), lr=0.05), pixels())
    f = finding(w, "input_not_normalized")
    assert (f.module, f.severity, f.step, f.related) == ("", "warning", 0, ["0"])
    assert "RMS 1" in f.message and "features runs from" in f.message
    assert [x.kind for x in loud(w.findings())] == ["input_not_normalized"]
    # independently: the same task standardised trains, the raw one does not
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    fixed = fit(m, SGD(m.parameters(), lr=0.05), blobs(0))
    assert loud(fixed.findings()) == []
    assert tail_mean(w.losses) > 0.9 * math.log(4) > 5 * tail_mean(fixed.losses)


def test_inputs_in_raw_pixel_units_fail_in_pytorch_too():
    torch = import_torch()
    m = torch_mlp(8, 32, 4)
    losses = torch_fit(m, torch.optim.SGD(m.parameters(), lr=0.05), pixels())
    assert not tail_mean(losses) < 0.9 * math.log(4)


def test_a_normalisation_layer_first_takes_care_of_the_scale():
    cr.manual_seed(0)
    m = cr.nn.Sequential(cr.nn.LayerNorm(8), mlp(8, 32, 4))
    w = fit(m, Adam(m.parameters(), lr=1e-2), pixels())
    assert loud(w.findings()) == []


# ----------------------------------------------------------------------------- degenerate inputs


@pytest.mark.parametrize("what, x_fn, words", [
    ("zeros", lambda x: x * 0, "every value of the model's input (32, 8) is 0"),
    ("one example", lambda x: np.repeat(x[:1], len(x), 0), "all 32 examples of the batch"),
])
def test_inputs_that_carry_nothing_are_named_input_degenerate(what, x_fn, words):
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    w = fit(m, Adam(m.parameters(), lr=1e-2), blobs(0), x_fn=x_fn)
    f = finding(w, "input_degenerate")
    assert (f.module, f.severity, f.step) == ("", "error", 0)
    assert words in f.message
    assert [x.kind for x in loud(w.findings())] == ["input_degenerate"]
    assert tail_mean(w.losses) > 0.9 * math.log(4)  # no better than guessing


def test_inputs_that_carry_nothing_teach_nothing_in_pytorch_too():
    torch = import_torch()
    m = torch_mlp(8, 32, 4)
    losses = torch_fit(m, torch.optim.Adam(m.parameters(), lr=1e-2), blobs(0),
                       x_fn=lambda x: x * 0)
    assert tail_mean(losses) > 0.9 * math.log(4)


# ----------------------------------------------------------------------------- initialisation


def _constant_init(value, opt=SGD, lr=0.05):
    cr.manual_seed(0)
    m = mlp(8, 32, 32, 4)
    with cr.no_grad():
        for p in m.parameters():
            p.data[...] = value
    return m, fit(m, opt(m.parameters(), lr=lr), blobs(0))


@pytest.mark.parametrize("value", [0.0, 0.5])
def test_weights_initialised_to_a_constant_are_named_symmetric_init(value):
    m, w = _constant_init(value)
    f = finding(w, "symmetric_init")
    assert (f.module, f.severity, f.step) == ("0", "error", 0)
    assert f"every weight is {value:g}" in f.message and "identical weights" in f.message
    assert "2" in f.related
    assert [x.kind for x in loud(w.findings())] == ["symmetric_init"]
    # independently: after training every hidden unit of the first layer is still a copy
    w0 = m[0].weight.detach().numpy()
    assert np.abs(w0 - w0[0]).max() <= 1e-5 * max(np.abs(w0).max(), 1e-30)


def test_a_zero_initialised_output_layer_is_not_symmetric_init():
    # zero-initialising the last layer (or a LoRA B matrix) is safe: the first update
    # gives each output unit its own gradient
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    with cr.no_grad():
        m[2].weight.data[...] = 0.0
    w = fit(m, Adam(m.parameters(), lr=1e-2), blobs(0))
    assert loud(w.findings()) == []


def test_weights_initialised_to_a_constant_stay_copies_in_pytorch_too():
    torch = import_torch()
    m = torch_mlp(8, 32, 32, 4)
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(0.5)
    torch_fit(m, torch.optim.SGD(m.parameters(), lr=0.05), blobs(0))
    w0 = m[0].weight.detach().numpy()
    assert np.abs(w0 - w0[0]).max() <= 1e-5 * np.abs(w0).max()


# ----------------------------------------------------------------------------- dropout


def _dropout(p):
    cr.manual_seed(0)
    m = mlp(8, 64, 4, dropout=p)
    return m, fit(m, Adam(m.parameters(), lr=1e-2), blobs(0))


def test_a_dropout_probability_that_drops_nearly_everything_is_named():
    m, w = _dropout(0.9)
    f = finding(w, "dropout_too_high")
    assert (f.module, f.severity) == ("2", "warning")
    assert "drops 90% of its inputs" in f.message and "p=0.1" in f.suggestion
    _, fixed = _dropout(0.1)
    assert loud(fixed.findings()) == []
    # independently: nine in ten activations are zeroed in a training forward
    out = m[2](cr.ones(1000, 64))
    assert 0.87 < float((out.detach().numpy() == 0).mean()) < 0.93
    assert tail_mean(w.losses) > 2 * tail_mean(fixed.losses)


def test_a_dropout_probability_of_0_9_drops_nine_in_ten_in_pytorch_too():
    torch = import_torch()
    drop = torch.nn.Dropout(0.9)
    assert 0.87 < float((drop(torch.ones(1000, 64)) == 0).float().mean()) < 0.93
