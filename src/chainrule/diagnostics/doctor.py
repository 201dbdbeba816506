"""The training doctor: rules over gathered statistics that say what is wrong, where and when.

The rules read plain data (dicts and lists, as written to ``diagnostics.jsonl``), so a finished
run is diagnosed from its files exactly as a live one is from memory:

- ``meta``: ``modules`` {path: {type, params}}, ``params`` {name: {shape, numel, ndim,
  requires_grad, in_optimizer, module}}, ``order`` (paths of modules that own parameters, from
  the input to the output, as the forward pass ran them), ``activations`` {path: {type, kind,
  after}}, ``optimizer`` {type, adaptive, groups: [{params, decoupled}]}, ``mode_sensitive``
  {path: {type, p}} (layers that differ in train and eval mode);
- ``records``: one per gathering step: ``step``, ``loss``, ``grads_seen``, ``params`` {name:
  grad statistics (as backward made them), step_norm (of the ``.grad`` the optimizer used),
  prior_norm (what ``.grad`` held before the backward), param_norm, update_ratio,
  update_dot_grad, update_dot_param, rows_identical, has_grad}, ``modules`` {path: {grad,
  param_norm, update_ratio, gain}}, ``activations`` {path: activation statistics},
  ``optimizer`` {calls, stepped_before, backward_passes, backward_before_step, groups: [{lr,
  weight_decay}], state_step}, ``modes`` {path: {train, eval}}, ``input``, ``output``,
  ``cross_entropy``, ``regression`` (what the loss saw);
- ``losses``: (steps, values) of every step.

Rules that name a cause (a loop mistake, the data, the initialisation, the loss) run first;
the rules that name a symptom (a stalled or rising loss, tiny updates, dead units) stay
silent where a cause found already explains it. Thresholds are module constants (below),
chosen so that healthy runs stay quiet (tests/test_doctor_healthy.py: MLPs, CNNs, a
transformer, an RNN-like loop; SGD, Adam, AdamW, RMSprop, Adagrad; schedules, clipping,
dropout, accumulation, frozen bodies). Each rule explains itself, in numbers, in its
``message``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field

import numpy as np

VANISH_FACTOR = 1e-3  # a layer whose gradient RMS is 1000x below the output side's: vanishing
TINY_UPDATE = 1e-6  # lr |g| below this share of |w|: an update float32 rounds away
AMPLIFY_TOTAL = 3.0  # a layer that multiplies the gradient by 10^3 over its calls ...
AMPLIFY_PER_CALL = 1.2  # ... by 1.2 or more at each: a recurrence that amplifies
EXPLODE_GROWTH = 1e3  # total gradient norm 1000x its first value: exploding
SPIKE_FACTOR = 3.0  # loss 3x the median of the recent ones: a spike ...
SPIKE_OF_RANGE = 0.25  # ... by more than a quarter of the way back to where the loss started
SPIKE_WINDOW = 20
RATIO_HIGH = 0.25  # median update/parameter ratio of the weight matrices above this: lr too high
RATIO_LOW = 1e-5  # ... below this in the last LOW_RECORDS records: lr too low
LOW_RECORDS = 3
ADAPTIVE_WARMUP = 10  # an adaptive optimizer's first steps are about lr in size: not judged
DEAD_FRAC = 0.5  # half the units of a ReLU layer never fire: dead units
SAT_FRAC = 0.5  # half the outputs of a tanh/sigmoid within 1% of the range's ends: saturated
STALL_MIN_STEPS = 40  # fewer losses than this cannot show a stall
RISE_MIN_STEPS = 10
RISE_FACTOR = 1.5  # the end of the run 1.5x the start (positive losses): diverging
STALL_IMPROVEMENT = 0.01  # the end of the run no more than 1% below the start: stalled
STALE_FACTOR = 1.5  # .grad at the step 1.5x what backward made (impossible unless stale)
CLIP_FACTOR = 1e-2  # .grad at the step 100x smaller than what backward made: clipped away
LR_FLOOR = 1e-3  # a learning rate 1000x below its peak has decayed to nothing
LR_FLOOR_SHARE = 0.2  # ... when it stays there for the last 20% of the run or more
UPHILL_COS = 0.2  # the update's cosine with the gradient above this: updates go uphill
DECAY_DOMINATES = 10.0  # weight decay's pull 10x the loss gradient's
DECAY_RATE = 1e-2  # ... or shrinking them by 1% a step (lr x weight_decay): a 70-step half-life
DECAY_SHRINK = 0.5  # ... and the weights shrank to half their norm
INPUT_SCALE_HIGH = 20.0  # a feature with RMS above this: inputs not normalised
INPUT_SCALE_LOW = 1e-3  # inputs with RMS below this (and not zero)
TARGET_SCALE_HIGH = 100.0  # regression targets with an RMS above this: in raw units
DROPOUT_HIGH = 0.8  # a dropout probability this high drops nearly everything
CHANCE_SHARE = 0.85  # the loss at 85% or more of the chance level, all along: at chance
CYCLE_MIN = 4  # cycles of the loss needed to call it periodic
CYCLE_R2 = 0.6  # share of the loss's variance around its trend that the phase explains
CYCLE_SWING = 3.0  # ... swinging by 3x within a cycle
CYCLE_OF_START = 0.25  # ... up to a quarter of where the loss started, at least
SORTED_ENTROPY = 0.5  # label entropy within a batch below half the data's: sorted labels
CLASS_GAP = 0.15  # a regression fit leaving 15% of the targets' variance: not learned

SEVERITIES = ("error", "warning", "info")

# Findings that name a cause: the symptom rules do not repeat what they explain.
CAUSES = frozenset({
    "grad_accumulates", "step_without_grad", "no_optimizer_step", "clip_too_tight",
    "lr_decayed", "uphill_update", "weight_decay_dominates", "eval_mode_training",
    "input_not_normalized", "input_degenerate", "symmetric_init", "dropout_too_high",
    "probabilities_to_cross_entropy", "regression_on_class_labels", "output_range_mismatch",
    "loss_at_chance", "unshuffled_data", "not_in_optimizer", "not_updated", "no_gradient",
    "causal_leak", "target_not_normalized",
})


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


def _kinds(found):
    return {f.kind for f in found}


def _modules_named(found, kinds):
    out = set()
    for f in found:
        if f.kind in kinds:
            out.add(f.module)
            out.update(f.related)
    return out


class _Run:
    """The run's data and the few derived quantities several rules need."""

    def __init__(self, meta, records, steps, values):
        self.meta, self.records = meta, records
        self.steps, self.values = steps, values
        self.finite = [(s, v) for s, v in zip(steps, values)
                       if v is not None and math.isfinite(v)]
        self.seen = [r for r in records if r.get("grads_seen")]
        self.order = _order_index(meta)
        opt = meta.get("optimizer") or {}
        self.adaptive = bool(opt.get("adaptive"))
        self.group_of = {}
        for i, g in enumerate(opt.get("groups") or []):
            for n in g.get("params", []):
                self.group_of[n] = i

    def head_tail(self):
        """(mean of the first tenth of the finite losses, mean of the last tenth, k)."""
        k = max(3, len(self.finite) // 10)
        if len(self.finite) < 2 * k:
            return None, None, k
        return (statistics.mean(v for _, v in self.finite[:k]),
                statistics.mean(v for _, v in self.finite[-k:]), k)

    def improved(self):
        """end / start of the loss (None when there are too few losses or a negative one)."""
        start, end, _ = self.head_tail()
        if start is None or start <= 0 or end < 0:
            return None
        return end / start

    def nonfinite_loss(self):
        for s, v in zip(self.steps, self.values):
            if v is None or not math.isfinite(v):
                return s
        return None

    def lr(self, r, name):
        groups = (r.get("optimizer") or {}).get("groups") or []
        i = self.group_of.get(name)
        if i is None or i >= len(groups):
            return None
        return groups[i].get("lr")

    def matrices(self):
        """Weight matrices (ndim >= 2) that train."""
        return [n for n, p in self.meta["params"].items()
                if p["ndim"] >= 2 and p["requires_grad"] and p.get("in_optimizer", True)]


def diagnose(meta: dict, records: list, losses=((), ())) -> list[Finding]:
    """All findings for a run, most severe first, then by step."""
    run = _Run(meta, records, list(losses[0]), list(losses[1]))
    findings: list[Finding] = []
    for rule in _RULES:
        findings.extend(rule(run, findings))
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (rank.get(f.severity, 9), f.step, f.module))
    return findings


