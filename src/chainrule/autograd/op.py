"""The op base class: a node of the graph, with its forward, its vector-Jacobian product and
the bookkeeping ``apply`` records; and the forward observers (the public seam through which
anomaly mode and the training doctor watch every op without patching one)."""

from __future__ import annotations

from .. import backend
from ..backend import numpy_ns
from .grad_mode import _state

_observers: list = []  # callables (op, out_array, in_arrays) run after every forward
_new = object.__new__
_ndarray = numpy_ns.ndarray


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
    post_hooks = None  # hooks run after this op's backward: see register_hook
    xp = numpy_ns  # the array namespace; set on the instance only for other arrays
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

    @property
    def is_recorded(self) -> bool:
        """Whether ``apply`` recorded this op in the graph (some input needed a gradient and
        grad mode was on), so that its backward will run."""
        return "parents" in self.__dict__

    def saved_output(self):
        """The op's own output if its forward saved it for backward (tanh, exp, softmax...),
        else None."""
        for s, link in zip(self.saved or (), self._links):
            if link == _OUT:
                return s
        return None

    def register_hook(self, hook):
        """Call ``hook(grad_inputs, grad_outputs)`` each time this op's backward has run, as
        PyTorch's ``Node.register_hook``: ``grad_inputs`` is the tuple of gradients it returned
        (one per input, None where none is needed), ``grad_outputs`` the tuple ``(g,)`` it
        received. A returned tuple replaces ``grad_inputs``. Returns a handle with
        ``.remove()``. Anomaly mode checks gradients through this seam."""
        if self.post_hooks is None:
            self.post_hooks = []
        self.post_hooks.append(hook)
        return RemovableHandle(self.post_hooks, hook)

    @classmethod
    def apply(cls, *inputs, **params):
        # The hottest function of the library: one and two inputs are unrolled (most calls),
        # forward gets its arguments directly (a ``*``/``**`` call costs more than the NumPy
        # op on a small array), and nothing is kept when nothing is recorded.
        op = _new(cls)
        n = len(inputs)
        if n == 2:
            x, y = inputs
            ax = x._data if isinstance(x, Tensor) else x
            ay = y._data if isinstance(y, Tensor) else y
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
                op.xp = backend.common_module((ax, ay), cls.__name__)
            out = op.forward(ax, ay, **params) if params else op.forward(ax, ay)
            return op._recorded(out, (ax, ay), inputs)
        if n == 1:
            x = inputs[0]
            if not (isinstance(x, Tensor) and x.requires_grad and _state.grad_enabled
                    and cls.differentiable):
                ax = x._data if isinstance(x, Tensor) else x
                if _observers or backend._cupy is not None:
                    return op._unrecorded((ax,), params, inputs)
                out = op.forward(ax, **params) if params else op.forward(ax)
                if type(out) is not _ndarray:
                    out = numpy_ns.asarray(out)
                t = _wrap(out, None, False)
                if out.base is not None:
                    _share_version(t, out, inputs)
                return t
            ax = x._data
            op.parents = (x.grad_fn or x,)
            op.shapes = (ax.shape,)
            op.needs = (True,)
            if backend._cupy is not None:
                op.xp = backend.array_module(ax)
            out = op.forward(ax, **params) if params else op.forward(ax)
            return op._recorded(out, (ax,), inputs)
        arrays = [t._data if isinstance(t, Tensor) else t for t in inputs]
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
            op.xp = backend.common_module(arrays, cls.__name__)
        return op._recorded(op.forward(*arrays, **params), arrays, inputs)

    @classmethod
    def _apply2(cls, x, y):
        """``apply(x, y)`` for a Tensor ``x`` and a Tensor or Python scalar ``y``, without
        parameters: the arithmetic operators' path."""
        if _observers or backend._cupy is not None:
            return cls.apply(x, y)
        op = _new(cls)
        ax = x._data
        if isinstance(y, Tensor):
            ay = y._data
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
            out = numpy_ns.asarray(out)
        return _wrap(out, None, False)

    def _recorded(self, out, arrays, inputs):
        """The output tensor of a recorded op, with the bookkeeping of what forward saved."""
        saved = self.saved
        if type(out) is not _ndarray and not backend.is_device_array(out):
            raw, out = out, self.xp.asarray(out)
            if saved:  # a 0-d ufunc result is a NumPy scalar: keep the saved output linked
                self.saved = saved = tuple(out if s is raw else s for s in saved)
        if _observers:
            for hook in _observers:
                hook(self, out, arrays)
        res = _wrap(out, self, True)
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
            self.xp = backend.common_module(arrays, type(self).__name__)
        if params:
            out = self.forward(*arrays, **params)
        elif len(arrays) == 2:
            out = self.forward(arrays[0], arrays[1])
        else:
            out = self.forward(*arrays)
        if type(out) is not _ndarray and not backend.is_device_array(out):
            out = self.xp.asarray(out)
        if _observers:
            for hook in _observers:
                hook(self, out, arrays)
        t = _wrap(out, None, False)
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
                out.append(_wrap(s))
            elif link == _OUT:
                out.append(_wrap(s, self))
            else:
                p = self.parents[link]
                if p is None:
                    out.append(_wrap(s))
                elif isinstance(p, Tensor):
                    out.append(p if p._data is s else _wrap(s, None, requires_grad=False))
                else:
                    out.append(_wrap(s, p))
        return tuple(out)

    def _release(self):
        if self.saved:
            self.saved = None


class RemovableHandle:
    """What a register_* call returns: ``remove()`` takes the hook out again."""

    def __init__(self, hooks: list, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def register_forward_observer(observer):
    """Call ``observer(op, out, inputs)`` after the forward of every op from now on, recorded or
    not: ``op`` is the Op instance (``op.is_recorded`` says whether its backward will run;
    ``op.register_hook`` can watch that backward), ``out`` its output array and ``inputs`` the
    input arrays. Returns a handle with ``.remove()``. While any observer is registered ops
    take their general path, so an observer costs only when it is there.

    This is the public seam through which anomaly mode and the training doctor watch the
    engine (nothing patches an op or reads the engine's privates).
    """
    _observers.append(observer)
    return RemovableHandle(_observers, observer)


def forward_observers() -> tuple:
    """The observers registered now, oldest first."""
    return tuple(_observers)


def _share_version(res, out, inputs):
    """A view of an input's array shares that input's version counter, so an in-place change
    made through either is seen by the saved-tensor check (as PyTorch's views do)."""
    base = out.base
    for t in inputs:
        if isinstance(t, Tensor):
            a = t._data
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


Tensor = _wrap = None  # bound by chainrule.autograd once tensor.py is loaded (see there)
