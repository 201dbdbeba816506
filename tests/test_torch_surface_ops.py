"""PyTorch's keywords and results on the ops: dtype= on reductions, inplace= and the in-place
activations, stable= sorts, F.pad's reflect/replicate/circular modes, einsum with an index
repeated in one operand; against PyTorch where it is installed and written-out values
otherwise."""

import math

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # pragma: no cover - torch is optional
    torch = TF = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


def _vjp(lib, f, arrays, u=None, seed=0):
    """f(*tensors), and the gradients of sum(u * f) for a fixed random u, as arrays."""
    xs = [lib.tensor(a, requires_grad=True) for a in arrays]
    y = f(*xs)
    if u is None:
        u = np.random.default_rng(seed).standard_normal(tuple(y.shape))
    (y * lib.tensor(u)).sum().backward()
    return y.detach().numpy(), [x.grad.numpy() for x in xs]


# ----------------------------------------------------------------------------- dtype=

@pytest.mark.parametrize("call, expected", [
    (lambda m, x: m.cumsum(x, 0, dtype=m.float64), [1.0, 3.0, 6.0]),
    (lambda m, x: x.cumsum(dim=0, dtype=m.float64), [1.0, 3.0, 6.0]),
    (lambda m, x: m.cumprod(x, 0, dtype=m.float64), [1.0, 2.0, 6.0]),
    (lambda m, x: m.prod(x, dtype=m.float64), 6.0),
    (lambda m, x: x.prod(0, dtype=m.float64), 6.0),
    (lambda m, x: m.sum(x, dtype=m.float64), 6.0),
    (lambda m, x: m.mean(x, dtype=m.float64), 2.0),
    (lambda m, x: x.mean(0, dtype=m.float64), 2.0),
    (lambda m, x: x.mean(dim=0, keepdim=True, dtype=m.float64), [2.0]),
])
def test_reductions_take_dtype(call, expected):
    y = call(cr, cr.tensor([1, 2, 3]))
    assert y.dtype == cr.float64 and y.tolist() == expected
    if torch is not None:
        t = call(torch, torch.tensor([1, 2, 3]))
        assert t.dtype == torch.float64 and t.tolist() == expected


def test_mean_of_integers_without_dtype_still_refuses():
    with pytest.raises(TypeError, match="mean: needs a floating tensor.*dtype="):
        cr.mean(cr.tensor([1, 2]))


def test_cumsum_dtype_is_differentiable():
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    cr.cumsum(x, 0, dtype=cr.float64).sum().backward()
    assert x.grad.dtype == cr.float32 and x.grad.tolist() == [3.0, 2.0, 1.0]


# ----------------------------------------------------------------------------- inplace=

@pytest.mark.parametrize("name, args", [
    ("relu", ()), ("leaky_relu", (0.2,)), ("silu", ()), ("elu", (1.0,)), ("selu", ()),
    ("celu", (1.0,)), ("hardtanh", (-1.0, 1.0)), ("relu6", ()), ("hardsigmoid", ()),
    ("hardswish", ()), ("mish", ()), ("threshold", (0.1, 20.0)), ("rrelu", (0.1, 0.3, False)),
    ("dropout", (0.5, False)),
])
def test_activations_take_inplace(name, args):
    x = np.array([-2.0, -0.5, 0.0, 0.3, 1.5], np.float32)
    got = getattr(F, name)(cr.tensor(x), *args, inplace=True).numpy()
    plain = getattr(F, name)(cr.tensor(x), *args).numpy()
    np.testing.assert_array_equal(got, plain)
    if torch is not None:
        want = getattr(TF, name)(torch.tensor(x), *args, inplace=True).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, args, expected", [
    ("relu_", (), [0.0, 0.0, 0.0, 0.3, 1.5]),
    ("leaky_relu_", (0.1,), [-0.2, -0.05, 0.0, 0.3, 1.5]),
    ("hardtanh_", (-1.0, 1.0), [-1.0, -0.5, 0.0, 0.3, 1.0]),
    ("threshold_", (0.2, 9.0), [9.0, 9.0, 9.0, 0.3, 1.5]),
    ("elu_", (), [math.expm1(-2.0), math.expm1(-0.5), 0.0, 0.3, 1.5]),
    ("celu_", (2.0,), [2 * math.expm1(-1.0), 2 * math.expm1(-0.25), 0.0, 0.3, 1.5]),
    ("selu_", (), [1.0507009873554805 * 1.6732632423543772 * math.expm1(v) if v < 0
                   else 1.0507009873554805 * v for v in (-2.0, -0.5, 0.0, 0.3, 1.5)]),
    ("rrelu_", (0.1, 0.3), [-0.4, -0.1, 0.0, 0.3, 1.5]),
])
def test_in_place_activations_change_their_input(name, args, expected):
    for lib, f in ((cr, F), (torch, TF)):
        if lib is None:
            continue
        x = lib.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
        y = getattr(f, name)(x, *args)
        assert y is x
        np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6, atol=1e-7)


