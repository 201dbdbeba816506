"""``watch(model, optimizer)``: gather gradient, update, activation and loop statistics while
training.

The loop calls ``watcher.step(step, loss)`` once per iteration, after ``optimizer.step()``.
Statistics are gathered only on every ``interval``-th iteration, so the cost of the other
iterations is one list append (and one counter in the wrapped ``optimizer.step``):

- after step s with (s + 1) % interval == 0 the watcher *arms* for the next iteration: it
  copies the parameters (the values before that iteration's update) and registers a gradient
  hook on every parameter (its gradient as backward made it, before any clipping, and what
  ``.grad`` already held), forward hooks on the modules (activation statistics, the order in
  which layers run, train/eval flags, the model's input and output), backward hooks on the
  layers with parameters (how much each call scales the gradient passing back through it),
  and, from the model's forward to the backward after it, a forward observer on the engine
  (activations applied as functions, the loss op: its classes, targets and input, a
  regression loss's target);
- ``optimizer.step`` is wrapped: on an armed iteration it reads ``.grad`` as the optimizer is
  about to use it (after clipping and whatever else the loop did), the learning rate and
  weight decay of each parameter group, then, after the update, the update's size and its
  direction against the gradient and the weights;
- ``watcher.step`` then computes parameter norms, stores one record, and disarms.

The first iteration is always gathered, to give a baseline.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import os
import warnings

import numpy as np

from .. import autograd
from . import stats as S
from .doctor import Finding, diagnose

JSONL = "diagnostics.jsonl"
_FUNCTIONAL = frozenset({"Relu", "Tanh", "Sigmoid"})
# Modules whose output is their input (or a reshaping of it): nothing new to measure.
_PASS_THROUGH = frozenset({"Dropout", "Identity", "Flatten", "Unflatten"})
# Layers that compute something else in eval() mode than in train() mode.
_MODE_SENSITIVE = ("Dropout", "BatchNorm", "InstanceNorm")
# Optimizers that divide by a running gradient scale: their first steps are about lr in size.
_ADAPTIVE = frozenset({"Adam", "AdamW", "Adagrad", "RMSprop", "Adamax", "NAdam", "RAdam",
                       "Adadelta", "SparseAdam", "Adafactor", "Lion"})
PICTURES = ("gradient_flow.png", "update_ratio.png", "activations.png")
_OPS_AFTER_FORWARD = 1000  # ops between the model's forward and backward that are still the loss


def watch(model, optimizer=None, interval: int = 50, activations: bool = True) -> Watcher:
    """Start watching ``model`` (and ``optimizer``) during training; see :class:`Watcher`."""
    return Watcher(model, optimizer, interval=interval, activations=activations)


def _mode_sensitive(module) -> bool:
    name = type(module).__name__
    if not any(k in name for k in _MODE_SENSITIVE):
        return False
    return not ("Dropout" in name and not getattr(module, "p", 0.0))


def _derived(a, out) -> bool:
    """Whether array ``a`` is ``out`` or a view of the same memory (a reshape, a squeeze)."""
    if a is out:
        return True
    base = getattr(a, "base", None)
    return base is not None and (base is out or base is getattr(out, "base", False))


def _first_tensor(x):
    if hasattr(x, "grad_fn") and hasattr(x, "_data"):
        return x
    if isinstance(x, (tuple, list)):
        for v in x:
            if hasattr(v, "grad_fn") and hasattr(v, "_data"):
                return v
    return None


def _first_array(x):
    t = _first_tensor(x)
    return None if t is None else S.to_host(t._data)


def _number(v):
    try:
        return float(v.item() if hasattr(v, "item") else v)
    except (TypeError, ValueError):
        return None


class Watcher:
    """Statistics of a training run, the doctor's findings about them, and their pictures.

    ``step(step, loss)`` after each optimizer step; ``findings()``; ``save(run_dir)`` writes
    ``diagnostics.jsonl`` and the PNG pictures; ``report_html()`` an HTML fragment; ``close()``
    removes the hooks and unwraps the optimizer.
    """

    def __init__(self, model, optimizer=None, interval: int = 50, activations: bool = True):
        if not hasattr(model, "named_parameters") or not hasattr(model, "named_modules"):
            raise TypeError(f"watch: expected an nn.Module, got {type(model).__name__}")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"watch: interval must be an integer >= 1, got {interval!r}")
        if optimizer is not None and not hasattr(optimizer, "param_groups"):
            raise TypeError(f"watch: expected an optimizer with param_groups, got "
                            f"{type(optimizer).__name__}")
        self.model, self.optimizer = model, optimizer
        self.interval, self.activations = interval, activations
        self.records: list[dict] = []
        self.steps: list[int] = []
        self.losses: list[float] = []
        self._hooks: list = []
        self._order: list[str] = []
        self._after: dict = {}
        self._acts: dict = {}
        self._before: dict = {}
        self._grads: dict | None = None
        self._hook_grads: dict = {}  # gradients seen by the leaf hooks in this gathering step
        self._last_param_module = None
        self._stack: list[str] = []  # paths of the modules running now (innermost last)
        self._functional: dict = {}  # activations applied as ops: key -> their description
        self._wrapped = False
        self._opt_calls = 0  # optimizer.step calls since watching began
        self._opt_calls_seen = 0  # ... as counted at the last watcher.step
        self._stepped_last = False  # the iteration before the armed one stepped the optimizer
        self._modules = self._describe_modules()
        self._sensitive = {p: m for p, m in self._all_modules if _mode_sensitive(m)}
        if optimizer is not None:
            self._own_step = optimizer.__dict__.get("step")  # someone else's wrapper, if any
            self._orig_step = optimizer.step
            optimizer.step = self._optimizer_step  # instance attribute shadows the method
            self._wrapped = True
        self._armed = False
        self._observer = None  # the op observer, from the model's forward to the backward
        self._in_forward = self._ops_after = 0
        self._probe_x = None  # one example of integer inputs (B, T), for the causal probe
        self._probed = False
        self._probing = None  # the module outputs captured while the probe runs
        self._arm()

    # -- the model's shape ------------------------------------------------------------------
    def _describe_modules(self):
        params = dict(self.model.named_parameters())
        self._params = params
        self._all_modules = list(self.model.named_modules())
        mods = {}
        for path, m in self._all_modules:
            own = [f"{path}.{n}" if path else n for n, _ in m.named_parameters(recurse=False)]
            own = [n for n in own if n in params]
            leaf = not any(True for _ in m.children())
            typ = type(m).__name__
            if own or (leaf and typ not in _PASS_THROUGH):
                mods[path] = {"type": typ, "params": own, "kind": S.activation_kind(typ),
                              "module": m, "leaf": leaf}
        return mods

    def _param_module(self):
        owner = {}
        for path, info in self._modules.items():
            for n in info["params"]:
                owner[n] = path
        return owner

    def _optimizer_meta(self):
        opt = self.optimizer
        if opt is None:
            return None
        names = {id(p): n for n, p in self._params.items()}
        typ = type(opt).__name__
        groups = []
        for g in opt.param_groups:
            groups.append({"params": [names[id(p)] for p in g["params"] if id(p) in names],
                           "decoupled": bool(g.get("decoupled_weight_decay", typ == "AdamW"))})
        state_keys = set()
        for st in list(getattr(opt, "state", {}).values())[:1]:
            state_keys.update(st)
        adaptive = typ in _ADAPTIVE or bool(state_keys & {"exp_avg_sq", "square_avg", "sum"})
        return {"type": typ, "adaptive": adaptive, "groups": groups}

    def meta(self) -> dict:
        """The run's description for the doctor (see :mod:`.doctor`)."""
        in_opt = None
        if self.optimizer is not None:
            in_opt = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        owner = self._param_module()
        params = {}
        for n, p in self._params.items():
            params[n] = {"shape": list(p.shape), "numel": int(p._data.size), "ndim": p._data.ndim,
                         "requires_grad": bool(p.requires_grad),
                         "in_optimizer": True if in_opt is None else id(p) in in_opt,
                         "module": owner.get(n, n.rpartition(".")[0])}
        with_params = [p for p, i in self._modules.items() if i["params"]]
        order = [p for p in self._order if p in with_params]
        order += [p for p in with_params if p not in order]
        acts = {p: {"type": i["type"], "kind": i["kind"], "after": self._after.get(p)}
                for p, i in self._modules.items() if i["kind"]}
        acts.update(self._functional)
        sensitive = {}
        for p, m in self._sensitive.items():
            d = {"type": type(m).__name__}
            if "Dropout" in d["type"]:
                d["p"] = float(getattr(m, "p", 0.0))
            sensitive[p] = d
        return {"type": "meta", "version": 2, "interval": self.interval,
                "modules": {p: {"type": i["type"], "params": i["params"]}
                            for p, i in self._modules.items()},
                "params": params, "order": order, "activations": acts,
                "optimizer": self._optimizer_meta(), "mode_sensitive": sensitive}

    # -- arming ------------------------------------------------------------------------------
    def _arm(self):
        self._armed = True
        self._grads = None
        self._acts = {}
        self._before = {n: p._data.copy() for n, p in self._params.items() if p.requires_grad}
        self._hook_grads = {}
        self._hook_n = {}  # backward passes that reached each parameter
        self._hook_sum = {}  # the sum of their gradients' norms
        self._prior = {}  # norm of what .grad held before this iteration's first backward
        self._n_hooks = 0
        self._step_info = None  # what the wrapped optimizer.step saw
        self._step_grads = {}
        self._update = None
        self._calls_at_arm = self._opt_calls
        self._closure = False
        self._modes = {}  # mode-sensitive module -> [train-mode calls, eval-mode calls]
        self._gains = {}  # layer -> [calls, sum of log10 gain, largest gain]
        self._input = self._output = self._root_out = None
        self._ce = self._regression = None
        self._softmax_at = self._last_leaf = None
        self._in_forward = self._ops_after = 0
        self._ce_head = self._ce_first = None
        for n, p in self._params.items():
            if p.requires_grad:
                self._hooks.append(p.register_hook(functools.partial(self._on_grad, n)))
        root = self.model
        self._hooks.append(root.register_forward_pre_hook(self._on_root_input))
        self._hooks.append(root.register_forward_hook(self._on_root_output))
        for path, m in self._sensitive.items():
            self._hooks.append(m.register_forward_hook(functools.partial(self._on_mode, path)))
        if self.activations:
            self._stack = []
            self._last_param_module = None
            for path, m in self._all_modules:
                info = self._modules.get(path)
                push = functools.partial(self._push, path)
                pop = functools.partial(self._on_forward, path, info)
                self._hooks.append(m.register_forward_pre_hook(push))
                self._hooks.append(m.register_forward_hook(pop))
                if info is not None and info["params"] and info["leaf"]:
                    gain = functools.partial(self._on_gain, path)
                    self._hooks.append(m.register_full_backward_hook(gain))

    def _disarm(self):
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._drop_observer()
        self._armed = False
        self._before = {}
        self._acts = {}
        self._step_grads = {}
        self._root_out = None

    # -- forward ------------------------------------------------------------------------------
    def _on_root_input(self, module, args):
        if not autograd.is_grad_enabled():
            return None
        if self._observer is None:
            # the op observer lives from the model's forward to the backward that follows it
            # (the loss is computed in between): no cost anywhere else
            self._observer = autograd.register_forward_observer(self._on_op)
        self._in_forward += 1
        self._ops_after = 0
        if self._input is None and args:
            x = args[0]
            data = getattr(x, "_data", None)
            if data is not None and hasattr(data, "dtype"):
                self._input = S.input_stats(data)
                if (not self._probed and data.ndim == 2 and data.shape[1] >= 3
                        and data.dtype.kind in "iu" and self.activations):
                    self._probe_x = S.to_host(data[:1]).copy()
        return None

    def _on_root_output(self, module, args, output):
        if not autograd.is_grad_enabled():
            return None
        self._in_forward = max(self._in_forward - 1, 0)
        if not getattr(module, "training", True):
            self._drop_observer()  # an evaluation pass: no training loss follows
            return None
        t = _first_tensor(output)
        if t is not None:
            self._root_out = t._data
            if self._output is None:
                op = t.grad_fn
                self._output = {"shape": list(t._data.shape),
                                "op": type(op).__name__ if op is not None else None,
                                "module": self._last_leaf}
        return None

    def _on_mode(self, path, module, args, output):
        if autograd.is_grad_enabled():
            c = self._modes.setdefault(path, [0, 0])
            c[0 if module.training else 1] += 1
        return None

    def _push(self, path, module, args):
        self._stack.append(path)
        return None

    def _drop_observer(self):
        if self._observer is not None:
            self._observer.remove()
            self._observer = None

    def _on_op(self, op, out, arrays):
        """Every op from the model's forward to the backward: the few that tell something are
        looked up by name. After the forward, the loss takes a handful of ops; a long run of
        ops with no backward is something else (evaluation with grad on), not watched."""
        if not self._in_forward:
            self._ops_after += 1
            if self._ops_after > _OPS_AFTER_FORWARD:
                self._drop_observer()
                return
        handler = _OP_HANDLERS.get(type(op).__name__)
        if handler is not None and autograd.is_grad_enabled():
            handler(self, op, out, arrays)

    def _on_functional(self, op, out, arrays):
        """Activations applied as functions inside a module's forward (``x.relu()``,
        ``F.sigmoid``): counted under the layer whose output they act on."""
        if not self.activations or not self._stack:
            return
        name = type(op).__name__
        where = self._stack[-1]
        info = self._modules.get(where)
        if (info and info["kind"]) or not self.model.training:
            return  # inside an activation module: its own hook counts it
        after = self._last_param_module
        key = f"{after or where}>{name.lower()}"
        if key not in self._functional:
            self._functional[key] = {"type": name, "kind": S.activation_kind(name),
                                     "after": after, "in": where, "functional": True}
        acc = self._acts.get(key)
        if acc is None:
            acc = self._acts[key] = S.ActivationAccumulator(S.activation_kind(name), name)
        acc.add(out)

    def _on_softmax(self, op, out, arrays):
        if self._stack:
            where = self._stack[-1]
            info = self._modules.get(where)
            if info is None or info["params"]:  # a softmax applied inside a layer's forward
                where = self._last_param_module or where
            self._softmax_at = where
        else:
            self._softmax_at = ""

    def _on_cross_entropy(self, op, out, arrays):
        if self._ce is not None or not arrays or getattr(arrays[0], "ndim", 0) != 2:
            return
        stats, idx, pred = S.logit_stats(arrays[0])
        if self._probe_x is not None:  # the first rows: the first sequence's positions
            self._ce_head = S.to_host(arrays[0][:256]).copy()
        if self._softmax_at is not None:
            stats["softmax_at"] = self._softmax_at
        self._ce = stats
        if op.is_recorded:
            op.register_hook(functools.partial(self._on_ce_grad, stats, idx, pred))

    def _on_ce_grad(self, stats, idx, pred, grad_inputs, grad_outputs):
        g = grad_inputs[0] if grad_inputs else None
        if self._armed and g is not None and "target_rows" not in stats:
            g = getattr(g, "_data", g)
            stats.update(S.targets_from_grad(g, idx, pred))
            if self._ce_head is not None:
                self._ce_first = S.first_targets(g, self._ce_head)
        return None

    def _on_sub(self, op, out, arrays):
        # ``output - target``: a regression loss (mse_loss, l1_loss, huber, or written out)
        if self._regression is not None or self._root_out is None or len(arrays) != 2:
            return
        a, b = arrays
        out_ = self._root_out
        if (_derived(a, out_) and not _derived(b, out_) and hasattr(b, "shape")
                and b.shape == a.shape and getattr(b, "dtype", None) is not None):
            self._regression = S.target_stats(b)

    def _on_forward(self, path, info, module, args, output):
        if self._stack and self._stack[-1] == path:
            self._stack.pop()
        if self._probing is not None:
            self._probing.append((path, _first_array(args), _first_array(output)))
            return None
        if info is None:
            return None  # a container: only the module stack
        if not autograd.is_grad_enabled() or not getattr(module, "training", True):
            return None  # evaluation passes are not training statistics
        if path not in self._after:
            if path not in self._order:
                self._order.append(path)
            if info["kind"]:
                self._after[path] = self._last_param_module
        if info["params"]:
            self._last_param_module = path
        if info["leaf"]:
            self._last_leaf = path
        data = getattr(output, "_data", None)
        if data is None or not hasattr(data, "dtype"):
            return None
        acc = self._acts.get(path)
        if acc is None:
            acc = self._acts[path] = S.ActivationAccumulator(info["kind"], info["type"])
        acc.add(data)
        return None

    # -- backward -----------------------------------------------------------------------------
    def _on_grad(self, name, g):
        # The gradient as backward made it, before any clipping. A second backward in the
        # same step (gradient accumulation) makes the sum the one to read, at the optimizer.
        if self._observer is not None:  # backward has started: the forward is over
            self._drop_observer()
        n = self._hook_n.get(name, 0)
        self._hook_n[name] = n + 1
        self._n_hooks += 1
        if n == 0:
            prior = self._params[name].grad  # hooks run before the gradient is added to .grad
            if prior is not None:
                self._prior[name] = S.norm(prior._data)
            st = S.grad_stats(g._data)
            self._hook_grads[name] = st
            self._hook_sum[name] = st["norm"]
        else:
            self._hook_sum[name] += S.norm(g._data)
        return None

    def _on_gain(self, path, module, grad_in, grad_out):
        """How much one call of a layer scales the gradient passing back through it:
        ||d loss / d input|| / ||d loss / d output||."""
        if not self._armed:
            return None
        si = sum(S.sumsq(g._data) for g in grad_in if g is not None)
        so = sum(S.sumsq(g._data) for g in grad_out if g is not None)
        if si > 0 and so > 0 and math.isfinite(si) and math.isfinite(so):
            gain = math.sqrt(si / so)
            acc = self._gains.setdefault(path, [0, 0.0, 0.0])
            acc[0] += 1
            acc[1] += math.log10(gain)
            acc[2] = max(acc[2], gain)
        return None

    # -- the optimizer step ---------------------------------------------------------------------
    def _optimizer_step(self, *args, **kwargs):
        self._opt_calls += 1
        if not self._armed:
            return self._orig_step(*args, **kwargs)
        if args or kwargs.get("closure") is not None:
            self._closure = True  # the closure runs backward inside the step
        if self._step_info is None and not self._closure:
            self._read_grads(at_step=True)
        out = self._orig_step(*args, **kwargs)
        if self._closure and self._grads is None:
            self._read_grads(at_step=False)
        self._measure_update(self._step_grads)
        self._step_grads = {}
        return out

    def _groups_now(self):
        opt = self.optimizer
        groups = []
        for g in opt.param_groups:
            groups.append({"lr": _number(g.get("lr")),
                           "weight_decay": _number(g.get("weight_decay", 0.0)) or 0.0})
        step = None
        for g in opt.param_groups:
            for p in g["params"]:
                st = getattr(opt, "state", {}).get(p)
                if st and "step" in st:
                    step = _number(st["step"])
                break
            break
        return groups, step

    def _read_grads(self, at_step=False):
        """The gradients of this iteration: as backward made them (the hooks' statistics; the
        summed ``.grad`` when several backward passes added up), and, when the optimizer is
        about to step, the norm of the ``.grad`` it will use."""
        grads = {}
        norms = {}
        for n, p in self._params.items():
            k = self._hook_n.get(n, 0)
            g = p.grad
            if g is None:
                if k:
                    grads[n] = self._hook_grads[n]
                if at_step and p.requires_grad:
                    norms[n] = None
                continue
            arr = g._data
            if k == 1:
                grads[n] = self._hook_grads[n]
                if at_step:
                    norms[n] = S.norm(arr)
            else:
                st = S.grad_stats(arr)
                grads[n] = st
                if at_step:
                    norms[n] = st["norm"]
            if at_step:
                self._step_grads[n] = arr
        self._grads = grads
        if at_step:
            groups, state_step = self._groups_now()
            self._step_info = {"norms": norms, "hooks": self._n_hooks, "groups": groups,
                               "state_step": state_step}

    def _measure_update(self, grads):
        """The update each parameter got: ||delta||^2, delta . p_before, delta . g (g the
        gradient the optimizer used) and ||p_after||^2, one pass each."""
        upd = {}
        for n, p in self._params.items():
            before = self._before.get(n)
            if before is None or before.shape != p._data.shape:
                continue
            after = p._data
            d = after - before
            g = grads.get(n)
            upd[n] = {"dd": S.sumsq(d), "dp": S.dot(d, before), "bb": S.sumsq(before),
                      "aa": S.sumsq(after),
                      "dg": S.dot(d, g) if g is not None and g.shape == d.shape else None}
        self._update = upd

    # -- the loop's call ---------------------------------------------------------------------
    def step(self, step: int, loss=None):
        """Record this iteration's loss; on a gathering iteration, its statistics. Call once per
        iteration, after ``optimizer.step()``."""
        if loss is not None:
            loss = float(loss.item() if hasattr(loss, "item") else loss)
        self.steps.append(int(step))
        self.losses.append(loss if loss is not None else math.nan)
        stepped = self._opt_calls != self._opt_calls_seen
        self._opt_calls_seen = self._opt_calls
        if self._armed:
            self._record(int(step), loss)
            self._disarm()
        if (step + 1) % self.interval == 0:
            self._stepped_last = stepped
            self._arm()

    def _record(self, step, loss):
        if self._grads is None:
            self._read_grads()  # the loop stepped the optimizer some other way
        if self._update is None:  # no optimizer step seen: the loop updated the weights itself
            self._measure_update({n: p.grad._data for n, p in self._params.items()
                                  if p.grad is not None})
        grads = self._grads
        for n, st in self._hook_grads.items():
            if n not in grads:  # backward ran after the optimizer's step
                grads[n] = st
        info = self._step_info
        params = {}
        for n, p in self._params.items():
            rec = {"has_grad": n in grads}
            if n in grads:
                rec.update(grads[n])
            k = self._hook_n.get(n, 0)
            if k:
                rec["n_backward"] = k
            if k > 1:
                rec["backward_norm_sum"] = self._hook_sum[n]
            if n in self._prior:
                rec["prior_norm"] = self._prior[n]
            if info is not None and n in info["norms"]:
                rec["step_norm"] = info["norms"][n]
            after = p._data
            u = self._update.get(n)
            aa = S.sumsq(after)
            rec["param_norm"] = math.sqrt(aa)
            if u is not None:
                dd = u["dd"]
                if aa != u["aa"]:  # changed again after the optimizer's step
                    dd = S.sumsq(after - self._before[n])
                nb = math.sqrt(u["bb"])
                rec["update_norm"] = math.sqrt(dd)
                rec["update_ratio"] = math.sqrt(dd) / nb if nb else (math.nan if dd else 0.0)
                rec["param_norm_before"] = nb
                rec["update_dot_param"] = u["dp"]
                if u["dg"] is not None:
                    rec["update_dot_grad"] = u["dg"]
            if p.requires_grad and after.ndim >= 2 and S.rows_identical(after):
                rec["rows_identical"] = True
                row = after.reshape(after.shape[0], -1)[0]
                if np.all(np.abs(row - row[0]) <= 1e-4 * abs(float(row[0]))):
                    rec["constant"] = float(row[0])
            params[n] = rec
        modules = {}
        for path, info_ in self._modules.items():
            names = info_["params"]
            if not names:
                continue
            m = {"param_norm": math.sqrt(sum(params[n]["param_norm"] ** 2 for n in names))}
            with_grad = [n for n in names if params[n]["has_grad"]]
            if with_grad:
                m["grad"] = S.merge_grad_stats([grads[n] for n in with_grad],
                                               [self._params[n]._data.size for n in with_grad])
            upd = [n for n in names if "update_norm" in params[n]]
            if upd:
                before = math.sqrt(sum((params[n]["param_norm"] ** 2) for n in upd))
                d = math.sqrt(sum(params[n]["update_norm"] ** 2 for n in upd))
                m["update_ratio"] = d / before if before else (math.nan if d else 0.0)
            g = self._gains.get(path)
            if g:
                m["gain"] = {"calls": g[0], "log10_sum": g[1], "max": g[2]}
            modules[path] = m
        acts = {p: a.result() for p, a in self._acts.items()}
        rec = {"type": "step", "step": step, "loss": loss, "grads_seen": bool(grads),
               "params": params, "modules": modules,
               "activations": {p: a for p, a in acts.items() if a}}
        if self.optimizer is not None:
            o = {"calls": self._opt_calls - self._calls_at_arm,
                 "stepped_before": self._stepped_last, "backward_passes": self._n_hooks}
            if self._closure:
                o["closure"] = True
            if info is not None:
                o["backward_before_step"] = info["hooks"]
                o["groups"] = info["groups"]
                if info["state_step"] is not None:
                    o["state_step"] = info["state_step"]
            else:
                o["groups"] = self._groups_now()[0]
            rec["optimizer"] = o
        if self._modes:
            rec["modes"] = {p: {"train": c[0], "eval": c[1]} for p, c in self._modes.items()}
        if self._input is not None:
            rec["input"] = self._input
        if self._output is not None:
            rec["output"] = self._output
        if self._ce is not None:
            rec["cross_entropy"] = self._ce
        if self._regression:
            rec["regression"] = self._regression
        probe = self._causal_probe()
        if probe is not None:
            rec["causal_probe"] = probe
        self.records.append(rec)

    # -- the causal probe ---------------------------------------------------------------------
    def _causal_probe(self):
        """For a model that predicts the next token (integer inputs (B, T), logits (B, T, C),
        and the targets of the first sequence are its inputs shifted by one): run it once on
        one example and on the same example with only the last token changed (no_grad, eval
        mode, then the modes restored), and see whether the outputs at the earlier positions
        change: they must not, unless a position sees the tokens after it. Returns what it
        found, or None when it does not apply (it runs once per run)."""
        x, t, out = self._probe_x, self._ce_first, self._output or {}
        if self._probed or x is None or t is None:
            return None
        T = x.shape[1]
        shape = out.get("shape") or []
        if len(shape) != 3 or shape[1] != T or len(t) < T:
            return None
        match = float(np.mean(t[:T - 1] == x[0, 1:T]))
        self._probed = True
        if match < 0.9:
            return None
        other = next((v for v in x[0] if v != x[0, -1]), None)
        if other is None:
            return None
        x2 = x.copy()
        x2[0, -1] = other
        from ..tensor import Tensor

        flags = [(m, m.training) for _, m in self._all_modules]
        runs = []
        try:
            self.model.eval()
            with autograd.no_grad():
                for xi in (x, x2):
                    self._probing = []
                    res = _first_array(self.model(Tensor(xi)))
                    runs.append((res, self._probing))
        except Exception:  # noqa: BLE001 - a model that needs more than its input: no probe
            return None
        finally:
            self._probing = None
            for m, f in flags:
                m.training = f
        (a, cap_a), (b, cap_b) = runs
        if a is None or b is None or a.shape != b.shape or a.ndim != 3:
            return None
        early_a, early_b = a[:, :T - 1], b[:, :T - 1]
        scale = float(np.abs(early_a).max()) if early_a.size else 0.0
        changed = float(np.abs(early_a - early_b).max()) if early_a.size else 0.0
        found = {"next_token": match, "positions": T, "changed": changed, "scale": scale}
        if changed > S.PROBE_TOL * max(scale, 1e-12):
            found["module"] = _first_mixing(cap_a, cap_b, T)
        return found

    # -- results -----------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        """The doctor's diagnosis of the run so far (an empty list for a healthy run)."""
        return diagnose(self.meta(), self.records, (self.steps, self.losses))

    def save(self, run_dir) -> list[str]:
        """Write ``diagnostics.jsonl`` and the pictures (PNG, when matplotlib is installed)
        into ``run_dir``; returns the paths written."""
        os.makedirs(run_dir, exist_ok=True)
        path = os.path.join(run_dir, JSONL)
        meta = self.meta()
        write_jsonl(path, meta, self.records, self.steps, self.losses)
        written = [path]
        try:
            from . import plots
        except ImportError:  # pragma: no cover - depends on the environment
            warnings.warn("diagnostics pictures need matplotlib: pip install 'chainrule[train]'",
                          stacklevel=2)
            return written
        written += plots.save_all(meta, self.records, run_dir)
        return written

    def report_html(self) -> str:
        """An HTML fragment: the findings and the pictures (inline PNG)."""
        return report_html(self.meta(), self.records, self.findings())

    def close(self):
        """Remove the hooks and give the optimizer its own ``step`` back."""
        self._disarm()
        if self._wrapped:
            d = self.optimizer.__dict__
            if d.get("step") == self._optimizer_step:  # not wrapped again since: unwrap
                if self._own_step is not None:
                    d["step"] = self._own_step
                else:
                    d.pop("step", None)
            self._wrapped = False


