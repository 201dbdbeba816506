"""NaN/Inf provenance: the first non-finite value names its op, module, source line and cause."""

import inspect
import math
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import autograd
from chainrule.diagnostics import (
    NonFiniteError,
    detect_anomaly,
    is_anomaly_enabled,
    set_detect_anomaly,
)


@pytest.fixture(autouse=True)
def _quiet_numpy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
    assert not is_anomaly_enabled()


def _line_below():
    return inspect.currentframe().f_back.f_lineno + 1


def test_log_of_negative_names_log_op_and_this_line():
    x = cr.tensor([1.0, -2.0, 3.0], requires_grad=True)
    with pytest.raises(NonFiniteError) as info:
        with detect_anomaly():
            line = _line_below()
            y = (x * 2).log()  # noqa: F841
    e = info.value
    assert e.op == "Log" and e.phase == "forward"
    assert e.location == (__file__, line)
    msg = str(e)
    assert "log of a non-positive number" in msg and "1 input value(s) are negative" in msg
    assert f"{__file__}:{line}" in msg and "(x * 2).log()" in msg
    assert "min -4" in msg  # the input statistics: x * 2 has minimum -4


def test_exp_overflow_reports_the_float32_threshold():
    x = cr.tensor([1.0, 100.0, 200.0], requires_grad=True)
    with pytest.raises(NonFiniteError) as info:
        with detect_anomaly():
            x.exp()
    limit = math.log(float(np.finfo(np.float32).max))
    assert info.value.op == "Exp"
    assert "overflow in exp: 2 input value(s)" in str(info.value)
    assert f"{limit:.4g}" in str(info.value)


def test_zero_over_zero_is_reported_as_division_by_zero():
    a = cr.tensor([0.0, 1.0], requires_grad=True)
    b = cr.tensor([0.0, 2.0])
    with pytest.raises(NonFiniteError) as info:
        with detect_anomaly():
            a / b
    assert info.value.op == "Div"
    assert "division by zero: 1 denominator value(s) are zero (1 of them 0/0" in str(info.value)


def test_backward_infinity_names_sqrt_and_the_line_that_created_it():
    x = cr.tensor([0.0, 4.0], requires_grad=True)
    with detect_anomaly():
        line = _line_below()
        y = x.sqrt().sum()
        with pytest.raises(NonFiniteError) as info:
            y.backward()
    e = info.value
    assert e.op == "Sqrt" and e.phase == "backward"
    assert e.location == (__file__, line)
    assert "infinite at x = 0: 1 input value(s) are zero" in str(e)


def test_backward_after_the_block_is_still_checked():
    x = cr.tensor([0.0, 1.0], requires_grad=True)
    with detect_anomaly():
        y = (x.sqrt() * 3).sum()  # finite forward; d sqrt(x)/dx is infinite at 0
    with pytest.raises(NonFiniteError) as info:
        y.backward()
    assert info.value.op == "Sqrt"


def test_non_finite_input_data_is_blamed_on_the_input_not_the_op():
    x = cr.tensor([1.0, float("nan")])
    with pytest.raises(NonFiniteError) as info:
        with detect_anomaly():
            x + 1
    assert "input 0 was already non-finite" in str(info.value)


def test_module_path_is_named():
    nn = pytest.importorskip("chainrule.nn")

    class LogLayer(nn.Module):
        def forward(self, x):
            return x.log()

    model = nn.Sequential(nn.Linear(3, 4), LogLayer())
    cr.manual_seed(0)
    x = cr.tensor(np.full((2, 3), -5.0, np.float32))
    model[0].weight.data[...] = 1.0
    model[0].bias.data[...] = 0.0
    with pytest.raises(NonFiniteError) as info:
        with detect_anomaly():
            model(x)
    assert info.value.module == "1 (LogLayer)"
    assert "module: 1 (LogLayer)" in str(info.value)


def test_healthy_gradients_are_unchanged_and_mode_is_off_afterwards():
    a = cr.tensor([0.3, -0.7], dtype=cr.float64, requires_grad=True)
    with detect_anomaly():
        assert is_anomaly_enabled()
        (a.tanh() * a.exp()).sum().backward()
    x = a.data
    expected = (1 - np.tanh(x) ** 2) * np.exp(x) + np.tanh(x) * np.exp(x)
    np.testing.assert_allclose(a.grad.numpy(), expected, rtol=1e-12)
    assert autograd.forward_observers() == ()
    cr.tensor([-1.0]).log()  # outside the mode a NaN passes silently


def test_function_form_and_decorator_turn_the_mode_on_and_off():
    set_detect_anomaly(True)
    try:
        with pytest.raises(NonFiniteError):
            cr.tensor([-1.0]).sqrt()
    finally:
        set_detect_anomaly(False)
    assert not is_anomaly_enabled()

    @detect_anomaly()
    def f(t):
        return t.log()

    with pytest.raises(NonFiniteError):
        f(cr.tensor([0.0]))
    assert not is_anomaly_enabled()
