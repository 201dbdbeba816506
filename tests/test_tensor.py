"""The Tensor API (attributes, conversions, operators, indexing), creation functions, dtypes and
the seeded generator. Values are checked against NumPy computing the same thing."""

import numpy as np
import pytest

import chainrule as cr

A = np.array([[1.5, -2.0, 0.5], [3.0, 0.25, -1.0]])


def f64(values, requires_grad=False):
    return cr.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


# ----------------------------------------------------------------------------- attributes


def test_shape_ndim_dtype_device_size_dim_numel():
    x = cr.tensor(A)
    assert x.shape == (2, 3) and isinstance(x.shape, tuple) and x.shape.numel() == 6
    assert x.ndim == 2 and x.dim() == 2 and x.numel() == 6 and len(x) == 2
    assert x.size() == (2, 3) and x.size(1) == 3 and x.size(-2) == 2
    assert x.dtype == cr.float64 and x.device == "cpu"


def test_leaf_and_grad_fn_attributes():
    x = f64(A, requires_grad=True)
    y = x * 2.0
    assert x.is_leaf and x.grad_fn is None and x.grad is None and x.requires_grad
    assert not y.is_leaf and y.grad_fn is not None and y.grad_fn.name == "Mul"
    c = f64(A)
    assert c.is_leaf and not c.requires_grad and not (c * 2.0).requires_grad


def test_requires_grad_in_place_setter_returns_self():
    x = f64(A)
    assert x.requires_grad_() is x and x.requires_grad
    assert x.requires_grad_(False) is x and not x.requires_grad


def test_item_numpy_tolist():
    x = f64(A)
    assert cr.tensor([[2.5]]).item() == 2.5 and isinstance(cr.tensor(7).item(), int)
    np.testing.assert_array_equal(x.numpy(), A)
    assert x.tolist() == A.tolist()
    with pytest.raises(ValueError, match=r"item\(\): .*shape \(2, 3\)"):
        x.item()


def test_numpy_of_tensor_requiring_grad_asks_for_detach():
    x = f64(A, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    np.testing.assert_array_equal(x.detach().numpy(), A)


def test_tensor_copies_its_input_and_from_numpy_shares_it():
    a = A.copy()
    t = cr.tensor(a)
    s = cr.from_numpy(a)
    a[0, 0] = 99.0
    assert t._data[0, 0] == 1.5 and s._data[0, 0] == 99.0


def test_to_float_double_and_dtype_conversions():
    x = cr.tensor(A)
    assert x.to(cr.float32).dtype == cr.float32 and x.float().dtype == cr.float32
    assert x.float().double().dtype == cr.float64
    assert x.to("cpu") is x and x.to(cr.float64) is x
    np.testing.assert_allclose(x.float().numpy(), A.astype(np.float32))
    assert cr.tensor([1.7, -2.2]).long().tolist() == [1, -2]
    assert x.to(dtype=cr.float32, device="cpu").dtype == cr.float32


def test_dtype_cast_is_differentiable():
    x = f64(A, requires_grad=True)
    (x.float() * 3.0).sum().backward()
    assert x.grad.dtype == cr.float64
    np.testing.assert_allclose(x.grad.numpy(), np.full(A.shape, 3.0))


def test_transpose_properties_T_and_mT():
    b = np.arange(24.0).reshape(2, 3, 4)
    x = cr.tensor(b)
    np.testing.assert_array_equal(cr.tensor(A).T.numpy(), A.T)
    np.testing.assert_array_equal(x.mT.numpy(), np.swapaxes(b, -1, -2))
    np.testing.assert_array_equal(x.T.numpy(), b.transpose(2, 1, 0))


# ----------------------------------------------------------------------------- operators


B = np.array([[0.5, 1.0, -0.75], [2.0, -1.5, 4.0]])


@pytest.mark.parametrize(
    "fn, ref",
    [
        (lambda a, b: a + b, lambda a, b: a + b),
        (lambda a, b: a - b, lambda a, b: a - b),
        (lambda a, b: a * b, lambda a, b: a * b),
        (lambda a, b: a / b, lambda a, b: a / b),
        (lambda a, b: abs(a) ** b, lambda a, b: np.abs(a) ** b),
        (lambda a, b: a @ b.T, lambda a, b: a @ b.T),
        (lambda a, b: -a, lambda a, b: -a),
        (lambda a, b: 2.0 + a, lambda a, b: 2.0 + a),
        (lambda a, b: 2.0 - a, lambda a, b: 2.0 - a),
        (lambda a, b: 2.0 * a, lambda a, b: 2.0 * a),
        (lambda a, b: 2.0 / a, lambda a, b: 2.0 / a),
        (lambda a, b: 2.0 ** a, lambda a, b: 2.0**a),
        (lambda a, b: a**2, lambda a, b: a**2),
    ],
    ids=["add", "sub", "mul", "div", "pow", "matmul", "neg", "radd", "rsub", "rmul", "rdiv",
         "rpow", "pow_scalar"],
)
def test_operators_match_numpy(fn, ref):
    out = fn(f64(A), f64(B))
    assert out.dtype == cr.float64
    np.testing.assert_allclose(out.numpy(), ref(A, B), rtol=1e-13)


def test_reflected_operators_differentiate_the_tensor_operand():
    # d/dx sum(2/x + 3 - x + 2**x + 0.5 x + (1 + x) x) = -2/x^2 - 1 + ln2 2^x + 0.5 + 1 + 2x
    x = f64(A, requires_grad=True)
    (2.0 / x + 3.0 - x + 2.0**x + 0.5 * x + (1.0 + x) * x).sum().backward()
    expected = -2 / A**2 - 1 + np.log(2) * 2.0**A + 0.5 + 1 + 2 * A
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_numpy_array_on_left_defers_to_tensor():
    out = B + f64(A)
    assert isinstance(out, cr.Tensor)
    np.testing.assert_allclose(out.numpy(), A + B)


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
def test_comparisons_give_bool_tensors(op):
    fn = eval(f"lambda a, b: a {op} b")
    a, b = A, np.where(np.arange(6).reshape(2, 3) % 2 == 0, A, B)  # some equal elements
    out = fn(f64(a), f64(b))
    assert out.dtype == cr.bool and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), fn(a, b))
    np.testing.assert_array_equal(fn(f64(a), 0.5).numpy(), fn(a, 0.5))


