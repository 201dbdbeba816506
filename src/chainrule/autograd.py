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
import sys

import numpy as np

from . import backend

_grad_enabled = True
_anomaly_hooks: list = []  # callables (op, out_array) run after every forward; see diagnostics


def is_grad_enabled() -> bool:
    return _grad_enabled


class _GradMode:
    """Context manager and decorator that sets grad mode for its block."""

    mode = True

    def __enter__(self):
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = self.mode

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
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
        global _grad_enabled
        self.mode = bool(mode)
        self._prev = _grad_enabled
        _grad_enabled = self.mode  # takes effect at once, as torch.set_grad_enabled does

    def __enter__(self):
        pass

    def __call__(self, fn):
        global _grad_enabled
        _grad_enabled = self._prev
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
    """

    differentiable = True
    # recorded state, set by apply: parents, needs, shapes, saved, xp, hooks, _links, _vers

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
        op = cls.__new__(cls)
        arrays = []
        parents = []
        record = False
        for t in inputs:
            if isinstance(t, Tensor):
                arrays.append(t.data)
                if t.requires_grad:
                    record = True
                    parents.append(t if t.grad_fn is None else t.grad_fn)
                else:
                    parents.append(None)
            else:
                arrays.append(t)
                parents.append(None)
        record = record and _grad_enabled and cls.differentiable
        op.xp = np if backend._cupy is None else backend.array_module(arrays[0])
        op.saved = ()
        if record:
            op.needs = [p is not None for p in parents]
        out = op.forward(*arrays, **params)
        if type(out) is not np.ndarray:
            raw, out = out, op.xp.asarray(out)
            if op.saved:  # a 0-d ufunc result is a NumPy scalar: keep the saved output linked
                op.saved = tuple(out if s is raw else s for s in op.saved)
        if _anomaly_hooks:
            for hook in _anomaly_hooks:
                hook(op, out, arrays)
        if not record:
            return Tensor._wrap(out)
        op.parents = parents
        op.shapes = [getattr(a, "shape", ()) for a in arrays]
        op.hooks = None
        saved = op.saved
        if saved:
            links = []
            vers = []
            for s in saved:
                if s is out:
                    links.append(_OUT)
                    continue
                for i, a in enumerate(arrays):
                    if s is a:
                        links.append(i)
                        t = inputs[i]
                        if isinstance(t, Tensor):
                            vers.append((t._vc, t._vc[0], i))
                        break
                else:
                    links.append(None)
            op._links = links
            op._vers = vers
        else:
            op._links = op._vers = ()
        return Tensor._wrap(out, op)

    # -- used by the engine ---------------------------------------------------------------
    def _check_versions(self):
        for vc, v, i in self._vers:
            if vc[0] != v:
                raise RuntimeError(
                    f"{self.name}.backward: input {i} was modified in place after it was saved "
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
        self.saved = None


def _freed_error(op) -> RuntimeError:
    return RuntimeError(
        f"backward through {op.name} a second time: its saved values were freed after the first "
        "backward. Pass retain_graph=True to the first backward() (or grad()) to keep them."
    )


def unbroadcast(g, shape):
    """Sum ``g`` over the dims that broadcasting added or stretched, giving ``shape``.

    Works on arrays and on Tensors (for create_graph), so it is the one place that undoes
    broadcasting in a gradient.
    """
    gshape = g.shape
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, n in enumerate(shape) if n == 1 and gshape[i + lead] != 1
    )
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if lead:
        g = g.reshape(shape)
    elif g.shape != shape:
        g = g.reshape(shape)
    return g


def _add(a, b):
    return a + b


def _engine(roots, root_grads, retain_graph, create_graph, capture=None):
    """Run the backward pass from ``roots`` (ops or leaf tensors) seeded with ``root_grads``.

    With ``capture`` (a dict keyed by op or leaf tensor) the gradients of those edges are
    stored there instead of accumulated into ``.grad`` (this is ``grad()``).
    """
    # Dependency counts over the ops reachable from the roots (iterative, no recursion).
    deps: dict = {}
    stack = [r for r in roots if isinstance(r, Op)]
    seen = set(stack)
    while stack:
        op = stack.pop()
        if op.saved is None:
            raise _freed_error(op)
        for p in op.parents:
            if p is not None and not isinstance(p, Tensor):
                deps[p] = deps.get(p, 0) + 1
                if p not in seen:
                    seen.add(p)
                    stack.append(p)

    buffers: dict = {}
    owned: set = set()  # ops whose buffer is an array the engine made, safe to add into

    def accumulate(edge, g):
        if isinstance(edge, Tensor):
            _accumulate_leaf(edge, g, capture, create_graph)
        elif edge in buffers:
            if edge in owned and not create_graph and g.dtype == buffers[edge].dtype:
                buffers[edge] += g
            else:
                buffers[edge] = buffers[edge] + g
                owned.add(edge)
        else:
            buffers[edge] = g

    for r, g in zip(roots, root_grads):
        accumulate(r, g)
    ready = [r for r in roots if isinstance(r, Op) and deps.get(r, 0) == 0]
    ready = list(dict.fromkeys(ready))
    while ready:
        op = ready.pop()
        g = buffers.pop(op, None)
        grads = None
        if g is not None:
            if op.hooks:
                for hook in op.hooks:
                    r = hook(g if create_graph else Tensor._wrap(g))
                    if r is not None:
                        g = r if create_graph else r.data
            if capture is not None and op in capture:
                capture[op] = g
            op._check_versions()
            grads = _call_backward(op, g, create_graph)
        for i, p in enumerate(op.parents):
            if p is None:
                continue
            gi = grads[i] if grads is not None else None
            if gi is not None:
                if gi.shape != op.shapes[i]:
                    gi = unbroadcast(gi, op.shapes[i])
                accumulate(p, gi)
            if not isinstance(p, Tensor):
                deps[p] -= 1
                if deps[p] == 0:
                    ready.append(p)
        if not retain_graph:
            op._release()


def _call_backward(op, g, create_graph):
    if not create_graph:
        grads = op.backward(g)
        return grads if isinstance(grads, tuple) else (grads,)
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


def _accumulate_leaf(t, g, capture, create_graph):
    if t._hooks:
        for hook in t._hooks:
            r = hook(g if create_graph else Tensor._wrap(g))
            if r is not None:
                g = r if create_graph else r.data
    if capture is not None:
        if t in capture:
            capture[t] = g if capture[t] is None else capture[t] + g
        return
    if create_graph:
        t.grad = g if t.grad is None else t.grad + g
        return
    if g.dtype != t.data.dtype:
        g = g.astype(t.data.dtype)
    if t.grad is None:
        # Keep the array only if nobody else holds it (it may be a view, or shared with another
        # leaf through a pass-through op); the optimizer and clipping update .grad in place.
        if g.base is not None or sys.getrefcount(g) > 4 or not g.flags.writeable:
            g = g.copy()
        t.grad = Tensor._wrap(g)
    else:
        t.grad = Tensor._wrap(t.grad.data + g)


def _as_grad_array(t, g, where: str):
    if g is None:
        if t.data.size != 1:
            raise RuntimeError(
                f"{where}: grad can be implicitly created only for scalar outputs, but the output "
                f"has shape {tuple(t.shape)}; pass gradient= (a tensor of that shape)"
            )
        return t.xp.ones_like(t.data)
    g = g.data if isinstance(g, Tensor) else t.xp.asarray(g, dtype=t.data.dtype)
    if g.shape != t.data.shape:
        raise RuntimeError(
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
                _accumulate_leaf(t, gi if create_graph else gi.data, None, create_graph)
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
        else:
            result.append(g if create_graph else Tensor._wrap(g))
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