def _first_step(records):
    return records[0]["step"] if records else 0


def _where(run, names):
    """The module to name for a problem of parameters ``names``: '' when it is most of the
    model's trained parameters, else the first of their modules (the others in related)."""
    params = run.meta["params"]
    trained = [n for n, p in params.items() if p["requires_grad"] and p.get("in_optimizer", True)]
    total = sum(params[n]["numel"] for n in trained) or 1
    share = sum(params[n]["numel"] for n in names if n in params) / total
    mods = list(dict.fromkeys(_module_of(run.meta, n) for n in names))
    mods.sort(key=lambda m: run.order.get(m, 1 << 30))
    if share >= 0.5 or not mods:
        return "", mods
    return mods[0], mods[1:]


# ------------------------------------------------------------------------ parameters and graph


def _frozen(run, _found):
    meta, records = run.meta, run.records
    params = meta["params"]
    frozen = [n for n, p in params.items() if not p["requires_grad"]]
    if not frozen:
        return []
    total = sum(p["numel"] for p in params.values()) or 1
    share = sum(params[n]["numel"] for n in frozen) / total
    # Most of the model frozen, or a frozen body that the trained layers follow, is
    # deliberate fine-tuning; a frozen layer between or after trained ones is more likely a
    # slip (a requires_grad_(False) left over, a freeze that was meant to be undone).
    order = run.order
    frozen_mods = {_module_of(meta, n) for n in frozen}
    trained_mods = {_module_of(meta, n) for n, p in params.items() if p["requires_grad"]}
    last_frozen = max((order.get(m, -1) for m in frozen_mods), default=-1)
    first_trained = min((order.get(m, 1 << 30) for m in trained_mods - frozen_mods),
                        default=1 << 30)
    body = bool(order) and last_frozen < first_trained
    severity = "info" if share > 0.5 or body else "warning"
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


def _not_in_optimizer(run, _found):
    meta, records = run.meta, run.records
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


# ------------------------------------------------------------------------ the training loop


def _opt(r):
    return r.get("optimizer") or {}


def _backward_norm(s):
    """The norm of what this iteration's backward passes gave a parameter: the gradient's norm
    for one pass, the sum of the passes' norms (a bound on their sum's) for several."""
    if s.get("n_backward", 1) > 1:
        return s.get("backward_norm_sum")
    return s.get("norm")


def _grad_accumulates(run, _found):
    """``.grad`` at the step holds more than this iteration's backward made: a gradient from
    an earlier step that was already applied was never cleared."""
    hits = []
    for r in run.records:
        o = _opt(r)
        if not o.get("stepped_before") or o.get("closure") or not o.get("calls"):
            continue
        names, at_step, made, prior = [], 0.0, 0.0, 0.0
        for n, s in r["params"].items():
            if not run.meta["params"].get(n, {}).get("in_optimizer", True):
                continue  # zero_grad() of the optimizer never clears these
            b, st, pr = _backward_norm(s), s.get("step_norm"), s.get("prior_norm")
            if not (_finite(b) and _finite(st) and _finite(pr)) or pr <= 0 or b <= 0:
                continue
            if st > STALE_FACTOR * b:
                names.append(n)
                at_step += st * st
                made += b * b
                prior += pr * pr
        if names:
            hits.append((r, names, math.sqrt(at_step), math.sqrt(made), math.sqrt(prior)))
    if not hits:
        return []
    r, names, at_step, made, prior = hits[0]
    where, related = _where(run, names)
    return [Finding(
        "grad_accumulates", where, r["step"],
        f"the gradient read at optimizer.step (step {r['step']}) is {at_step / made:.3g}x what "
        f"this step's backward computed (norm {_fmt(at_step)} against {_fmt(made)}): before "
        f"the backward, .grad still held {_fmt(prior)} from earlier steps, which the optimizer "
        f"had already applied, so gradients accumulate across steps ({len(hits)} of "
        f"{len(run.records)} checked steps)",
        "call optimizer.zero_grad() once per step, before loss.backward() (or right after "
        "optimizer.step()); to accumulate over several batches on purpose, step and zero the "
        "gradients once every k batches",
        "error", related)]


def _step_without_grad(run, found):
    """The optimizer stepped while ``.grad`` was empty or zero, although backward had made
    gradients in the same iteration: zero_grad between backward and step, or backward after
    the step."""
    hits = []
    for r in run.records:
        o = _opt(r)
        if not o.get("calls") or o.get("closure") or "backward_before_step" not in o:
            continue
        made = [n for n, s in r["params"].items()
                if s.get("n_backward") and _finite(s.get("norm")) and s["norm"] > 0]
        if not made:
            continue
        empty = [n for n in made if "step_norm" in r["params"][n]
                 and not r["params"][n]["step_norm"]]
        if len(empty) >= 0.9 * len(made):
            after = o["backward_before_step"] == 0 and o.get("backward_passes", 0) > 0
            hits.append((r, empty, after))
    checked = [r for r in run.records if _opt(r).get("calls") and "backward_before_step"
               in _opt(r) and not _opt(r).get("closure")]
    if not hits or len(hits) < len(checked):
        return []
    r, names, after = hits[0]
    norm = math.sqrt(sum(r["params"][n]["norm"] ** 2 for n in names))
    if after:
        msg = (f"optimizer.step() ran before loss.backward() in every checked step (from step "
               f"{r['step']}): when it ran, .grad was empty, and the gradients backward made "
               f"afterwards (norm {_fmt(norm)}) are cleared by the next zero_grad() before any "
               "step uses them")
        fix = ("order each iteration as zero_grad(), forward, loss.backward(), "
               "optimizer.step()")
    else:
        msg = (f"backward made gradients of norm {_fmt(norm)}, but when optimizer.step() ran "
               f"they were zero or gone, in every checked step (from step {r['step']}): "
               "something cleared .grad between backward and step (a zero_grad() in the wrong "
               "place), so the optimizer never sees a gradient")
        fix = ("call optimizer.zero_grad() before the forward (or right after "
               "optimizer.step()), never between loss.backward() and optimizer.step()")
    return [Finding("step_without_grad", "", r["step"], msg, fix, "error", [])]


def _no_optimizer_step(run, found):
    recs = [r for r in run.seen if "optimizer" in r]
    if len(recs) < 2 or any(_opt(r).get("calls") for r in recs):
        return []
    moved = any(s.get("update_norm") for r in recs for s in r["params"].values())
    if moved:
        return []
    return [Finding(
        "no_optimizer_step", "", recs[0]["step"],
        f"backward ran but the watched optimizer's step() was never called in {len(recs)} "
        "checked steps, and no weight changed: nothing is trained",
        "call optimizer.step() after loss.backward() in every iteration (with the optimizer "
        "that holds this model's parameters)",
        "error", [])]


def _clip_too_tight(run, found):
    """The gradient the optimizer used is a sliver of what backward made, in every check,
    and the weights barely move (or the loss does not improve)."""
    rows = []
    for r in run.records:
        at, made = 0.0, 0.0
        for s in r["params"].values():
            if s.get("n_backward") == 1 and _finite(s.get("step_norm")) and _finite(s.get("norm")):
                at += s["step_norm"] ** 2
                made += s["norm"] ** 2
        if made > 0:
            rows.append((r, math.sqrt(at), math.sqrt(made)))
    if len(rows) < 2 or not all(a < CLIP_FACTOR * m for _, a, m in rows):
        return []
    ratios = [m for r, _, _ in rows if (m := _median_matrix_ratio(run, r)) is not None]
    moved = statistics.median(ratios) if ratios else None
    imp = run.improved()
    if not ((moved is not None and moved < 10 * RATIO_LOW) or (imp is not None and imp > 0.9)):
        return []
    r, a, m = rows[0]
    clip = statistics.median(a for _, a, _ in rows)
    return [Finding(
        "clip_too_tight", "", r["step"],
        f"at optimizer.step the gradient norm is about {_fmt(clip)}, {m / a:.0f}x smaller than "
        f"the {_fmt(m)} backward computed (step {r['step']}), in all {len(rows)} checks: "
        f"clipping (or a rescaling) removes {1 - a / m:.2%} of every gradient, and the weights "
        f"move by {_fmt(moved)} of their size per step",
        f"raise the clipping threshold (max_norm) to about the gradients' usual norm (backward "
        f"gives {_fmt(m)} here; 1.0 is the common choice), or clip only outliers",
        "error", [])]