def test_in_place_activation_of_a_leaf_that_requires_grad_is_refused():
    x = cr.tensor([1.0, -1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="relu_: in-place change of a leaf"):
        F.relu_(x)
    with cr.no_grad():
        F.relu_(x)
    assert x.tolist() == [1.0, 0.0]


# ----------------------------------------------------------------------------- stable=

@pytest.mark.parametrize("values, dtype", [
    ([3.0, 1.0, 2.0, 1.0, float("nan"), 3.0, -0.0, 0.0], "float32"),
    ([True, False, True, False], "bool"),
    ([200, 3, 200, 0, 3], "uint8"),
    ([-(2**63), 5, -(2**63), 5], "int64"),
])
@pytest.mark.parametrize("descending", [False, True])
def test_stable_sorts_keep_ties_in_order(values, dtype, descending):
    a = cr.tensor(values, dtype=getattr(cr, dtype) if dtype != "bool" else cr.bool)
    vals, idx = cr.sort(a, descending=descending, stable=True)
    order = cr.argsort(a, descending=descending, stable=True).tolist()
    assert idx.tolist() == order == a.argsort(stable=True, descending=descending).tolist()
    # written out: stable order by value (NaN largest), ties by position
    key = [(math.inf if isinstance(v, float) and math.isnan(v) else v) for v in values]
    want = sorted(range(len(values)), key=lambda i: (-key[i] if descending else key[i], i))
    if dtype in ("uint8", "int64", "bool"):  # no NaN: the key negates exactly in Python ints
        want = sorted(range(len(values)), key=lambda i: (-int(key[i]) if descending
                                                           else int(key[i]), i))
    assert order == want
    np.testing.assert_array_equal(vals.numpy(), a.numpy()[order])
    if torch is not None:
        t = torch.tensor(values, dtype=getattr(torch, dtype))
        assert torch.argsort(t, descending=descending, stable=True).tolist() == order
        assert torch.sort(t, descending=descending, stable=True).indices.tolist() == order


def test_argsort_of_a_scalar_is_zero():
    assert cr.argsort(cr.tensor(3.0)).tolist() == 0 and cr.argsort(cr.tensor(3.0)).dtype == cr.int64


# ----------------------------------------------------------------------------- F.pad modes

def test_pad_modes_written_out():
    x = cr.arange(6.0).reshape(1, 2, 3)
    assert F.pad(x, (2, 1), mode="reflect").tolist() == [[[2, 1, 0, 1, 2, 1], [5, 4, 3, 4, 5, 4]]]
    assert F.pad(x, (2, 1), mode="replicate").tolist() == [[[0, 0, 0, 1, 2, 2],
                                                            [3, 3, 3, 4, 5, 5]]]
    assert F.pad(x, (2, 1), mode="circular").tolist() == [[[1, 2, 0, 1, 2, 0],
                                                           [4, 5, 3, 4, 5, 3]]]
    assert F.pad(x, (-1, 1), mode="reflect").tolist() == [[[1, 2, 1], [4, 5, 4]]]
    # the gradient sums every copy back into its source: d sum(reflect(x)) / dx
    v = cr.tensor([[[0.0, 1.0, 2.0, 3.0]]], requires_grad=True)
    F.pad(v, (2, 2), mode="reflect").sum().backward()
    assert v.grad.tolist() == [[[1.0, 3.0, 3.0, 1.0]]]
    w = cr.tensor([[[0.0, 1.0, 2.0]]], requires_grad=True)
    F.pad(w, (2, 1), mode="replicate").sum().backward()
    assert w.grad.tolist() == [[[3.0, 1.0, 2.0]]]


@pytest.mark.parametrize("shape, pad", [
    ((2, 5), (2, 1)), ((1, 2, 5), (2, 3)), ((1, 2, 4, 5), (1, 2, 3, 0)), ((2, 4, 5), (1, 1, 2, 2)),
    ((1, 1, 3, 4, 5), (1, 2, 0, 3, 2, 1)), ((2, 3, 4, 5), (1, 1, 1, 1, 1, 1)),
    ((1, 2, 5), (-1, 2)), ((1, 3, 5), (2, -2)),
])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@needs_torch
def test_pad_modes_match_torch_with_gradients(shape, pad, mode):
    x = np.random.default_rng(1).standard_normal(shape)
    y, (g,) = _vjp(cr, lambda t: F.pad(t, pad, mode=mode), [x])
    ty, (tg,) = _vjp(torch, lambda t: TF.pad(t, pad, mode=mode), [x])
    np.testing.assert_allclose(y, ty, rtol=1e-12)
    np.testing.assert_allclose(g, tg, rtol=1e-10, atol=1e-12)


def test_pad_mode_errors_name_the_limits():
    x = cr.zeros(1, 2, 3)
    with pytest.raises(ValueError, match=r"pad: mode 'reflect' pads dim 2 of size 3 by \(3, 0\)"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="at most 3"):
        F.pad(x, (4, 0), mode="circular")
    with pytest.raises(NotImplementedError, match="inputs of 2 or 3 dims"):
        F.pad(cr.zeros(3), (1, 1), mode="replicate")
    with pytest.raises(ValueError, match="mode must be 'constant', 'reflect'"):
        F.pad(x, (1, 1), mode="wrap")
    with pytest.raises(ValueError, match="takes no fill value"):
        F.pad(x, (1, 1), mode="reflect", value=2.0)
    assert F.pad(x, (1, 1), value=2.0).tolist()[0][0] == [2.0, 0.0, 0.0, 0.0, 2.0]


# ----------------------------------------------------------------------------- einsum

def test_einsum_traces_and_diagonals_written_out():
    a = cr.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert cr.einsum("ii->", a).item() == 5.0 and cr.einsum("ii", a).item() == 5.0
    assert cr.einsum("ii->i", a).tolist() == [1.0, 4.0]
    cr.einsum("ii->", a).backward()
    assert a.grad.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    b = cr.arange(8.0).reshape(2, 2, 2).requires_grad_()
    assert cr.einsum("bii->bi", b).tolist() == [[0.0, 3.0], [4.0, 7.0]]
    cr.einsum("bii->bi", b).backward(cr.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert b.grad.tolist() == [[[1.0, 0.0], [0.0, 2.0]], [[3.0, 0.0], [0.0, 4.0]]]


@pytest.mark.parametrize("spec, shapes", [
    ("ii->", [(4, 4)]), ("ii->i", [(4, 4)]), ("bii->bi", [(2, 3, 3)]), ("bii->b", [(2, 3, 3)]),
    ("ii", [(3, 3)]), ("iii->i", [(3, 3, 3)]), ("iij,jk->ik", [(3, 3, 2), (2, 4)]),
    ("ibi->bi", [(3, 2, 3)]), ("iijj->ij", [(2, 2, 3, 3)]), ("ij,jj->i", [(2, 3), (3, 3)]),
    ("ii,i->i", [(3, 3), (3,)]), ("bjj,bj->b", [(2, 3, 3), (1, 3)]), ("...ii->...i", [(2, 3, 3)]),
])
@needs_torch
def test_einsum_repeated_index_matches_torch(spec, shapes):
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal(s) for s in shapes]
    y, gs = _vjp(cr, lambda *t: cr.einsum(spec, *t), xs)
    ty, tgs = _vjp(torch, lambda *t: torch.einsum(spec, *t), xs)
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-12)
    for g, tg in zip(gs, tgs):
        np.testing.assert_allclose(g, tg, rtol=1e-12, atol=1e-12)


