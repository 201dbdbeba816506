"""Forward values and result dtypes of every op: against the NumPy reference of its row in
``op_specs.SPECS``, against PyTorch when it is installed, and for the non-differentiable ops and
PyTorch's dtype promotion rules."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from op_specs import SPECS

CASES = [pytest.param(s, c, id=f"{s.op}-{c.id}") for s in SPECS.values() for c in s.cases]
TORCH_CASES = [p for p in CASES if p.values[0].torch and p.values[1].torch]


def _out(y):
    return y.data if isinstance(y, cr.Tensor) else np.asarray(y)


@pytest.mark.parametrize("s, c", CASES)
def test_forward_matches_numpy_reference_in_float64(s, c):
    arrays = [a for a, _ in s.arrays(c)]
    y = s.call(s.tensors(c), c)
    expected = np.asarray(s.ref(*arrays, **c.kw))
    assert y.dtype == cr.float64
    assert tuple(y.shape) == expected.shape
    np.testing.assert_allclose(_out(y), expected, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("s, c", [p for p in CASES if p.values[0].op != "Cast"])
def test_float32_inputs_give_float32_outputs_and_gradients(s, c):
    xs = s.tensors(c, dtype=np.float32)
    y = s.call(xs, c)
    assert y.dtype == cr.float32
    leaves = [x for x in xs if isinstance(x, cr.Tensor) and x.requires_grad]
    grads = cr.grad(y, leaves, cr.ones_like(y), allow_unused=True)
    assert all(g is None or g.dtype == cr.float32 for g in grads)
    expected = s.ref(*[a for a, _ in s.arrays(c)], **c.kw)
    np.testing.assert_allclose(_out(y), expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("s, c", TORCH_CASES)
def test_forward_and_gradient_match_pytorch(s, c):
    torch = pytest.importorskip("torch")
    ours = s.tensors(c)
    theirs = s.tensors(c, lib=torch)
    y, yt = s.call(ours, c), s.call(theirs, c, F=torch)
    assert tuple(y.shape) == tuple(yt.shape)
    assert str(y.dtype) == str(yt.dtype).removeprefix("torch.")
    np.testing.assert_allclose(_out(y), yt.detach().numpy(), rtol=1e-7, atol=1e-12)
    u = np.random.default_rng(0).standard_normal(tuple(y.shape))
    leaves = [(a, b) for a, b in zip(ours, theirs) if isinstance(a, cr.Tensor) and a.requires_grad]
    grads = cr.grad(y, [a for a, _ in leaves], cr.tensor(u, dtype=cr.float64))
    grads_t = torch.autograd.grad(yt, [b for _, b in leaves], torch.from_numpy(u))
    for g, gt in zip(grads, grads_t):
        np.testing.assert_allclose(g.data, gt.numpy(), rtol=1e-7, atol=1e-12)


# ----------------------------------------------------------------------------- API surface

# spec2 item 3: each op must exist as chainrule.<name>; as a Tensor method where PyTorch has one
OPS = """add sub mul div neg pow exp log log1p expm1 sqrt rsqrt abs sin cos tanh sigmoid relu
leaky_relu gelu silu softplus clamp maximum minimum where sum mean var std max min amax amin
logsumexp prod norm cumsum matmul einsum reshape view flatten transpose permute expand squeeze
unsqueeze cat stack split chunk gather scatter_add index_select masked_fill pad tril triu flip
repeat roll softmax log_softmax argmax argmin lt le gt ge eq ne sign floor round""".split()


def test_every_listed_op_is_a_function_and_a_tensor_method_where_pytorch_has_one():
    torch = pytest.importorskip("torch")
    missing = [n for n in OPS if not callable(getattr(cr, n, None))]
    assert not missing, f"chainrule lacks {missing}"
    missing = [n for n in OPS if hasattr(torch.Tensor, n) and not hasattr(cr.Tensor, n)]
    assert not missing, f"chainrule.Tensor lacks methods {missing}"


def test_function_and_method_forms_give_the_same_values():
    x = cr.tensor(np.random.default_rng(1).uniform(0.5, 2, (3, 4)), dtype=cr.float64)
    for name in ["exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs", "neg", "sin", "cos"]:
        np.testing.assert_array_equal(getattr(cr, name)(x).data, getattr(x, name)().data)
    for name in ["sum", "mean", "var", "std", "amax", "amin", "logsumexp", "prod", "cumsum",
                 "softmax", "log_softmax", "argmax", "argmin"]:
        np.testing.assert_array_equal(getattr(cr, name)(x, 1).data, getattr(x, name)(1).data)


# ----------------------------------------------------------------------------- reductions


def test_max_and_min_with_dim_return_values_and_int64_indices():
    a = np.array([[1.0, 5.0, 5.0], [7.0, -2.0, 0.0]])
    x = cr.tensor(a)
    values, indices = x.max(1)
    r = x.min(dim=0, keepdim=True)
    np.testing.assert_array_equal(values.data, a.max(1).astype(np.float32))
    np.testing.assert_array_equal(indices.data, [1, 0])  # the first of tied maxima
    assert indices.dtype == cr.int64
    np.testing.assert_array_equal(r.values.data, a.min(0, keepdims=True).astype(np.float32))
    np.testing.assert_array_equal(r.indices.data, [[0, 1, 1]])


def test_max_with_dim_sends_gradient_to_the_returned_index_only():
    x = cr.tensor([[1.0, 5.0, 5.0]], dtype=cr.float64, requires_grad=True)
    x.max(1).values.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[0.0, 1.0, 0.0]])


def test_max_of_two_tensors_is_maximum():
    a, b = cr.tensor([1.0, 4.0]), cr.tensor([3.0, 2.0])
    np.testing.assert_array_equal(cr.max(a, b).data, [3.0, 4.0])


@pytest.mark.parametrize("p", ["fro", 1, 2, 3, float("inf")])
@pytest.mark.parametrize("dim", [None, 1, (0, 1)])
def test_norm_matches_numpy(p, dim):
    a = np.random.default_rng(2).standard_normal((3, 4))
    x = cr.tensor(a, dtype=cr.float64)
    q = 2 if p == "fro" else p
    flat = a.reshape(-1) if dim in (None, (0, 1)) else a
    expected = np.linalg.norm(flat, ord=q, axis=None if flat.ndim == 1 else dim)
    np.testing.assert_allclose(cr.norm(x, p, dim).data, expected, rtol=1e-12)
    np.testing.assert_allclose(x.norm(p, dim).data, expected, rtol=1e-12)


def test_two_norm_gradient_at_zero_is_zero_as_pytorch():
    x = cr.tensor(np.zeros((2, 3)), dtype=cr.float64, requires_grad=True)
    (x.norm() + x.norm(dim=1).sum()).backward()
    np.testing.assert_array_equal(x.grad.data, np.zeros((2, 3)))


def test_masked_fill_with_a_tensor_value_is_differentiable_in_the_value():
    x = cr.tensor(np.ones((2, 3)), dtype=cr.float64, requires_grad=True)
    v = cr.tensor(2.0, dtype=cr.float64, requires_grad=True)
    mask = cr.tensor([[True, False, True], [False, False, True]])
    y = x.masked_fill(mask, v)
    np.testing.assert_array_equal(y.data, [[2, 1, 2], [1, 1, 2]])
    (y * cr.tensor(np.arange(6.0).reshape(2, 3), dtype=cr.float64)).sum().backward()
    assert v.grad.item() == 0 + 2 + 5  # the weights where the mask is True
    np.testing.assert_array_equal(x.grad.data, [[0, 1, 0], [3, 4, 0]])


@pytest.mark.parametrize("correction", [0, 1, 2])
def test_std_matches_numpy_with_correction(correction):
    a = np.random.default_rng(3).standard_normal((4, 5))
    x = cr.tensor(a, dtype=cr.float64)
    np.testing.assert_allclose(x.std(1, correction=correction).data,
                               a.std(1, ddof=correction), rtol=1e-12)
    np.testing.assert_allclose(x.std(unbiased=False).data, a.std(), rtol=1e-12)


def test_integer_sum_is_int64_and_float_mean_of_integers_raises():
    x = cr.tensor([[1, 2], [3, 4]])
    assert x.sum().dtype == cr.int64 and x.sum().item() == 10
    with pytest.raises(TypeError, match="mean"):
        x.mean()


# ----------------------------------------------------------------------------- shapes


def test_split_and_chunk_sizes_match_pytorch():
    torch = pytest.importorskip("torch")
    a = np.arange(30.0).reshape(3, 10)
    x, xt = cr.tensor(a), torch.tensor(a, dtype=torch.float32)
    for args in [(3, 1), ([2, 5, 3], 1), (2, -2), (4, -1)]:
        ours, theirs = x.split(*args), xt.split(*args)
        assert len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            np.testing.assert_array_equal(o.data, t.numpy())
    for chunks in [1, 3, 4, 7]:
        ours, theirs = x.chunk(chunks, 1), xt.chunk(chunks, 1)
        assert [tuple(o.shape) for o in ours] == [tuple(t.shape) for t in theirs]


def test_split_gradient_reassembles_the_pieces():
    x = cr.tensor(np.zeros((2, 5)), dtype=cr.float64, requires_grad=True)
    parts = x.split([2, 3], dim=1)
    (parts[0] * 2.0).sum().backward(retain_graph=True)
    (parts[1] * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[2, 2, 3, 3, 3]] * 2)


def test_pad_pads_the_last_dim_first_as_pytorch():
    a = np.ones((2, 3))
    y = cr.pad(cr.tensor(a), (1, 2, 3, 0), value=7.0)
    expected = np.pad(a, [(3, 0), (1, 2)], constant_values=7.0)
    np.testing.assert_array_equal(y.data, expected)


def test_roll_without_dims_rolls_the_flattened_tensor():
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(cr.tensor(a).roll(1).data, np.roll(a, 1))


def test_repeated_integer_index_accumulates_in_the_gradient():
    x = cr.tensor(np.zeros(4), dtype=cr.float64, requires_grad=True)
    x[cr.tensor([1, 1, 3, 1])].sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0, 3, 0, 1])


def test_bool_mask_selects_like_numpy():
    a = np.arange(12.0).reshape(3, 4)
    x = cr.tensor(a)
    np.testing.assert_array_equal(x[x > 4.5].data, a[a > 4.5])


# ----------------------------------------------------------------------------- no gradient

A = np.array([[0.4, -1.6, 2.5], [2.5, 0.5, -0.5], [-2.5, 3.7, 0.0]])


@pytest.mark.parametrize("name, ref", [
    ("sign", np.sign), ("floor", np.floor), ("ceil", np.ceil), ("trunc", np.trunc),
    ("round", np.round),  # halves to even, as PyTorch
    ("isfinite", np.isfinite),
])
def test_non_differentiable_elementwise_ops_match_numpy(name, ref):
    y = getattr(cr.tensor(A, dtype=cr.float64), name)()
    expected = ref(A)
    assert y.dtype == expected.dtype
    np.testing.assert_array_equal(y.data, expected)


@pytest.mark.parametrize("name, ref", [
    ("lt", np.less), ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal),
    ("eq", np.equal), ("ne", np.not_equal),
])
def test_comparisons_give_bool_tensors_with_broadcasting(name, ref):
    b = np.array([0.4, 0.5, 0.0])
    y = getattr(cr.tensor(A), name)(cr.tensor(b))
    assert y.dtype == cr.bool
    np.testing.assert_array_equal(y.data, ref(A.astype(np.float32), b.astype(np.float32)))
    np.testing.assert_array_equal((cr.tensor(A) < 0.45).data, A < 0.45)


@pytest.mark.parametrize("dim, keepdim", [(None, False), (0, False), (-1, True)])
def test_argmax_and_argmin_match_numpy(dim, keepdim):
    x = cr.tensor(A)
    for name in ("argmax", "argmin"):
        y = getattr(x, name)(dim, keepdim)
        expected = getattr(np, name)(A, axis=dim, keepdims=keepdim if dim is not None else False)
        assert y.dtype == cr.int64
        np.testing.assert_array_equal(y.data, expected)


def test_rounding_and_comparisons_match_pytorch():
    torch = pytest.importorskip("torch")
    xt = torch.tensor(A)
    x = cr.tensor(A, dtype=cr.float64)
    for name in ["sign", "floor", "round", "ceil", "trunc"]:
        np.testing.assert_array_equal(getattr(x, name)().data, getattr(xt, name)().numpy())
    np.testing.assert_array_equal(x.argmax(1).data, xt.argmax(1).numpy())
    np.testing.assert_array_equal((x >= 0.5).data, (xt >= 0.5).numpy())


# ----------------------------------------------------------------------------- dtype promotion

PROMOTION = [
    # (left, right, result): PyTorch's rules; "f32[]" is a 0-d tensor
    ("i64", 1.5, "float32"), (1.5, "i64", "float32"), ("i64", 2, "int64"),
    ("b", 2, "int64"), ("b", 1.5, "float32"), ("f32", 2, "float32"), ("f32", 1.5, "float32"),
    ("f32", np.float64(1.5), "float32"), ("f32", "f64[]", "float32"), ("i64", "f32", "float32"),
    ("i64", "f64[]", "float64"), ("f32", "f64", "float64"), ("i64", "b", "int64"),
]


def _operand(spec):
    if not isinstance(spec, str):
        return spec
    dtype = {"i64": cr.int64, "f32": cr.float32, "f64": cr.float64, "b": cr.bool}[
        spec.rstrip("[]")]
    return cr.tensor(1 if spec.endswith("[]") else [1, 2], dtype=dtype)


@pytest.mark.parametrize("op, left, right, result", [
    (op, *p) for op in ["add", "mul", "maximum"] for p in PROMOTION
    if op != "maximum" or isinstance(p[0], str) and isinstance(p[1], str)  # two tensors
])
def test_binary_ops_promote_dtypes_as_pytorch(op, left, right, result):
    y = getattr(cr, op)(_operand(left), _operand(right))
    assert str(y.dtype) == result


def test_true_division_of_integers_gives_float32():
    assert (cr.tensor([3, 4]) / 2).dtype == cr.float32
    assert (cr.tensor([3, 4]) / cr.tensor([2, 2])).dtype == cr.float32
    np.testing.assert_array_equal((cr.tensor([3, 4]) / 2).data, [1.5, 2.0])


def test_math_functions_of_integer_tensors_give_float32():
    x = cr.tensor([1, 2, 3])
    for name in ["exp", "log", "sqrt", "tanh", "sigmoid", "sin"]:
        y = getattr(x, name)()
        assert y.dtype == cr.float32
        assert np.allclose(y.data, getattr(cr, name)(cr.tensor([1.0, 2.0, 3.0])).data)


def test_promotion_matches_pytorch_across_dtype_pairs():
    torch = pytest.importorskip("torch")
    names = {"i64": torch.int64, "f32": torch.float32, "f64": torch.float64, "b": torch.bool}
    scalars = [1.5, 2, True, np.float64(1.5), np.float32(1.5), np.int64(2)]

    def tt(spec):
        if not isinstance(spec, str):
            return spec
        return torch.tensor(1 if spec.endswith("[]") else [1, 2], dtype=names[spec.rstrip("[]")])

    specs = ["i64", "f32", "f64", "b", "i64[]", "f32[]", "f64[]", "b[]"]
    mismatches = []
    for op in ["add", "mul", "div", "maximum", "where"]:
        for left in specs:
            for right in specs + (scalars if op != "maximum" else []):
                if op == "where":
                    ours = cr.where(cr.tensor([True, False]), _operand(left), _operand(right))
                    theirs = torch.where(torch.tensor([True, False]), tt(left), tt(right))
                else:
                    ours = getattr(cr, op)(_operand(left), _operand(right))
                    theirs = getattr(torch, op)(tt(left), tt(right))
                if str(ours.dtype) != str(theirs.dtype).removeprefix("torch."):
                    mismatches.append((op, left, right, str(ours.dtype), str(theirs.dtype)))
    assert not mismatches, mismatches


# ----------------------------------------------------------------------------- compositions

B = np.random.default_rng(7).standard_normal((3, 5))

COMPOSITIONS = [  # (id, chainrule/torch call, NumPy reference)
    ("topk", lambda x: x.topk(2)[0], lambda a: -np.sort(-a, 1)[:, :2]),
    ("topk-smallest-dim0-indices", lambda x: x.topk(2, dim=0, largest=False)[1],
     lambda a: np.argsort(a, 0, kind="stable")[:2]),
    ("sort", lambda x: x.sort(1)[0], lambda a: np.sort(a, 1)),
    ("sort-descending-indices", lambda x: x.sort(0, descending=True)[1],
     lambda a: np.argsort(-a, 0, kind="stable")),
    ("repeat_interleave-dim", lambda x: x.repeat_interleave(2, dim=1),
     lambda a: np.repeat(a, 2, 1)),
    ("repeat_interleave-flat", lambda x: x.repeat_interleave(3), lambda a: np.repeat(a, 3)),
    ("narrow", lambda x: x.narrow(1, 1, 3), lambda a: a[:, 1:4]),
    ("select", lambda x: x.select(1, -1), lambda a: a[:, -1]),
    ("tile", lambda x: x.tile((2,)), lambda a: np.tile(a, (1, 2))),
    ("clamp_min", lambda x: x.clamp_min(0.1), lambda a: np.maximum(a, 0.1)),
    ("clamp_max", lambda x: x.clamp_max(0.1), lambda a: np.minimum(a, 0.1)),
    ("lerp", lambda x: x.lerp(x * 2, 0.25), lambda a: a + 0.25 * a),
    ("square", lambda x: x.square(), np.square),
    ("reciprocal", lambda x: x.reciprocal(), np.reciprocal),
    ("log2", lambda x: (x * x + 1).log2(), lambda a: np.log2(a * a + 1)),
    ("log10", lambda x: (x * x + 1).log10(), lambda a: np.log10(a * a + 1)),
    ("outer", lambda x: x[0].outer(x[1]), lambda a: np.outer(a[0], a[1])),
    ("unbind", lambda x: x.unbind(1)[3], lambda a: a[:, 3]),
    ("movedim", lambda x: x.unsqueeze(0).movedim(0, 2), lambda a: a[:, :, None]),
    ("unflatten", lambda x: x.reshape(15).unflatten(0, (5, 3)), lambda a: a.reshape(5, 3)),
]


@pytest.mark.parametrize("call, ref", [pytest.param(c, r, id=i) for i, c, r in COMPOSITIONS])
def test_composition_matches_numpy_and_pytorch(call, ref):
    y = call(cr.tensor(B, dtype=cr.float64))
    np.testing.assert_allclose(y.data, ref(B), rtol=1e-12)
    torch = pytest.importorskip("torch")
    yt = call(torch.tensor(B))
    assert str(y.dtype) == str(yt.dtype).removeprefix("torch.")
    np.testing.assert_allclose(y.data, yt.numpy(), rtol=1e-12)