def test_bool_of_multi_element_tensor_raises():
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(f64(A) > 0)
    assert bool(f64([1.0]) > 0)


# ----------------------------------------------------------------------------- indexing


@pytest.mark.parametrize(
    "index",
    [
        1,
        -1,
        (1, 2),
        slice(None, None, 2),
        (slice(None), slice(1, None)),
        (Ellipsis, 0),
        (None, 1),
        (slice(None), None, 2),
        np.array([1, 0, 1]),
        (np.array([0, 1]), np.array([2, 2])),
        A > 0,
    ],
    ids=["int", "neg_int", "int_pair", "step", "slices", "ellipsis", "none", "slice_none",
         "int_array", "int_arrays", "bool_mask"],
)
def test_getitem_values_and_gradient_match_numpy(index):
    x = f64(A, requires_grad=True)
    out = x[index]
    np.testing.assert_array_equal(out._data, A[index])
    w = np.arange(1.0, 1.0 + out._data.size).reshape(out._data.shape)
    (out * f64(w)).sum().backward()
    expected = np.zeros_like(A)
    np.add.at(expected, index, w)  # repeated indices accumulate
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_getitem_with_tensor_indices():
    x = f64(A)
    np.testing.assert_array_equal(x[cr.tensor([1, 0])].numpy(), A[[1, 0]])
    np.testing.assert_array_equal(x[cr.tensor(A > 0)].numpy(), A[A > 0])
    np.testing.assert_array_equal(x[:, cr.tensor([0, 0, 2])].numpy(), A[:, [0, 0, 2]])


def test_getitem_out_of_range_names_the_shape():
    with pytest.raises(IndexError, match=r"shape \(2, 3\)"):
        f64(A)[5]


# ----------------------------------------------------------------------------- creation