def test_einsum_diagonal_second_order():
    # f = sum(diag(x)^2) * ... : grad 2 diag(x) on the diagonal; sum(grad^2) = 4 sum(diag^2);
    # its gradient: 8 diag(x) on the diagonal
    x = cr.tensor([[1.0, 2.0], [3.0, -4.0]], requires_grad=True)
    (g,) = cr.autograd.grad((cr.einsum("ii->i", x) ** 2).sum(), x, create_graph=True)
    (h,) = cr.autograd.grad((g ** 2).sum(), x)
    assert h.tolist() == [[8.0, 0.0], [0.0, -32.0]]


# ----------------------------------------------------------------------------- silent differences

@pytest.mark.parametrize("src, dst, shape", [
    ((-1, 0), (0, -1), (4, 3, 2)), ((0, 1), (2, 0), (3, 4, 2)), (0, -1, (3, 4, 2)),
    ([1], [0], (3, 2, 4)), ((), (), (2, 3, 4)),
])
def test_movedim_with_tuples(src, dst, shape):
    x = cr.arange(24.0).reshape(2, 3, 4)
    y = cr.movedim(x, src, dst)
    assert tuple(y.shape) == shape and tuple(x.moveaxis(src, dst).shape) == shape
    np.testing.assert_array_equal(y.numpy(), np.moveaxis(x.numpy(), src, dst))
    if torch is not None:
        t = torch.movedim(torch.arange(24.0).reshape(2, 3, 4), src, dst)
        np.testing.assert_array_equal(y.numpy(), t.numpy())


