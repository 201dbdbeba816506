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


# ----------------------------------------------------------------------------- infinities


def _masked_attention(scores, mask, v):
    return (scores.masked_fill(mask, float("-inf")).softmax(dim=-1) @ v).sum()


def test_masked_fill_minus_inf_then_softmax_passes_and_its_gradient_is_unchanged():
    rng = np.random.default_rng(0)
    s0, v0 = rng.standard_normal((4, 4)), rng.standard_normal((4, 3))
    mask = cr.tensor(np.triu(np.ones((4, 4), bool), k=1))  # causal: row 0 sees only key 0

    def grads(anomaly):
        s = cr.tensor(s0, dtype=cr.float64, requires_grad=True)
        v = cr.tensor(v0, dtype=cr.float64, requires_grad=True)
        with detect_anomaly(anomaly):
            _masked_attention(s, mask, v).backward()
        return s.grad.numpy(), v.grad.numpy()

    (gs, gv), (gs0, gv0) = grads(True), grads(False)
    np.testing.assert_array_equal(gs, gs0)
    np.testing.assert_array_equal(gv, gv0)
    # an independent check of the idiom: masked weights are exactly 0, the rest sum to 1
    w = np.where(np.triu(np.ones((4, 4), bool), 1), -np.inf, s0)
    w = np.exp(w - w.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    assert np.all(w[np.triu_indices(4, 1)] == 0) and np.allclose(w.sum(1), 1)


def test_a_fully_masked_row_turns_the_infinity_into_nan_and_names_both_ops():
    s = cr.tensor(np.zeros((2, 3)), requires_grad=True)
    mask = cr.tensor(np.array([[False, True, True], [True, True, True]]))  # row 1: all masked
    with pytest.raises(NonFiniteError) as info:
        with detect_anomaly():
            line = _line_below()
            att = s.masked_fill(mask, float("-inf"))
            att.softmax(dim=-1)
    e = info.value
    assert e.op == "Softmax" and e.phase == "forward"
    msg = str(e)
    assert "produced NaN" in msg and "holds -inf, made by MaskedFill" in msg
    assert f"{__file__}:{line}" in msg and "every entry -inf" in msg
    # the same arithmetic in NumPy: exp(-inf - max) = exp(nan)
    with np.errstate(invalid="ignore"):
        row = np.array([-np.inf] * 3)
        assert np.isnan(np.exp(row - row.max())).all()


def test_an_infinity_that_reaches_the_loss_is_reported_where_it_was_made():
    x = cr.tensor([1.0, 100.0], requires_grad=True)
    with detect_anomaly():
        line = _line_below()
        big = x.exp()  # exp(100) overflows float32
        loss = (big * 2.0).sum()
        with pytest.raises(NonFiniteError) as info:
            loss.backward()
    e = info.value
    assert e.op == "Exp" and e.phase == "forward" and e.location == (__file__, line)
    assert "it reached the loss" in str(e) and "passed on by" in str(e)
    assert "overflow in exp: 1 input value(s)" in str(e)
    assert math.isinf(float(np.exp(np.float32(100.0))))


def test_an_infinity_absorbed_by_the_next_op_is_harmless():
    s = cr.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=cr.float64, requires_grad=True)
    mask = cr.tensor(np.array([[False, True], [False, False]]))
    with detect_anomaly():
        w = s.masked_fill(mask, float("-inf")).exp()  # exp(-inf) = 0
        w.sum().backward()
    expected = np.where(mask.numpy(), 0.0, np.exp(s.detach().numpy()))
    np.testing.assert_allclose(s.grad.numpy(), expected, rtol=1e-12)


def test_a_causal_transformer_step_runs_under_anomaly_mode():
    from test_doctor_healthy import TinyTransformer, counting

    cr.manual_seed(0)
    model = TinyTransformer()
    x, y = counting(0, n=4)
    with detect_anomaly():
        logits = model(cr.tensor(x))
        loss = cr.nn.functional.cross_entropy(logits.reshape(-1, 16), cr.tensor(y).reshape(-1))
        loss.backward()
    assert math.isfinite(loss.item())
    assert all(np.isfinite(p.grad.numpy()).all() for p in model.parameters())
