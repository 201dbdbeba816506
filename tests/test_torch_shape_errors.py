"""Shape errors of where, F.linear, the losses, layer_norm and the convolutions are
``ShapeError`` (a ValueError and a RuntimeError), one line naming the op, what was received
and what was expected; PyTorch raises an error of a class ShapeError also is for each case."""

import warnings

import numpy as np
import pytest

import chainrule
from chainrule.tensor import ShapeError


def _t(lib, *shape, integer=False):
    a = (np.arange(int(np.prod(shape))) % 3) if integer else \
        np.linspace(0.1, 0.9, int(np.prod(shape)))
    a = a.reshape(shape).astype(np.int64 if integer else np.float32)
    return lib.tensor(a)


CASES = {
    "where": (lambda L: L.where(_t(L, 2, 3) > 0.5, _t(L, 4), _t(L, 3)), ("where", "(4,)")),
    "linear": (lambda L: L.nn.functional.linear(_t(L, 2, 3), _t(L, 4, 5)),
               ("linear", "(2, 3)", "(4, 5)")),
    "linear_bias": (lambda L: L.nn.functional.linear(_t(L, 2, 5), _t(L, 4, 5), _t(L, 3)),
                    ("linear", "bias", "(3,)", "(4,)")),
    "mse_loss": (lambda L: L.nn.functional.mse_loss(_t(L, 2, 3), _t(L, 4)),
                 ("mse_loss", "(4,)", "(2, 3)")),
    "l1_loss": (lambda L: L.nn.functional.l1_loss(_t(L, 2, 3), _t(L, 2, 4)),
                ("l1_loss", "(2, 4)", "(2, 3)")),
    "smooth_l1_loss": (lambda L: L.nn.functional.smooth_l1_loss(_t(L, 2, 3), _t(L, 5)),
                       ("smooth_l1_loss", "(5,)")),
    "binary_cross_entropy": (
        lambda L: L.nn.functional.binary_cross_entropy(_t(L, 2, 3), _t(L, 3, 2)),
        ("binary_cross_entropy", "(3, 2)", "(2, 3)")),
    "cross_entropy": (
        lambda L: L.nn.functional.cross_entropy(_t(L, 3, 5), _t(L, 2, integer=True)),
        ("cross_entropy", "(2,)", "(3,)")),
    "nll_loss": (lambda L: L.nn.functional.nll_loss(_t(L, 3, 5), _t(L, 4, integer=True)),
                 ("nll_loss", "(4,)", "(3,)")),
    "layer_norm": (lambda L: L.nn.functional.layer_norm(_t(L, 2, 3), (4,)),
                   ("layer_norm", "(2, 3)", "4")),
    "layer_norm_weight": (
        lambda L: L.nn.functional.layer_norm(_t(L, 2, 3), (3,), weight=_t(L, 4)),
        ("layer_norm", "weight", "(4,)", "(3,)")),
    "conv2d_channels": (lambda L: L.nn.functional.conv2d(_t(L, 1, 3, 5, 5), _t(L, 4, 2, 3, 3)),
                        ("conv2d", "(1, 3, 5, 5)", "(4, 2, 3, 3)")),
    "conv2d_small": (lambda L: L.nn.functional.conv2d(_t(L, 1, 1, 2, 2), _t(L, 1, 1, 3, 3)),
                     ("conv2d", "(1, 1, 2, 2)")),
    "conv2d_bias": (lambda L: L.nn.functional.conv2d(_t(L, 1, 2, 5, 5), _t(L, 4, 2, 3, 3),
                                                     _t(L, 3)),
                    ("conv2d", "bias", "(3,)", "(4,)")),
    "conv2d_rank": (lambda L: L.nn.functional.conv2d(_t(L, 5, 5), _t(L, 1, 1, 3, 3)),
                    ("conv2d", "(5, 5)")),
    "conv1d_channels": (lambda L: L.nn.functional.conv1d(_t(L, 1, 3, 8), _t(L, 2, 2, 3)),
                        ("conv1d", "(1, 3, 8)")),
    "conv3d_channels": (
        lambda L: L.nn.functional.conv3d(_t(L, 1, 3, 4, 4, 4), _t(L, 2, 2, 2, 2, 2)),
        ("conv3d", "(1, 3, 4, 4, 4)")),
    "conv_transpose2d_channels": (
        lambda L: L.nn.functional.conv_transpose2d(_t(L, 1, 3, 4, 4), _t(L, 2, 2, 3, 3)),
        ("conv_transpose2d", "3")),
    "conv2d_module": (lambda L: L.nn.Conv2d(2, 4, 3)(_t(L, 1, 3, 5, 5)),
                      ("Conv2d", "(1, 3, 5, 5)")),
    "linear_module": (lambda L: L.nn.Linear(5, 4)(_t(L, 2, 3)), ("Linear", "(2, 3)")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_shape_error_names_op_received_and_expected(name):
    fn, words = CASES[name]
    with pytest.raises(ShapeError) as info:
        fn(chainrule)
    err = info.value
    assert isinstance(err, RuntimeError) and isinstance(err, ValueError)
    msg = str(err)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("name", sorted(CASES))
def test_pytorch_raises_a_class_shape_error_also_is(name):
    torch = pytest.importorskip("torch")
    fn, _ = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as info:
            fn(torch)
    assert isinstance(info.value, (RuntimeError, ValueError)), type(info.value)
    # ported code's ``except <PyTorch's class>`` catches chainrule's error
    with pytest.raises(type(info.value)):
        fn(chainrule)
