"""The backward pass: reverse topological order by dependency counts, accumulation, leaf
gradients, ``backward()`` and ``grad()``."""

from __future__ import annotations

from .grad_mode import _state, enable_grad
from .graph import count_consumers, topological_order
from .op import Op, _freed_error


def unbroadcast(g, shape):
    """Sum ``g`` over the dims that broadcasting added or stretched, giving ``shape``.

    Works on arrays and on Tensors (for create_graph), so it is the one place that undoes
    broadcasting in a gradient. The result is a new array (never a view of ``g``).
    """
    gshape = g.shape
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
        gshape = g.shape
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and gshape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    assert tuple(g.shape) == tuple(shape), (g.shape, shape)
    return g


def _engine(roots, root_grads, retain_graph, create_graph, capture=None):
    """Run the backward pass from ``roots`` (ops or leaf tensors) seeded with ``root_grads``.

    Ops run in reverse topological order (an op runs once every op that consumed its output
    has passed its gradient on), found with dependency counts: no recursion. Each op's
    gradient buffer is freed as soon as the op has run. Leaf gradients are summed over the
    whole pass first, so a leaf's hooks see its total gradient once, as in PyTorch; then they
    go to ``.grad`` or, with ``capture`` (this is ``grad()``), into ``capture``.

    A gradient array is added into in place only when the engine knows nobody else holds it
    (``owned``): a rule may pass its incoming gradient on unchanged, or a view of it.
    """
    if create_graph and not _state.grad_enabled:
        # as in PyTorch, create_graph records the backward pass even inside no_grad()
        with enable_grad():
            return _engine(roots, root_grads, retain_graph, create_graph, capture)
    deps = count_consumers(roots)  # ops and leaves -> how many consumers are still to run
    for op in (*roots, *deps):
        if isinstance(op, Op) and op.saved is None:
            raise _freed_error(op)

    # grad(): run only the ops on a path to an input, and ask each only for the input
    # gradients that lead there (as PyTorch does; grad(loss, x) computes no weight gradients)
    reach = None if capture is None else _reaching(roots, deps, capture)

    buffers: dict = {}  # op or leaf tensor -> gradient summed so far
    owned: set = set()  # keys whose buffer is an array only the engine holds

    for r, g in zip(roots, root_grads):  # the seeds belong to the caller: never add into them
        old = buffers.get(r)
        if old is None:
            buffers[r] = g
        else:
            buffers[r] = old + g
            if not create_graph:
                owned.add(r)
    ready = list(dict.fromkeys(r for r in roots if isinstance(r, Op) and r not in deps))
    while ready:
        op = ready.pop()
        g = buffers.pop(op, None)
        grads = None
        if g is not None:
            owned.discard(op)
            if op.hooks:
                for hook in op.hooks:
                    r = hook(g if create_graph else Tensor._wrap(g))
                    if r is not None:
                        g = r if create_graph else r._data
            if capture is not None and op in capture:
                capture[op] = g
            for vc, v, _ in op._vers:
                if vc[0] != v:
                    op._check_versions()
            if reach is not None:
                grads = _backward_toward(op, g, create_graph, reach, capture)
            elif create_graph:
                grads = _call_backward(op, g, True)
            elif (op.backward_into is not None and (p0 := op.parents[0]) in owned
                  and op.post_hooks is None  # a hook (anomaly mode) reads the gradients
                  and getattr(old := buffers[p0], "ndim", 0) and old.dtype == g.dtype):
                op.backward_into(g, old)
                grads = (None,)  # added already: nothing left to accumulate
            else:
                grads = op.backward(g)
                if type(grads) is not tuple:
                    grads = (grads,)
            if grads is not None and len(grads) != len(op.parents):
                raise RuntimeError(
                    f"{op.name}.backward returned {len(grads)} gradients for "
                    f"{len(op.parents)} inputs; return one per input (None where not needed)"
                )
            if op.post_hooks:
                for hook in op.post_hooks:
                    r = hook(grads, (g,))
                    if r is not None:
                        grads = tuple(r)
        shapes = op.shapes
        i = -1
        for p in op.parents:
            i += 1
            if p is None:
                continue
            if grads is not None:
                gi = grads[i]
                if gi is not None:
                    if gi.shape != shapes[i]:
                        gi = unbroadcast(gi, shapes[i])
                        fresh = True
                    elif create_graph or gi is g or gi.base is not None:
                        fresh = False  # g passed on, or a view of something
                    else:  # a new array, unless the rule gave the same one to two inputs
                        fresh = i == 0 or not any(gi is o for o in grads[:i])
                    # accumulate (inlined: this loop runs once per edge of the graph)
                    old = buffers.get(p)
                    if old is None:
                        buffers[p] = gi
                        if fresh:
                            owned.add(p)
                    elif create_graph:
                        buffers[p] = old + gi
                    elif p in owned and old.dtype == gi.dtype:
                        old += gi
                        buffers[p] = old  # a 0-d result can be a NumPy scalar, which += rebinds
                    else:
                        buffers[p] = old + gi
                        owned.add(p)
            if isinstance(p, Op):
                n = deps[p] - 1
                deps[p] = n
                if n == 0:
                    ready.append(p)
        if not retain_graph and op.saved:
            op.saved = None
    # what is left in buffers is the leaves' gradients
    for t, g in buffers.items():
        if capture is not None and t not in capture:
            continue
        _accumulate_leaf(t, g, capture, create_graph, t in owned)