def _lr_decayed(run, found):
    """A schedule that took the learning rate to effectively zero long before the end."""
    recs = [r for r in run.records if _opt(r).get("groups")]
    if len(recs) < 3 or not run.steps:
        return []
    last_step = run.steps[-1]
    span = max(last_step - run.steps[0], 1)
    out = []
    n_groups = len(_opt(recs[-1])["groups"])
    worst = None
    for i in range(n_groups):
        series = [(r["step"], _opt(r)["groups"][i].get("lr")) for r in recs
                  if i < len(_opt(r)["groups"])]
        series = [(s, v) for s, v in series if _finite(v)]
        if len(series) < 3:
            continue
        peak_step, peak = max(series, key=lambda x: x[1])
        if peak <= 0:
            continue
        tail = [(s, v) for s, v in series if s > peak_step]
        low = [(s, v) for s, v in tail if v < LR_FLOOR * peak]
        if len(low) < 2 or tail[-1][1] >= LR_FLOOR * peak:
            continue
        # the first check from which it stayed low
        k = len(tail)
        while k > 0 and tail[k - 1][1] < LR_FLOOR * peak:
            k -= 1
        s_low, v_low = tail[k]
        if (last_step - s_low) < LR_FLOOR_SHARE * span or len(tail) - k < 2:
            continue
        cand = (i, peak_step, peak, s_low, tail[-1][1], series[0][1])
        if worst is None or cand[4] / peak < worst[4] / worst[2]:
            worst = cand
    if worst is None:
        return []
    i, peak_step, peak, s_low, v_last, v0 = worst
    groups = (run.meta.get("optimizer") or {}).get("groups") or []
    names = groups[i]["params"] if i < len(groups) else []
    where, related = _where(run, names) if names else ("", [])
    fast = s_low - peak_step <= 0.5 * span
    factor = "to 0" if v_last == 0 else f"to {v_last:.2g} ({peak / v_last:.0e}x lower)"
    which = f"of parameter group {i} " if n_groups > 1 else ""
    msg = (f"the learning rate {which}fell from {peak:.3g} (step {peak_step}) {factor} by step "
           f"{s_low} and stayed there for the last {last_step - s_low} of {span} steps: the "
           "weights have stopped moving")
    if fast:
        msg += (f"; it took only {s_low - peak_step} steps, as when a schedule meant to be "
                "stepped once per epoch is stepped once per iteration")
    out.append(Finding(
        "lr_decayed", where, s_low, msg,
        "check the scheduler: call scheduler.step() once per epoch when its step_size, T_max "
        "or milestones count epochs (or give them in iterations), and keep a floor "
        "(eta_min, a minimum learning rate)",
        "warning", related))
    return out


def _median_matrix_ratio(run, r):
    ratios = []
    for n in run.matrices():
        v = r["params"].get(n, {}).get("update_ratio")
        if v is not None and not math.isnan(v):
            ratios.append(v)
    return statistics.median(ratios) if ratios else None


def _cosines(r, names=None):
    """cos(update, gradient) over the parameters ``names`` (all with the data): the update's
    first-order effect on the loss, g . delta, relative to its largest possible size."""
    dg = dd = gg = 0.0
    for n, s in r["params"].items():
        if names is not None and n not in names:
            continue
        d, u = s.get("update_dot_grad"), s.get("update_norm")
        g = s.get("step_norm") if _finite(s.get("step_norm")) else s.get("norm")
        if not (_finite(d) and _finite(u) and _finite(g)) or not u or not g:
            continue
        dg += d
        dd += u * u
        gg += g * g
    if dd <= 0 or gg <= 0:
        return None, 0.0
    return dg / math.sqrt(dd * gg), dg


def _uphill(run, found):
    """Updates that point up the gradient: a sign error in the update (or maximize=True)."""
    rows = []
    for r in run.records:
        c, dg = _cosines(r)
        if c is not None:
            rows.append((r, c, dg))
    if len(rows) < 2:
        return []
    up = [row for row in rows if row[1] > UPHILL_COS]
    if len(up) * 3 < 2 * len(rows) or statistics.median(c for _, c, _ in rows) <= UPHILL_COS:
        return []
    # which modules go uphill: all of them (the optimizer) or a few (a hand-written update)
    mods = {}
    for n in run.meta["params"]:
        mods.setdefault(_module_of(run.meta, n), []).append(n)
    uphill_mods = []
    for m, names in mods.items():
        cs = [c for r, _, _ in rows if (c := _cosines(r, set(names))[0]) is not None]
        if cs and statistics.median(cs) > UPHILL_COS:
            uphill_mods.append(m)
    with_grad = [m for m, names in mods.items()
                 if any(_cosines(r, set(names))[0] is not None for r, _, _ in rows)]
    uphill_mods.sort(key=lambda m: run.order.get(m, 1 << 30))
    if len(uphill_mods) >= 0.5 * max(len(with_grad), 1) or not uphill_mods:
        where, related = "", uphill_mods
    else:
        where, related = uphill_mods[0], uphill_mods[1:]
    r, c, dg = up[0]
    med = statistics.median(c for _, c, _ in rows)
    return [Finding(
        "uphill_update", where, r["step"],
        f"the updates point up the gradient: the change of the weights has cosine "
        f"{med:+.2f} with the gradient (median over {len(rows)} checks, positive in "
        f"{len(up)}; a descent step has a negative one, -1 for plain SGD), so each step raises "
        f"the loss to first order (g . delta = {dg:+.3g} at step {r['step']})",
        "the update has the wrong sign: write p -= lr * grad (not +=), do not pass "
        "maximize=True, and check a hand-written optimizer's formula",
        "error", related)]


def _weight_decay(run, found):
    """Weight decay whose pull towards zero dwarfs the loss gradient, shrinking the weights."""
    opt = run.meta.get("optimizer") or {}
    groups = opt.get("groups") or []
    out = []
    for i, g in enumerate(groups):
        mats = [n for n in g.get("params", []) if n in set(run.matrices())]
        rows = []
        for r in run.records:
            gr = (_opt(r).get("groups") or [])
            if i >= len(gr) or not _finite(gr[i].get("weight_decay")) or not gr[i]["weight_decay"]:
                continue
            wd, lr = gr[i]["weight_decay"], gr[i].get("lr") or 0.0
            ds, pulls, pushes = [], 0.0, 0.0
            for n in mats:
                s = r["params"].get(n, {})
                pb = s.get("param_norm_before")
                if not _finite(pb) or not pb:
                    continue
                if g.get("decoupled"):
                    dd, dp = s.get("update_norm"), s.get("update_dot_param")
                    if not (_finite(dd) and _finite(dp)) or not lr:
                        continue
                    c = lr * wd
                    rest2 = dd * dd + 2 * c * dp + c * c * pb * pb
                    pull, push = c * pb, math.sqrt(max(rest2, 0.0))
                else:
                    gn = s.get("step_norm") if _finite(s.get("step_norm")) else s.get("norm")
                    if not _finite(gn):
                        continue
                    pull, push = wd * pb, gn
                if push > 0:
                    ds.append(pull / push)
                    pulls += pull * pull
                    pushes += push * push
            if ds:
                norm = math.sqrt(sum(r["params"][n]["param_norm"] ** 2 for n in mats
                                     if n in r["params"]))
                rows.append((r, statistics.median(ds), wd, math.sqrt(pulls),
                             math.sqrt(pushes), norm, lr * wd))
        if len(rows) < 2:
            continue
        strong = [row for row in rows if row[1] > DECAY_DOMINATES]
        # decoupled decay (and SGD's) multiplies the weights by 1 - lr wd every step
        fast = [row for row in rows if (g.get("decoupled") or not run.adaptive)
                and row[6] >= DECAY_RATE]
        shrunk = rows[-1][5] < DECAY_SHRINK * rows[0][5]
        imp = run.improved()
        if not (strong or fast) or not shrunk or (imp is not None and imp < 0.5):
            continue
        r, d, wd, pull, push, _, rate = (strong or fast)[0]
        where, related = _where(run, g["params"])
        which = f" of parameter group {i}" if len(groups) > 1 else ""
        how = "lr x weight_decay x |w|" if g.get("decoupled") else "weight_decay x |w|"
        if strong:
            what = (f"pulls the weights towards zero {d:.0f}x harder than the loss gradient "
                    f"moves them (step {r['step']}: {how} = {_fmt(pull)} against "
                    f"{_fmt(push)})")
        else:
            what = (f"with learning rate {rate / wd:g} shrinks the weights by {rate:.2%} "
                    f"every step (a half-life of {math.log(2) / rate:.0f} steps), faster than "
                    f"the loss gradient restores them ({how} = {_fmt(pull)} against "
                    f"{_fmt(push)} at step {r['step']})")
        out.append(Finding(
            "weight_decay_dominates", where, r["step"],
            f"weight decay {wd:g}{which} {what}; the weight matrices' norm fell from "
            f"{_fmt(rows[0][5])} (step {rows[0][0]['step']}) to {_fmt(rows[-1][5])} (step "
            f"{rows[-1][0]['step']}) and the loss does not fall",
            "lower weight_decay (about 1e-4 to 1e-2 for SGD and Adam, 0.01 to 0.1 for AdamW), "
            "and keep biases and normalisation layers out of the decayed group",
            "warning", related))
    return out