def test_movedim_errors():
    x = cr.zeros(2, 3)
    with pytest.raises(ValueError, match="same number of dims"):
        cr.movedim(x, (0, 1), (1,))
    with pytest.raises(ValueError, match="repeated dim in source"):
        cr.movedim(x, (0, 0), (0, 1))


@pytest.mark.parametrize("xs, idx, dim, expected", [
    ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[0], [2]], 1, [[1.0], [6.0]]),
    ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[0, 2]], 1, [[1.0, 3.0], [4.0, 6.0]]),
    ([[1.0, 2.0, 3.0]], [[0, 2], [1, 1]], 1, [[1.0, 3.0], [2.0, 2.0]]),
    ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[1, 0, 1]], 0, [[4.0, 2.0, 6.0]]),
    ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [5, 0], None, [6.0, 1.0]),
    ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[3], [1]], None, [4.0, 2.0]),
])
def test_take_along_dim_broadcasts_and_flattens(xs, idx, dim, expected):
    x = cr.tensor(xs, requires_grad=True)
    y = cr.take_along_dim(x, cr.tensor(idx), dim) if dim is not None else \
        cr.take_along_dim(x, cr.tensor(idx))
    assert y.tolist() == expected
    y.sum().backward()
    if dim is None:  # each picked element once: a count per position of the flattened x
        counts = np.zeros(np.size(xs))
        np.add.at(counts, np.array(idx).reshape(-1), 1.0)
        np.testing.assert_array_equal(x.grad.numpy().reshape(-1), counts)
    if torch is not None:
        tx = torch.tensor(xs, requires_grad=True)
        ty = torch.take_along_dim(tx, torch.tensor(idx), dim)
        ty.sum().backward()
        assert ty.tolist() == expected
        np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


