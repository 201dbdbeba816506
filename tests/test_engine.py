"""The autograd engine: graph shapes, accumulation, retain_graph, hooks, grad modes, detach,
custom Functions, deep chains, the in-place version check, autograd.grad and its errors.

Every expected gradient is a closed form written here or a central finite difference.
"""

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import Function


def f64(values, requires_grad=True):
    return cr.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


def numgrad(fn, x, eps=1e-6):
    """Central differences of the scalar ``fn(array)`` at the array ``x``."""
    x = np.array(x, dtype=np.float64)
    out = np.zeros_like(x)
    for j in np.ndindex(*x.shape):
        hi, lo = x.copy(), x.copy()
        hi[j] += eps
        lo[j] -= eps
        out[j] = (fn(hi) - fn(lo)) / (2 * eps)
    return out


X0 = np.array([0.3, -1.2, 0.7, 2.0])


# ----------------------------------------------------------------------------- graph shapes


def test_diamond_graph_sums_both_paths():
    # y = (2x) * exp(x): the two branches meet again; dy/dx = 2 exp(x) (1 + x)
    x = f64(X0)
    a = x * 2.0
    b = x.exp()
    (a * b).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(X0) * (1 + X0), rtol=1e-12)


def test_nested_diamond_matches_finite_differences():
    def fwd(v):
        h = v.tanh()
        p, q = h * h, h.sin()
        r = p + q
        return (r * h - q).sum()

    x = f64(X0)
    fwd(x).backward()
    expected = numgrad(lambda a: fwd(cr.tensor(a, dtype=cr.float64)).item(), X0)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6, atol=1e-9)


def test_tensor_used_several_times_accumulates_every_use():
    # y = x*x + x + x*3  ->  dy/dx = 2x + 4
    x = f64(X0)
    (x * x + x + x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * X0 + 4, rtol=1e-12)


def test_same_tensor_as_both_operands_of_one_op():
    x = f64(X0)
    (x * x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * X0**2, rtol=1e-12)


@pytest.mark.parametrize("through_op", [False, True])
def test_pieces_of_one_tensor_add_their_gradients_into_one_buffer(through_op):
    """split, overlapping slices and repeated advanced indices: the engine adds the later
    pieces into the input's running sum (``backward_into``); the sum is the closed form."""
    x0 = np.arange(24.0).reshape(4, 6) / 7
    x = cr.tensor(x0, requires_grad=True)
    base = x * 1.0 if through_op else x  # an op's input, or a leaf
    a, b, c = base.split(2, dim=1)
    rows = base[[0, 2, 2, 3]]  # advanced, with a repeat
    loss = (a * 2).sum() + (b * c).sum() + (base[1:3, 1:5] ** 2).sum() + (rows * 5).sum()
    loss.backward()
    ref = np.zeros_like(x0)
    ref[:, 0:2] += 2
    ref[:, 2:4] += x0[:, 4:6]
    ref[:, 4:6] += x0[:, 2:4]
    ref[1:3, 1:5] += 2 * x0[1:3, 1:5]
    np.add.at(ref, [0, 2, 2, 3], 5.0)
    np.testing.assert_allclose(x.grad.data, ref, rtol=1e-12)
    with cr.autograd.detect_anomaly():  # the wrapped backward of anomaly mode: same sums
        x.grad = None
        base = x * 1.0 if through_op else x
        a, b, c = base.split(2, dim=1)
        ((a * 2).sum() + (b * c).sum() + (base[1:3, 1:5] ** 2).sum()
         + (base[[0, 2, 2, 3]] * 5).sum()).backward()
    np.testing.assert_allclose(x.grad.data, ref, rtol=1e-12)


def test_broadcast_gradient_is_summed_back_to_each_input_shape():
    a = f64(np.arange(3.0).reshape(3, 1))
    b = f64(np.array([1.0, -2.0, 0.5, 4.0]))
    (a * b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.full((3, 1), b.data.sum()), rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), np.full(4, a.data.sum()), rtol=1e-12)


def test_gradient_flows_only_to_tensors_that_require_it():
    x = f64(X0)
    c = f64(X0 + 1, requires_grad=False)
    (x * c).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), X0 + 1, rtol=1e-12)
    assert c.grad is None


def test_leaf_grad_keeps_the_leaf_dtype():
    x = cr.tensor(np.ones(3, np.float32), requires_grad=True)
    (x * cr.tensor(np.ones(3, np.float64))).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), np.ones(3))