def _eval_mode(run, found):
    """Dropout (or another train-mode layer) switched off during the training steps."""
    sens = run.meta.get("mode_sensitive") or {}
    if not sens:
        return []
    bad = []
    for r in run.seen:
        modes = r.get("modes") or {}
        off = [p for p, c in modes.items() if c.get("eval") and not c.get("train")]
        bad.append((r, off))
    if not bad or not bad[-1][1]:
        return []
    k = len(bad)
    while k > 0 and bad[k - 1][1]:
        k -= 1
    run_of = bad[k:]
    if len(run_of) < 2 and len(bad) > 1:
        return []
    r0, off = run_of[0]
    off = sorted(set(p for _, o in run_of for p in o), key=lambda p: p)
    where = "" if len(off) == len(sens) else off[0]
    kinds = sorted({sens[p]["type"] for p in off if p in sens})
    ps = [sens[p].get("p") for p in off if sens.get(p, {}).get("p")]
    what = ", ".join(kinds) + (f" (p={ps[0]:g})" if ps else "")
    since = "from the first step" if k == 0 else f"from step {r0['step']} on"
    return [Finding(
        "eval_mode_training", where, r0["step"],
        f"{len(off)} layer(s) that behave differently in training ({what}: "
        f"{', '.join(off[:6])}) ran in eval mode in the training steps {since} "
        f"({len(run_of)} checks) while gradients flowed: dropout is off, so the model trains "
        "without the regularisation it was built with",
        ("call model.train() before the training loop" if k == 0 else
         "call model.train() again after each evaluation done with model.eval()"),
        "warning", off if where == "" else off[1:])]


# ------------------------------------------------------------------------ data and initialisation


def _inputs(run, found):
    out = []
    recs = [r for r in run.records if (r.get("input") or {}).get("dtype") == "f"]
    if not recs:
        return out
    first_layer = run.meta.get("order", [""])[:1]
    degenerate = [r for r in recs if r["input"].get("zero_frac") == 1.0
                  or r["input"].get("identical")]
    if degenerate and len(degenerate) * 2 >= len(recs):
        r = degenerate[0]
        st = r["input"]
        if st.get("zero_frac") == 1.0:
            what = f"every value of the model's input {tuple(st['shape'])} is 0"
        else:
            what = (f"all {st.get('batch')} examples of the batch {tuple(st['shape'])} are the "
                    "same")
        out.append(Finding(
            "input_degenerate", "", r["step"],
            f"{what} (in {len(degenerate)} of {len(recs)} checked steps): the model cannot "
            "learn anything that depends on the input",
            "check the data pipeline: the batch indexing (x[i] rather than x[0]), a "
            "normalisation that divides by zero or a mask that blanks everything, the "
            "features' dtype conversion",
            "error", first_layer))
        return out
    # a normalisation layer first takes care of the scale
    first_type = run.meta["modules"].get(first_layer[0], {}).get("type", "") if first_layer else ""
    if "Norm" in first_type:
        return out
    r = recs[0]
    st = r["input"]
    rms, fmax = st.get("rms"), st.get("feature_rms_max", st.get("rms"))
    if not (_finite(rms) and _finite(fmax)):
        return out
    high = fmax > INPUT_SCALE_HIGH
    low = 0 < rms < INPUT_SCALE_LOW
    if high or low:
        feats = ""
        if "feature_rms_max" in st:
            feats = (f"; the RMS of its {st['features']} features runs from "
                     f"{_fmt(st['feature_rms_min'])} to {_fmt(st['feature_rms_max'])}")
        out.append(Finding(
            "input_not_normalized", "", r["step"],
            f"the model's input is far from unit scale: RMS {_fmt(rms)}, mean "
            f"{_fmt(st.get('mean'))}, std {_fmt(st.get('std'))}, largest |x| "
            f"{_fmt(st.get('max_abs'))}{feats}",
            "standardise the inputs (subtract the training set's mean and divide by its std, "
            "per feature), or scale them to about [0, 1] (pixels / 255)",
            "warning", first_layer))
    return out


def _symmetric(run, found):
    """Weight matrices whose units (rows) are identical and stay identical."""
    if len(run.records) < 2:
        return []
    out = []
    hits = []
    for n in run.matrices():
        shape = run.meta["params"][n]["shape"]
        if shape[0] < 2:
            continue
        recs = [r for r in run.records if n in r["params"]]
        if recs and all(r["params"][n].get("rows_identical") for r in recs):
            hits.append(n)
    if not hits:
        return out
    hits.sort(key=lambda n: run.order.get(_module_of(run.meta, n), 1 << 30))
    mods = list(dict.fromkeys(_module_of(run.meta, n) for n in hits))
    n = hits[0]
    mod = mods[0]
    r0, r1 = run.records[0], run.records[-1]
    rows = run.meta["params"][n]["shape"][0]
    c = r0["params"][n].get("constant")
    init = (f"; every weight is {c:g}: initialised to a constant" if c is not None else "")
    more = (f" (and so do {len(mods) - 1} more layer(s): {', '.join(mods[1:6])})"
            if len(mods) > 1 else "")
    out.append(Finding(
        "symmetric_init", mod, r0["step"],
        f"all {rows} units of '{mod}' ({n}) have identical weights in every check, from "
        f"step {r0['step']} to {r1['step']}{init}{more}: identical units get identical "
        "gradients and stay copies of each other, so each such layer works as a single unit",
        "initialise weights randomly (the layer's reset_parameters(), kaiming_uniform_ or "
        "xavier_uniform_); zero or constant initialisation is only safe for biases",
        "error", mods[1:]))
    return out


def _dropout_high(run, found):
    out = []
    for path, d in (run.meta.get("mode_sensitive") or {}).items():
        p = d.get("p")
        if p is not None and p >= DROPOUT_HIGH:
            out.append(Finding(
                "dropout_too_high", path, _first_step(run.records),
                f"'{path}' ({d['type']}) drops {p:.0%} of its inputs in every training step: "
                f"the layers after it see {1 - p:.0%} of the signal, scaled by {1 / (1 - p):.3g}"
                if p < 1 else f"'{path}' ({d['type']}) drops every input (p=1)",
                f"use p between 0.1 and 0.5; p is the probability to drop, so if {1 - p:g} was "
                f"meant as the probability to keep, write p={1 - p:g}",
                "warning", []))
    return out


# ------------------------------------------------------------------------ the loss and the output


def _ce_records(run):
    return [r for r in run.records if r.get("cross_entropy")]


