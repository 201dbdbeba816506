"""Errors that teach: a user's mistake raises ValueError or TypeError naming the op, what it
received and what it expected."""

from __future__ import annotations

import re

import numpy as np
import pytest

import chainrule as cr


def _x(*shape, dtype=cr.float32):
    return cr.tensor(np.ones(shape), dtype=dtype)


def test_matmul_names_both_shapes_and_the_inner_dims():
    with pytest.raises(ValueError, match=re.escape("matmul: (3, 4) @ (5, 6): inner dims 4 and 5 "
                                                   "differ")):
        _x(3, 4) @ _x(5, 6)


def test_matmul_with_unbroadcastable_batch_dims_names_them():
    with pytest.raises(ValueError, match=re.escape("matmul: (2, 3, 4) @ (3, 4, 5): batch dims "
                                                   "(2,) and (3,)")):
        cr.matmul(_x(2, 3, 4), _x(3, 4, 5))


def test_matmul_of_a_scalar_suggests_mul():
    with pytest.raises(ValueError, match=r"matmul: both operands need at least 1 dim.*use \*"):
        cr.matmul(cr.tensor(2.0), _x(3))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
def test_broadcast_mismatch_names_the_op_and_both_shapes(op):
    with pytest.raises(ValueError, match=re.escape(f"{op}: shapes (3, 4) and (2, 4) cannot be "
                                                   "broadcast")):
        getattr(cr, op)(_x(3, 4), _x(2, 4))


def test_operator_broadcast_mismatch_names_the_op():
    with pytest.raises(ValueError, match=re.escape("add: shapes (3,) and (4,)")):
        _x(3) + _x(4)


def test_where_broadcast_mismatch_names_all_three_shapes():
    with pytest.raises(ValueError, match=re.escape("where: condition (3, 4), input (3, 4) and "
                                                   "other (2,)")):
        cr.where(_x(3, 4) > 0, _x(3, 4), _x(2))


@pytest.mark.parametrize("call, op", [
    (lambda x: x.sum(2), "sum"), (lambda x: x.mean(-3), "mean"),
    (lambda x: x.softmax(5), "softmax"),
    (lambda x: x.max(2), "max"), (lambda x: x.cumsum(2), "cumsum"), (lambda x: x.var(2), "var"),
    (lambda x: x.transpose(0, 2), "transpose"), (lambda x: x.squeeze(3), "squeeze"),
    (lambda x: x.flip(2), "flip"), (lambda x: x.roll(1, 2), "roll"),
    (lambda x: x.argmax(2), "argmax"), (lambda x: cr.cat([x, x], 2), "cat"),
    (lambda x: x.logsumexp(-3), "logsumexp"), (lambda x: x.prod(2), "prod"),
])
def test_bad_dim_names_the_op_the_dim_and_the_ndim(call, op):
    with pytest.raises(ValueError, match=rf"{op}: dim -?\d is out of range for a tensor of 2 "
                                         r"dims \(expected -2\.\.1\)"):
        call(_x(3, 4))


def test_bad_dim_is_also_an_index_error_as_in_pytorch():
    with pytest.raises(IndexError):
        _x(3, 4).sum(2)


def test_unsqueeze_and_stack_name_the_result_ndim():
    with pytest.raises(ValueError, match=re.escape("unsqueeze: dim 4 is out of range for a "
                                                   "result of 3 dims (expected -3..2)")):
        _x(3, 4).unsqueeze(4)
    with pytest.raises(ValueError, match=re.escape("stack: dim 3 is out of range for a result "
                                                   "of 3 dims")):
        cr.stack([_x(3, 4), _x(3, 4)], 3)


def test_cat_with_mismatched_shapes_names_the_tensor_and_the_shapes():
    with pytest.raises(ValueError, match=re.escape("cat: tensor 1 has shape (2, 5) but tensor 0 "
                                                   "has (2, 3); all dims except dim 0 must "
                                                   "match")):
        cr.cat([_x(2, 3), _x(2, 5)])


