"""The training doctor: rules over gathered statistics that say what is wrong, where and when.

The rules read plain data (dicts and lists, as written to ``diagnostics.jsonl``), so a finished
run is diagnosed from its files exactly as a live one is from memory:

- ``meta``: ``modules`` {path: {type, params}}, ``params`` {name: {shape, numel, ndim,
  requires_grad, in_optimizer, module}}, ``order`` (paths of modules that own parameters, from
  the input to the output, as the forward pass ran them), ``activations`` {path: {type, kind,
  after}};
- ``records``: one per gathering step: ``step``, ``loss``, ``grads_seen``, ``params`` {name:
  grad statistics, param_norm, update_ratio, has_grad}, ``modules`` {path: {grad,
  param_norm, update_ratio}}, ``activations`` {path: activation statistics};
- ``losses``: (steps, values) of every step.

Thresholds are module constants (below), chosen so that healthy runs stay quiet: a default GPT,
a small MLP on a learnable problem. Each rule explains itself in its ``message``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field

VANISH_FACTOR = 1e-3  # a layer whose gradient RMS is 1000x below the output side's: vanishing
EXPLODE_GROWTH = 1e3  # total gradient norm 1000x its first value: exploding
SPIKE_FACTOR = 3.0  # loss 3x the median of the recent ones: a spike
SPIKE_WINDOW = 20
RATIO_HIGH = 0.25  # median update/parameter ratio of the weight matrices above this: lr too high
RATIO_LOW = 1e-5  # ... below this in the last LOW_RECORDS records: lr too low
LOW_RECORDS = 3
DEAD_FRAC = 0.5  # half the units of a ReLU layer never fire: dead units
SAT_FRAC = 0.5  # half the outputs of a tanh/sigmoid within 1% of the range's ends: saturated
STALL_MIN_STEPS = 40  # fewer losses than this cannot show a stall
RISE_MIN_STEPS = 10
RISE_FACTOR = 1.5  # the end of the run 1.5x the start (positive losses): diverging
STALL_IMPROVEMENT = 0.01  # the end of the run no more than 1% below the start: stalled

SEVERITIES = ("error", "warning", "info")


@dataclass
class Finding:
    """One diagnosis: what (``kind``), where (``module`` path, '' for the whole model), when
    (the first ``step`` it was seen), in plain language, with a suggested fix."""

    kind: str
    module: str
    step: int
    message: str
    suggestion: str
    severity: str = "warning"
    related: list = field(default_factory=list)  # other module or parameter paths involved

    def __str__(self):
        where = f"'{self.module}'" if self.module else "(whole model)"
        return (f"[{self.severity}] {self.kind} at {where}, step {self.step}: {self.message}\n"
                f"    fix: {self.suggestion}")

    def to_dict(self) -> dict:
        return asdict(self)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if not math.isfinite(x):
        return str(x)
    return f"{x:.3g}"


def _module_of(meta, name):
    return meta["params"].get(name, {}).get("module", name.rpartition(".")[0])


def _group_by_module(meta, names):
    groups: dict = {}
    for n in names:
        groups.setdefault(_module_of(meta, n), []).append(n)
    return groups


def _order_index(meta):
    return {p: i for i, p in enumerate(meta.get("order", []))}


def diagnose(meta: dict, records: list, losses=((), ())) -> list[Finding]:
    """All findings for a run, most severe first, then by step."""
    steps, values = list(losses[0]), list(losses[1])
    findings: list[Finding] = []
    for rule in (_frozen, _not_in_optimizer, _not_updated, _no_gradient, _nonfinite, _exploding,
                 _vanishing, _learning_rate, _dead_relu, _saturated, _zero_gradient):
        findings.extend(rule(meta, records, findings))
    findings.extend(_loss_rules(records, steps, values, findings))
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (rank.get(f.severity, 9), f.step, f.module))
    return findings


def _first_step(records):
    return records[0]["step"] if records else 0


# ------------------------------------------------------------------------ parameters and graph


def _frozen(meta, records, _found):
    params = meta["params"]
    frozen = [n for n, p in params.items() if not p["requires_grad"]]
    if not frozen:
        return []
    total = sum(p["numel"] for p in params.values()) or 1
    share = sum(params[n]["numel"] for n in frozen) / total
    # Most of the model frozen is deliberate fine-tuning; a few frozen layers are more likely
    # a slip (a requires_grad_(False) left over, a freeze that was meant to be undone).
    severity = "info" if share > 0.5 else "warning"
    out = []
    for mod, names in _group_by_module(meta, frozen).items():
        typ = meta["modules"].get(mod, {}).get("type", "module")
        out.append(Finding(
            "frozen", mod, _first_step(records),
            f"{typ} '{mod}' is frozen: {', '.join(names)} "
            f"{'has' if len(names) == 1 else 'have'} requires_grad=False, so it never learns "
            f"({share:.0%} of the model's parameters are frozen)",
            "if this layer should train, call requires_grad_(True) on it (and make sure its "
            "parameters are in the optimizer); if the freeze is intended, ignore this",
            severity, names))
    return out


def _not_in_optimizer(meta, records, _found):
    params = meta["params"]
    missing = [n for n, p in params.items()
               if p["requires_grad"] and not p.get("in_optimizer", True)]
    if not missing:
        return []
    out = []
    for mod, names in _group_by_module(meta, missing).items():
        got = [n for n in names if any(r["params"].get(n, {}).get("has_grad") for r in records)]
        step = next((r["step"] for r in records
                     if any(r["params"].get(n, {}).get("has_grad") for n in names)),
                    _first_step(records))
        what = "gets a gradient but is" if got else "requires grad but is"
        out.append(Finding(
            "not_in_optimizer", mod, step,
            f"{', '.join(names)} {what} not in the optimizer: it is never updated",
            "pass model.parameters() (or a param group that includes these names) to the "
            "optimizer, or add them with optimizer.add_param_group",
            "error", names))
    return out


def _not_updated(meta, records, _found):
    """In the optimizer, given non-zero gradients, and yet never changed (lr 0 in its group,
    a mask, an optimizer that skips it)."""
    stuck = []
    for n, p in meta["params"].items():
        if not (p["requires_grad"] and p.get("in_optimizer", True)):
            continue
        seen = [r["params"][n] for r in records
                if r["params"].get(n, {}).get("has_grad") and r["params"][n].get("norm")
                and _finite(r["params"][n]["norm"]) and "update_norm" in r["params"][n]]
        if seen and all(s["update_norm"] == 0.0 for s in seen):
            stuck.append(n)
    out = []
    for mod, names in _group_by_module(meta, stuck).items():
        out.append(Finding(
            "not_updated", mod, _first_step(records),
            f"{', '.join(names)} get non-zero gradients and are in the optimizer, but the "
            "optimizer never changed them in any checked step",
            "check the learning rate of their parameter group (0?), and any code that restores "
            "or masks these parameters after the step",
            "error", names))
    return out


def _with_grads(records):
    return [r for r in records if r.get("grads_seen")]


def _no_gradient(meta, records, _found):
    seen = _with_grads(records)
    if not seen:
        return []
    params = meta["params"]
    cut = [n for n, p in params.items()
           if p["requires_grad"] and p.get("in_optimizer", True)
           and not any(r["params"].get(n, {}).get("has_grad") for r in seen)]
    out = []
    for mod, names in _group_by_module(meta, cut).items():
        typ = meta["modules"].get(mod, {}).get("type", "module")
        out.append(Finding(
            "no_gradient", mod, seen[0]["step"],
            f"{typ} '{mod}' receives no gradient: {', '.join(names)} require grad but backward "
            f"never reached them in {len(seen)} checked step(s), so the optimizer cannot move "
            "them; the graph from them to the loss is cut",
            "look for .detach(), .data, .item()/.numpy() round trips, integer casts or "
            "no_grad() between this layer and the loss, or a layer defined but not used in "
            "forward()",
            "error", names))
    return out


def _nonfinite(meta, records, _found):
    order = _order_index(meta)
    for r in records:
        bad = [p for p, m in r["modules"].items() if m.get("grad", {}).get("nonfinite")]
        if bad:
            bad.sort(key=lambda p: order.get(p, -1))
            n = sum(r["modules"][p]["grad"]["nonfinite"] for p in bad)
            return [Finding(
                "nonfinite_gradient", bad[-1], r["step"],
                f"{n} gradient value(s) are NaN or infinite in {len(bad)} layer(s) "
                f"(from the output side: {', '.join(reversed(bad[-5:]))})",
                "run one step under chainrule.diagnostics.detect_anomaly() to find the op and "
                "line that makes the first non-finite value; lower the learning rate or clip "
                "gradients (clip_grad_norm_)",
                "error", bad)]
    return []


def _total_norm(r):
    ss = 0.0
    for m in r["modules"].values():
        g = m.get("grad")
        if g:
            if not _finite(g["norm"]):
                return math.inf
            ss += g["norm"] ** 2
    return math.sqrt(ss)


def _largest_layer(r):
    best, best_n = "", -1.0
    for p, m in r["modules"].items():
        n = m.get("grad", {}).get("norm", 0.0)
        if _finite(n) and n > best_n:
            best, best_n = p, n
    return best


def _exploding(meta, records, found):
    seen = [r for r in _with_grads(records)]
    norms = [_total_norm(r) for r in seen]
    if len(norms) < 2 or not (_finite(norms[0]) and norms[0] > 0):
        return []
    for i in range(1, len(norms)):
        n = norms[i]
        prev = [x for x in norms[:i] if _finite(x)]
        base = statistics.median(prev) if prev else norms[0]
        if _finite(n) and n > EXPLODE_GROWTH * min(base, norms[0]):
            r = seen[i]
            return [Finding(
                "exploding", _largest_layer(r), r["step"],
                f"the total gradient norm grew from {_fmt(norms[0])} (step {seen[0]['step']}) "
                f"to {_fmt(n)} (step {r['step']}), {n / norms[0]:.2g}x: gradients are exploding",
                "lower the learning rate, clip gradients (clip_grad_norm_(params, 1.0)), or add "
                "normalisation (LayerNorm) / a better initialisation",
                "error")]
    return []


def _layer_rms(meta, r):
    out = []
    for p in meta.get("order", []):
        g = r["modules"].get(p, {}).get("grad")
        if g and _finite(g["rms"]) and g["rms"] > 0:
            out.append((p, g["rms"]))
    return out


def _vanishing(meta, records, _found):
    """Gradient RMS falling by orders of magnitude from the output side to the input side."""
    hits = []
    for r in _with_grads(records):
        layers = _layer_rms(meta, r)
        if len(layers) < 4:
            continue
        tail = layers[-max(1, len(layers) // 3):]
        ref_path, ref = max(tail, key=lambda x: x[1])
        head = layers[: len(layers) // 2]
        low = [(p, v) for p, v in head if v < VANISH_FACTOR * ref]
        if low and low[0][0] == layers[0][0]:
            hits.append((r, low, ref_path, ref, layers))
    seen = _with_grads(records)
    if not hits or len(hits) * 2 < len(seen):
        return []
    r, low, ref_path, ref, layers = hits[0]
    first_path, first = layers[0]
    names = [p for p, _ in low]
    return [Finding(
        "vanishing_gradient", first_path, r["step"],
        f"gradients vanish towards the input: RMS {_fmt(ref)} at '{ref_path}' (output side) "
        f"but {_fmt(first)} at '{first_path}', {math.log10(ref / first):.0f} orders of magnitude "
        f"smaller; {len(names)} early layer(s) barely learn: {', '.join(names[:8])}"
        f"{' ...' if len(names) > 8 else ''}",
        "use non-saturating activations (ReLU/GELU) instead of sigmoid/tanh in deep stacks, an "
        "initialisation scaled for them (kaiming_normal_), normalisation layers (LayerNorm/"
        "BatchNorm) or residual connections",
        "warning", names)]


def _matrix_ratios(meta, r):
    out = []
    for n, s in r["params"].items():
        p = meta["params"].get(n)
        if p and p["ndim"] >= 2 and p.get("in_optimizer", True) and p["requires_grad"]:
            v = s.get("update_ratio")
            if v is not None and not math.isnan(v):
                out.append((n, v))
    return out


def _learning_rate(meta, records, found):
    out = []
    med = []
    for r in records:
        ratios = _matrix_ratios(meta, r)
        if ratios:
            med.append((r, statistics.median(v for _, v in ratios), ratios))
    for r, m, ratios in med:
        if m > RATIO_HIGH:
            name, worst = max(ratios, key=lambda x: x[1] if math.isfinite(x[1]) else math.inf)
            out.append(Finding(
                "lr_too_high", _module_of(meta, name), r["step"],
                f"each optimizer step changes the weights by {_fmt(m)} of their size (median "
                f"over weight matrices; largest {_fmt(worst)} at {name}); healthy training "
                "moves them by about 1e-3 (1e-4 to 1e-2) per step",
                "lower the learning rate (by 10x or more), add warm-up, or clip gradients",
                "error"))
            break
    vanishing = any(f.kind == "vanishing_gradient" for f in found)  # explains tiny updates
    last = med[-LOW_RECORDS:]
    if not vanishing and len(last) == LOW_RECORDS and all(0 < m < RATIO_LOW for _, m, _ in last):
        r, m, _ = med[-LOW_RECORDS]
        out.append(Finding(
            "lr_too_low", "", r["step"],
            f"each optimizer step changes the weights by only {_fmt(m)} of their size (median "
            f"over weight matrices, {LOW_RECORDS} checks in a row); healthy training moves them "
            "by about 1e-3 per step",
            "raise the learning rate (by 10x or more) or check the schedule has not decayed "
            "it to nothing", "warning"))
    return out


# ------------------------------------------------------------------------ activations


def _persistent(records, path, key, threshold):
    # Outputs that are already NaN (a diverged run) say nothing about dead or saturated units.
    vals = [(r, r["activations"][path][key]) for r in records
            if key in r.get("activations", {}).get(path, {})
            and _finite(r["activations"][path].get("mean"))]
    hits = [(r, v) for r, v in vals if v >= threshold]
    if not hits or len(hits) * 2 < len(vals) or vals[-1][1] < threshold:
        return None
    return hits[0][0], max(v for _, v in hits)


def _act_paths(records):
    paths: dict = {}
    for r in records:
        for p, a in r.get("activations", {}).items():
            paths.setdefault(p, a)
    return paths


def _act_where(path, info, typ):
    """(module path to name, words for the activation) for a module or a functional one."""
    after = info.get("after")
    if info.get("functional"):
        inside = info.get("in")
        ctx = f" in the forward of '{inside}'" if inside else " in the model's forward"
        if after:
            return after, f"the {typ.lower()} applied to the output of '{after}'{ctx}"
        return inside or "", f"a {typ.lower()}{ctx}"
    return path, f"{typ} '{path}'" + (f" fed by '{after}'" if after else "")


def _dead_relu(meta, records, _found):
    out = []
    for path, a in _act_paths(records).items():
        if a.get("kind") != "relu":
            continue
        hit = _persistent(records, path, "dead_frac", DEAD_FRAC)
        if hit is None:
            continue
        r, frac = hit
        info = meta.get("activations", {}).get(path, {})
        after = info.get("after")
        stats = r["activations"][path]
        where, what = _act_where(path, info, a.get("type", "ReLU"))
        out.append(Finding(
            "dead_relu", where, r["step"],
            f"{frac:.0%} of the units of {what} output zero for "
            f"every example (mean output {_fmt(stats.get('mean'))}): dead units "
            "pass no gradient back, so the layers before them stop learning",
            "lower the learning rate, initialise biases at zero (or small positive), use "
            "kaiming init, or switch to LeakyReLU/GELU",
            "error" if frac >= 0.99 else "warning", [after] if after else []))
    return out


def _saturated(meta, records, _found):
    out = []
    for path, a in _act_paths(records).items():
        if a.get("kind") != "saturating":
            continue
        hit = _persistent(records, path, "sat_frac", SAT_FRAC)
        if hit is None:
            continue
        r, frac = hit
        info = meta.get("activations", {}).get(path, {})
        where, what = _act_where(path, info, a.get("type"))
        out.append(Finding(
            "saturated", where, r["step"],
            f"{frac:.0%} of the outputs of {what} sit at the ends of its "
            "range, where its derivative is nearly zero: gradients through it vanish",
            "scale inputs down (normalise the data, LayerNorm before it), use a smaller "
            "initialisation or learning rate, or a non-saturating activation",
            "warning"))
    return out


def _zero_gradient(meta, records, found):
    seen = _with_grads(records)
    if not seen:
        return []
    order = _order_index(meta)
    # Layers before a dead activation are explained by it already.
    dead_at = [order.get(f.related[0], -1) for f in found if f.kind == "dead_relu" and f.related]
    limit = max(dead_at, default=-1)
    out = []
    for path in meta.get("order", []):
        grads = [r["modules"].get(path, {}).get("grad") for r in seen]
        grads = [g for g in grads if g]
        if not grads or any(g["zero_frac"] < 1.0 for g in grads):
            continue
        if order.get(path, -1) <= limit:
            continue
        out.append(Finding(
            "zero_gradient", path, seen[0]["step"],
            f"every gradient value of '{path}' is exactly zero in all {len(grads)} checked "
            "step(s): it cannot learn",
            "check what follows it: dead ReLUs, a multiplication by zero, masked outputs, or a "
            "loss that does not depend on it",
            "warning"))
    return out


# ------------------------------------------------------------------------ the loss


def _loss_rules(records, steps, values, found):
    out = []
    for s, v in zip(steps, values):
        if v is None or not math.isfinite(v):
            out.append(Finding(
                "exploding", "", s,
                f"the loss became {v} at step {s}: training diverged",
                "lower the learning rate, clip gradients, and run a step under "
                "chainrule.diagnostics.detect_anomaly() to find the op that makes the first "
                "non-finite value", "error"))
            break
    finite = [(s, v) for s, v in zip(steps, values) if v is not None and math.isfinite(v)]
    for i in range(1, len(finite)):
        s, v = finite[i]
        recent = [x for _, x in finite[max(0, i - SPIKE_WINDOW):i]]
        med = statistics.median(recent)
        scale = abs(finite[0][1]) or 1.0
        if v > SPIKE_FACTOR * med and v - med > 0.1 * scale:
            out.append(Finding(
                "loss_spike", "", s,
                f"the loss jumped to {_fmt(v)} at step {s}, {v / med:.1f}x the median "
                f"{_fmt(med)} of the {len(recent)} steps before",
                "lower the learning rate or add warm-up, clip gradients, and check the batch "
                "at that step for bad data", "warning"))
            break
    k = max(3, len(finite) // 10)
    if len(finite) >= RISE_MIN_STEPS and not any(f.severity == "error" for f in out):
        start = min(v for _, v in finite[:k])  # a blow-up in the very first steps counts too
        end = statistics.mean(v for _, v in finite[-k:])
        if start > 0 and end > RISE_FACTOR * start:
            out.append(Finding(
                "loss_rising", "", finite[-k][0],
                f"the loss went up from {_fmt(start)} (best of the first {k} steps) to {_fmt(end)} "
                f"over the last {k} (steps {finite[0][0]}..{finite[-1][0]}): training diverges",
                "lower the learning rate (by 10x), add warm-up, clip gradients",
                "error"))
    if len(finite) >= STALL_MIN_STEPS and not any(f.severity == "error" for f in out):
        start = statistics.mean(v for _, v in finite[:k])
        end = statistics.mean(v for _, v in finite[-k:])
        if end > start - STALL_IMPROVEMENT * abs(start):
            low = [f for f in found if f.kind == "lr_too_low"]
            out.append(Finding(
                "loss_stalled", "", finite[-k][0],
                f"the loss has not improved: {_fmt(start)} over the first {k} steps, "
                f"{_fmt(end)} over the last {k} (steps {finite[0][0]}..{finite[-1][0]})",
                ("raise the learning rate: the update ratios say it is too low" if low else
                 "check the learning rate, that the optimizer holds the model's parameters, "
                 "that the labels match the inputs, and try to overfit one small batch first"),
                "warning"))
    return out