def _probabilities(run, found):
    """cross_entropy fed probabilities (a softmax) or values squashed into [0, 1] (a
    sigmoid) instead of logits."""
    recs = _ce_records(run)
    key = "prob_like"
    probs = [r for r in recs if r["cross_entropy"].get(key)]
    if not probs or len(probs) * 2 < len(recs) or not recs[-1]["cross_entropy"].get(key):
        # values in [0, 1] that a sigmoid made (logits that happen to lie there, as the
        # constant output of dead units, are something else)
        key = "bounded"
        probs = [r for r in recs if r["cross_entropy"].get(key)
                 and (r.get("output") or {}).get("op") == "Sigmoid"]
        if not probs or len(probs) * 2 < len(recs) or not recs[-1]["cross_entropy"].get(key):
            return []
    r = probs[0]
    ce = r["cross_entropy"]
    C = ce["classes"]
    out = r.get("output") or {}
    where = ce.get("softmax_at") if key == "prob_like" else None
    if where is None:
        where = out.get("module") or ""
    floor = math.log1p((C - 1) / math.e)
    if key == "prob_like":
        what = "already probabilities"
        rows = "lies in [0, 1] and sums to 1"
        at = f" (the softmax in '{where}')" if where else ""
        fix = ("return logits from the model (drop the final softmax), or use "
               "nll_loss(log_softmax(x)) if the model must output probabilities")
    else:
        op = (out.get("op") or "").lower()
        what = "squashed into [0, 1]"
        rows = "lies in [0, 1]"
        at = (f" (the {op} after '{where}')" if op in ("sigmoid", "softmax") and where
              else f" (after '{where}')" if where else "")
        fix = "return logits from the model: drop the sigmoid before cross_entropy"
    return [Finding(
        "probabilities_to_cross_entropy", where, r["step"],
        f"cross_entropy's input is {what}: in {len(probs)} of {len(recs)} checks every row of "
        f"its ({ce['rows']}, {C}) input {rows}{at}. cross_entropy takes logits and applies "
        f"log-softmax itself, so here the loss cannot fall below {floor:.3g} (a one-hot "
        "input) and its gradients are squashed",
        fix, "error", [])]


def _causal_leak(run, found):
    """A next-token model whose output at a position depends on the tokens after it."""
    for r in run.records:
        p = r.get("causal_probe")
        if not p or "module" not in p:
            continue
        where = p["module"]
        ce = next((rr["cross_entropy"] for rr in run.records if rr.get("cross_entropy")), {})
        C = ce.get("classes")
        _, end, _ = run.head_tail()
        loss = ""
        if C and end is not None:
            loss = (f"; the loss is {_fmt(end)} at the end, against ln({C}) = "
                    f"{math.log(C):.3g} for guessing")
        at = f" ('{where}' is the first layer where later positions reach earlier ones)" \
            if where else ""
        return [Finding(
            "causal_leak", where, r["step"],
            f"the model predicts the next token (the target at position t is the input at t+1 "
            f"at {p['next_token']:.0%} of the positions), but its output at positions 0.."
            f"{p['positions'] - 2} changed by up to {_fmt(p['changed'])} (logits up to "
            f"{_fmt(p['scale'])}) when only the last input token was changed{at}: each position "
            f"sees the tokens after it, its own target among them, so the model can copy "
            f"instead of predict{loss}",
            "mask attention to later positions: masked_fill(mask, -inf) with mask = "
            "triu(ones(T, T), diagonal=1) before the softmax, is_causal=True in "
            "scaled_dot_product_attention, or a causal attn_mask for MultiheadAttention",
            "error", [])]
    return []


def _final_loss(run):
    _, end, _ = run.head_tail()
    return end


def _regression_on_classes(run, found):
    recs = [r for r in run.records if (r.get("regression") or {}).get("integral")]
    if not recs or len(recs) * 2 < len(run.records):
        return []
    t = recs[0]["regression"]
    out_shape = (recs[0].get("output") or {}).get("shape") or []
    single = len(out_shape) == 1 or (len(out_shape) >= 2 and out_shape[-1] == 1)
    # the values over all checked batches together
    pooled: dict = {}
    for r in recs:
        for v, c in zip(r["regression"].get("values", []), r["regression"].get("counts", [])):
            pooled[v] = pooled.get(v, 0) + c
    if pooled:
        n = sum(pooled.values())
        lo, hi, distinct = min(pooled), max(pooled), len(pooled)
        big, small = max(pooled.values()) / n, min(pooled.values()) / n
    else:
        lo, hi, distinct = t["min"], t["max"], t.get("distinct", 0)
        big, small = t.get("max_share", 1.0), t.get("min_share", 0.0)
    # class indices: 0..K-1, every one present, none much commoner or rarer than 1/K
    classlike = (3 <= distinct <= 100 and lo == 0 and hi == distinct - 1
                 and big <= 2.0 / distinct and small >= 0.5 / distinct)
    end = _final_loss(run)
    var = statistics.mean(r["regression"]["var"] for r in recs)
    if not (single and classlike and end is not None and var > 0 and end >= CLASS_GAP * var):
        return []
    where = (recs[0].get("output") or {}).get("module") or ""
    return [Finding(
        "regression_on_class_labels", where, recs[0]["step"],
        f"the regression loss's target holds only the integers {lo:g}..{hi:g} "
        f"({distinct} distinct values), as class labels do, and the model gives one number per "
        f"example; the loss ends at {_fmt(end)}, {end / var:.0%} of the targets' variance "
        f"{_fmt(var)} (predicting their mean): as numbers, class indices get an order and "
        "distances that classes do not have",
        "if these are class labels, give the output layer one logit per class and use "
        "cross_entropy with the integer labels",
        "warning", [])]


def _target_scale(run, found):
    """Regression targets in raw units (thousands), with a run that shows it."""
    recs = [r for r in run.records if r.get("regression")]
    if not recs or len(recs) * 2 < len(run.records):
        return []
    t = recs[0]["regression"]
    scale = math.sqrt(t["mean"] ** 2 + t["var"])
    if scale <= TARGET_SCALE_HIGH or "output_range_mismatch" in _kinds(found):
        return []
    imp = run.improved()
    if not (run.nonfinite_loss() is not None or imp is None or imp > 0.5
            or _spike(run) is not None):
        return []
    return [Finding(
        "target_not_normalized", "", recs[0]["step"],
        f"the regression targets are far from unit scale: mean {_fmt(t['mean'])}, std "
        f"{_fmt(math.sqrt(t['var']))} (range {_fmt(t['min'])}..{_fmt(t['max'])}), so the loss "
        f"and its gradients are {scale ** 2:.2g} times those of standardised targets, and "
        + ("the run diverged" if run.nonfinite_loss() is not None else
           "the loss did not halve" if imp is None or imp > 0.5 else "the loss spikes"),
        "standardise the targets (subtract their mean, divide by their std) and undo it on "
        "the predictions, or scale the loss",
        "error" if run.nonfinite_loss() is not None else "warning", [])]


_RANGES = {"Sigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0), "Relu": (0.0, math.inf),
           "Softplus": (0.0, math.inf), "Exp": (0.0, math.inf), "Softmax": (0.0, 1.0)}


def _output_range(run, found):
    hits = []
    for r in run.records:
        o, t = r.get("output") or {}, r.get("regression") or {}
        rng = _RANGES.get(o.get("op"))
        if not rng or not t:
            continue
        lo, hi = rng
        outside = (t.get("below_0", 0.0) if lo == 0.0 else t.get("below_-1", 0.0))
        if hi == 1.0:
            outside += t.get("above_1", 0.0)
        if outside >= 0.1:
            hits.append((r, outside, lo, hi, t, o))
    if not hits or len(hits) * 2 < len([r for r in run.records if r.get("regression")]):
        return []
    r, frac, lo, hi, t, o = hits[0]
    op = o["op"].lower()
    where = o.get("module") or ""
    at = f"the {op} after '{where}'" if where else f"a {op}"
    return [Finding(
        "output_range_mismatch", where, r["step"],
        f"the model's output comes from {at}, whose values lie in ({lo:g}, {hi:g}), but "
        f"{frac:.0%} of the regression targets lie outside that range (targets "
        f"{_fmt(t['min'])}..{_fmt(t['max'])}): the loss cannot reach zero on them, and the "
        "output saturates where its gradient vanishes",
        "drop the output activation (a linear output for unbounded targets), or scale the "
        f"targets into ({lo:g}, {hi:g})",
        "error", [])]


