"""The op library's public surface: the exact set of public names (``chainrule.ops.__all__``,
``chainrule.__all__``), every Tensor method being the free function of the same name, and the
families' own ``__all__`` lists adding up to the library's."""

from __future__ import annotations

import pytest

import chainrule as cr
import chainrule.ops as ops
from chainrule.ops import _methods

OPS_NAMES = set("""
    abs absolute add all allclose amax amin any argmax argmin argsort bmm broadcast_to cast
    cat ceil chunk clamp clamp_max clamp_min clip clone clone_detach concat concatenate cos
    cumsum div divide dot einsum eq equal exp expand expand_as expm1 flatten flip floor
    floor_divide fmod gather ge gelu getitem greater greater_equal gt index_select isfinite
    isinf isnan le leaky_relu lerp less less_equal log log10 log1p log2 log_softmax
    logical_and logical_not logical_or logical_xor logsumexp lt masked_fill matmul max
    maximum mean min minimum mm movedim moveaxis mul multiply narrow ne neg negative norm
    not_equal
    outer pad permute pow prod reciprocal relu remainder repeat repeat_interleave reshape
    roll round rsqrt scatter_add select sigmoid sign silu sin softmax softplus sort split
    sqrt square squeeze stack std sub subtract sum swapaxes swapdims t take_along_dim tanh
    tile to_device topk transpose tril triu true_divide trunc unbind unflatten unsqueeze var
    view where
    atan2 arctan2 hypot nonzero argwhere count_nonzero meshgrid unique searchsorted bucketize
    nan_to_num masked_select var_mean std_mean median mode scatter scatter_reduce cdist diff
    ravel isclose cumprod bernoulli
""".split())

PACKAGE_EXTRA = set("""
    Tensor arange as_tensor autograd empty empty_like enable_grad eye from_numpy full
    full_like grad linspace manual_seed multinomial no_grad ones ones_like rand rand_like
    randint randn randn_like randperm set_grad_enabled tensor zeros zeros_like
""".split())

# Tensor methods that are the free function of the same name (the tensor passed first).
METHODS = """add sub mul div neg pow exp expm1 log log1p log2 log10 sqrt rsqrt abs sin cos tanh
sigmoid relu gelu silu softplus clamp clip maximum minimum sign floor ceil round trunc square
reciprocal lt le gt ge eq ne logical_not logical_and logical_or isnan isinf isfinite argmax argmin
argsort any all sum mean var std max min amax amin logsumexp prod cumsum norm softmax log_softmax
matmul mm bmm dot reshape view flatten unflatten permute transpose swapaxes swapdims t movedim
moveaxis expand expand_as broadcast_to squeeze unsqueeze split chunk unbind gather scatter_add
index_select
masked_fill tril triu flip roll repeat outer leaky_relu floor_divide remainder fmod
take_along_dim clamp_min clamp_max tile narrow select lerp sort topk repeat_interleave
multiply subtract divide atan2 arctan2 hypot nonzero argwhere count_nonzero unique
nan_to_num masked_select median mode scatter scatter_reduce diff ravel isclose cumprod
bernoulli""".split()

# Methods without a free function of their own name.
OTHER_METHODS = ["view_as", "reshape_as", "where", "type_as", "exp_", "unfold"]


def test_ops_all_is_exactly_the_public_op_names():
    assert len(ops.__all__) == len(set(ops.__all__)), "a name is exported by two op families"
    assert set(ops.__all__) == OPS_NAMES


def test_package_all_is_the_ops_the_creation_functions_and_the_engine_names():
    assert len(cr.__all__) == len(set(cr.__all__))
    assert set(cr.__all__) == OPS_NAMES | PACKAGE_EXTRA


def test_every_exported_name_is_defined():
    for name in cr.__all__:
        assert getattr(cr, name, None) is not None, name
    for name in ops.__all__:
        assert getattr(ops, name) is getattr(cr, name), name


def test_ops_all_is_the_families_all_together():
    names = [n for family in ops.FAMILIES for n in family.__all__]
    assert names == list(ops.__all__)
    for family in ops.FAMILIES:
        for name in family.__all__:
            assert getattr(family, name) is getattr(ops, name), f"{family.__name__}.{name}"


@pytest.mark.parametrize("name", METHODS)
def test_tensor_method_is_the_free_function(name):
    assert getattr(cr.Tensor, name) is getattr(ops, name)


@pytest.mark.parametrize("name", OTHER_METHODS)
def test_other_declared_methods_are_attached(name):
    assert getattr(cr.Tensor, name) is _methods.METHODS[name]


def test_every_declared_method_is_attached_and_none_is_missing():
    assert set(_methods.METHODS) == set(METHODS) | set(OTHER_METHODS)
    for name, fn in _methods.METHODS.items():
        assert getattr(cr.Tensor, name) is fn, name


def test_a_method_declared_twice_is_refused():
    def sum(x):  # noqa: A001  (the name of an existing method)
        return x

    with pytest.raises(ValueError, match="'sum' is declared twice"):
        _methods.tensor_method()(sum)
    assert cr.Tensor.sum is ops.sum


def test_odd_methods_compute_what_they_name():
    x = cr.tensor([[1.0, -2.0], [0.5, 3.0]])
    assert x.view_as(cr.zeros(4)).shape == (4,) and x.reshape_as(cr.zeros(1, 4)).shape == (1, 4)
    assert x.type_as(cr.zeros(1, dtype=cr.float64)).dtype == cr.float64
    w = x.where(x > 0, cr.zeros(2, 2))
    assert w.tolist() == [[1.0, 0.0], [0.5, 3.0]]
    y = cr.tensor([0.0, 1.0])
    assert y.exp_() is y and y.tolist() == pytest.approx([1.0, 2.718281828459045])
