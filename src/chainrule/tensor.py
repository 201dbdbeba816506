"""Tensor: an array, the op that made it, and the gradient that backward leaves in it.

Operators and methods are one-line calls into the functional ops (``chainrule.ops``), so a
Tensor method and the free function of the same name are the same code path.
"""

from __future__ import annotations

import numpy as np

from . import backend
from .dtypes import _DTYPE_NAMES as _DTYPE_NAMES  # noqa: F401  (re-exported)
from .dtypes import _default_float as _default_float
from .dtypes import as_dtype as as_dtype
from .dtypes import bool_ as bool_
from .dtypes import float16 as float16
from .dtypes import float32 as float32
from .dtypes import float64 as float64
from .dtypes import int32 as int32
from .dtypes import int64 as int64
from .dtypes import is_floating as is_floating
from .dtypes import register_tensor_type
from .dtypes import uint8 as uint8

_new = object.__new__


class ShapeError(ValueError, RuntimeError):
    """A tensor of the wrong shape for the call: a ValueError, and a RuntimeError as PyTorch
    raises for the same case (``except RuntimeError`` in ported code still catches it)."""


class Tensor:
    """An n-dimensional array that records the ops applied to it for reverse-mode autograd."""

    __slots__ = ("_data", "grad", "requires_grad", "grad_fn", "_vc", "_hooks", "_post_hooks",
                 "name", "__weakref__")
    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operator

    def __init__(self, data, dtype=None, requires_grad=False, device=None):
        dtype = as_dtype(dtype)
        if isinstance(data, Tensor):
            data = data._data
        dev = backend.normalize_device(device) if device is not None else None
        if dev is None:
            dev = backend.device_of(data) if not isinstance(data, (list, tuple)) else "cpu"
        xp = backend.xp_for_device(dev)
        if dtype is None and not hasattr(data, "dtype"):
            probe = np.asarray(data)
            dtype = _default_float if probe.dtype.kind == "f" else probe.dtype
            data = probe
            if dtype.kind == "i":
                dtype = int64
        arr = xp.asarray(backend.to_device(data, dev) if dev == "cpu" or hasattr(data, "dtype")
                         else data, dtype=dtype)
        if dev == "cuda" and not isinstance(arr, backend._cupy.ndarray):  # pragma: no cover
            arr = backend.to_device(arr, "cuda")
        self._data = arr
        self.grad = None
        self.grad_fn = None
        self._vc = None  # version counter [n], made when first needed (saved, detached)
        self._hooks = None
        self._post_hooks = None  # hooks run after .grad is accumulated (leaves only)
        self.name = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _wrap(data, grad_fn=None, requires_grad=None):
        """Fast internal constructor around an existing array (no copy, no checks)."""
        t = _new(Tensor)
        t._data = data
        t.grad = t._vc = t._hooks = t._post_hooks = t.name = None
        t.grad_fn = grad_fn
        t.requires_grad = grad_fn is not None if requires_grad is None else requires_grad
        return t

    # -- attributes -------------------------------------------------------------------------
    # The array lives in the slot ``_data`` (what the engine reads: a slot costs no call).
    # ``data`` is PyTorch's: a tensor sharing the array, outside the graph, whose in-place
    # changes autograd does not see (``p.data.add_(g, alpha=-lr)``); assigning a tensor there
    # (``w.data = t``) makes this tensor hold ``t``'s array.
    @property
    def data(self):
        return Tensor._wrap(self._data, None, False)

    @data.setter
    def data(self, value):
        if isinstance(value, Tensor):
            value = value._data
        elif not (hasattr(value, "dtype") and hasattr(value, "shape")):
            raise TypeError(f"Tensor.data: expected a Tensor (or an array), got "
                            f"{type(value).__name__}")
        self._data = value

    @property
    def shape(self):
        return Size(self._data.shape)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def device(self) -> Device:
        return Device(backend.device_of(self._data))

    @property
    def xp(self):
        return backend.array_module(self._data)

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def is_cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def _version(self) -> int:
        """How many in-place changes this tensor's data has seen (shared with detach())."""
        return 0 if self._vc is None else self._vc[0]

    def size(self, dim=None):
        return Size(self._data.shape) if dim is None else self._data.shape[dim]

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return int(self._data.size)

    def element_size(self) -> int:
        return self._data.itemsize

    itemsize = property(element_size)

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    def nelement(self) -> int:
        return int(self._data.size)

    def ndimension(self) -> int:
        return self._data.ndim

    def is_contiguous(self) -> bool:
        return bool(self._data.flags.c_contiguous)

    # -- new tensors like this one (dtype and device), as torch.Tensor.new_* ----------------
    def new_tensor(self, data, dtype=None, requires_grad=False):
        from .creation import tensor

        return tensor(data, dtype=dtype or self.dtype, requires_grad=requires_grad,
                      device=self.device)

    def new_zeros(self, *size, dtype=None, requires_grad=False):
        from .creation import zeros

        return zeros(*size, dtype=dtype or self.dtype, requires_grad=requires_grad,
                     device=self.device)

    def new_ones(self, *size, dtype=None, requires_grad=False):
        from .creation import ones

        return ones(*size, dtype=dtype or self.dtype, requires_grad=requires_grad,
                    device=self.device)

    def new_empty(self, *size, dtype=None, requires_grad=False):
        from .creation import empty

        return empty(*size, dtype=dtype or self.dtype, requires_grad=requires_grad,
                     device=self.device)

    def new_full(self, size, fill_value, dtype=None, requires_grad=False):
        from .creation import full

        return full(size, fill_value, dtype=dtype or self.dtype, requires_grad=requires_grad,
                    device=self.device)

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __repr__(self):
        body = np.array2string(backend.to_numpy(self._data), separator=", ", prefix="tensor(")
        extra = ""
        if self._data.dtype != float32 and self._data.dtype != int64 and self._data.dtype != bool_:
            extra += f", dtype={self._data.dtype}"
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{self.grad_fn.name}Backward>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __hash__(self):
        return id(self)

    def __format__(self, spec):
        """``f"{loss:.4f}"`` formats the number of a 0-d tensor, as PyTorch does; an empty spec
        gives ``str(tensor)``."""
        if self._data.ndim == 0:
            return format(self.item(), spec)
        if not spec:
            return str(self)
        raise TypeError(f"Tensor.__format__: format spec {spec!r} needs a 0-d tensor, got shape "
                        f"{tuple(self._data.shape)}; format t.item() or t.tolist()")

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self._data.size} elements is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self._data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of one element can be used as an index")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        a = backend.to_numpy(self._data)
        return a if dtype is None else a.astype(dtype)

    # -- autograd ---------------------------------------------------------------------------
    def requires_grad_(self, requires_grad: bool = True):
        if requires_grad and not is_floating(self._data.dtype):
            raise TypeError(
                f"only floating-point tensors can require grad, got dtype {self._data.dtype}; "
                "convert with .float() first"
            )
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError(
                "requires_grad_(False) on a non-leaf tensor; use .detach() to cut it from the graph"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad."""
        _autograd.backward(self, gradient, retain_graph, create_graph, inputs)

    def detach(self):
        """The same array (shared, not copied) as a new leaf outside the graph."""
        t = Tensor._wrap(self._data)
        if self._vc is None:
            self._vc = [0]
        t._vc = self._vc  # an in-place change through the alias is seen by saved-tensor checks
        return t

    def detach_(self):
        self.grad_fn = None
        self.requires_grad = False
        return self

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor
        replaces the gradient. Returns a handle with ``.remove()``."""
        if not self.requires_grad:
            raise RuntimeError("register_hook on a tensor that does not require grad")
        if self.grad_fn is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            if self.grad_fn.hooks is None:
                self.grad_fn.hooks = []
            hooks = self.grad_fn.hooks
        if hooks and getattr(hooks[-1], "_retains_grad", False):
            hooks.insert(len(hooks) - 1, hook)  # retain_grad sees the gradient after all hooks
        else:
            hooks.append(hook)
        return _HookHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` after a backward pass has accumulated this leaf's gradient
        into ``.grad`` (as PyTorch's ``register_post_accumulate_grad_hook``); the hook returns
        None and may read or change ``tensor.grad``. Returns a handle with ``.remove()``."""
        if not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook on a tensor that does not "
                               "require grad")
        if self.grad_fn is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: post accumulate grad hooks "
                               "cannot be registered on non-leaf tensors (this one has grad_fn "
                               f"{type(self.grad_fn).__name__})")
        if not callable(hook):
            raise TypeError(f"register_post_accumulate_grad_hook: expected a callable, got "
                            f"{type(hook).__name__}")
        if self._post_hooks is None:
            self._post_hooks = []
        self._post_hooks.append(hook)
        return _HookHandle(self._post_hooks, hook)

    @property
    def retains_grad(self) -> bool:
        """Whether retain_grad() was called on this non-leaf tensor."""
        hooks = self.grad_fn.hooks if self.grad_fn is not None else None
        return bool(hooks) and getattr(hooks[-1], "_retains_grad", False)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (accumulated over calls, and
        after any hooks on it, as in PyTorch). A no-op on leaves and when already retained."""
        if self.grad_fn is None or self.retains_grad:
            return
        import weakref

        ref = weakref.ref(self)

        def keep(g):
            t = ref()
            if t is not None:
                t.grad = Tensor._wrap(g._data.copy()) if t.grad is None else t.grad + g.detach()

        keep._retains_grad = True
        self.register_hook(keep)

    # -- conversion -------------------------------------------------------------------------
    def item(self):
        if self._data.size != 1:
            raise ShapeError(
                f"item(): only a one-element tensor converts to a Python number, got shape "
                f"{tuple(self.shape)}"
            )
        return backend.to_numpy(self._data).reshape(()).item()

    def numpy(self):
        if self.requires_grad:
            raise RuntimeError("numpy() of a tensor that requires grad; call .detach().numpy()")
        return backend.to_numpy(self._data)

    def tolist(self):
        return backend.to_numpy(self._data).tolist()

    def to(self, *args, dtype=None, device=None, copy=False, non_blocking=False,
           memory_format=None):
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other)``; as in PyTorch,
        ``non_blocking`` and ``memory_format`` are accepted (copies here are synchronous and
        every tensor is contiguous), and ``copy=True`` always returns a new tensor."""
        if len(args) >= 3 and isinstance(args[-1], bool) and isinstance(args[-2], bool):
            copy = copy or args[-1]  # to(device, dtype, non_blocking, copy)
        dtype, device = parse_to_args(args, dtype, device)
        t = self
        if device is not None:
            dev = backend.normalize_device(device)
            if dev != self.device:
                t = _F.to_device(t, dev)
        if dtype is not None:
            t = t.type(dtype)
        if copy and t is self:
            t = self.clone()
        return t

    def type(self, dtype=None, non_blocking=False):
        if dtype is None:
            return _TYPE_NAMES.get(self._data.dtype.name, f"chainrule.{self._data.dtype.name}")
        if isinstance(dtype, str) and dtype in _TYPE_DTYPES:
            dtype = _TYPE_DTYPES[dtype]
        dtype = as_dtype(getattr(dtype, "_tensor_dtype", dtype))
        return self if dtype == self._data.dtype else _F.cast(self, dtype)

    def astype(self, dtype):
        return self.type(dtype)

    def float(self, memory_format=None):
        return self.type(float32)

    def double(self, memory_format=None):
        return self.type(float64)

    def half(self, memory_format=None):
        return self.type(float16)

    def long(self, memory_format=None):
        return self.type(int64)

    def int(self, memory_format=None):
        return self.type(int32)

    def bool(self, memory_format=None):
        return self.type(bool_)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def is_floating_point(self) -> bool:
        return is_floating(self._data.dtype)

    def contiguous(self, memory_format=None):
        """This tensor if its array is C-contiguous, else a C-contiguous copy (differentiable),
        so ``.contiguous().view(...)`` works as in PyTorch."""
        if self._data.flags.c_contiguous:
            return self
        return _F.shape.Contiguous.apply(self)

    def clone(self, memory_format=None):
        return _F.clone(self)

    # -- in-place (bump the version counter, so a saved tensor's change is caught) ----------
    def _check_inplace(self, name):
        if self.requires_grad and _autograd._state.grad_enabled:
            if self.grad_fn is None:
                raise RuntimeError(
                    f"{name}: in-place change of a leaf tensor that requires grad; wrap it in "
                    "chainrule.no_grad() (as optimizers do) or use the out-of-place op"
                )
            raise RuntimeError(
                f"{name}: in-place ops on a tensor inside the graph are not supported; use the "
                "out-of-place op"
            )

    def _bump(self):
        if self._vc is not None:
            self._vc[0] += 1

    def _inplace(self, arr, name):
        """Copy ``arr`` into this tensor's data (the result of an in-place op)."""
        self._check_inplace(name)
        src = arr._data if isinstance(arr, Tensor) else arr
        self.xp.copyto(self._data, src, casting="unsafe")
        self._bump()
        return self

    def _ufunc_(self, ufunc, other, name):
        """``self = ufunc(self, other)`` written into self's own memory (one pass)."""
        self._check_inplace(name)
        o = other._data if isinstance(other, Tensor) else other
        try:
            ufunc(self._data, o, out=self._data, casting="unsafe")
        except ValueError as e:
            raise ShapeError(
                f"{name}: operand of shape {tuple(getattr(o, 'shape', ()))} does not broadcast "
                f"to the tensor's shape {tuple(self._data.shape)} ({e})"
            ) from None
        self._bump()
        return self

    def copy_(self, src):
        return self._inplace(src, "copy_")

    def zero_(self):
        return self._inplace(0, "zero_")

    def fill_(self, value):
        return self._inplace(value, "fill_")

    def add_(self, other, alpha=1):
        if alpha != 1:
            other = (other._data if isinstance(other, Tensor) else other) * alpha
        return self._ufunc_(self.xp.add, other, "add_")

    def sub_(self, other, alpha=1):
        if alpha != 1:
            other = (other._data if isinstance(other, Tensor) else other) * alpha
        return self._ufunc_(self.xp.subtract, other, "sub_")

    def mul_(self, other):
        return self._ufunc_(self.xp.multiply, other, "mul_")

    def div_(self, other):
        return self._ufunc_(self.xp.true_divide, other, "div_")

    def clamp_(self, min=None, max=None):
        return self._inplace(self.xp.clip(self._data, min, max), "clamp_")

    def uniform_(self, a=0.0, b=1.0):
        from .random import _rng

        return self._inplace(_rng().uniform(a, b, self._data.shape), "uniform_")

    def normal_(self, mean=0.0, std=1.0):
        from .random import _rng

        return self._inplace(_rng().normal(mean, std, self._data.shape), "normal_")

    # ``x += y``: in place, as in PyTorch, except on a tensor inside a recorded graph (the
    # engine records no in-place ops), where it rebinds x to the out-of-place result.
    def _in_graph(self):
        return self.grad_fn is not None and _autograd._state.grad_enabled

    def __iadd__(self, other):
        return self + other if self._in_graph() else self.add_(other)

    def __isub__(self, other):
        return self - other if self._in_graph() else self.sub_(other)

    def __imul__(self, other):
        return self * other if self._in_graph() else self.mul_(other)

    def __itruediv__(self, other):
        return self / other if self._in_graph() else self.div_(other)

    def __setitem__(self, index, value):
        index = _index_arrays(index, backend.device_of(self._data))
        if self.requires_grad and _autograd._state.grad_enabled:
            raise RuntimeError(
                "__setitem__ on a tensor that requires grad is not differentiable here; build the "
                "result with where(), masked_fill() or cat(), or assign under no_grad()"
            )
        self._data[index] = value._data if isinstance(value, Tensor) else value
        self._bump()

    # -- operators ---------------------------------------------------------------------------
    def __add__(self, o):
        return _F.add(self, o)

    def __radd__(self, o):
        if type(o) is float and self._data.dtype.kind == "f":  # 1.0 + x: addition commutes
            return _Add._apply2(self, o)
        return _F.add(o, self)

    def __sub__(self, o):
        return _F.sub(self, o)

    def __rsub__(self, o):
        return _F.sub(o, self)

    def __mul__(self, o):
        return _F.mul(self, o)

    def __rmul__(self, o):
        if type(o) is float and self._data.dtype.kind == "f":  # lr * g: multiplication commutes
            return _Mul._apply2(self, o)
        return _F.mul(o, self)

    def __truediv__(self, o):
        return _F.div(self, o)

    def __rtruediv__(self, o):
        return _F.div(o, self)

    def __pow__(self, o):
        return _F.pow(self, o)

    def __rpow__(self, o):
        return _F.pow(o, self)

    def __matmul__(self, o):
        return _F.matmul(self, o)

    def __rmatmul__(self, o):
        return _F.matmul(o, self)

    def __neg__(self):
        return _F.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _F.abs(self)

    def __floordiv__(self, o):
        return _F.floor_divide(self, o)

    def __mod__(self, o):
        return _F.remainder(self, o)

    def __rmod__(self, o):
        return _F.remainder(o, self)

    def __lt__(self, o):
        return _F.lt(self, o)

    def __le__(self, o):
        return _F.le(self, o)

    def __gt__(self, o):
        return _F.gt(self, o)

    def __ge__(self, o):
        return _F.ge(self, o)

    def __eq__(self, o):
        return _F.eq(self, o)

    def __ne__(self, o):
        return _F.ne(self, o)

    # ~ & | ^ are logical on bool tensors and bitwise on integer ones, as in PyTorch
    def __invert__(self):
        if self._data.dtype == bool_:
            return _F.logical_not(self)
        return _nograd(lambda xp, a: xp.bitwise_not(a), self)

    def __and__(self, o):
        if self._data.dtype == bool_ and _is_bool_operand(o):
            return _F.logical_and(self, o)
        return _nograd(lambda xp, a, b: xp.bitwise_and(a, b), self, o)

    def __or__(self, o):
        if self._data.dtype == bool_ and _is_bool_operand(o):
            return _F.logical_or(self, o)
        return _nograd(lambda xp, a, b: xp.bitwise_or(a, b), self, o)

    def __xor__(self, o):
        if self._data.dtype == bool_ and _is_bool_operand(o):
            return _F.logical_xor(self, o)
        return _nograd(lambda xp, a, b: xp.bitwise_and(xp.bitwise_or(a, b),
                                                       xp.bitwise_not(xp.bitwise_and(a, b))),
                       self, o)

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def __getitem__(self, index):
        return _F.getitem(self, index)

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    @property
    def T(self):
        return _F.permute(self, tuple(range(self._data.ndim - 1, -1, -1)))

    @property
    def mT(self):
        return _F.transpose(self, -2, -1)


class Device(str):
    """A device, as ``torch.device``: ``device('cpu')``, ``device('cuda')``,
    ``device('cuda:1')``, ``device('cuda', 0)`` or ``device(type='cpu')``. It answers
    ``.type`` and ``.index``, and is also the string of its name ('cpu', 'cuda:1'), so it
    compares equal to that string and goes wherever a device name does."""

    def __new__(cls, type=None, index=None):
        if isinstance(type, Device) and index is None:
            return type
        if isinstance(type, int) and not isinstance(type, bool) and index is None:
            type, index = "cuda", type  # torch.device(0) is cuda:0
        if not isinstance(type, str):
            raise TypeError(f"device(): expected a device name such as 'cpu' or 'cuda:0', got "
                            f"{type!r}")
        name, _, idx = type.partition(":")
        if name not in _DEVICE_TYPES:
            raise RuntimeError(f"device(): expected one of {', '.join(_DEVICE_TYPES)} at the "
                               f"start of the device string, got {type!r}")
        if idx:
            if index is not None:
                raise RuntimeError(f"device(): {type!r} already names an index; pass it once")
            if not idx.isdigit():
                raise RuntimeError(f"device(): invalid device string {type!r}")
            index = int(idx)
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)
                                  or index < 0):
            raise RuntimeError(f"device(): index must be a non-negative integer, got {index!r}")
        self = super().__new__(cls, name if index is None else f"{name}:{index}")
        self._type, self._index = name, index
        return self

    @property
    def type(self) -> str:
        return self._type

    @property
    def index(self):
        return self._index

    def __repr__(self):
        if self._index is None:
            return f"device(type='{self._type}')"
        return f"device(type='{self._type}', index={self._index})"

    def __reduce__(self):
        return (Device, (str(self),))


_DEVICE_TYPES = ("cpu", "cuda", "mps", "meta", "xpu")

# Tensor.type() names, as torch's 'torch.FloatTensor'
_TYPE_NAMES = {"float32": "torch.FloatTensor", "float64": "torch.DoubleTensor",
               "float16": "torch.HalfTensor", "int64": "torch.LongTensor",
               "int32": "torch.IntTensor", "int16": "torch.ShortTensor",
               "int8": "torch.CharTensor", "uint8": "torch.ByteTensor", "bool": "torch.BoolTensor"}
_TYPE_DTYPES = {v: np.dtype(k) for k, v in _TYPE_NAMES.items()}


def parse_to_args(args, dtype=None, device=None):
    """The (dtype, device) that ``to(*args)`` asks for, as torch's ``to``: a dtype, a device
    (a name or a :class:`Device`), a tensor (both of its), in any order; keywords give the
    defaults. Booleans (``non_blocking``, ``copy`` given by position) are skipped."""
    for a in args:
        if isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif isinstance(a, str) and a.split(":")[0] in _DEVICE_TYPES:
            device = a
        elif isinstance(a, bool):
            continue
        elif isinstance(a, int):
            device = Device(a)
        else:
            dtype = a
    return dtype, device


class Size(tuple):
    """A shape, as torch.Size: a tuple that also answers ``numel()``."""

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n


class _HookHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


register_tensor_type(Tensor)  # for chainrule.dtypes.result_type

from . import autograd as _autograd  # noqa: E402
from . import ops as _F  # noqa: E402
from .ops._methods import attach as _attach_methods  # noqa: E402
from .ops.arithmetic import Add as _Add  # noqa: E402
from .ops.arithmetic import Mul as _Mul  # noqa: E402
from .ops.index import _index_arrays  # noqa: E402
from .ops.nograd import _nograd  # noqa: E402


def _is_bool_operand(o):
    return isinstance(o, bool) or (isinstance(o, Tensor) and o._data.dtype == bool_) or (
        hasattr(o, "dtype") and getattr(o, "dtype", None) == bool_)

# Every op function declared a Tensor method (``@tensor_method`` in chainrule.ops) becomes one:
# ``Tensor.sum is chainrule.sum``.
_attach_methods(Tensor)

# The hottest operators are the functional ops themselves (one Python call fewer per op).
Tensor.__add__ = _F.add
Tensor.__sub__ = _F.sub
Tensor.__mul__ = _F.mul
Tensor.__truediv__ = _F.div
Tensor.__matmul__ = _F.matmul