def test_leaf_grad_does_not_alias_a_user_supplied_gradient():
    x = f64(X0)
    seed = np.array([1.0, 2.0, 3.0, 4.0])
    (x + 0.0).backward(cr.tensor(seed, dtype=cr.float64))
    x.grad.data *= 10  # an optimizer updates .grad in place
    np.testing.assert_allclose(seed, [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(x.grad.numpy(), 10 * seed)


# ----------------------------------------------------------------------------- accumulation


def test_grad_accumulates_across_backward_calls_as_in_pytorch():
    x = f64(X0)
    (x**2).sum().backward()
    (x**3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * X0 + 3 * X0**2, rtol=1e-12)


def test_setting_grad_to_none_restarts_accumulation():
    x = f64(X0)
    (x**2).sum().backward()
    x.grad = None
    (x * 5.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(4, 5.0))


def test_retain_graph_allows_a_second_backward_that_accumulates():
    x = f64(X0)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(X0) * (1 + X0), rtol=1e-12)


def test_second_backward_through_freed_graph_raises_naming_the_op():
    x = f64(X0)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"(?s)second time.*retain_graph=True"):
        y.backward()


def test_saved_values_are_released_after_backward_and_kept_with_retain_graph():
    x = f64(X0)
    y = x * x
    y.sum().backward(retain_graph=True)
    assert y.grad_fn.saved is not None and len(y.grad_fn.saved) == 2
    y.sum().backward()
    assert y.grad_fn.saved is None


# ----------------------------------------------------------------------------- hooks


def test_leaf_hook_reads_the_gradient():
    x = f64(X0)
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    (x * x).sum().backward()
    np.testing.assert_allclose(seen[0], 2 * X0, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), 2 * X0, rtol=1e-12)


def test_leaf_hook_return_value_replaces_the_gradient():
    x = f64(X0)
    x.register_hook(lambda g: g * 3.0)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * X0, rtol=1e-12)


def test_non_leaf_hook_sees_full_gradient_and_replacement_flows_upstream():
    # y = 3x;  z = sum(y^2) + sum(y): dz/dy = 2y + 1 (both uses summed before the hook)
    x = f64(X0)
    y = x * 3.0
    seen = []

    def hook(g):
        seen.append(g.numpy().copy())
        return g * 10.0

    y.register_hook(hook)
    ((y * y).sum() + y.sum()).backward()
    np.testing.assert_allclose(seen[0], 2 * 3 * X0 + 1, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), 10 * 3 * (2 * 3 * X0 + 1), rtol=1e-12)
    assert len(seen) == 1


def test_hook_handle_remove_stops_the_hook():
    x = f64(X0)
    calls = []
    handle = x.register_hook(lambda g: calls.append(1) or g * 0.0)
    (x * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.zeros(4))
    handle.remove()
    (x * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(4, 2.0))
    assert len(calls) == 1


def test_retain_grad_keeps_a_non_leaf_gradient_and_leaves_others_none():
    x = f64(X0)
    y = x.tanh()
    z = y * 2.0
    y.retain_grad()
    (z * z).sum().backward()
    t = np.tanh(X0)
    np.testing.assert_allclose(y.grad.numpy(), 8 * t, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), 8 * t * (1 - t**2), rtol=1e-12)
    assert z.grad is None


def test_retain_grad_accumulates_over_calls_once_and_after_later_hooks():
    x = f64(X0)
    y = x * 3.0
    y.retain_grad()
    y.retain_grad()  # a second call changes nothing
    y.register_hook(lambda g: g * 2.0)  # registered after, still runs before retain_grad
    z = (y * y).sum()
    z.backward(retain_graph=True)
    np.testing.assert_allclose(y.grad.numpy(), 2 * (2 * 3 * X0), rtol=1e-12)
    z.backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * 2 * (2 * 3 * X0), rtol=1e-12)
    assert y.retains_grad and not x.retains_grad


def test_register_hook_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="register_hook"):
        f64(X0, requires_grad=False).register_hook(lambda g: g)


# ----------------------------------------------------------------------------- grad modes


def test_no_grad_block_records_nothing():
    x = f64(X0)
    with cr.no_grad():
        y = x * x + 1.0
    assert y.grad_fn is None and not y.requires_grad
    assert cr.is_grad_enabled()
    np.testing.assert_allclose(y.numpy(), X0**2 + 1)