def test_take_along_dim_needs_matching_dims():
    with pytest.raises(ValueError, match="same number of dims"):
        cr.take_along_dim(cr.zeros(2, 3), cr.tensor([0, 1]), 1)
    with pytest.raises(ValueError, match="do not broadcast outside dim 1"):
        cr.take_along_dim(cr.zeros(2, 3), cr.tensor([[0], [1], [0]]), 1)


@pytest.mark.parametrize("name, quotient", [("remainder", np.floor), ("fmod", np.trunc),
                                            ("%", np.floor)])
def test_modulo_gradients(name, quotient):
    a0 = np.array([5.5, -5.5, 7.0, -7.2, 0.7])
    b0 = np.array([3.0, 3.0, -2.0, -2.5, 1.6])
    a, b = cr.tensor(a0, requires_grad=True), cr.tensor(b0, requires_grad=True)
    y = a % b if name == "%" else getattr(cr, name)(a, b)
    want = np.remainder(a0, b0) if name != "fmod" else np.fmod(a0, b0)
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12)
    y.backward(cr.tensor(np.ones(5) * 2.0))
    # d/da = 1, d/db = -floor(a/b) (remainder) or -trunc(a/b) (fmod)
    np.testing.assert_array_equal(a.grad.numpy(), np.full(5, 2.0))
    np.testing.assert_array_equal(b.grad.numpy(), -2.0 * quotient(a0 / b0))
    if torch is not None:
        ta, tb = torch.tensor(a0, requires_grad=True), torch.tensor(b0, requires_grad=True)
        ty = ta % tb if name == "%" else getattr(torch, name)(ta, tb)
        ty.backward(torch.full((5,), 2.0, dtype=torch.float64))
        np.testing.assert_array_equal(b.grad.numpy(), tb.grad.numpy())
        np.testing.assert_array_equal(a.grad.numpy(), ta.grad.numpy())


def test_modulo_of_integers_and_a_scalar_divisor():
    assert cr.remainder(cr.tensor([-5, 5]), 3).tolist() == [1, 2]
    assert cr.fmod(cr.tensor([-5, 5]), 3).tolist() == [-2, 2]
    assert cr.tensor([7, -7]).fmod(cr.tensor([2, 2])).tolist() == [1, -1]
    a = cr.tensor([5.5, -1.5], requires_grad=True)
    cr.fmod(a, 2.0).sum().backward()
    assert a.grad.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("p, expected, rows", [
    (math.inf, 4.0, [2.0, 4.0]), (-math.inf, 0.0, [0.0, 0.5]), (0, 5.0, [2.0, 3.0]),
    (1, 10.5, [3.0, 7.5]), ("fro", 5.5, [math.sqrt(5.0), math.sqrt(25.25)]),
])
def test_norm_special_orders(p, expected, rows):
    x = cr.tensor([[1.0, -2.0, 0.0], [3.0, 0.5, -4.0]])
    np.testing.assert_allclose(cr.norm(x, p).item(), expected, rtol=1e-6)
    np.testing.assert_allclose(x.norm(p, dim=1).tolist(), rows, rtol=1e-6)
    if p != "fro":
        np.testing.assert_allclose(cr.linalg.vector_norm(x, p).item(), expected, rtol=1e-6)
    if torch is not None:
        t = torch.tensor([[1.0, -2.0, 0.0], [3.0, 0.5, -4.0]])
        np.testing.assert_allclose(torch.norm(t, p).item(), expected, rtol=1e-6)


def test_norm_minus_inf_gradient_is_at_the_smallest():
    x = cr.tensor([3.0, -0.5, 2.0], requires_grad=True)
    cr.norm(x, -math.inf).backward()
    assert x.grad.tolist() == [0.0, -1.0, 0.0]