def _reaching(roots, deps, capture):
    """The ops from which some key of ``capture`` (an op or a leaf) can be reached."""
    reach = set()
    for op in reversed(topological_order(roots, deps)):  # producers first: parents decided
        if isinstance(op, Op) and (op in capture or any(
                p in reach or (p is not None and p in capture) for p in op.parents)):
            reach.add(op)
    return reach


def _backward_toward(op, g, create_graph, reach, capture):
    """``op``'s input gradients, only those on a path to a captured key (None if none is)."""
    mask = tuple(p is not None and (p in reach or p in capture) for p in op.parents)
    if not any(mask):
        return None
    needs = op.needs
    op.needs = tuple(n and m for n, m in zip(needs, mask))
    try:
        grads = _call_backward(op, g, create_graph)
    finally:
        op.needs = needs
    return tuple(gi if m else None for gi, m in zip(grads, mask))


def _call_backward(op, g, create_graph):
    if not create_graph:
        grads = op.backward(g)
        return grads if type(grads) is tuple else (grads,)
    if hasattr(op, "composite"):
        return _composite_vjp(op, g)
    from ..ops import tensor_ns

    xp, saved = op.xp, op.saved
    op.xp, op.saved = tensor_ns, op._saved_tensors()
    try:
        grads = op.backward(g)
    finally:
        op.xp, op.saved = xp, saved
    return grads if isinstance(grads, tuple) else (grads,)


def _composite_vjp(op, g):
    """VJP of a fused op through its composition of primitives, recorded (create_graph)."""
    xs = op._saved_tensors()
    with enable_grad():
        leaves = [x if x.requires_grad else x.detach().requires_grad_() for x in xs]
        y = op.composite(*leaves)
        grads = grad([y], leaves, [g], create_graph=True, allow_unused=True)
    return tuple(grads)


def _accumulate_leaf(t, g, capture, create_graph, owned=False, run_hooks=True):
    """Give leaf ``t`` its gradient ``g`` for this pass: hooks first, then ``.grad`` (added in
    place when it exists, as PyTorch does) or ``capture``."""
    if run_hooks and t._hooks:
        for hook in t._hooks:
            r = hook(g if create_graph else Tensor._wrap(g))
            if r is not None:
                g = r if create_graph else r._data
                owned = False
    if capture is not None:
        if t in capture:
            capture[t] = g if capture[t] is None else capture[t] + g
        return
    if create_graph:
        if t.grad is not None:
            t.grad = t.grad + g
        else:  # a constant gradient may be shared (seed, add's (g, g)): .grad gets its own
            t.grad = g if g.requires_grad else Tensor._wrap(g._data.copy())
        if t._post_hooks:
            _run_post_hooks(t)
        return
    dtype = t._data.dtype
    if type(g) is not t._data.__class__:  # a NumPy scalar from a 0-d rule
        g = t.xp.asarray(g)
        owned = False
    if g.dtype != dtype:
        g = g.astype(dtype)
        owned = True
    old = t.grad
    if old is None:
        # the optimizer and clipping update .grad in place, so it must not alias anything else
        t.grad = Tensor._wrap(g if owned else g.copy())
    elif (old.requires_grad or old._data.shape != g.shape or old._data.dtype != dtype
          or not getattr(old._data.flags, "writeable", True)):
        t.grad = old + Tensor._wrap(g)
    else:
        old._data += g
    if t._post_hooks:  # register_post_accumulate_grad_hook: the gradient is ready
        _run_post_hooks(t)


