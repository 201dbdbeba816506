"""chainrule's engine equals the reference engine (tests/reference_engine.py) on random graphs:
same values, same gradients, same accumulation across backward calls, and grad() agrees with
backward()."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import chainrule as cr

sys.path.insert(0, os.path.dirname(__file__))
from reference_engine import Value  # noqa: E402

UNARY = ["tanh", "exp", "sigmoid", "relu"]
BINARY = ["+", "*", "-", "/"]


def _random_program(rng, n_leaves, n_ops):
    """A random straight-line program over leaves of mixed shapes: a list of
    (kind, args...) steps, each reading any earlier value (so values are reused: a DAG, not a
    tree)."""
    shapes = [(3, 4), (1, 4), (4,), (3, 1), ()]
    leaf_shapes = [shapes[rng.integers(len(shapes))] for _ in range(n_leaves)]
    leaf_shapes[0] = (3, 4)  # one full-size leaf, so every broadcast has something to reach
    steps = []
    n = n_leaves
    for _ in range(n_ops):
        kind = rng.choice(["u", "b", "b", "m", "s"])
        a = int(rng.integers(n))
        if kind == "u":
            steps.append(("u", UNARY[rng.integers(len(UNARY))], a))
        elif kind == "b":
            steps.append(("b", BINARY[rng.integers(len(BINARY))], a, int(rng.integers(n))))
        elif kind == "m":  # (3, 4) @ (4, 4) weight: a matmul on a full-size value
            steps.append(("m", a))
        else:
            steps.append(("s", a, int(rng.integers(2))))  # sum over one axis, keepdim
        n += 1
    return leaf_shapes, steps


def _run(values, steps, ops):
    vals = list(values)
    for st in steps:
        if st[0] == "u":
            vals.append(ops["unary"](st[1], vals[st[2]]))
        elif st[0] == "b":
            vals.append(ops["binary"](st[1], vals[st[2]], vals[st[3]]))
        elif st[0] == "m":
            vals.append(ops["matmul"](vals[st[1]]))
        else:
            vals.append(ops["sum"](vals[st[1]], st[2]))
    return vals


def _reference_ops(weight):
    def binary(op, a, b):
        if op == "/":
            b = b * b + Value(1.0)  # a denominator away from zero
        return {"+": lambda: a + b, "*": lambda: a * b, "-": lambda: a - b,
                "/": lambda: a / b}[op]()

    def matmul(a):
        return (a + Value(np.zeros((3, 4)))) @ weight

    def sum_(a, axis):
        return a.sum(axis=-1, keepdims=True) if a.data.ndim and axis else a * Value(0.5)

    return {"unary": lambda name, a: getattr(a, name)(), "binary": binary, "matmul": matmul,
            "sum": sum_}


def _chainrule_ops(weight):
    def binary(op, a, b):
        if op == "/":
            b = b * b + 1.0
        return {"+": lambda: a + b, "*": lambda: a * b, "-": lambda: a - b,
                "/": lambda: a / b}[op]()

    def matmul(a):
        return (a + cr.zeros(3, 4, dtype=cr.float64)) @ weight

    def sum_(a, axis):
        return a.sum(dim=-1, keepdim=True) if a.ndim and axis else a * 0.5

    return {"unary": lambda name, a: getattr(a, name)(), "binary": binary, "matmul": matmul,
            "sum": sum_}


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_give_the_reference_engines_values_and_gradients(seed):
    rng = np.random.default_rng(seed)
    leaf_shapes, steps = _random_program(rng, n_leaves=int(rng.integers(2, 5)),
                                         n_ops=int(rng.integers(3, 16)))
    arrays = [rng.uniform(-1.5, 1.5, s) for s in leaf_shapes]
    w = rng.normal(size=(4, 4))

    ref_leaves = [Value(a) for a in arrays]
    ref_w = Value(w)
    ref_vals = _run(ref_leaves, steps, _reference_ops(ref_w))
    ref_loss = ref_vals[-1].mean() + ref_vals[len(ref_leaves)].mean()
    ref_loss.backward()

    leaves = [cr.tensor(a, dtype=cr.float64, requires_grad=True) for a in arrays]
    tw = cr.tensor(w, dtype=cr.float64, requires_grad=True)
    vals = _run(leaves, steps, _chainrule_ops(tw))
    loss = vals[-1].mean() + vals[len(leaves)].mean()
    loss.backward()

    np.testing.assert_allclose(loss.item(), ref_loss.data, rtol=1e-12, atol=1e-12)
    for i, (t, r) in enumerate(zip(leaves + [tw], ref_leaves + [ref_w])):
        g = np.zeros_like(r.data) if t.grad is None else t.grad.numpy()
        np.testing.assert_allclose(g, r.grad, rtol=1e-10, atol=1e-12,
                                   err_msg=f"seed {seed}, leaf {i}, program {steps}")

    # a second backward through a fresh graph accumulates into .grad, in both engines
    vals2 = _run(leaves, steps, _chainrule_ops(tw))
    (vals2[-1].mean() + vals2[len(leaves)].mean()).backward()
    ref_vals2 = _run(ref_leaves, steps, _reference_ops(ref_w))
    (ref_vals2[-1].mean() + ref_vals2[len(ref_leaves)].mean()).backward()
    for t, r in zip(leaves + [tw], ref_leaves + [ref_w]):
        g = np.zeros_like(r.data) if t.grad is None else t.grad.numpy()
        np.testing.assert_allclose(g, r.grad, rtol=1e-10, atol=1e-12)

    # grad() gives the same numbers as one backward, and leaves .grad alone
    vals3 = _run(leaves, steps, _chainrule_ops(tw))
    loss3 = vals3[-1].mean() + vals3[len(leaves)].mean()
    before = [None if t.grad is None else t.grad.numpy().copy() for t in leaves]
    got = cr.grad(loss3, leaves + [tw], allow_unused=True, materialize_grads=True)
    for t, g, r, b in zip(leaves, got, ref_leaves, before):
        np.testing.assert_allclose(g.numpy(), r.grad / 2, rtol=1e-10, atol=1e-12)
        assert (t.grad is None) == (b is None) and (b is None or np.array_equal(t.grad.numpy(), b))


def test_the_reference_engine_itself_matches_finite_differences():
    # the reference is only a reference if it is right: check it on one program by central
    # differences
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(3, 4))
    w0 = rng.normal(size=(4, 4))

    def f(x, w):
        X, W = Value(x), Value(w)
        y = ((X @ W).tanh() * X + X.sigmoid() / (X * X + Value(1.0))).sum(axis=0).exp().mean()
        return y, X, W

    y, X, W = f(x0, w0)
    y.backward()
    eps = 1e-6
    for arr, grad, which in ((x0, X.grad, 0), (w0, W.grad, 1)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            a_plus, a_minus = arr.copy(), arr.copy()
            a_plus[idx] += eps
            a_minus[idx] -= eps
            args_p = (a_plus, w0) if which == 0 else (x0, a_plus)
            args_m = (a_minus, w0) if which == 0 else (x0, a_minus)
            num[idx] = (f(*args_p)[0].data - f(*args_m)[0].data) / (2 * eps)
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)