@pytest.mark.parametrize("make, new, ok", [
    (lambda m, x: x.transpose(0, 1), (24,), False),
    (lambda m, x: x.transpose(0, 1), (3, 2, 2, 2), True),  # splits a dim: the strides allow it
    (lambda m, x: m.tensor([1.0, 2.0]).expand(3, 2), (6,), False),
    (lambda m, x: x[:, 1:], (16,), False),
    (lambda m, x: x[:, 1:], (2, 8), True),
    (lambda m, x: x[:, :, ::2], (12,), True),
    (lambda m, x: x[1:], (12,), True),
    (lambda m, x: x[:, :, :2], (2, 6), False),
    (lambda m, x: x[:, :, :2], (2, 3, 2, 1), True),
])
def test_view_of_a_non_contiguous_tensor_as_in_torch(make, new, ok):
    v = make(cr, cr.arange(24.0).reshape(2, 3, 4))
    want = v.numpy().reshape(new)
    if ok:
        np.testing.assert_array_equal(v.view(new).numpy(), want)
    else:
        with pytest.raises(RuntimeError, match=r"view: .*use \.reshape\(\.\.\.\) instead"):
            v.view(new)
        with pytest.raises(RuntimeError, match="view"):
            v.view(-1, *new[1:])
    np.testing.assert_array_equal(v.reshape(new).numpy(), want)
    np.testing.assert_array_equal(v.contiguous().view(new).numpy(), want)
    assert v.contiguous().is_contiguous()
    if torch is not None:
        t = make(torch, torch.arange(24.0).reshape(2, 3, 4))
        if ok:
            np.testing.assert_array_equal(t.view(new).numpy(), want)
        else:
            with pytest.raises(RuntimeError, match="reshape"):
                t.view(new)


def test_view_that_splits_a_sliced_last_dim_keeps_sharing():
    x = cr.arange(24.0).reshape(2, 12)
    q = x[:, 4:8]  # a column slice, as a fused qkv projection is split
    assert q.view(2, 2, 2).tolist() == [[[4.0, 5.0], [6.0, 7.0]], [[16.0, 17.0], [18.0, 19.0]]]


def test_contiguous_copy_is_differentiable():
    x = cr.arange(6.0).reshape(2, 3).requires_grad_()
    y = x.t().contiguous()
    assert y.is_contiguous() and y.tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    (y.view(-1) * cr.arange(6.0)).sum().backward()
    assert x.grad.tolist() == [[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]]
    z = cr.ones(2, 2)
    assert z.contiguous() is z


@pytest.mark.parametrize("shape, dim", [((0, 3), 1), ((3, 0), 1), ((0, 3), 0), ((3, 0), 0),
                                        ((2, 0, 4), -1)])
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_family_on_zero_length_dims(name, shape, dim):
    x = cr.zeros(shape, requires_grad=True)
    y = getattr(cr, name)(x, dim)
    out = tuple(n for i, n in enumerate(shape) if i != dim % len(shape)) \
        if name == "logsumexp" else shape
    assert tuple(y.shape) == out
    if name == "logsumexp":
        assert all(v == -math.inf for v in y.detach().numpy().reshape(-1))  # an empty sum
    y.sum().backward()
    assert tuple(x.grad.shape) == shape
    if torch is not None:
        t = getattr(torch, name)(torch.zeros(shape), dim)
        np.testing.assert_array_equal(y.detach().numpy(), t.numpy())


@pytest.mark.parametrize("sa, sb", [((0, 3), (3, 4)), ((2, 0), (0, 4)), ((2, 3), (3, 0)),
                                    ((5, 0, 3), (3, 2)), ((0,), (0,)), ((3,), (3, 0)),
                                    ((2, 0), (0,))])