def _run_post_hooks(t):
    for hook in list(t._post_hooks):
        r = hook(t)
        if r is not None:
            raise RuntimeError("a post accumulate grad hook must return None (it may change "
                               f"tensor.grad in place), got {type(r).__name__}")


def _as_grad_array(t, g, where: str):
    if g is None:
        if t._data.size != 1:
            raise ShapeError(
                f"{where}: grad can be implicitly created only for scalar outputs, but the output "
                f"has shape {tuple(t.shape)}; pass gradient= (a tensor of that shape)"
            )
        return t.xp.ones_like(t._data)
    g = g._data if isinstance(g, Tensor) else t.xp.asarray(g, dtype=t._data.dtype)
    if g.shape != t._data.shape:
        raise ShapeError(
            f"{where}: gradient has shape {tuple(g.shape)} but the output has shape "
            f"{tuple(t.shape)}; they must match"
        )
    return g


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate the gradient of ``tensors`` into the leaves' ``.grad`` (as in PyTorch)."""
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(tensors)
    if retain_graph is None:
        retain_graph = create_graph
    roots, seeds = [], []
    for t, g in zip(tensors, grad_tensors):
        if not t.requires_grad:
            raise RuntimeError(
                "backward: the tensor does not require grad and has no grad_fn; did you compute "
                "it under no_grad(), from detached tensors, or from integer tensors?"
            )
        g = _as_grad_array(t, g, "backward")
        roots.append(t.grad_fn if t.grad_fn is not None else t)
        seeds.append(Tensor._wrap(g) if create_graph else g)
    if inputs is not None:
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        res = grad(tensors, inputs, grad_tensors, retain_graph=retain_graph,
                   create_graph=create_graph, allow_unused=True)
        for t, gi in zip(inputs, res):
            if gi is not None:
                # grad() has run the hooks already
                _accumulate_leaf(t, gi if create_graph else gi._data, None, create_graph,
                                 run_hooks=False)
        return
    _engine(roots, seeds, retain_graph, create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False, materialize_grads=False):
    """The gradients of ``outputs`` with respect to ``inputs``, as torch.autograd.grad.

    Returns a tuple with one tensor per input (``None`` for an input the outputs do not depend
    on, when ``allow_unused``). Does not touch any ``.grad``. With ``create_graph=True`` the
    result is itself differentiable (Hessian-vector products, gradient penalties).
    """
    single_out = isinstance(outputs, Tensor)
    outputs = [outputs] if single_out else list(outputs)
    single_in = isinstance(inputs, Tensor)
    inputs = [inputs] if single_in else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs)
    if retain_graph is None:
        retain_graph = create_graph
    roots, seeds = [], []
    for t, g in zip(outputs, grad_outputs):
        if not t.requires_grad:
            raise RuntimeError("grad: an output does not require grad (no grad_fn)")
        go, g = g, _as_grad_array(t, g, "grad")
        roots.append(t.grad_fn if t.grad_fn is not None else t)
        if create_graph:  # a grad_output on the graph stays on it (as torch.autograd.grad)
            g = go if isinstance(go, Tensor) and go.requires_grad else Tensor._wrap(g)
        seeds.append(g)
    capture: dict = {}
    keys = []
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(f"grad: input {i} does not require grad")
        key = t.grad_fn if t.grad_fn is not None else t
        capture[key] = None
        keys.append(key)
    _engine(roots, seeds, retain_graph, create_graph, capture)
    result = []
    for i, (t, key) in enumerate(zip(inputs, keys)):
        g = capture[key]
        if g is None:
            if materialize_grads:
                result.append(Tensor._wrap(t.xp.zeros_like(t._data)))
                continue
            if not allow_unused:
                raise RuntimeError(
                    f"grad: input {i} (shape {tuple(t.shape)}) was not used to compute the "
                    "outputs; pass allow_unused=True to get None for it"
                )
            result.append(None)
        elif create_graph:
            result.append(g)
        else:  # a broadcast view is read-only: give the caller an array it can change
            g = t.xp.asarray(g)  # (a 0-d rule may give a NumPy scalar)
            writeable = getattr(g.flags, "writeable", True)
            result.append(Tensor._wrap(g if writeable else g.copy()))
    return tuple(result)


from ..tensor import ShapeError, Tensor  # noqa: E402  (Tensor and the engine refer to each other)
