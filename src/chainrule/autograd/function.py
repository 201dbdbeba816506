"""Custom differentiable functions with hand-written gradients (``torch.autograd.Function``)."""

from __future__ import annotations

from .grad_mode import no_grad, set_grad_enabled
from .op import Op


class FunctionCtx:
    """What a custom Function's forward and backward share (``ctx``)."""

    def save_for_backward(self, *tensors):
        self.save(*[t._data if isinstance(t, Tensor) else t for t in tensors])

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
        return out._data

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
                out.append(r._data if isinstance(r, Tensor) else self.xp.asarray(r))
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


from ..tensor import Tensor  # noqa: E402  (Tensor and Op refer to each other)