def test_matmul_on_zero_length_dims(sa, sb):
    a, b = cr.ones(sa, requires_grad=True), cr.ones(sb, requires_grad=True)
    y = a @ b
    want = np.ones(sa) @ np.ones(sb)
    assert tuple(y.shape) == want.shape
    np.testing.assert_array_equal(y.detach().numpy(), want)
    (y * 2.0).sum().backward()
    assert tuple(a.grad.shape) == sa and tuple(b.grad.shape) == sb
    if len(sa) == 2 and len(sb) == 2:  # dL/da = 2 ones @ b^T (zeros where a dim is empty)
        np.testing.assert_array_equal(a.grad.numpy(), 2.0 * np.ones(want.shape) @ np.ones(sb).T)
    if torch is not None:
        ta, tb = torch.ones(sa, requires_grad=True), torch.ones(sb, requires_grad=True)
        (ta @ tb * 2.0).sum().backward()
        np.testing.assert_array_equal(a.grad.numpy(), ta.grad.numpy())
        np.testing.assert_array_equal(b.grad.numpy(), tb.grad.numpy())


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("call", [
    lambda m: m.ones(2, 3) + m.ones(4), lambda m: m.ones(2, 3) * m.ones(2),
    lambda m: m.ones(2, 3) @ m.ones(4, 2), lambda m: m.mm(m.ones(2, 3), m.ones(4, 2)),
    lambda m: m.bmm(m.ones(2, 2, 3), m.ones(3, 3, 2)), lambda m: m.ones(6).reshape(4),
    lambda m: m.ones(6).view(4), lambda m: m.ones(2, 3).t().view(6),
    lambda m: m.cat([m.ones(2, 3), m.ones(2, 4)]), lambda m: m.stack([m.ones(2), m.ones(3)]),
    lambda m: m.ones(2, 3).expand(4, 3), lambda m: m.ones(3, requires_grad=True).mul(2).backward(),
    lambda m: m.ones(2).item(), lambda m: m.split(m.ones(5), [2, 2]),
])
def test_shape_mistakes_are_runtime_errors_as_in_torch(call):
    with pytest.raises(RuntimeError):
        call(cr)
    with pytest.raises(ValueError):  # and still the ValueError they were
        call(cr)
    if torch is not None:
        with pytest.raises(RuntimeError):
            call(torch)


def test_engine_errors_are_runtime_errors():
    x = cr.ones(3, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    with pytest.raises(RuntimeError):
        cr.ones(3).sum().backward()


def test_gradcheck_and_anomaly_errors_are_runtime_errors():
    from chainrule.autograd.anomaly import NonFiniteError
    from chainrule.autograd.gradcheck import GradcheckError

    assert issubclass(GradcheckError, RuntimeError) and issubclass(GradcheckError, AssertionError)
    assert issubclass(NonFiniteError, RuntimeError)
    assert issubclass(NonFiniteError, FloatingPointError)

    class Wrong(cr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 3

    with pytest.raises(RuntimeError, match="finite difference"):
        cr.autograd.gradcheck(Wrong.apply, (cr.ones(3, dtype=cr.float64, requires_grad=True),))
    with pytest.raises(RuntimeError, match="NaN"), cr.autograd.detect_anomaly():
        x = cr.tensor([0.0, 1.0], requires_grad=True)
        (cr.sqrt(x) * 0).sum().backward()


# ----------------------------------------------------------------------------- seeding

def test_an_unseeded_process_draws_a_fresh_seed():
    import subprocess
    import sys

    code = "import chainrule as c; print(c.initial_seed(), c.rand(3).tolist())"
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    seeds = [int(r.split()[0]) for r in runs]
    assert seeds[0] != seeds[1] and runs[0] != runs[1] and all(0 <= s < 2**64 for s in seeds)
    seeded = "import chainrule as c; c.manual_seed(3); print(c.initial_seed(), c.rand(3).tolist())"
    again = [subprocess.run([sys.executable, "-c", seeded], capture_output=True, text=True,
                            check=True).stdout for _ in range(2)]
    assert again[0] == again[1] and again[0].startswith("3 ")
