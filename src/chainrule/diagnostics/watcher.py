"""``watch(model, optimizer)``: gather gradient, update and activation statistics while training.

The loop calls ``watcher.step(step, loss)`` once per iteration, after ``optimizer.step()``.
Statistics are gathered only on every ``interval``-th iteration, so the cost of the other
iterations is one list append:

- after step s with (s + 1) % interval == 0 the watcher *arms* for the next iteration: it
  copies the parameters (the values before that iteration's update), registers forward hooks
  on the modules (activation statistics, the order in which layers run, and activations
  applied as functions inside a forward) and a gradient hook on every parameter (its gradient
  as backward made it, before any clipping);
- ``optimizer.step`` is wrapped: on an armed iteration it takes those gradient statistics (or
  reads ``.grad`` where no hook saw a single gradient, e.g. with gradient accumulation) before
  the update, so ``zero_grad`` after the step does not hide them;
- ``watcher.step`` then computes parameter norms and update ratios ||p_after - p_before|| /
  ||p_before||, stores one record, and disarms.

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

from .. import autograd
from . import stats as S
from .doctor import Finding, diagnose

JSONL = "diagnostics.jsonl"
_FUNCTIONAL = frozenset({"Relu", "Tanh", "Sigmoid"})
# Modules whose output is their input (or a reshaping of it): nothing new to measure.
_PASS_THROUGH = frozenset({"Dropout", "Identity", "Flatten", "Unflatten"})
PICTURES = ("gradient_flow.png", "update_ratio.png", "activations.png")


def watch(model, optimizer=None, interval: int = 50, activations: bool = True) -> Watcher:
    """Start watching ``model`` (and ``optimizer``) during training; see :class:`Watcher`."""
    return Watcher(model, optimizer, interval=interval, activations=activations)


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
        self._modules = self._describe_modules()
        if optimizer is not None:
            self._own_step = optimizer.__dict__.get("step")  # someone else's wrapper, if any
            self._orig_step = optimizer.step
            optimizer.step = self._optimizer_step  # instance attribute shadows the method
            self._wrapped = True
        self._armed = False
        self._observer = None  # the forward observer while a watched forward runs
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
                              "module": m}
        return mods

    def _param_module(self):
        owner = {}
        for path, info in self._modules.items():
            for n in info["params"]:
                owner[n] = path
        return owner

    def meta(self) -> dict:
        """The run's description for the doctor (see :mod:`.doctor`)."""
        in_opt = None
        if self.optimizer is not None:
            in_opt = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        owner = self._param_module()
        params = {}
        for n, p in self._params.items():
            params[n] = {"shape": list(p.shape), "numel": int(p.data.size), "ndim": p.data.ndim,
                         "requires_grad": bool(p.requires_grad),
                         "in_optimizer": True if in_opt is None else id(p) in in_opt,
                         "module": owner.get(n, n.rpartition(".")[0])}
        with_params = [p for p, i in self._modules.items() if i["params"]]
        order = [p for p in self._order if p in with_params]
        order += [p for p in with_params if p not in order]
        acts = {p: {"type": i["type"], "kind": i["kind"], "after": self._after.get(p)}
                for p, i in self._modules.items() if i["kind"]}
        acts.update(self._functional)
        return {"type": "meta", "version": 1, "interval": self.interval,
                "modules": {p: {"type": i["type"], "params": i["params"]}
                            for p, i in self._modules.items()},
                "params": params, "order": order, "activations": acts}

    # -- arming ------------------------------------------------------------------------------
    def _arm(self):
        self._armed = True
        self._grads = None
        self._acts = {}
        self._before = {n: p.data.copy() for n, p in self._params.items() if p.requires_grad}
        self._hook_grads = {}
        for n, p in self._params.items():
            if p.requires_grad:
                self._hooks.append(p.register_hook(functools.partial(self._on_grad, n)))
        if self.activations:
            self._stack = []
            self._last_param_module = None
            for path, m in self._all_modules:
                info = self._modules.get(path)
                push = functools.partial(self._push, path)
                pop = functools.partial(self._on_forward, path, info)
                self._hooks.append(m.register_forward_pre_hook(push))
                self._hooks.append(m.register_forward_hook(pop))

    def _disarm(self):
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self._observer is not None:
            self._observer.remove()
            self._observer = None
        self._armed = False
        self._before = {}
        self._acts = {}

    def _push(self, path, module, args):
        if not self._stack and self._observer is None:
            # the op observer lives only while the model's forward runs: no cost elsewhere
            self._observer = autograd.register_forward_observer(self._on_op)
        self._stack.append(path)
        return None

    def _on_op(self, op, out, arrays):
        """Activations applied as functions inside a module's forward (``x.relu()``,
        ``F.sigmoid``): counted under the layer whose output they act on."""
        name = type(op).__name__
        if name not in _FUNCTIONAL or not self._stack or not autograd.is_grad_enabled():
            return
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

    def _on_forward(self, path, info, module, args, output):
        if self._stack and self._stack[-1] == path:
            self._stack.pop()
            if not self._stack and self._observer is not None:
                self._observer.remove()
                self._observer = None
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
        data = getattr(output, "data", None)
        if data is None or not hasattr(data, "dtype"):
            return None
        acc = self._acts.get(path)
        if acc is None:
            acc = self._acts[path] = S.ActivationAccumulator(info["kind"], info["type"])
        acc.add(data)
        return None

    def _on_grad(self, name, g):
        # The gradient as backward made it, before any clipping; a second backward in the
        # same step (gradient accumulation) makes the sum the one to read, at the optimizer.
        if name in self._hook_grads:
            self._hook_grads[name] = None
        else:
            self._hook_grads[name] = S.grad_stats(g.data)
        return None

    def _optimizer_step(self, *args, **kwargs):
        if self._armed and self._grads is None:
            self._read_grads()
        return self._orig_step(*args, **kwargs)

    def _read_grads(self):
        grads = {}
        for n, p in self._params.items():
            seen = self._hook_grads.get(n)
            if seen is not None:
                grads[n] = seen
            elif p.grad is not None:
                grads[n] = S.grad_stats(p.grad.data)
        self._grads = grads

    # -- the loop's call ---------------------------------------------------------------------
    def step(self, step: int, loss=None):
        """Record this iteration's loss; on a gathering iteration, its statistics. Call once per
        iteration, after ``optimizer.step()``."""
        if loss is not None:
            loss = float(loss.item() if hasattr(loss, "item") else loss)
        self.steps.append(int(step))
        self.losses.append(loss if loss is not None else math.nan)
        if self._armed:
            self._record(int(step), loss)
            self._disarm()
        if (step + 1) % self.interval == 0:
            self._arm()

    def _record(self, step, loss):
        if self._grads is None:
            self._read_grads()  # the loop stepped the optimizer some other way
        grads = self._grads
        params = {}
        for n, p in self._params.items():
            rec = {"has_grad": n in grads}
            if n in grads:
                rec.update(grads[n])
            after = p.data
            rec["param_norm"] = S.norm(after)
            before = self._before.get(n)
            if before is not None and before.shape == after.shape:
                d = S.norm(after - before)
                rec["update_norm"] = d
                rec["update_ratio"] = S.update_ratio(before, after)
            params[n] = rec
        modules = {}
        for path, info in self._modules.items():
            names = info["params"]
            if not names:
                continue
            m = {"param_norm": math.sqrt(sum(params[n]["param_norm"] ** 2 for n in names))}
            with_grad = [n for n in names if params[n]["has_grad"]]
            if with_grad:
                m["grad"] = S.merge_grad_stats([grads[n] for n in with_grad],
                                               [self._params[n].data.size for n in with_grad])
            upd = [n for n in names if "update_norm" in params[n]]
            if upd:
                before = math.sqrt(sum((params[n]["param_norm"] ** 2) for n in upd))
                d = math.sqrt(sum(params[n]["update_norm"] ** 2 for n in upd))
                m["update_ratio"] = d / before if before else (math.nan if d else 0.0)
            modules[path] = m
        acts = {p: a.result() for p, a in self._acts.items()}
        self.records.append({"type": "step", "step": step, "loss": loss,
                             "grads_seen": bool(grads), "params": params, "modules": modules,
                             "activations": {p: a for p, a in acts.items() if a}})

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
    with open(path, "w") as f:
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