def test_no_grad_as_decorator_with_and_without_parentheses():
    x = f64(X0)

    @cr.no_grad()
    def f(v):
        return v * 2.0

    @cr.no_grad
    def g(v):
        return v * 3.0

    for fn, k in ((f, 2.0), (g, 3.0)):
        y = fn(x)
        assert y.grad_fn is None and not y.requires_grad
        np.testing.assert_allclose(y.numpy(), k * X0)
    assert cr.is_grad_enabled()


def test_enable_grad_inside_no_grad_records_again():
    x = f64(X0)
    with cr.no_grad():
        with cr.enable_grad():
            y = x * x
        z = x * x
    assert y.requires_grad and z.grad_fn is None
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * X0)


def test_set_grad_enabled_as_call_block_and_decorator():
    x = f64(X0)
    with cr.set_grad_enabled(False):
        assert (x * 2.0).grad_fn is None
    assert cr.is_grad_enabled()
    cr.set_grad_enabled(False)
    try:
        assert not cr.is_grad_enabled() and (x * 2.0).grad_fn is None
    finally:
        cr.set_grad_enabled(True)

    @cr.set_grad_enabled(False)
    def f(v):
        return v * 2.0

    assert cr.is_grad_enabled()
    assert f(x).grad_fn is None
    assert (x * 2.0).grad_fn is not None


def test_grad_mode_restored_after_exception_in_block():
    with pytest.raises(ValueError, match="boom"):
        with cr.no_grad():
            raise ValueError("boom")
    assert cr.is_grad_enabled()


def test_detach_shares_data_and_has_no_grad():
    x = f64(X0)
    y = x * 2.0
    d = y.detach()
    assert d.grad_fn is None and not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.data, y.data)
    d.add_(1.0)  # visible through y, as in PyTorch
    np.testing.assert_allclose(y.data, 2 * X0 + 1)


# ----------------------------------------------------------------------------- custom Function


class Cube(Function):
    @staticmethod
    def forward(ctx, x, scale=1.0):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x * x * x * scale

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3.0 * ctx.scale * x * x


def test_custom_function_forward_and_backward():
    x = f64(X0)
    y = Cube.apply(x, scale=2.0)
    np.testing.assert_allclose(y.data, 2 * X0**3, rtol=1e-12)
    (y * f64(np.arange(4.0), False)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * X0**2 * np.arange(4.0), rtol=1e-12)


def test_custom_function_second_derivative_with_create_graph():
    x = f64(X0)
    (g,) = cr.autograd.grad(Cube.apply(x).sum(), x, create_graph=True)
    np.testing.assert_allclose(g.data, 3 * X0**2, rtol=1e-12)
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * X0, rtol=1e-12)


def test_custom_function_needs_input_grad_and_constant_inputs():
    class Scale(Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            assert ctx.needs_input_grad == (True, False)
            return g * b, None

    a, b = f64(X0), f64(X0 + 2, requires_grad=False)
    Scale.apply(a, b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), X0 + 2)
    assert b.grad is None


def test_custom_function_wrong_number_of_gradients_raises():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2.0

        @staticmethod
        def backward(ctx, g):
            return g, g

    with pytest.raises(RuntimeError, match="Bad.backward returned 2 gradients"):
        Bad.apply(f64(X0)).sum().backward()


# ----------------------------------------------------------------------------- deep graphs


def test_chain_of_100000_ops_backward_without_recursion():
    n = 100_000
    c = 1.0 + 1.0 / n
    x = f64([1.5])
    y = x
    for _ in range(n):
        y = y * c
    y.backward()
    # d/dx (x c^n) = c^n
    np.testing.assert_allclose(x.grad.numpy(), [c**n], rtol=1e-9)
    del y  # freeing the chain must not recurse either


# ----------------------------------------------------------------------------- versions


def test_in_place_change_of_saved_input_raises_naming_the_op():
    a = f64(X0)
    b = f64(X0 + 1, requires_grad=False)
    y = (a * b).sum()
    b.add_(1.0)
    with pytest.raises(RuntimeError, match=r"Mul\.backward: input 1 was modified in place"):
        y.backward()


def test_copy_into_saved_leaf_under_no_grad_raises():
    w = f64(X0)
    y = (w.sin()).sum()
    with cr.no_grad():
        w.copy_(cr.tensor(np.zeros(4)))
    with pytest.raises(RuntimeError, match=r"Sin\.backward: input 0 was modified in place"):
        y.backward()