def _chance(run, found):
    """A classification loss that stays at the chance level of its task all along."""
    recs = _ce_records(run)
    if not recs or len(run.finite) < STALL_MIN_STEPS:
        return []
    if found and (_kinds(found) & (CAUSES - {"loss_at_chance", "unshuffled_data"})
                  or any(f.severity == "error" for f in found)):
        return []  # a cause found already explains a loss that does not fall
    C = recs[0]["cross_entropy"]["classes"]
    ents = [r["cross_entropy"]["target_entropy"] for r in recs
            if "target_entropy" in r["cross_entropy"]]
    level = max(ents) if ents else math.log(C)
    level = min(level, math.log(C))
    start, end, k = run.head_tail()
    if start is None or level <= 0:
        return []
    # it starts there and stays there (or never gets far below it)
    lowest = min(v for _, v in run.finite[k:]) if len(run.finite) > k else end
    if not (CHANCE_SHARE * level <= end <= (2 - CHANCE_SHARE) * level) or \
            start < CHANCE_SHARE * level or lowest < 0.7 * level:
        return []
    acc = [r["cross_entropy"]["accuracy"] for r in recs if "accuracy" in r["cross_entropy"]]
    maj = [r["cross_entropy"]["majority"] for r in recs if "majority" in r["cross_entropy"]]
    extra = ""
    if acc and maj:
        extra = (f"; on the training batches it is right {statistics.mean(acc):.0%} of the "
                 f"time, against {statistics.mean(maj):.0%} for always guessing the commonest "
                 "class")
    lnC = math.log(C)
    what = (f"ln({C}) = {lnC:.3g}, guessing among {C} classes" if abs(level - lnC) < 0.02
            else f"{level:.3g}, the entropy of the labels (ln({C}) = {lnC:.3g})")
    return [Finding(
        "loss_at_chance", "", run.finite[-k][0],
        f"the loss stays at the chance level of this task: {_fmt(end)} over the last {k} "
        f"steps against {what}, from the first step (steps {run.finite[0][0]}.."
        f"{run.finite[-1][0]}){extra}: the model learns nothing from the inputs",
        "check that the labels match the inputs (shuffled together, in the same order, the "
        "right column), that the inputs reach the model, and that one small batch can be "
        "overfit",
        "warning", [])]