def _early(a, T):
    if a is None or a.ndim < 2 or a.shape[1] != T:
        return None
    return a[:, :T - 1]


def _differs(a, b):
    return float(np.abs(a - b).max()) > S.PROBE_TOL * max(float(np.abs(a).max()), 1e-12)


def _first_mixing(cap_a, cap_b, T):
    """The module where later positions first reach earlier ones: the first module (in the
    order forwards finish) whose output at the earlier positions differs between the two
    probe runs; when its input already differed there, the mixing happened in the forward
    of the module that called it (its parent)."""
    for (path, ia, oa), (_, ib, ob) in zip(cap_a, cap_b):
        ea, eb = _early(oa, T), _early(ob, T)
        if ea is None or eb is None or ea.shape != eb.shape or not ea.size or \
                not _differs(ea, eb):
            continue
        xa, xb = _early(ia, T), _early(ib, T)
        if xa is not None and xb is not None and xa.shape == xb.shape and xa.size and \
                xa.dtype.kind == "f" and _differs(xa, xb):
            return path.rpartition(".")[0]
        return path
    return ""


_OP_HANDLERS = {
    "Relu": Watcher._on_functional, "Tanh": Watcher._on_functional,
    "Sigmoid": Watcher._on_functional, "Softmax": Watcher._on_softmax,
    "CrossEntropyOp": Watcher._on_cross_entropy, "Sub": Watcher._on_sub,
}


