"""The optimizer base: parameter groups, per-parameter state, ``zero_grad`` and state dicts.

An optimizer holds ``param_groups`` (a list of dicts: ``'params'`` plus that group's options)
and ``state`` (a dict from parameter to that parameter's buffers), exactly as PyTorch lays them
out, so a training loop and its checkpoints port unchanged. Subclasses write only the update of
one parameter, in place on its array, in ``_update``.
"""

from __future__ import annotations

import numbers

from .. import backend
from ..autograd import enable_grad
from ..tensor import Tensor


class _Required:
    """Marks a hyper-parameter that has no default and must be given."""

    def __repr__(self):
        return "<required parameter>"


required = _Required()


def _copy_state_value(key, value, like):
    """A loaded state value as this optimizer keeps it: arrays copied, floats cast to the
    parameter's dtype (as PyTorch does), the 'step' counter as a Python number."""
    if isinstance(value, Tensor):
        value = value._data
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        return value
    if key == "step":  # PyTorch keeps it as a 0-d tensor
        step = float(value.item())
        return int(step) if step.is_integer() else step
    value = backend.to_device(value, backend.device_of(like._data))  # state follows its param
    arr = like.xp.array(value, dtype=like.dtype if value.dtype.kind == "f" else value.dtype)
    return Tensor._wrap(arr)