def _loss_cycle(values):
    """The clearest cycle of a loss series: (period P, share of the variance around the
    trend that the phase explains, the lowest and the highest loss of the average cycle), or
    None. The trend is a centred moving average over one period, which a loss that merely
    falls leaves nothing of; at least CYCLE_MIN whole cycles are needed."""
    y = np.asarray(values, dtype=np.float64)
    n = len(y)
    c = np.concatenate([[0.0], np.cumsum(y)])
    for P in range(2, n // CYCLE_MIN + 1):
        h = P // 2
        # moving average over one period centred on t (P even: P + 1 values, the two ends
        # with weight 1/2), for t = h .. n - 1 - h
        if P % 2:
            m = (c[P:] - c[:-P]) / P
        else:
            m = (c[P + 1:] - c[:n - P] - 0.5 * (y[:n - P] + y[P:])) / P
        z = y[h:h + len(m)] - m
        K = len(z) // P
        if K < CYCLE_MIN:
            break
        z = z[len(z) - K * P:]
        Z = z.reshape(K, P)
        tot = float((Z * Z).mean())
        if tot <= 0:
            continue
        prof = Z.mean(axis=0)
        r2 = float((prof * prof).mean()) / tot
        if r2 < CYCLE_R2 or r2 < 3.0 / K:
            continue
        level = y[n - K * P:].reshape(K, P)[-CYCLE_MIN:].mean(axis=0)
        lo, hi = float(level.min()), float(level.max())
        if lo > 0 and hi >= CYCLE_SWING * lo:
            return P, r2, lo, hi
    return None


def _unshuffled(run, found):
    """Batches whose labels are far less mixed than the data's, or a loss that swings with
    the order of the data."""
    recs = [r for r in _ce_records(run) if r["cross_entropy"].get("target_rows", 0) >= 8
            and r["cross_entropy"].get("counts")]
    if len(recs) >= 4:
        pooled = np.sum([r["cross_entropy"]["counts"] for r in recs], axis=0).astype(float)
        f = pooled[pooled > 0] / pooled.sum()
        h_all = float(-(f * np.log(f)).sum())
        h_batch = statistics.mean(r["cross_entropy"]["target_entropy"] for r in recs)
        if h_all > 0.3 and h_batch < SORTED_ENTROPY * h_all:
            shown = ", ".join(f"{r['cross_entropy']['majority']:.0%} class "
                              f"{r['cross_entropy']['majority_class']} at step {r['step']}"
                              for r in recs[:4])
            return [Finding(
                "unshuffled_data", "", recs[0]["step"],
                f"each batch holds mostly one class ({shown}{', ...' if len(recs) > 4 else ''})"
                f": the labels' entropy within a batch is {h_batch:.2f} against {h_all:.2f} "
                f"over the {len(recs)} checked batches together, so the data is sorted by "
                "label and not shuffled, and the model chases whichever class it is shown",
                "shuffle the training data (DataLoader(..., shuffle=True), or a fresh "
                "permutation every epoch)",
                "warning", [])]
    vals = [v for _, v in run.finite][-4000:]
    if len(vals) < STALL_MIN_STEPS:
        return []
    cyc = _loss_cycle(vals[len(vals) // 2:])  # after the first, fast fall
    if cyc is None:
        return []
    P, r2, lo, hi = cyc
    start = statistics.mean(vals[:max(3, len(vals) // 10)])
    if hi < CYCLE_OF_START * start:
        return []
    return [Finding(
        "unshuffled_data", "", run.finite[-1][0],
        f"the loss repeats a cycle of {P} steps ({r2:.0%} of its variance around the trend): "
        f"over the last cycles it swings between {lo:.3g} and {hi:.3g} (it started at "
        f"{start:.3g}) at the same points of each one, as when the data comes in the same "
        "sorted order every epoch and the model forgets one part while it learns another",
        "shuffle the training data every epoch (DataLoader(..., shuffle=True))",
        "warning", [])]


# ------------------------------------------------------------------------ gradients


def _not_updated(run, found):
    """In the optimizer, given non-zero gradients, and yet never changed (lr 0 in its group,
    a mask, an optimizer that skips it)."""
    explained = _modules_named(found, {"step_without_grad", "no_optimizer_step",
                                       "vanishing_gradient", "symmetric_init"})
    if _kinds(found) & {"step_without_grad", "no_optimizer_step"}:
        return []
    stuck = []
    for n, p in run.meta["params"].items():
        if not (p["requires_grad"] and p.get("in_optimizer", True)):
            continue
        if _module_of(run.meta, n) in explained:
            continue
        seen = [(r, r["params"][n]) for r in run.records
                if r["params"].get(n, {}).get("has_grad") and r["params"][n].get("norm")
                and _finite(r["params"][n]["norm"]) and "update_norm" in r["params"][n]]
        if not seen or any(s["update_norm"] != 0.0 for _, s in seen):
            continue
        # a gradient so small that lr x g rounds away against the weights: it vanished
        tiny = all(_finite(lr := run.lr(r, n)) and 0 < lr and lr * s["norm"] <= TINY_UPDATE
                   * s.get("param_norm", 0.0) for r, s in seen)
        if not tiny:
            stuck.append(n)
    out = []
    for mod, names in _group_by_module(run.meta, stuck).items():
        lrs = {run.lr(r, names[0]) for r in run.records} - {None}
        zero_lr = lrs == {0.0}
        out.append(Finding(
            "not_updated", mod, _first_step(run.records),
            f"{', '.join(names)} get non-zero gradients and are in the optimizer, but the "
            "optimizer never changed them in any checked step"
            + ("; the learning rate of their parameter group is 0" if zero_lr else ""),
            ("give their parameter group a learning rate above 0" if zero_lr else
             "check the learning rate of their parameter group (0?), and any code that "
             "restores or masks these parameters after the step"),
            "error", names))
    return out


def _no_gradient(run, _found):
    seen = run.seen
    trained = [n for n, p in run.meta["params"].items()
               if p["requires_grad"] and p.get("in_optimizer", True)]
    if not seen:
        if len(run.records) >= 2 and trained:
            return [Finding(
                "no_gradient", "", run.records[0]["step"],
                f"no parameter received a gradient in any of {len(run.records)} checked "
                "steps: backward never ran, or the loss it ran from does not depend on the "
                "model",
                "call loss.backward() every step, on a loss computed from the model's "
                "output with grad on (not under no_grad(), not from .detach()/.item())",
                "error", [])]
        return []
    params = run.meta["params"]
    cut = [n for n, p in params.items()
           if p["requires_grad"] and p.get("in_optimizer", True)
           and not any(r["params"].get(n, {}).get("has_grad") for r in seen)]
    out = []
    for mod, names in _group_by_module(run.meta, cut).items():
        typ = run.meta["modules"].get(mod, {}).get("type", "module")
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


def _nonfinite(run, found):
    if any(f.kind == "exploding" and (f.module or "grew from" in f.message) for f in found):
        return []  # the non-finite values are where the explosion named already ended
    order = run.order
    for r in run.records:
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


def _mod_norm(r, p):
    g = r["modules"].get(p, {}).get("grad")
    return g["norm"] if g and _finite(g.get("norm")) else None


def _amplifier(run, upto):
    """The layer that multiplies the gradient the most as backward passes through it again
    and again (a recurrence): (path, calls, mean gain per call, total gain) or None."""
    for r in upto:  # the first check that shows it
        best = None
        for p, m in r["modules"].items():
            g = m.get("gain")
            if not g or g["calls"] < 2:
                continue
            total = g["log10_sum"]
            if total >= 1.0 and (best is None or total > best[3]):
                best = (p, g["calls"], 10 ** (total / g["calls"]), total, r)
        if best is not None:
            return best
    return None


def _blame_explosion(run, seen, i):
    """The layer an explosion comes from: the one that amplifies the gradient at each of its
    calls (a recurrence), else the one whose gradient grew first and fastest from the first
    check, else (when gradients are huge from the start) the largest relative to its
    weights. Returns (path, why, related)."""
    amp = _amplifier(run, seen[:i + 1])
    if amp is not None:
        p, calls, per, total, r = amp
        return p, (f"the gradient is multiplied by {per:.2g} on average each of the {calls} "
                   f"times backward passes back through '{p}' (x{10 ** total:.2g} in all, "
                   f"step {r['step']})"), []
    first = seen[0]
    growth = []
    for p in first["modules"]:
        n0 = _mod_norm(first, p)
        if not n0:
            continue
        for j in range(1, i + 1):
            n = _mod_norm(seen[j], p)
            if n is None:
                continue
            if n >= 10 * n0:
                growth.append((j, -(n / n0), p, n / n0))
                break
    if growth:
        growth.sort()
        j, _, p, g = growth[0]
        rel = [q for _, _, q, _ in growth[1:4]]
        return p, (f"'{p}' is the first layer whose gradient grew 10x (x{g:.3g} from step "
                   f"{first['step']} to step {seen[j]['step']})"), rel
    best, best_v = "", -1.0
    for p, m in first["modules"].items():
        n, w = _mod_norm(first, p), m.get("param_norm")
        if n is not None and w:
            if n / w > best_v:
                best, best_v = p, n / w
    return best, (f"'{best}' has the largest gradient relative to its weights "
                  f"(|g| / |w| = {best_v:.3g} at step {first['step']})"), []


def _exploding(run, found):
    seen = run.seen
    norms = [_total_norm(r) for r in seen]
    out = []
    if len(norms) >= 2 and _finite(norms[0]) and norms[0] > 0:
        for i in range(1, len(norms)):
            n = norms[i]
            prev = [x for x in norms[:i] if _finite(x)]
            base = statistics.median(prev) if prev else norms[0]
            # 1000x the first check, or 1000x the checks before and well above the first
            # (gradients that shrank as the loss fell and came back are not an explosion)
            if _finite(n) and (n > EXPLODE_GROWTH * norms[0]
                               or (n > EXPLODE_GROWTH * base and n > 10 * norms[0])):
                r = seen[i]
                where, why, rel = _blame_explosion(run, seen, i)
                out.append(Finding(
                    "exploding", where, r["step"],
                    f"the total gradient norm grew from {_fmt(norms[0])} (step "
                    f"{seen[0]['step']}) to {_fmt(n)} (step {r['step']}), {n / norms[0]:.2g}x: "
                    f"gradients are exploding; {why}",
                    "clip gradients (clip_grad_norm_(params, 1.0)), lower the learning rate, "
                    "or add normalisation (LayerNorm) / a better initialisation (for a "
                    "recurrence: an orthogonal recurrent weight with gain <= 1)",
                    "error", rel))
                return out
    # gradients huge from the first check: a recurrence that amplifies them at every pass,
    # and a loss that shows it (a spike, a rise, a non-finite value)
    amp = _amplifier(run, seen)
    if amp is not None and amp[3] >= AMPLIFY_TOTAL and amp[2] >= AMPLIFY_PER_CALL:
        spike, imp = _spike(run), run.improved()
        bad = run.nonfinite_loss()
        ce = next((r["cross_entropy"] for r in run.records if r.get("cross_entropy")), None)
        huge = (ce is not None and run.finite and ce.get("classes", 0) > 1
                and run.finite[0][1] > 10 * math.log(ce["classes"]))
        if spike is not None or bad is not None or (imp is not None and imp > 1.0) or huge:
            p, calls, per, total, r = amp
            if bad is not None:
                shown = f"the loss became {run.values[run.steps.index(bad)]} at step {bad}"
            elif huge:
                shown = (f"the loss started at {_fmt(run.finite[0][1])}, "
                         f"{run.finite[0][1] / math.log(ce['classes']):.0f}x the chance level "
                         f"ln({ce['classes']})")
            elif spike is not None:
                shown = f"the loss jumped to {_fmt(spike[1])} at step {spike[0]}"
            else:
                shown = f"the loss rose {imp:.2g}x"
            out.append(Finding(
                "exploding", p, r["step"],
                f"backward multiplies the gradient by {per:.2g} on average each of the {calls} "
                f"times it passes back through '{p}' (x{10 ** total:.2g} in all at step "
                f"{r['step']}), and {shown}: gradients explode through this recurrence",
                "clip gradients (clip_grad_norm_(params, 1.0)), initialise the recurrent "
                "weight orthogonal with gain <= 1 (or smaller), use a gated cell (LSTM/GRU) "
                "or normalisation, and lower the learning rate",
                "error", []))
            return out
    s = run.nonfinite_loss()
    if s is not None:
        upto = [r for r in seen if r["step"] <= s] or seen[:1]
        where, why = "", ""
        if upto:
            where, why, _ = _blame_explosion(run, seen, len(upto) - 1)
            why = f"; {why}" if where else ""
        v = next(v for st, v in zip(run.steps, run.values) if st == s)
        out.append(Finding(
            "exploding", where, s,
            f"the loss became {v} at step {s}: training diverged{why}",
            "lower the learning rate, clip gradients, and run a step under "
            "chainrule.diagnostics.detect_anomaly() to find the op that makes the first "
            "non-finite value", "error"))
    return out


def _layer_rms(meta, r):
    out = []
    for p in meta.get("order", []):
        g = r["modules"].get(p, {}).get("grad")
        if g and _finite(g["rms"]) and g["rms"] > 0:
            out.append((p, g["rms"]))
    return out


def _vanishing(run, _found):
    """Gradient RMS falling by orders of magnitude from the output side to the input side."""
    meta = run.meta
    hits = []
    for r in run.seen:
        layers = _layer_rms(meta, r)
        if len(layers) < 4:
            continue
        tail = layers[-max(1, len(layers) // 3):]
        ref_path, ref = max(tail, key=lambda x: x[1])
        head = layers[: len(layers) // 2]
        low = [(p, v) for p, v in head if v < VANISH_FACTOR * ref]
        if low and low[0][0] == layers[0][0]:
            hits.append((r, low, ref_path, ref, layers))
    if not hits or len(hits) * 2 < len(run.seen):
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


def _warming_up(run, r):
    """An adaptive optimizer's first steps: each moves a weight by about lr, whatever the
    gradient, so a large ratio there says nothing about the learning rate."""
    if not run.adaptive:
        return False
    st = _opt(r).get("state_step")
    return st is None or st <= ADAPTIVE_WARMUP


def _learning_rate(run, found):
    meta = run.meta
    out = []
    med = []
    for r in run.records:
        ratios = _matrix_ratios(meta, r)
        if ratios:
            med.append((r, statistics.median(v for _, v in ratios), ratios))
    imp = run.improved()
    diverged = (run.nonfinite_loss() is not None or "exploding" in _kinds(found)
                or (imp is not None and imp > RISE_FACTOR))
    # the loss did not fall by a fifth, or it spiked
    poor = diverged or imp is None or imp > 0.8 or _spike(run) is not None
    high = [(r, m, ratios) for r, m, ratios in med if m > RATIO_HIGH and not _warming_up(run, r)]
    if (high and poor and (len(high) >= 2 or diverged)
            and not _kinds(found) & {"uphill_update", "weight_decay_dominates",
                                     "grad_accumulates", "target_not_normalized"}
            and not any(f.kind == "exploding" and "passes back through" in f.message
                        for f in found)):  # a recurrence that amplifies: named already
        r, m, ratios = high[0]
        name, worst = max(ratios, key=lambda x: x[1] if math.isfinite(x[1]) else math.inf)
        out.append(Finding(
            "lr_too_high", _module_of(meta, name), r["step"],
            f"each optimizer step changes the weights by {_fmt(m)} of their size (median "
            f"over weight matrices; largest {_fmt(worst)} at {name}; {len(high)} check(s)); "
            "healthy training moves them by about 1e-3 (1e-4 to 1e-2) per step, and the loss "
            + ("diverged" if diverged else "does not fall" if imp is None or imp > 0.8
               else "spikes"),
            "lower the learning rate (by 10x or more), add warm-up, or clip gradients",
            "error"))
    explained = _kinds(found) & {"vanishing_gradient", "lr_decayed", "clip_too_tight",
                                 "weight_decay_dominates", "step_without_grad",
                                 "no_optimizer_step", "symmetric_init", "grad_accumulates"}
    last = med[-LOW_RECORDS:]
    if not explained and len(last) == LOW_RECORDS and all(0 < m < RATIO_LOW for _, m, _ in last):
        r, m, _ = med[-LOW_RECORDS]
        annealed = False
        for n in run.matrices()[:1]:
            lrs = [v for rr in run.records if _finite(v := run.lr(rr, n))]
            now = [v for rr, _, _ in last if _finite(v := run.lr(rr, n))]
            annealed = bool(lrs and now) and max(now) < 0.1 * max(lrs)
        if not annealed and (imp is None or imp > 0.5):
            out.append(Finding(
                "lr_too_low", "", r["step"],
                f"each optimizer step changes the weights by only {_fmt(m)} of their size "
                f"(median over weight matrices, {LOW_RECORDS} checks in a row); healthy "
                "training moves them by about 1e-3 per step",
                "raise the learning rate (by 10x or more) or check the schedule has not "
                "decayed it to nothing", "warning"))
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


def _dead_relu(run, found):
    meta, records = run.meta, run.records
    explained = _modules_named(found, {"symmetric_init", "input_degenerate"})
    if "input_degenerate" in _kinds(found):
        return []
    scaled = "input_not_normalized" in _kinds(found)
    first = (meta.get("order") or [None])[0]
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
        if after in explained or (scaled and after == first):
            continue  # a cause named already (the inputs' scale kills the first layer's units)
        if frac < 0.99 and _kinds(found) & CAUSES:
            continue  # some units dying is a side effect of the cause found
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


def _saturated(run, found):
    meta, records = run.meta, run.records
    first = meta.get("order", [None])[:1]
    scaled = "input_not_normalized" in _kinds(found)
    ranged = _modules_named(found, {"output_range_mismatch", "probabilities_to_cross_entropy"})
    out = []
    for path, a in _act_paths(records).items():
        if a.get("kind") != "saturating":
            continue
        hit = _persistent(records, path, "sat_frac", SAT_FRAC)
        if hit is None:
            continue
        r, frac = hit
        info = meta.get("activations", {}).get(path, {})
        if scaled and first and info.get("after") == first[0]:
            continue  # the inputs' scale is the cause, named already
        if path in ranged or info.get("after") in ranged:
            continue  # an output activation that cannot reach the targets, named already
        where, what = _act_where(path, info, a.get("type"))
        out.append(Finding(
            "saturated", where, r["step"],
            f"{frac:.0%} of the outputs of {what} sit at the ends of its "
            "range, where its derivative is nearly zero: gradients through it vanish",
            "scale inputs down (normalise the data, LayerNorm before it), use a smaller "
            "initialisation or learning rate, or a non-saturating activation",
            "warning"))
    return out


def _zero_gradient(run, found):
    meta, seen = run.meta, run.seen
    if not seen:
        return []
    order = run.order
    # Layers before a dead activation are explained by it already.
    dead_at = [order.get(f.related[0], -1) for f in found if f.kind == "dead_relu" and f.related]
    limit = max(dead_at, default=-1)
    explained = _modules_named(found, {"symmetric_init", "input_degenerate"})
    out = []
    for path in meta.get("order", []):
        grads = [r["modules"].get(path, {}).get("grad") for r in seen]
        grads = [g for g in grads if g]
        if not grads or any(g["zero_frac"] < 1.0 for g in grads):
            continue
        if order.get(path, -1) <= limit or path in explained:
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


def _spike(run):
    """The first loss spike: (step, loss, median before, window, starting loss) or None. A
    spike is 3x the median of the steps before, more than twice their largest, and a good
    part of the way back to where training started: at a low loss, minibatch noise makes 3x
    jumps that are nothing of the kind."""
    finite = run.finite
    for i in range(1, len(finite)):
        s, v = finite[i]
        recent = [x for _, x in finite[max(0, i - SPIKE_WINDOW):i]]
        med = statistics.median(recent)
        start = statistics.mean(x for _, x in finite[:min(3, i)])
        room = max(start - med, 0.0)
        if (v > SPIKE_FACTOR * med and v - med > SPIKE_OF_RANGE * room
                and v - med > 0.1 * (abs(finite[0][1]) or 1.0) and v > 2 * max(recent)):
            return s, v, med, len(recent), start
    return None


def _loss_rules(run, found):
    out = []
    finite = run.finite
    causes = _kinds(found) & CAUSES
    # a spike that an explosion or a learning rate too high shows already is not repeated
    spike = (_spike(run) if not causes and not _kinds(found) & {"exploding", "lr_too_high"}
             else None)
    if spike is not None:
        s, v, med, n, start = spike
        out.append(Finding(
            "loss_spike", "", s,
            f"the loss jumped to {_fmt(v)} at step {s}, {v / med:.1f}x the median "
            f"{_fmt(med)} of the {n} steps before (the run started at {_fmt(start)})",
            "lower the learning rate or add warm-up, clip gradients, and check the batch "
            "at that step for bad data", "warning"))
    k = max(3, len(finite) // 10)
    errors = any(f.severity == "error" for f in found + out
                 if f.kind not in ("frozen", "not_in_optimizer"))
    if len(finite) >= RISE_MIN_STEPS and not errors and not causes:
        start = min(v for _, v in finite[:k])  # a blow-up in the very first steps counts too
        end = statistics.mean(v for _, v in finite[-k:])
        if start > 0 and end > RISE_FACTOR * start:
            out.append(Finding(
                "loss_rising", "", finite[-k][0],
                f"the loss went up from {_fmt(start)} (best of the first {k} steps) to "
                f"{_fmt(end)} over the last {k} (steps {finite[0][0]}..{finite[-1][0]}): "
                "training diverges",
                "lower the learning rate (by 10x), add warm-up, clip gradients",
                "error"))
    errors = errors or any(f.severity == "error" for f in out)
    if len(finite) >= STALL_MIN_STEPS and not errors and not causes:
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


# Causes first (the loop, the data and initialisation, the loss), then the symptoms, which
# look at what was found before them.
_RULES = (
    _frozen, _not_in_optimizer,
    _grad_accumulates, _step_without_grad, _no_optimizer_step, _clip_too_tight, _lr_decayed,
    _uphill, _weight_decay, _eval_mode,
    _inputs, _symmetric, _dropout_high,
    _probabilities, _regression_on_classes, _output_range, _target_scale, _causal_leak,
    _no_gradient, _exploding, _nonfinite, _vanishing, _not_updated,
    _learning_rate, _chance, _unshuffled, _dead_relu, _saturated, _zero_gradient,
    _loss_rules,
)
