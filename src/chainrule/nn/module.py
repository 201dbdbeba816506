"""Module: the base of every layer and model.

A module discovers its state from its attributes: assigning a :class:`Parameter` registers a
parameter, assigning a Module registers a submodule, and ``register_buffer`` registers a
non-trainable tensor saved with the state. Names are dotted paths (``blocks.3.attn.qkv.weight``)
shared by optimizers, checkpoints and diagnostics.

Every module knows its own path (the chain of attribute names from the root), so a shape or
dtype mistake inside ``features.3`` says so: :meth:`Module.__call__` prefixes the module's path
and class to ValueError/TypeError/IndexError/RuntimeError raised inside its ``forward``.
"""

from __future__ import annotations

import weakref
from collections import namedtuple

import numpy as np

from .. import backend
from ..autograd import Op, no_grad
from ..autograd import anomaly as _anomaly
from ..tensor import ShapeError, Tensor, as_dtype, parse_to_args
from .parameter import Parameter

_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictError(ValueError, RuntimeError):
    """``load_state_dict`` found missing, unexpected or mis-shaped keys (all listed at once).
    A ValueError, and a RuntimeError as in PyTorch."""


class _Handle:
    """Returned by the ``register_*_hook`` methods; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = _Handle._next_id
        _Handle._next_id += 1

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


_ANNOTATABLE = (ValueError, TypeError, IndexError, RuntimeError)


def _with_path(module, exc):
    """``exc`` re-made with the module's class and path in front of its message (once: the
    innermost module that sees the error names itself)."""
    if getattr(exc, "_chainrule_module", False):
        return exc
    msg = f"{module._where()}: {exc}"
    if type(exc) in _ANNOTATABLE or type(exc) in (StateDictError, ShapeError):
        new = type(exc)(msg)
        new._chainrule_module = True
        return new.with_traceback(exc.__traceback__)
    try:
        exc.add_note(f"(raised inside {module._where()})")
        exc._chainrule_module = True
    except AttributeError:  # pragma: no cover - exceptions without notes/attributes
        pass
    return exc


def module_error(module, cls, message):
    """A ``cls`` error whose message starts with the module's class and path."""
    e = cls(f"{module._where()}: {message}")
    e._chainrule_module = True
    return e


def _assigned(value, old):
    """What ``load_state_dict(..., assign=True)`` puts in ``old``'s place: ``value`` itself as a
    tensor (an array is wrapped, not copied); in a parameter's place a Parameter with ``old``'s
    ``requires_grad`` (``value`` itself when it is one)."""
    if not isinstance(value, Tensor):
        if not isinstance(value, np.ndarray) and backend.device_of(value) == "cpu":
            value = np.asarray(value)  # array-likes (a CPU torch tensor shares its memory)
        value = Tensor._wrap(value)
    if isinstance(old, Parameter):
        if isinstance(value, Parameter):
            return value.requires_grad_(old.requires_grad)
        return Parameter(value, requires_grad=old.requires_grad)
    return value


class _HookIdentity(Op):
    """y = x;  dx = g.  Marks a module boundary so module backward hooks can see gradients."""

    def forward(self, x):
        return x

    def backward(self, g):
        return (g,)