def test_in_place_change_of_saved_output_raises():
    x = f64(X0)
    y = x.exp()  # exp saves its output
    z = y.sum()
    with cr.no_grad():
        y.mul_(2.0)
    with pytest.raises(RuntimeError, match=r"Exp\.backward: .*output was modified in place"):
        z.backward()


def test_in_place_change_through_detached_alias_is_detected():
    x = f64(X0)
    y = x * x
    with cr.no_grad():
        x.detach().add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()


def test_in_place_change_of_unsaved_input_is_allowed():
    # add saves nothing, so changing its input afterwards does not affect its gradient
    a = f64(X0)
    b = f64(X0, requires_grad=False)
    y = (a + b).sum()
    b.add_(1.0)
    y.backward()
    np.testing.assert_allclose(a.grad.numpy(), np.ones(4))


def test_in_place_op_on_leaf_requiring_grad_raises_outside_no_grad():
    w = f64(X0)
    with pytest.raises(RuntimeError, match="add_: in-place change of a leaf"):
        w.add_(1.0)


def test_augmented_assignment_on_leaf_under_no_grad_updates_in_place():
    w = f64(X0)
    before = w
    with cr.no_grad():
        w -= 0.5
        w *= 2.0
    assert w is before and w.requires_grad and w.is_leaf
    np.testing.assert_allclose(w.data, (X0 - 0.5) * 2)


# ----------------------------------------------------------------------------- autograd.grad


def test_grad_returns_gradients_without_touching_dot_grad():
    x, w = f64(X0), f64([0.5, 0.1, -0.3, 2.0])
    gx, gw = cr.autograd.grad((x * w).sum(), [x, w])
    np.testing.assert_allclose(gx.numpy(), w.data)
    np.testing.assert_allclose(gw.numpy(), x.data)
    assert x.grad is None and w.grad is None


def test_grad_allow_unused_gives_none_and_raises_otherwise():
    x, u = f64(X0), f64(X0)
    with pytest.raises(RuntimeError, match=r"input 1 .*allow_unused=True"):
        cr.autograd.grad((x * x).sum(), [x, u])
    gx, gu = cr.autograd.grad((x * x).sum(), [x, u], allow_unused=True)
    np.testing.assert_allclose(gx.numpy(), 2 * X0)
    assert gu is None


def test_grad_with_grad_outputs_is_vector_jacobian_product():
    x = f64(X0)
    v = np.array([1.0, -1.0, 2.0, 0.5])
    (g,) = cr.autograd.grad(x.sin() * x, x, grad_outputs=cr.tensor(v, dtype=cr.float64))
    np.testing.assert_allclose(g.numpy(), v * (np.cos(X0) * X0 + np.sin(X0)), rtol=1e-12)


def test_grad_with_respect_to_intermediate_tensor():
    x = f64(X0)
    h = x * 2.0
    (gh,) = cr.autograd.grad((h * h).sum(), h)
    np.testing.assert_allclose(gh.numpy(), 4 * X0)


def test_hessian_vector_product_with_create_graph_matches_closed_form():
    # f = sum(sin x) * sum(x^2); H_ij = d_ij(2S - sin(x_i) Q) + 2 cos(x_i) x_j + 2 x_i cos(x_j)
    x = f64(X0)
    v = np.array([0.2, -0.7, 1.1, 0.4])
    f = x.sin().sum() * (x * x).sum()
    (g,) = cr.autograd.grad(f, x, create_graph=True)
    S, Q = np.sin(X0).sum(), (X0**2).sum()
    np.testing.assert_allclose(g.data, np.cos(X0) * Q + 2 * S * X0, rtol=1e-12)
    (hv,) = cr.autograd.grad(g, x, grad_outputs=cr.tensor(v, dtype=cr.float64))
    H = (np.diag(2 * S - np.sin(X0) * Q) + 2 * np.outer(np.cos(X0), X0)
         + 2 * np.outer(X0, np.cos(X0)))
    np.testing.assert_allclose(hv.numpy(), H @ v, rtol=1e-10)