# ----------------------------------------------------------------------------- files


def _clean(x):
    """JSON has no NaN or infinity: write them as strings that :func:`_restore` reads back."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
        return float(f"{x:.6g}")  # statistics need no more digits; the file stays small
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _restore(x):
    if isinstance(x, str) and x in _SPECIAL:
        return _SPECIAL[x]
    if isinstance(x, dict):
        return {k: (_restore(v) if k not in ("type", "kind") else v) for k, v in x.items()}
    if isinstance(x, list):
        return [_restore(v) for v in x]
    return x


def write_jsonl(path, meta, records, steps, losses, chunk: int = 1000):
    """Replace ``path`` atomically (a temporary file beside it, renamed over it: never written
    through a link, never half there)."""
    from ..serialization import atomic_open

    with atomic_open(path, "w") as f:
        f.write(json.dumps(_clean(meta)) + "\n")
        for r in records:
            f.write(json.dumps(_clean(r)) + "\n")
        for i in range(0, len(steps), chunk):
            f.write(json.dumps(_clean({"type": "loss", "steps": steps[i:i + chunk],
                                       "values": losses[i:i + chunk]})) + "\n")


def load_run(run_dir):
    """(meta, records, (steps, losses)) from ``run_dir/diagnostics.jsonl`` (or that file)."""
    path = run_dir if os.path.isfile(run_dir) else os.path.join(run_dir, JSONL)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"no {JSONL} in {run_dir!r}: train with chainrule.diagnostics.watch(model, "
            "optimizer) and call watcher.save(run_dir) (the GPT trainer does this by itself)")
    meta, records, steps, losses = None, [], [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = _restore(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e})") from None
            kind = obj.get("type")
            if kind == "meta":
                meta = obj
            elif kind == "step":
                records.append(obj)
            elif kind == "loss":
                steps += obj["steps"]
                losses += [math.nan if v is None else v for v in obj["values"]]
    if meta is None:
        raise ValueError(f"{path}: no meta line (the first line written by Watcher.save)")
    return meta, records, (steps, losses)


def diagnose_run(run_dir) -> list[Finding]:
    """The findings of a saved run."""
    meta, records, losses = load_run(run_dir)
    return diagnose(meta, records, losses)


# ----------------------------------------------------------------------------- HTML

_SEV_COLOR = {"error": "#c0392b", "warning": "#d68910", "info": "#2e86c1"}


def _esc(s) -> str:
    return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def report_html(meta, records, findings) -> str:
    parts = ['<section class="chainrule-diagnostics">', "<h2>Training diagnostics</h2>"]
    if not findings:
        parts.append(f"<p>No problems found in {len(records)} checked step(s).</p>")
    else:
        parts.append("<table><tr><th>severity</th><th>finding</th><th>where</th><th>step</th>"
                     "<th>what it means</th><th>suggested fix</th></tr>")
        for f in findings:
            color = _SEV_COLOR.get(f.severity, "#555")
            parts.append(
                f'<tr><td style="color:{color}"><b>{_esc(f.severity)}</b></td>'
                f"<td>{_esc(f.kind)}</td><td><code>{_esc(f.module or '(model)')}</code></td>"
                f"<td>{f.step}</td><td>{_esc(f.message)}</td><td>{_esc(f.suggestion)}</td></tr>")
        parts.append("</table>")
    try:
        from . import plots
    except ImportError:  # pragma: no cover - depends on the environment
        plots = None
    if plots is not None and records:
        for name, fn in plots.PLOTS.items():
            buf = io.BytesIO()
            fn(meta, records, buf)
            data = base64.b64encode(buf.getvalue()).decode()
            parts.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}"/>'
                         f"<figcaption>{_esc(name)}</figcaption></figure>")
    parts.append("</section>")
    return "\n".join(parts)
