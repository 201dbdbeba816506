"""Memory: graphs are freed by reference counting alone (no cyclic garbage collector), so a long
training loop runs in flat memory."""

import gc
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

import chainrule as cr


@pytest.fixture
def no_cyclic_gc():
    was_enabled = gc.isenabled()
    # Collect until nothing is left: finalizers of earlier tests' garbage (matplotlib figures)
    # can release more cycles, which a single pass leaves for the test to find.
    while gc.collect():
        pass
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _mlp_problem(seed=0):
    """A 2-layer MLP (8-32-1, tanh) written with raw tensors, and a regression target."""
    rng = np.random.default_rng(seed)
    x = cr.tensor(rng.standard_normal((64, 8)), dtype=cr.float32)
    y = cr.tensor(np.sin(x._data.sum(1, keepdims=True)), dtype=cr.float32)
    w1 = cr.tensor(rng.standard_normal((8, 32)) / np.sqrt(8), dtype=cr.float32, requires_grad=True)
    b1 = cr.zeros(32, requires_grad=True)
    w2 = cr.tensor(rng.standard_normal((32, 1)) / np.sqrt(32), dtype=cr.float32,
                   requires_grad=True)
    b2 = cr.zeros(1, requires_grad=True)
    return x, y, [w1, b1, w2, b2]


def _step(x, y, params, lr=0.05):
    w1, b1, w2, b2 = params
    h = (x @ w1 + b1).tanh()
    pred = h @ w2 + b2
    loss = ((pred - y) ** 2).mean()
    loss.backward()
    with cr.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad = None
    return loss.item()


def _fill_tuple_free_lists():
    """CPython keeps up to 2000 freed tuples of each length 1-20 for reuse. A tuple built from
    a generator is allocated at one length and freed at another, so these lists grow by a block
    a step over the first few thousand steps, which looks like a leak: fill them first."""
    junk = [tuple(range(n)) for n in range(1, 21) for _ in range(2100)]
    del junk


def test_thousand_training_steps_run_in_flat_memory_without_cyclic_gc(no_cyclic_gc):
    x, y, params = _mlp_problem()
    _fill_tuple_free_lists()
    first = _step(x, y, params)
    tracemalloc.start()
    try:
        for step in range(2, 1001):
            if step in (91, 991):
                tracemalloc.reset_peak()  # the peak over steps 91-100, then over 991-1000
            last = _step(x, y, params)
            if step == 100:
                current_100, peak_100 = tracemalloc.get_traced_memory()
                blocks_100 = sys.getallocatedblocks()
        current_1000, peak_1000 = tracemalloc.get_traced_memory()
        blocks_1000 = sys.getallocatedblocks()
    finally:
        tracemalloc.stop()
    # One step's graph holds about 40 KB, so keeping one graph per step would add over 30 MB
    # by step 1000, and one small object a step 50 KB; the margin is a few stray allocations.
    assert peak_1000 <= peak_100 + 16 * 1024, (peak_100, peak_1000)
    assert current_1000 <= current_100 + 16 * 1024, (current_100, current_1000)
    # Python objects alive (tensors, ops, tuples): one left behind per step would add 900
    assert blocks_1000 - blocks_100 < 50, (blocks_100, blocks_1000)
    assert gc.collect() == 0  # nothing was left for the cyclic collector
    assert last < 0.5 * first  # and it trained


def test_plain_sgd_matches_numpy_reference_for_one_step():
    # the same step written with NumPy by hand: the engine computes exactly this gradient
    x, y, params = _mlp_problem(seed=1)
    w1, b1, w2, b2 = (p._data.astype(np.float64) for p in params)
    X, Y = x._data.astype(np.float64), y._data.astype(np.float64)
    h = np.tanh(X @ w1 + b1)
    r = h @ w2 + b2 - Y
    d_pred = 2 * r / r.size
    d_w2, d_b2 = h.T @ d_pred, d_pred.sum(0)
    d_pre = (d_pred @ w2.T) * (1 - h**2)
    d_w1, d_b1 = X.T @ d_pre, d_pre.sum(0)
    loss = _step(x, y, params, lr=0.1)
    np.testing.assert_allclose(loss, (r**2).mean(), rtol=1e-5)
    for p, p0, g in zip(params, (w1, b1, w2, b2), (d_w1, d_b1, d_w2, d_b2)):
        np.testing.assert_allclose(p._data, p0 - 0.1 * g, rtol=1e-4, atol=1e-6)


def test_op_is_freed_by_refcount_after_backward_and_del(no_cyclic_gc):
    x = cr.tensor(np.ones((3, 3)), requires_grad=True)
    h = x.tanh()
    y = (h * h).sum()
    op_refs = [weakref.ref(y.grad_fn), weakref.ref(h.grad_fn)]
    tensor_ref = weakref.ref(h)
    y.backward()
    del y, h
    assert all(r() is None for r in op_refs)
    assert tensor_ref() is None


def test_graph_without_backward_is_freed_by_refcount(no_cyclic_gc):
    x = cr.tensor(np.ones(4), requires_grad=True)
    y = x
    for _ in range(50):
        y = (y * 1.5).tanh()
    ref = weakref.ref(y.grad_fn)
    saved = weakref.ref(y)
    del y
    assert ref() is None and saved() is None


def test_saved_arrays_are_freed_after_backward_while_graph_is_alive():
    x = cr.tensor(np.ones((256, 256)), requires_grad=True)
    y = x.exp()
    loss = (y * y).sum()
    mul_op = loss.grad_fn.parents[0]
    assert len(mul_op.saved) == 2
    loss.backward()
    assert mul_op.saved is None and y.grad_fn.saved is None