def test_gradient_penalty_backward_through_grad():
    # f = sum(w * x^3); penalty P = sum((df/dx)^2) = sum(9 w^2 x^4)
    x, w = f64(X0), f64([0.5, -1.0, 2.0, 0.3])
    (gx,) = cr.autograd.grad((w * x**3).sum(), x, create_graph=True)
    assert x.grad is None
    (gx * gx).sum().backward()
    W = w.data
    np.testing.assert_allclose(x.grad.numpy(), 36 * W**2 * X0**3, rtol=1e-10)
    np.testing.assert_allclose(w.grad.numpy(), 18 * W * X0**4, rtol=1e-10)


def test_create_graph_records_the_backward_even_under_no_grad():
    x = f64(X0)
    y = (x**3).sum()
    with cr.no_grad():
        (g,) = cr.autograd.grad(y, x, create_graph=True)
    assert g.requires_grad
    (h,) = cr.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(h.numpy(), 6 * X0, rtol=1e-12)


def test_first_order_backward_works_under_no_grad():
    x = f64(X0)
    y = (x * x).sum()
    with cr.no_grad():
        y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * X0)


def test_backward_with_create_graph_leaves_differentiable_grad():
    x = f64(X0)
    (x**3).sum().backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    (g2,) = cr.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(g2.numpy(), 6 * X0, rtol=1e-12)


def test_create_graph_grads_of_two_leaves_are_separate_tensors():
    # add passes one gradient to both inputs; a later first-order backward adds into each .grad
    a, b = f64([1.0, 2.0]), f64([3.0, 4.0])
    (a + b).sum().backward(create_graph=True)
    assert a.grad is not b.grad
    (a * b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [1 + 3, 1 + 4])
    np.testing.assert_allclose(b.grad.numpy(), [1 + 1, 1 + 2])


def test_backward_inputs_restricts_accumulation_and_runs_hooks_once():
    x, w = f64(X0), f64(X0 + 1)
    calls = []
    w.register_hook(lambda g: calls.append(1) or g * 2.0)
    (x * w).sum().backward(inputs=[w])
    np.testing.assert_allclose(w.grad.numpy(), 2 * X0)
    assert x.grad is None and len(calls) == 1


# ----------------------------------------------------------------------------- errors


def test_backward_on_non_scalar_without_gradient_raises():
    y = f64(X0) * 2.0
    with pytest.raises(ValueError, match=r"backward: .*scalar outputs.*shape \(4,\)"):
        y.backward()


def test_backward_gradient_of_wrong_shape_raises():
    y = f64(X0) * 2.0
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\).*\(4,\)"):
        y.backward(cr.tensor(np.ones(3)))


def test_requires_grad_on_integer_tensor_raises():
    with pytest.raises(TypeError, match="floating-point.*int64"):
        cr.tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        cr.arange(3).requires_grad_()


def test_backward_of_tensor_without_grad_raises():
    y = f64(X0, requires_grad=False) * 2.0
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_grad_of_input_that_does_not_require_grad_raises():
    x, c = f64(X0), f64(X0, requires_grad=False)
    with pytest.raises(RuntimeError, match="grad: input 1 does not require grad"):
        cr.autograd.grad((x * c).sum(), [x, c])


# ----------------------------------------------------------------------------- random graphs