def test_filled_creation_functions():
    np.testing.assert_array_equal(cr.zeros(2, 3).numpy(), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(cr.ones((2, 3)).numpy(), np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(cr.full((2,), 7.5).numpy(), [7.5, 7.5])
    assert cr.empty(3, 4).shape == (3, 4) and cr.empty(2).dtype == cr.float32
    assert cr.zeros(2, dtype=cr.int64).dtype == cr.int64
    assert cr.full((2,), 3).dtype == cr.int64 and cr.full((1,), True).dtype == cr.bool
    assert cr.ones(3, requires_grad=True).requires_grad


def test_like_functions_take_shape_and_dtype():
    x = cr.tensor(A)
    for fn, val in ((cr.zeros_like, 0.0), (cr.ones_like, 1.0)):
        y = fn(x)
        assert y.shape == x.shape and y.dtype == cr.float64
        np.testing.assert_array_equal(y.numpy(), np.full(A.shape, val))
    np.testing.assert_array_equal(cr.full_like(x, 2.5).numpy(), np.full(A.shape, 2.5))
    assert cr.empty_like(x).shape == (2, 3)
    assert cr.zeros_like(x, dtype=cr.float32).dtype == cr.float32
    r = cr.rand_like(x)
    assert r.shape == (2, 3) and r.dtype == cr.float64 and ((r._data >= 0) & (r._data < 1)).all()
    assert cr.randn_like(x).shape == (2, 3)


def test_ranges_and_identity():
    np.testing.assert_array_equal(cr.arange(5).numpy(), np.arange(5))
    assert cr.arange(5).dtype == cr.int64 and cr.arange(0, 1, 0.25).dtype == cr.float32
    np.testing.assert_allclose(cr.arange(1, 2, 0.25).numpy(), [1.0, 1.25, 1.5, 1.75])
    np.testing.assert_allclose(cr.linspace(-1, 1, 5).numpy(), [-1.0, -0.5, 0.0, 0.5, 1.0])
    assert cr.linspace(0, 1, 3).dtype == cr.float32
    np.testing.assert_array_equal(cr.eye(3).numpy(), np.eye(3))
    np.testing.assert_array_equal(cr.eye(2, 3).numpy(), np.eye(2, 3))


def test_random_creation_ranges_and_dtypes():
    cr.manual_seed(0)
    r = cr.rand(1000)
    assert r.dtype == cr.float32 and 0 <= r._data.min() and r._data.max() < 1
    n = cr.randn(20000, dtype=cr.float64)
    assert n.dtype == cr.float64
    assert abs(n._data.mean()) < 0.05 and abs(n._data.std() - 1) < 0.05
    i = cr.randint(3, 7, (1000,))
    assert i.dtype == cr.int64 and set(np.unique(i._data)) == {3, 4, 5, 6}
    j = cr.randint(4, (2, 500))  # randint(high, size), as torch.randint
    assert j.shape == (2, 500) and set(np.unique(j._data)) == {0, 1, 2, 3}


def test_manual_seed_reproduces_every_generator_call_bit_for_bit():
    def draw():
        return np.concatenate([cr.randn(5)._data.view(np.uint32), cr.rand(3)._data.view(np.uint32),
                               cr.randint(0, 1000, (4,))._data.astype(np.uint32)])

    cr.manual_seed(1234)
    first = draw()
    cr.manual_seed(1234)
    second = draw()
    cr.manual_seed(1235)
    other = draw()
    np.testing.assert_array_equal(first, second)
    assert (first != other).any()


# ----------------------------------------------------------------------------- dtypes


def test_default_dtypes_follow_pytorch():
    assert cr.tensor([1.0, 2.0]).dtype == cr.float32
    assert cr.tensor([1, 2]).dtype == cr.int64
    assert cr.tensor([True, False]).dtype == cr.bool
    assert cr.tensor(A).dtype == cr.float64  # a NumPy array keeps its dtype
    assert cr.tensor([1, 2], dtype=cr.float64).dtype == cr.float64
    assert cr.tensor([1, 2], dtype="float32").dtype == cr.float32


def test_dtype_names_are_numpy_dtypes():
    assert cr.float32 == np.float32 and cr.float64 == np.float64
    assert cr.int64 == np.int64 and cr.bool == np.bool_


def test_python_scalar_keeps_tensor_dtype():
    x = cr.tensor([1.0, 2.0])
    assert (x * 2.5).dtype == cr.float32 and (x + 1).dtype == cr.float32
    assert (cr.tensor([1, 2]) * 2).dtype == cr.int64
    assert (cr.tensor([1, 2]) * 2.5).dtype == cr.float32


def test_unknown_dtype_name_raises():
    with pytest.raises(TypeError, match="unknown dtype 'float8'"):
        cr.zeros(2, dtype="float8")


def test_new_functions_take_dtype_and_device_of_the_tensor():
    x = cr.tensor(A)  # float64
    z = x.new_zeros(2, 2)
    assert z.dtype == cr.float64 and z.device == x.device
    np.testing.assert_array_equal(z.numpy(), np.zeros((2, 2)))
    np.testing.assert_array_equal(x.new_ones((3,)).numpy(), np.ones(3))
    np.testing.assert_array_equal(x.new_full((2,), 7.0).numpy(), [7.0, 7.0])
    assert x.new_empty(4).shape == (4,) and x.new_empty(4).dtype == cr.float64
    t = x.new_tensor([1, 2])
    assert t.dtype == cr.float64 and t.tolist() == [1.0, 2.0]
    assert x.new_zeros(2, dtype=cr.int64).dtype == cr.int64


def test_size_queries_and_device_type():
    x = cr.tensor(A)
    assert x.nbytes == A.nbytes and x.itemsize == 8 and x.element_size() == 8
    assert x.nelement() == 6 and x.ndimension() == 2
    assert x.is_contiguous() and not x.T.is_contiguous()
    assert x.device == "cpu" and x.device.type == "cpu" and x.device.index is None