class Optimizer:
    """Base class: ``Optimizer(params, defaults)``.

    ``params`` is an iterable of tensors, or of dicts each holding ``'params'`` and the options
    that differ from ``defaults`` for that group.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}
        self.param_groups: list[dict] = []
        self._scratch: dict = {}
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of tensors or of dicts, got a "
                "single Tensor; pass [tensor] or model.parameters()"
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{type(self).__name__}: parameters must be given in a fixed order "
                            "(a list), not a set, so that state dicts map indices to the same "
                            "parameters")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"

    # -- groups -------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict):
        """Add a group of parameters with its own options (the rest from ``defaults``)."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}.add_param_group: expected a dict, got "
                            f"{type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{name}.add_param_group: the group has no 'params' entry")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(f"{name}: parameters must be given in a fixed order (a list), not a "
                            "set, so that state dicts map indices to the same parameters")
        else:
            params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameter {i} of the group is a {type(p).__name__}, "
                                "expected a Tensor")
            if not p.is_leaf:
                raise ValueError(f"{name}: parameter {i} of the group (shape {tuple(p.shape)}) is "
                                 "not a leaf tensor; optimize leaves (parameters), not results")
            if not p.is_floating_point():
                raise TypeError(f"{name}: parameter {i} has dtype {p.dtype}; only floating-point "
                                "tensors can be optimized")
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{name}: a parameter group lists the same tensor twice")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if seen.intersection(ids):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        group = {"params": params}
        for key, default in self.defaults.items():
            value = param_group.get(key, default)
            if value is required:
                raise ValueError(f"{name}: parameter group didn't specify a value of required "
                                 f"option '{key}'")
            group[key] = value
        for key, value in param_group.items():
            group.setdefault(key, value)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict):
        """Raise ValueError for out-of-range options (subclasses extend)."""
        lr = group.get("lr")
        if lr is not None and not (isinstance(lr, (int, float)) and lr >= 0):
            raise ValueError(f"{type(self).__name__}: invalid learning rate lr={lr!r}; "
                             "expected a number >= 0")
        wd = group.get("weight_decay", 0.0)
        if not wd >= 0:
            raise ValueError(f"{type(self).__name__}: invalid weight_decay={wd!r}; expected >= 0")

    # -- the step -----------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True):
        """Drop every parameter's gradient (``set_to_none``) or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad._data.fill(0)

    def step(self, closure=None):
        """Update every parameter that has a gradient; returns ``closure()`` when given (the
        closure re-evaluates the loss and calls backward, as L-BFGS-style loops expect)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                g = grad._data
                if g.shape != p._data.shape:
                    raise RuntimeError(
                        f"{type(self).__name__}.step: a parameter of shape {tuple(p.shape)} has a "
                        f"gradient of shape {tuple(g.shape)}"
                    )
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = self._init_state(p, group)
                self._update(p._data, g, state, group)
                p._bump()  # an in-place change: tensors saved for backward notice it
        return loss

    def _init_state(self, p: Tensor, group: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _update(self, p, g, state: dict, group: dict):  # pragma: no cover - abstract
        raise NotImplementedError

    def _buffers(self, p, n: int = 1):
        """``n`` scratch arrays shaped like ``p``, reused across parameters and steps so that the
        update allocates nothing (they are views into one buffer per dtype)."""
        key = (p.dtype, type(p))
        size = p.size
        buf = self._scratch.get(key)
        if buf is None or buf.shape[0] < n or buf.shape[1] < size:
            old = buf.shape if buf is not None else (0, 0)
            xp = backend.array_module(p)
            buf = xp.empty((max(n, old[0]), max(size, old[1])), dtype=p.dtype)
            self._scratch[key] = buf
        return [buf[i, :size].reshape(p.shape) for i in range(n)]

    # -- state dicts --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}``, with
        parameters numbered in group order, as in PyTorch. Buffers are shared, not copied."""
        index: dict = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = dict(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict):
        """Restore state and options saved by :meth:`state_dict` (this optimizer's parameters
        are kept; buffers are copied and cast to each parameter's dtype).

        Everything is checked before anything changes: a malformed state dict (a missing or
        mistyped entry, a buffer of the wrong shape, state for a parameter no group lists, a
        group option out of range) raises one ValueError naming the entry."""
        name = type(self).__name__
        where = f"{name}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(f"{where}: expected a dict with 'state' and 'param_groups' (from "
                             "Optimizer.state_dict())")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not all(
                isinstance(g, dict) for g in saved_groups):
            raise ValueError(f"{where}: 'param_groups' must be a list of dicts, got "
                             f"{type(saved_groups).__name__}")
        if not isinstance(saved_state, dict):
            raise ValueError(f"{where}: 'state' must be a dict of parameter index -> state, got "
                             f"{type(saved_state).__name__}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{where}: the state dict has {len(saved_groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        by_index: dict = {}
        merged = []
        for i, (mine, saved) in enumerate(zip(self.param_groups, saved_groups)):
            indices = saved.get("params")
            if not isinstance(indices, (list, tuple)) or not all(
                    _is_index(k) for k in indices):
                raise ValueError(f"{where}: param_groups[{i}]['params'] must be a list of "
                                 f"parameter indices, got {indices!r:.80}")
            if len(mine["params"]) != len(indices):
                raise ValueError(f"{where}: parameter group {i} has {len(indices)} parameters "
                                 f"in the state dict but {len(mine['params'])} here")
            for idx, p in zip(indices, mine["params"]):
                if int(idx) in by_index:
                    raise ValueError(f"{where}: parameter index {idx} is listed twice in "
                                     "param_groups")
                by_index[int(idx)] = (p, i)
            group = {**mine, **{k: v for k, v in saved.items() if k != "params"}}
            try:
                self._check_group(group)
            except (TypeError, ValueError, KeyError) as e:
                raise ValueError(f"{where}: param_groups[{i}]: {e}") from None
            merged.append(group)
        templates = [self._state_template(g) for g in merged]
        new_state: dict = {}
        for idx, entry in saved_state.items():
            if not _is_index(idx):
                raise ValueError(f"{where}: state key {idx!r:.40} is not a parameter index")
            if int(idx) not in by_index:
                raise ValueError(f"{where}: state for parameter index {idx}, which no parameter "
                                 "group lists")
            p, gi = by_index[int(idx)]
            if not isinstance(entry, dict):
                raise ValueError(f"{where}: the state of parameter {idx} must be a dict of "
                                 f"buffers, got {type(entry).__name__}")
            new_state[p] = self._load_entry(where, idx, entry, p, templates[gi])
        for mine, group in zip(self.param_groups, merged):
            for key, value in group.items():
                if key != "params":
                    mine[key] = value
        self.state = new_state

    def _state_template(self, group: dict):
        """``{key: is_buffer}`` of the state this optimizer makes for a parameter of ``group``
        (from :meth:`_init_state` on a one-element stand-in; None when it makes none eagerly)."""
        if not group["params"]:
            return None
        a = group["params"][0]._data
        try:
            made = self._init_state(Tensor._wrap(backend.array_module(a).zeros(1, a.dtype)),
                                    group)
        except NotImplementedError:
            return None
        except Exception:  # noqa: BLE001 - an optimizer whose state needs the real parameter
            return None
        return {k: isinstance(v, Tensor) for k, v in made.items()}

    @staticmethod
    def _load_entry(where, idx, entry, p, template) -> dict:
        values = {}
        shape = tuple(p.shape)
        for key in template or ():
            if key not in entry:
                raise ValueError(f"{where}: the state of parameter {idx} lacks '{key}' (it holds "
                                 f"{', '.join(map(repr, entry)) or 'nothing'}; expected "
                                 f"{', '.join(map(repr, template))})")
        for key, value in entry.items():
            buffer = bool(template and template.get(key))
            if key == "step" or (template is not None and key in template and not buffer):
                if not _is_number(value, nonnegative=key == "step"):
                    least = " >= 0" if key == "step" else ""
                    raise ValueError(f"{where}: state '{key}' of parameter {idx} is "
                                     f"{_describe(value)}; expected a number{least}")
            elif buffer:
                v = value._data if isinstance(value, Tensor) else value
                if not (hasattr(v, "shape") and hasattr(v, "dtype")) or v.dtype.kind not in "iuf":
                    raise ValueError(f"{where}: state '{key}' of parameter {idx} is "
                                     f"{_describe(value)}; expected a float tensor of shape "
                                     f"{shape}")
                if tuple(v.shape) != shape:
                    raise ValueError(f"{where}: state '{key}' of parameter {idx} has shape "
                                     f"{tuple(v.shape)} but the parameter has shape {shape}")
                if v.dtype.kind != "f":  # cast to the parameter's dtype, as PyTorch does
                    value = v.astype(p._data.dtype)
            value = _copy_state_value(key, value, p)
            if isinstance(value, Tensor) and value._data.size > 1 and value.shape != p.shape:
                raise ValueError(f"{where}: state '{key}' of parameter {idx} has shape "
                                 f"{tuple(value.shape)} but the parameter has shape {shape}")
            values[key] = value
        return values


def _is_index(k) -> bool:
    return (isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 0) or (
        isinstance(k, str) and k.isdigit())


def _is_number(v, nonnegative=False) -> bool:
    """A real number, or a one-element integer or float array/tensor (PyTorch's 0-d step)."""
    v = v._data if isinstance(v, Tensor) else v
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        if v.size != 1 or v.dtype.kind not in "iuf":
            return False
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (numbers.Integral, numbers.Real)):
        return False
    return not nonnegative or v >= 0


def _describe(v) -> str:
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        return f"a {type(v).__name__} of shape {tuple(v.shape)} and dtype {v.dtype}"
    return f"a {type(v).__name__} ({v!r:.40})"