def _random_graph(lib, leaves, seed, n_nodes=25):
    """A random DAG over ``leaves``: every node picks earlier nodes (so values are reused and
    paths meet), and every node feeds the loss."""
    rng = np.random.default_rng(seed)
    nodes = list(leaves)
    for _ in range(n_nodes):
        a, b = (nodes[k] for k in rng.integers(0, len(nodes), 2))
        kind = rng.integers(0, 6)
        if kind == 0:
            v = a + b
        elif kind == 1:
            v = a * b
        elif kind == 2:
            v = a - 0.5 * b
        elif kind == 3:
            v = lib.tanh(a)
        elif kind == 4:
            v = a * lib.sigmoid(b)
        else:
            v = a / (1.0 + b * b)
        nodes.append(v)
    return sum((n * (k + 1)).sum() for k, n in enumerate(nodes[len(leaves):]))


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_match_pytorch_gradients(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(100 + seed)
    values = [rng.standard_normal((3, 4)) * 0.5, rng.standard_normal((4,)) * 0.5,
              rng.standard_normal((3, 1)) * 0.5]
    ours = [f64(v) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    _random_graph(cr, ours, seed).backward()
    _random_graph(torch, theirs, seed).backward()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_random_graphs_second_order_matches_pytorch(seed):
    # gradient penalty through a random graph: d/dx sum_i |dL/dx_i|^2
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(200 + seed)
    values = [rng.standard_normal((3, 4)) * 0.5, rng.standard_normal((4,)) * 0.5]
    ours = [f64(v) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    g_ours = cr.autograd.grad(_random_graph(cr, ours, seed, 12), ours, create_graph=True)
    g_theirs = torch.autograd.grad(_random_graph(torch, theirs, seed, 12), theirs,
                                   create_graph=True)
    sum((g * g).sum() for g in g_ours).backward()
    sum((g * g).sum() for g in g_theirs).backward()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_in_place_change_through_a_view_is_detected():
    x = f64(np.arange(1.0, 7.0).reshape(2, 3))
    y = x.exp()  # saves its output
    loss = y.sum()
    with cr.no_grad():
        y[0].mul_(2.0)  # a view of y's memory
    with pytest.raises(RuntimeError, match=r"Exp\.backward: its output was modified in place"):
        loss.backward()


def test_in_place_change_of_a_recorded_view_of_a_saved_input_is_detected():
    w = f64(X0)
    c = f64(X0 + 1, requires_grad=False)
    y = (w * c).sum()  # saves c
    v = c.reshape(2, 2)  # a view of c
    v.add_(1.0)
    with pytest.raises(RuntimeError, match=r"Mul\.backward: input 1 was modified in place"):
        y.backward()


def test_op_whose_backward_returns_too_few_gradients_raises_naming_it():
    from chainrule.autograd import Op

    class Twice(Op):
        def forward(self, a, b):
            return 2 * a + b

        def backward(self, g):
            return (2 * g,)  # forgot b's gradient

    with pytest.raises(RuntimeError, match=r"Twice\.backward returned 1 gradients for 2 inputs"):
        Twice.apply(f64(X0), f64(X0)).sum().backward()


def test_grad_runs_only_the_ops_that_lead_to_its_inputs():
    # d loss / dx for loss = sum(f(x @ W) + h(u)): W's gradient and h's backward are not needed
    calls = []

    class Spy(Function):
        @staticmethod
        def forward(ctx, a, tag=""):
            ctx.tag = tag
            return a * 1.0

        @staticmethod
        def backward(ctx, g):
            calls.append((ctx.tag, ctx.needs_input_grad))
            return g

    class SpyMatmul(Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a @ b

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            calls.append(("matmul", ctx.needs_input_grad))
            return (g @ b.T if ctx.needs_input_grad[0] else None,
                    a.T @ g if ctx.needs_input_grad[1] else None)

    x = f64(np.ones((2, 3)))
    W = f64(np.arange(6.0).reshape(3, 2))
    u = f64(X0)
    loss = Spy.apply(SpyMatmul.apply(x, W), tag="f").tanh().sum() + Spy.apply(u, tag="h").sum()
    (gx,) = cr.autograd.grad(loss, x, retain_graph=True)
    y = np.ones((2, 3)) @ W.data
    # (1 - tanh^2 cancels where tanh is near 1: an ulp of tanh is ~1e-16 absolute there)
    np.testing.assert_allclose(gx.numpy(), (1 - np.tanh(y) ** 2) @ W.data.T, rtol=1e-12,
                               atol=1e-14)
    assert calls == [("f", (True,)), ("matmul", (True, False))]
    # a full backward still computes everything
    calls.clear()
    loss.backward()
    assert sorted(calls) == [("f", (True,)), ("h", (True,)), ("matmul", (True, True))]
    np.testing.assert_allclose(W.grad.numpy(), x.data.T @ (1 - np.tanh(y) ** 2), rtol=1e-12,
                               atol=1e-14)


def test_grad_results_are_writable_arrays():
    x = f64(X0)
    (g,) = cr.autograd.grad(x.sum(), x)  # sum's gradient is a broadcast view of one number
    g.data += 1.0
    np.testing.assert_allclose(g.numpy(), np.full(4, 2.0))


def test_grad_mode_is_per_thread():
    import threading

    x = f64(X0)
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def other():
        with cr.no_grad():
            inside.set()
            release.wait(5)
            seen["other"] = (x * 2.0).requires_grad

    t = threading.Thread(target=other)
    t.start()
    inside.wait(5)
    y = x * 2.0  # recorded here while the other thread is inside no_grad()
    release.set()
    t.join()
    assert y.requires_grad and seen["other"] is False
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(4, 2.0))