def test_stack_with_mismatched_shapes_names_the_tensor_and_the_shapes():
    with pytest.raises(ValueError, match=re.escape("stack: tensor 2 has shape (3,) but tensor 0 "
                                                   "has (2,)")):
        cr.stack([_x(2), _x(2), _x(3)])


def test_reshape_names_the_shapes_and_the_element_count():
    with pytest.raises(ValueError, match=re.escape("reshape: cannot view a tensor of shape "
                                                   "(3, 4) (12 elements) as (5, 3)")):
        _x(3, 4).reshape(5, 3)


def test_expand_says_only_size1_dims_grow():
    with pytest.raises(ValueError, match=re.escape("expand: cannot expand shape (3, 4) to "
                                                   "(3, 5): only size-1 dims can grow")):
        _x(3, 4).expand(3, 5)


def test_permute_rejects_a_non_permutation():
    with pytest.raises(ValueError, match=re.escape("permute: (0, 0) is not a permutation of "
                                                   "0..1")):
        _x(3, 4).permute(0, 0)
    with pytest.raises(ValueError, match="permute: 1 dims given for a tensor of 2 dims"):
        _x(3, 4).permute(0)


def test_requires_grad_on_an_integer_tensor_names_the_dtype():
    with pytest.raises(TypeError, match="floating-point.*int64"):
        cr.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="floating-point.*int64"):
        cr.tensor([1, 2]).requires_grad_()


def test_backward_on_a_non_scalar_without_gradient_names_the_shape():
    y = cr.tensor(np.ones((3, 4)), requires_grad=True) * 2.0
    with pytest.raises((ValueError, RuntimeError), match=re.escape("(3, 4)")):
        y.backward()


def test_second_backward_through_a_freed_graph_says_retain_graph():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_gather_checks_the_index_dtype_range_and_ndim():
    x = _x(3, 4)
    with pytest.raises(TypeError, match="gather: index must be an integer tensor, got dtype "
                                        "float32"):
        x.gather(1, cr.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=re.escape("gather: index 9 is out of range for dim 1 of "
                                                   "size 4 (input shape (3, 4))")):
        x.gather(1, cr.tensor([[0, 9]]))
    with pytest.raises(ValueError, match="gather: index has 1 dims but input has 2"):
        x.gather(1, cr.tensor([0, 1]))
    with pytest.raises(ValueError, match=re.escape("gather: index shape (4, 1) is larger than "
                                                   "input shape (3, 4) in dim 0")):
        x.gather(1, cr.tensor([[0], [1], [2], [3]]))


def test_index_select_and_scatter_add_check_their_index():
    x = _x(3, 4)
    with pytest.raises(ValueError, match="index_select: index must be 1-d, got shape"):
        x.index_select(1, cr.tensor([[0]]))
    with pytest.raises(ValueError, match="index_select: index -5 is out of range for dim 1"):
        x.index_select(1, cr.tensor([0, -5]))
    with pytest.raises(ValueError, match=re.escape("scatter_add: src shape (3,) must have "
                                                   "index's 2 dims")):
        x.scatter_add(1, cr.tensor([[0, 1]]), _x(3))


def test_getitem_out_of_range_names_the_tensor_shape():
    with pytest.raises(IndexError, match=re.escape("getitem: index 5 is out of bounds for axis 0 "
                                                   "with size 3 (tensor of shape (3, 4))")):
        _x(3, 4)[5]


def test_masked_fill_checks_mask_dtype_and_shape():
    with pytest.raises(TypeError, match="masked_fill: mask must be bool, got dtype int64"):
        _x(3, 4).masked_fill(cr.tensor([1, 0, 1, 0]), 0.0)
    with pytest.raises(ValueError, match=re.escape("masked_fill: mask shape (2, 3, 4) cannot be "
                                                   "broadcast to input shape (3, 4)")):
        _x(3, 4).masked_fill(_x(2, 3, 4) > 0, 0.0)


