"""The engine: grad modes, the op base class, and the reverse-mode backward pass.

Every differentiable op is an :class:`Op` subclass with ``forward`` (raw arrays in, one array
out) and ``backward`` (the vector-Jacobian product: the gradient ``g`` of the op's output in,
one gradient per input out). Calling ``Op.apply`` runs the forward and, when some input needs a
gradient and grad mode is on, records the op instance as the output's ``grad_fn``.

The graph holds no reference cycles: an op points at its parents (the ``grad_fn`` of each input,
or the input tensor itself when it is a leaf) and never at its own output, so every tensor and
saved array is freed by reference counting alone.

Higher-order gradients: a ``backward`` rule is written against ``self.xp`` and ``self.saved``.
On the first-order path these are the array module and raw arrays; with
``create_graph=True`` the engine hands the rule the Tensor namespace and Tensors instead, so the
very same rule is recorded as a differentiable computation.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from . import backend


class _ThreadState(threading.local):
    """Grad mode, per thread as in PyTorch (a no_grad() block in one thread does not stop
    another thread's recording)."""

    def __init__(self):
        self.grad_enabled = True


_state = _ThreadState()
_anomaly_hooks: list = []  # callables (op, out_array, in_arrays) run after every forward
_new = object.__new__
_ndarray = np.ndarray


def is_grad_enabled() -> bool:
    return _state.grad_enabled


class _GradMode:
    """Context manager and decorator that sets grad mode for its block.

    Usable as ``with no_grad():``, ``@no_grad()`` and, as in PyTorch, bare ``@no_grad``.
    """

    mode = True

    def __new__(cls, *args):
        self = super().__new__(cls)
        if args and callable(args[0]) and not isinstance(args[0], bool):
            return self(args[0])  # bare decorator: no_grad(fn)
        return self

    def __enter__(self):
        self._prev = _state.grad_enabled
        _state.grad_enabled = self.mode

    def __exit__(self, *exc):
        _state.grad_enabled = self._prev
        return False

    def __call__(self, fn):
        cls = self.__class__

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with cls():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Record nothing inside the block: ops run on arrays and return tensors with no grad_fn."""

    mode = False


class enable_grad(_GradMode):
    """Turn recording back on inside a ``no_grad`` block."""

    mode = True


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(False)`` acts as ``no_grad``; usable as a call, a block or a decorator."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = _state.grad_enabled
        _state.grad_enabled = self.mode  # takes effect at once, as torch.set_grad_enabled does

    def __enter__(self):
        pass

    def __call__(self, fn):
        _state.grad_enabled = self._prev
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        return wrapper


_OUT = -1  # link marker: a saved array that is the op's own output


class Op:
    """Base of every differentiable op (see the module docstring).

    Subclasses implement ``forward(*arrays, **params) -> array`` and ``backward(g) -> tuple``
    (one entry per input, ``None`` where no gradient is needed; ``self.needs[i]`` says which are).
    ``self.save(...)`` keeps what backward reads; save the output rather than the input when the
    derivative is a function of it. Returned gradients may have the broadcast shape: the engine
    sums them back to each input's shape.

    Recorded state, set by ``apply``: ``parents`` (per input: its ``grad_fn``, the leaf tensor
    itself, or None for a constant), ``needs``, ``shapes``, ``saved``, ``_links`` (where each
    saved value came from) and ``_vers`` (version counters of saved tensors, checked before
    backward). Class attributes give the defaults so that ``apply`` sets only what differs.

    A one-input op whose gradient is zero outside a part of its input (indexing, slicing,
    split) may also define ``backward_into(g, out)``: add that gradient into ``out``, the
    input's running gradient sum, touching only that part. The engine calls it instead of
    ``backward`` when the input already has a gradient sum of its own, so that the pieces of a
    split add into one buffer rather than each materializing a zero-filled full-size array.
    """

    differentiable = True
    xp = np  # the array namespace; set on the instance only for non-NumPy arrays
    saved = ()
    hooks = None
    _links = ()
    _vers = ()
    backward_into = None

    def save(self, *arrays):
        self.saved = arrays

    def forward(self, *arrays, **params):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, g):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no gradient")

    @property
    def name(self) -> str:
        return type(self).__name__

    @classmethod
    def apply(cls, *inputs, **params):
        # The hottest function of the library: one and two inputs are unrolled (most calls),
        # forward gets its arguments directly (a ``*``/``**`` call costs more than the NumPy
        # op on a small array), and nothing is kept when nothing is recorded.
        op = _new(cls)
        n = len(inputs)
        if n == 2:
            x, y = inputs
            ax = x.data if isinstance(x, Tensor) else x
            ay = y.data if isinstance(y, Tensor) else y
            px = py = None
            if _state.grad_enabled and cls.differentiable:
                if isinstance(x, Tensor) and x.requires_grad:
                    px = x.grad_fn or x
                if isinstance(y, Tensor) and y.requires_grad:
                    py = y.grad_fn or y
            if px is None and py is None:
                return op._unrecorded((ax, ay), params, inputs)
            op.parents = (px, py)
            op.shapes = (ax.shape if px is not None else (), ay.shape if py is not None else ())
            op.needs = (px is not None, py is not None)
            if backend._cupy is not None:
                op.xp = backend.array_module(ax)
            out = op.forward(ax, ay, **params) if params else op.forward(ax, ay)
            return op._recorded(out, (ax, ay), inputs)
        if n == 1:
            x = inputs[0]
            if not (isinstance(x, Tensor) and x.requires_grad and _state.grad_enabled
                    and cls.differentiable):
                ax = x.data if isinstance(x, Tensor) else x
                if _anomaly_hooks or backend._cupy is not None:
                    return op._unrecorded((ax,), params, inputs)
                out = op.forward(ax, **params) if params else op.forward(ax)
                if type(out) is not _ndarray:
                    out = np.asarray(out)
                t = _new(Tensor)
                t.data = out
                t.grad = t.grad_fn = t._vc = t._hooks = t.name = None
                t.requires_grad = False
                if out.base is not None:
                    _share_version(t, out, inputs)
                return t
            ax = x.data
            op.parents = (x.grad_fn or x,)
            op.shapes = (ax.shape,)
            op.needs = (True,)
            if backend._cupy is not None:
                op.xp = backend.array_module(ax)
            out = op.forward(ax, **params) if params else op.forward(ax)
            return op._recorded(out, (ax,), inputs)
        arrays = [t.data if isinstance(t, Tensor) else t for t in inputs]
        if not (_state.grad_enabled and cls.differentiable):
            return op._unrecorded(arrays, params, inputs)
        parents = [(t.grad_fn or t) if isinstance(t, Tensor) and t.requires_grad else None
                   for t in inputs]
        if not any(p is not None for p in parents):
            return op._unrecorded(arrays, params, inputs)
        op.parents = parents
        op.shapes = [a.shape if p is not None else () for a, p in zip(arrays, parents)]
        op.needs = [p is not None for p in parents]
        if backend._cupy is not None and arrays:
            op.xp = backend.array_module(arrays[0])
        return op._recorded(op.forward(*arrays, **params), arrays, inputs)

    @classmethod
    def _apply2(cls, x, y):
        """``apply(x, y)`` for a Tensor ``x`` and a Tensor or Python scalar ``y``, without
        parameters: the arithmetic operators' path."""
        if _anomaly_hooks or backend._cupy is not None:
            return cls.apply(x, y)
        op = _new(cls)
        ax = x.data
        if isinstance(y, Tensor):
            ay = y.data
            yg = y.requires_grad
        else:
            ay = y
            yg = False
        if _state.grad_enabled and (x.requires_grad or yg) and cls.differentiable:
            px = (x.grad_fn or x) if x.requires_grad else None
            py = (y.grad_fn or y) if yg else None
            op.parents = (px, py)
            op.shapes = (ax.shape if px is not None else (), ay.shape if yg else ())
            op.needs = (px is not None, yg)
            return op._recorded(op.forward(ax, ay), (ax, ay), (x, y))
        out = op.forward(ax, ay)
        if type(out) is not _ndarray:
            out = np.asarray(out)
        t = _new(Tensor)
        t.data = out
        t.grad = t.grad_fn = t._vc = t._hooks = t.name = None
        t.requires_grad = False
        return t

    def _recorded(self, out, arrays, inputs):
        """The output tensor of a recorded op, with the bookkeeping of what forward saved."""
        saved = self.saved
        if type(out) is not _ndarray:
            raw, out = out, self.xp.asarray(out)
            if saved:  # a 0-d ufunc result is a NumPy scalar: keep the saved output linked
                self.saved = saved = tuple(out if s is raw else s for s in saved)
        if _anomaly_hooks:
            for hook in _anomaly_hooks:
                hook(self, out, arrays)
        res = _new(Tensor)
        res.data = out
        res.grad = res._vc = res._hooks = res.name = None
        res.grad_fn = self
        res.requires_grad = True
        if getattr(out, "base", None) is not None:
            _share_version(res, out, inputs)
        if saved:
            # Where each saved value came from (for create_graph), and the version of each saved
            # tensor now, so that an in-place change before backward is caught.
            links = []
            vers = []
            for s in saved:
                if s is out:
                    links.append(_OUT)
                    vc = res._vc
                    if vc is None:
                        res._vc = vc = [0]
                    vers.append((vc, vc[0], -1))
                    continue
                i = 0
                for a in arrays:
                    if s is a:
                        links.append(i)
                        t = inputs[i]
                        if isinstance(t, Tensor):
                            vc = t._vc
                            if vc is None:
                                t._vc = vc = [0]
                            vers.append((vc, vc[0], i))
                        break
                    i += 1
                else:
                    links.append(None)
            self._links = links
            self._vers = vers
        return res

    def _unrecorded(self, arrays, params, inputs):
        """Forward without recording: a bare tensor, nothing kept."""
        if backend._cupy is not None and arrays:
            self.xp = backend.array_module(arrays[0])
        if params:
            out = self.forward(*arrays, **params)
        elif len(arrays) == 2:
            out = self.forward(arrays[0], arrays[1])
        else:
            out = self.forward(*arrays)
        if type(out) is not _ndarray:
            out = self.xp.asarray(out)
        if _anomaly_hooks:
            for hook in _anomaly_hooks:
                hook(self, out, arrays)
        t = _new(Tensor)
        t.data = out
        t.grad = t.grad_fn = t._vc = t._hooks = t.name = None
        t.requires_grad = False
        if getattr(out, "base", None) is not None:
            _share_version(t, out, inputs)
        return t

    # -- used by the engine ---------------------------------------------------------------
    def _check_versions(self):
        for vc, v, i in self._vers:
            if vc[0] != v:
                what = "its output" if i < 0 else f"input {i}"
                raise RuntimeError(
                    f"{self.name}.backward: {what} was modified in place after it was saved "
                    f"for backward (version {v}, now {vc[0]}); use an out-of-place op "
                    "(x = x + 1 rather than x += 1) or clone() it before the change"
                )

    def _saved_tensors(self):
        """The saved values as Tensors joined to the graph, for create_graph backward."""
        out = []
        for s, link in zip(self.saved, self._links):
            if type(s) in (int, float, bool):  # a Python scalar operand stays a weak constant
                out.append(s)
            elif link is None:
                out.append(Tensor._wrap(s))
            elif link == _OUT:
                out.append(Tensor._wrap(s, self))
            else:
                p = self.parents[link]
                if p is None:
                    out.append(Tensor._wrap(s))
                elif isinstance(p, Tensor):
                    out.append(p if p.data is s else Tensor._wrap(s, None, requires_grad=False))
                else:
                    out.append(Tensor._wrap(s, p))
        return tuple(out)

    def _release(self):
        if self.saved:
            self.saved = None


def _share_version(res, out, inputs):
    """A view of an input's array shares that input's version counter, so an in-place change
    made through either is seen by the saved-tensor check (as PyTorch's views do)."""
    base = out.base
    for t in inputs:
        if isinstance(t, Tensor):
            a = t.data
            if a is base or getattr(a, "base", None) is base:
                vc = t._vc
                if vc is None:
                    t._vc = vc = [0]
                res._vc = vc
                return


def _freed_error(op) -> RuntimeError:
    return RuntimeError(
        f"backward through {op.name} a second time: its saved values were freed after the first "
        "backward. Pass retain_graph=True to the first backward() (or grad()) to keep them."
    )


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
    deps: dict = {}
    stack = [r for r in roots if isinstance(r, Op)]
    seen = set(stack)
    while stack:
        op = stack.pop()
        if op.saved is None:
            raise _freed_error(op)
        for p in op.parents:
            if p is not None and isinstance(p, Op):
                if p in seen:
                    deps[p] = deps.get(p, 0) + 1  # a root can also feed another root
                else:
                    deps[p] = 1
                    seen.add(p)
                    stack.append(p)

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
                        g = r if create_graph else r.data
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
                  and "backward" not in op.__dict__  # not wrapped (anomaly mode checks it)
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
    indeg = dict(deps)
    order = []
    ready = [r for r in dict.fromkeys(roots) if isinstance(r, Op) and r not in indeg]
    while ready:  # a topological order, consumers first
        op = ready.pop()
        order.append(op)
        for p in op.parents:
            if isinstance(p, Op):
                indeg[p] -= 1
                if indeg[p] == 0:
                    ready.append(p)
    reach = set()
    for op in reversed(order):  # producers first: each op's parents are already decided
        if op in capture or any(p in reach or (p is not None and p in capture)
                                for p in op.parents):
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
    from .ops import tensor_ns

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
                g = r if create_graph else r.data
                owned = False
    if capture is not None:
        if t in capture:
            capture[t] = g if capture[t] is None else capture[t] + g
        return
    if create_graph:
        if t.grad is not None:
            t.grad = t.grad + g
        else:  # a constant gradient may be shared (seed, add's (g, g)): .grad gets its own
            t.grad = g if g.requires_grad else Tensor._wrap(g.data.copy())
        return
    dtype = t.data.dtype
    if type(g) is not t.data.__class__:  # a NumPy scalar from a 0-d rule
        g = t.xp.asarray(g)
        owned = False
    if g.dtype != dtype:
        g = g.astype(dtype)
        owned = True
    old = t.grad
    if old is None:
        # the optimizer and clipping update .grad in place, so it must not alias anything else
        t.grad = Tensor._wrap(g if owned else g.copy())
    elif (old.requires_grad or old.data.shape != g.shape or old.data.dtype != dtype
          or not getattr(old.data.flags, "writeable", True)):
        t.grad = old + Tensor._wrap(g)
    else:
        old.data += g


def _as_grad_array(t, g, where: str):
    if g is None:
        if t.data.size != 1:
            raise ValueError(
                f"{where}: grad can be implicitly created only for scalar outputs, but the output "
                f"has shape {tuple(t.shape)}; pass gradient= (a tensor of that shape)"
            )
        return t.xp.ones_like(t.data)
    g = g.data if isinstance(g, Tensor) else t.xp.asarray(g, dtype=t.data.dtype)
    if g.shape != t.data.shape:
        raise ValueError(
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
                _accumulate_leaf(t, gi if create_graph else gi.data, None, create_graph,
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
        g = _as_grad_array(t, g, "grad")
        roots.append(t.grad_fn if t.grad_fn is not None else t)
        seeds.append(Tensor._wrap(g) if create_graph else g)
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
                result.append(Tensor._wrap(t.xp.zeros_like(t.data)))
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


from .tensor import Tensor  # noqa: E402  (Tensor and Op refer to each other)

# ----------------------------------------------------------------------------- custom functions


class FunctionCtx:
    """What a custom Function's forward and backward share (``ctx``)."""

    def save_for_backward(self, *tensors):
        self.save(*[t.data if isinstance(t, Tensor) else t for t in tensors])

    @property
    def saved_tensors(self):
        return tuple(s if isinstance(s, Tensor) else Tensor._wrap(s) for s in self.saved)

    @property
    def needs_input_grad(self):
        needs = getattr(self, "needs", None)
        return tuple(needs) if needs is not None else ()

    def mark_non_differentiable(self, *tensors):
        pass


class _CustomOp(FunctionCtx, Op):
    def forward(self, *arrays, fn=None, is_tensor=(), kwargs=None):
        self.fn = fn
        self._name = fn.__name__
        args = [Tensor._wrap(a) if flag else a for a, flag in zip(arrays, is_tensor)]
        with no_grad():
            out = fn.forward(self, *args, **(kwargs or {}))
        if isinstance(out, (tuple, list)):
            raise TypeError(
                f"{fn.__name__}.forward returned {len(out)} outputs; custom Functions here return "
                "one tensor (stack or cat several into one)"
            )
        if not isinstance(out, Tensor):
            raise TypeError(f"{fn.__name__}.forward must return a Tensor, got {type(out).__name__}")
        return out.data

    @property
    def name(self):
        return getattr(self, "_name", "CustomFunction")

    def backward(self, g):
        graph = isinstance(g, Tensor)
        with set_grad_enabled(graph):
            res = self.fn.backward(self, g if graph else Tensor._wrap(g))
        res = res if isinstance(res, tuple) else (res,)
        if len(res) != len(self.parents):
            raise RuntimeError(
                f"{self.name}.backward returned {len(res)} gradients but forward took "
                f"{len(self.parents)} inputs; return one per input (None where there is none)"
            )
        out = []
        for r in res:
            if r is None or graph:
                out.append(r)
            else:
                out.append(r.data if isinstance(r, Tensor) else self.xp.asarray(r))
        return tuple(out)


class Function:
    """A differentiable function with a hand-written gradient, as torch.autograd.Function::

        class Cube(Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x ** 3

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 3 * x ** 2 * g

        y = Cube.apply(x)
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        flags = tuple(isinstance(a, Tensor) for a in args)
        return _CustomOp.apply(*args, fn=cls, is_tensor=flags, kwargs=kwargs)


from .diagnostics.gradcheck import GradcheckError as GradcheckError  # noqa: E402
from .diagnostics.gradcheck import gradcheck as gradcheck  # noqa: E402
from .diagnostics.gradcheck import gradgradcheck as gradgradcheck  # noqa: E402


def __getattr__(name):
    """``chainrule.autograd.detect_anomaly`` and ``set_detect_anomaly``, as in PyTorch: they
    live in chainrule.diagnostics (loaded on first use)."""
    if name in ("detect_anomaly", "set_detect_anomaly"):
        from .diagnostics import anomaly

        return getattr(anomaly, name)
    raise AttributeError(f"module 'chainrule.autograd' has no attribute {name!r}")