class Module:
    """Base class of layers and models (PyTorch's ``nn.Module`` interface)."""

    training: bool
    _parent = None  # weakref to the module this one is an attribute of
    _attr_name = ""

    def __init__(self):
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_non_persistent"] = set()
        d["_modules"] = {}
        d["_forward_pre_hooks"] = {}
        d["_forward_hooks"] = {}
        d["_backward_hooks"] = {}

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    # -- attribute discovery ------------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        params = d.get("_parameters")
        if params is None:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(
                    f"cannot assign {type(value).__name__} '{name}' before Module.__init__() "
                    f"is called; call super().__init__() first in {type(self).__name__}.__init__"
                )
            object.__setattr__(self, name, value)
            return
        if isinstance(value, Parameter):
            self._discard(name)
            params[name] = value
        elif isinstance(value, Module):
            self._discard(name)
            self._adopt(name, value)
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to parameter '{name}' of "
                    f"{type(self).__name__}; assign a nn.Parameter or None"
                )
            params[name] = None
        elif name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to submodule '{name}' of "
                    f"{type(self).__name__}; assign a Module or None"
                )
            d["_modules"][name] = None
        elif name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign {type(value).__name__} to buffer '{name}' of "
                    f"{type(self).__name__}; assign a Tensor or None"
                )
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # only reached when normal lookup fails
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            reg = d.get(registry)
            if reg is not None and name in reg:
                return reg[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if name in d[registry]:
                del d[registry][name]
                d["_non_persistent"].discard(name)
                return
        object.__delattr__(self, name)

    def __getstate__(self):
        # the parent link is a weak reference (not copyable or picklable); __setstate__ of the
        # parent restores it for its children
        state = self.__dict__.copy()
        state.pop("_parent", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for name, m in self._modules.items():
            if m is not None:
                object.__setattr__(m, "_parent", weakref.ref(self))
                object.__setattr__(m, "_attr_name", name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    def _discard(self, name):
        d = self.__dict__
        d.pop(name, None)
        for registry in ("_parameters", "_buffers", "_modules"):
            d[registry].pop(name, None)
        d["_non_persistent"].discard(name)

    def _adopt(self, name, module):
        self._modules[name] = module
        if module is not None:
            object.__setattr__(module, "_parent", weakref.ref(self))
            object.__setattr__(module, "_attr_name", name)

    def _check_name(self, name, what):
        if not isinstance(name, str):
            raise TypeError(f"{what} name must be a str, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"{what} name {name!r} must be non-empty and contain no '.'")
        if hasattr(self, name) and not any(name in r for r in
                                           (self._parameters, self._buffers, self._modules)):
            raise KeyError(f"attribute '{name}' already exists on {type(self).__name__}")

    def register_parameter(self, name: str, param):
        """Register ``param`` (a Parameter or None) under ``name``."""
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"register_parameter('{name}'): expected a nn.Parameter or None, got "
                f"{type(param).__name__}; wrap a tensor as nn.Parameter(t)"
            )
        self._discard(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True):
        """Register a non-trainable tensor (running statistics, masks) under ``name``; a
        persistent buffer is part of ``state_dict()``."""
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"register_buffer('{name}'): expected a Tensor or None, got {type(tensor).__name__}"
            )
        self._discard(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module):
        """Register ``module`` (or None) as a submodule called ``name``."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module('{name}'): {type(module).__name__} is not a Module")
        if not isinstance(name, str) or "." in name or name == "":
            raise KeyError(f"module name {name!r} must be a non-empty str without '.'")
        self._discard(name)
        self._adopt(name, module)

    register_module = add_module

    # -- paths --------------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """This module's dotted path from the root module ('' for the root)."""
        parts = []
        m = self
        while m._parent is not None:
            parent = m._parent()
            if parent is None or parent._modules.get(m._attr_name) is not m:
                break
            parts.append(m._attr_name)
            m = parent
        return ".".join(reversed(parts))

    def _where(self) -> str:
        p = self.path
        return f"{type(self).__name__} '{p}'" if p else f"{type(self).__name__} (root module)"

    # -- traversal ----------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """(path, module) for this module and every descendant, pre-order."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                       remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry, prefix, recurse, remove_duplicate=True):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, v in getattr(m, registry).items():
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield (f"{mprefix}.{name}" if mprefix else name), v

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True):
        """(path, parameter) pairs in registration order; a parameter shared by two modules
        (tied weights) is listed once, under its first path."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str):
        """The submodule at dotted path ``target`` ('' is this module)."""
        m = self
        if target == "":
            return m
        for i, part in enumerate(target.split(".")):
            sub = m._modules.get(part)
            if sub is None:
                done = ".".join(target.split(".")[:i]) or "(root)"
                raise AttributeError(
                    f"get_submodule('{target}'): {done} ({type(m).__name__}) has no submodule "
                    f"'{part}'; it has {sorted(m._modules)}"
                )
            m = sub
        return m

    def get_parameter(self, target: str):
        mod, _, name = target.rpartition(".")
        m = self.get_submodule(mod)
        if name not in m._parameters:
            raise AttributeError(f"get_parameter('{target}'): no parameter '{name}' in '{mod}'")
        return m._parameters[name]

    # -- modes and gradients ------------------------------------------------------------------
    def train(self, mode: bool = True):
        """Set training mode (dropout active) on this module and all descendants."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode): mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True):
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad._data[...] = 0

    def apply(self, fn):
        """Call ``fn(module)`` on every descendant (children first) and on this module."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- dtype and device ---------------------------------------------------------------------
    def _convert(self, fn):
        """Replace every parameter's and buffer's array by ``fn(array)``, keeping the tensor
        objects (optimizers and tied weights still see the same parameters)."""
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p._data = fn(p._data)
                    if p.grad is not None:
                        p.grad._data = fn(p.grad._data)
            for b in m._buffers.values():
                if b is not None:
                    b._data = fn(b._data)
        return self

    def to(self, *args, dtype=None, device=None):
        """``to(dtype)``, ``to(device)`` or both: floating parameters and buffers change dtype
        (integer buffers keep theirs), everything moves to the device."""
        dtype, device = parse_to_args(args, dtype, device)
        dtype = as_dtype(dtype)
        if dtype is not None and dtype.kind != "f":
            raise TypeError(f"Module.to: dtype must be floating, got {dtype}")
        dev = backend.normalize_device(device) if device is not None else None

        def fn(a):
            if dev is not None:
                a = backend.to_device(a, dev)
            if dtype is not None and a.dtype.kind == "f" and a.dtype != dtype:
                a = a.astype(dtype)
            return a

        return self._convert(fn)

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def half(self):
        return self.to(np.float16)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    # -- state --------------------------------------------------------------------------------
    def state_dict(self, prefix: str = "", keep_vars: bool = False):
        """{path: tensor} of parameters and persistent buffers. The tensors share memory with
        the module (detached unless ``keep_vars``)."""
        return {k: t if keep_vars else Tensor._wrap(t._data)
                for k, (_, _, t) in self._state_slots(prefix).items()}

    def _state_slots(self, prefix: str = ""):
        """{key: (module, attribute name, tensor)} of what :meth:`state_dict` holds."""
        out = {}
        for mprefix, m in self.named_modules(prefix=prefix, remove_duplicate=False):
            base = f"{mprefix}." if mprefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[base + name] = (m, name, p)
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[base + name] = (m, name, b)
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load ``state_dict``'s tensors (or arrays) into this module's parameters and buffers.

        By default the values are copied into the existing arrays, in place (cast to their
        dtype, moved to their device). With ``assign=True`` the given tensors themselves take
        the parameters' and buffers' places, as in PyTorch: nothing is copied, their dtype and
        device are kept, and a plain tensor or array put in a parameter's place becomes a new
        :class:`Parameter` (sharing its memory) with the old parameter's ``requires_grad``.
        An optimizer must then be built from the new ``parameters()``; weights tied by sharing
        one Parameter between modules stay tied only if the state dict gives that Parameter
        itself.

        Missing and unexpected keys are errors when ``strict``; a shape mismatch is always an
        error. All problems are reported together in one :class:`StateDictError`. Returns
        ``(missing_keys, unexpected_keys)``.
        """
        own = self._state_slots()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        misshaped = []
        for k, (_, _, t) in own.items():
            if k in state_dict:
                v = state_dict[k]
                shape = tuple(v.shape) if hasattr(v, "shape") else np.shape(v)
                if shape != tuple(t.shape):
                    misshaped.append((k, shape, tuple(t.shape)))
        if misshaped or (strict and (missing or unexpected)):
            lines = [f"Error(s) in loading state_dict for {type(self).__name__}:"]
            if missing and strict:
                lines.append(f"  missing keys ({len(missing)}): "
                             + ", ".join(repr(k) for k in missing))
            if unexpected and strict:
                lines.append(f"  unexpected keys ({len(unexpected)}): "
                             + ", ".join(repr(k) for k in unexpected))
            for k, got, want in misshaped:
                lines.append(f"  mis-shaped key {k!r}: checkpoint has shape {got}, the model "
                             f"expects {want}")
            if strict:
                lines.append("  (load_state_dict(..., strict=False) ignores missing and "
                             "unexpected keys)")
            raise StateDictError("\n".join(lines))
        with no_grad():
            for k, (m, name, t) in own.items():
                if k not in state_dict:
                    continue
                v = state_dict[k]
                if assign:
                    setattr(m, name, _assigned(v, t))
                    continue
                arr = v._data if isinstance(v, Tensor) else v
                if backend.device_of(arr) != backend.device_of(t._data):
                    arr = backend.to_device(arr, backend.device_of(t._data))
                t.xp.copyto(t._data, arr, casting="unsafe")
                t._bump()
        return _IncompatibleKeys(missing, unexpected)

    # -- hooks --------------------------------------------------------------------------------
    def register_forward_pre_hook(self, hook):
        """``hook(module, args)`` before ``forward``; a non-None return replaces ``args`` (a
        tuple, or a single value that becomes a 1-tuple)."""
        h = _Handle(self._forward_pre_hooks)
        self._forward_pre_hooks[h.id] = hook
        return h

    def register_forward_hook(self, hook):
        """``hook(module, args, output)`` after ``forward``; a non-None return replaces the
        output."""
        h = _Handle(self._forward_hooks)
        self._forward_hooks[h.id] = hook
        return h

    def register_full_backward_hook(self, hook):
        """``hook(module, grad_input, grad_output)`` during backward, once the gradients with
        respect to the module's tensor inputs are known. Both are tuples (None where a tensor
        gets no gradient, e.g. an input that does not require grad). For a module with one
        input that requires grad, a non-None return (a 1-tuple) replaces its gradient."""
        h = _Handle(self._backward_hooks)
        self._backward_hooks[h.id] = hook
        return h

    register_backward_hook = register_full_backward_hook

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        d = self.__dict__
        if d["_forward_pre_hooks"] or d["_forward_hooks"] or d["_backward_hooks"]:
            return self._call_with_hooks(args, kwargs)
        try:
            return self.forward(*args, **kwargs)
        except _ANNOTATABLE as e:
            raise _with_path(self, e) from None

    def _call_with_hooks(self, args, kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            r = hook(self, args)
            if r is not None:
                args = r if isinstance(r, tuple) else (r,)
        bw = list(self._backward_hooks.values())
        if bw:
            args, state = self._wrap_inputs(args, bw)
        try:
            out = self.forward(*args, **kwargs)
        except _ANNOTATABLE as e:
            raise _with_path(self, e) from None
        for hook in list(self._forward_hooks.values()):
            r = hook(self, args, out)
            if r is not None:
                out = r
        if bw:
            out = self._wrap_outputs(out, state)
        return out

    def _wrap_inputs(self, args, hooks):
        state = {"hooks": hooks, "grad_in": {}, "grad_out": None, "wanted": [],
                 "tensor_pos": [], "out_wanted": 0, "out_seen": 0}
        new = []
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                state["tensor_pos"].append(i)
                if a.requires_grad:
                    a = _HookIdentity.apply(a)
                    a.grad_fn.hooks = [self._input_grad_hook(state, i)]
                    state["wanted"].append(i)
            new.append(a)
        return tuple(new), state

    def _fire_backward_hooks(self, state):
        grad_out = state["grad_out"] or ()
        tensor_pos = state["tensor_pos"]
        grad_in = tuple(state["grad_in"].get(i) for i in tensor_pos)
        result = None
        for hook in state["hooks"]:
            r = hook(self, grad_in, tuple(grad_out))
            if r is not None:
                result = r
        return result

    def _input_grad_hook(self, state, i):
        def hook(g):
            state["grad_in"][i] = g
            if len(state["grad_in"]) == len(state["wanted"]):
                r = self._fire_backward_hooks(state)
                if r is not None and len(state["wanted"]) == 1:
                    return r[0] if isinstance(r, (tuple, list)) else r
            return None

        return hook

    def _wrap_outputs(self, out, state):
        single = isinstance(out, Tensor)
        outs = [out] if single else list(out) if isinstance(out, (tuple, list)) else [out]
        state["grad_out"] = [None] * len(outs)
        wrapped = []
        for j, o in enumerate(outs):
            if isinstance(o, Tensor) and o.requires_grad:
                state["out_wanted"] += 1
                o = _HookIdentity.apply(o)
                o.grad_fn.hooks = [self._output_grad_hook(state, j)]
            wrapped.append(o)
        return wrapped[0] if single else type(out)(wrapped) if isinstance(out, tuple) else wrapped

    def _output_grad_hook(self, state, j):
        def hook(g):
            state["grad_out"][j] = g
            state["out_seen"] += 1
            if not state["wanted"] and state["out_seen"] == state["out_wanted"]:
                # no input needs a gradient: the hooks fire now, with grad_input all None
                self._fire_backward_hooks(state)
            return None

        return hook

    # -- printing -----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}(" + (f"\n  {extra}" if extra else "")
        return head + "\n" + "\n".join(lines) + "\n)"


# anomaly mode names the module an op ran in from the frames that run a module
_anomaly.register_module_frames(Module.__call__.__code__, Module._call_with_hooks.__code__)