def test_where_needs_a_bool_condition():
    with pytest.raises(TypeError, match="where: condition must be a bool tensor, got dtype int64"):
        cr.where(cr.tensor([1, 0]), _x(2), _x(2))


@pytest.mark.parametrize("op", ["mean", "var", "std", "softmax", "log_softmax", "norm"])
def test_float_only_reductions_of_integer_tensors_say_call_float(op):
    with pytest.raises(TypeError, match=rf"{op}: needs a floating tensor, got dtype int64; call "
                                        r"\.float\(\) first"):
        getattr(cr, op)(cr.tensor([[1, 2], [3, 4]]))


def test_pad_explains_the_pair_per_dim_order():
    with pytest.raises(ValueError, match=re.escape("pad: pad (1, 2, 3) must have an even length "
                                                   "of at most 2*2 (a (before, after) pair per "
                                                   "dim, last dim first)")):
        cr.pad(_x(3, 4), (1, 2, 3))
    with pytest.raises(ValueError, match="pad: pad .* crops more than the 4 elements of dim 1"):
        cr.pad(_x(3, 4), (-5, 0))


def test_einsum_names_the_index_whose_sizes_differ():
    with pytest.raises(ValueError, match=re.escape("einsum: index 'j' has size 4 in operand 0 "
                                                   "but 5 in operand 1")):
        cr.einsum("ij,jk->ik", _x(3, 4), _x(5, 6))
    with pytest.raises(ValueError, match="einsum: 2 operand subscripts but 1 operands"):
        cr.einsum("ij,jk->ik", _x(3, 4))


def test_split_and_chunk_reject_bad_sizes():
    with pytest.raises(ValueError, match=re.escape("split: sections [1, 2] sum to 3, not 4")):
        _x(3, 4).split([1, 2], 1)
    with pytest.raises(ValueError, match="split: split_size must be positive, got 0"):
        _x(3, 4).split(0)
    with pytest.raises(ValueError, match="chunk: chunks must be a positive integer, got 0"):
        _x(3, 4).chunk(0)


def test_repeat_needs_a_count_per_dim():
    with pytest.raises(ValueError, match="repeat: 1 repeat counts for a tensor of 2 dims; give "
                                         "at least 2"):
        _x(3, 4).repeat(2)


@pytest.mark.parametrize("call, message", [
    (lambda x: x.clamp(), "clamp: at least one of min and max must be given"),
    (lambda x: cr.gelu(x, approximate="fast"), "gelu: approximate must be 'none' or 'tanh', got "
                                               "'fast'"),
    (lambda x: x.norm(p="nuc"), "norm: p must be a number, 'fro' or inf, got 'nuc'"),
    (lambda x: x[0].tril(), re.escape("tril: needs a tensor of at least 2 dims, got shape (4,)")),
    (lambda x: cr.mm(x, x[0]), re.escape("mm: expects 2-d operands, got (3, 4) and (4,)")),
])
def test_bad_arguments_name_the_op_and_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call(_x(3, 4))


@pytest.mark.parametrize("call, op", [
    (lambda x: x + "a", "add"), (lambda x: cr.mul(x, None), "mul"), (lambda x: cr.exp("a"), "exp"),
    (lambda x: cr.matmul(x, "a"), "matmul"),
])
def test_non_numeric_operand_names_the_op_and_the_type(call, op):
    with pytest.raises(TypeError, match=rf"{op}: expected a Tensor or a number, got"):
        call(_x(3, 4))


def test_gradcheck_names_the_input_element_and_both_numbers():
    class Wrong(cr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * x  # should be 2 x g

    x = cr.tensor([[1.0, 2.0]], dtype=cr.float64, requires_grad=True)
    with pytest.raises(cr.autograd.GradcheckError,
                       match=r"gradient of input 0 \(shape \(1, 2\)\) at element \(0, 0\): "
                             r"backprop gives .*finite differences give"):
        cr.autograd.gradcheck(Wrong.apply, (x,))
