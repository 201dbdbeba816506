"""NaN/Inf provenance: stop at the first non-finite value, naming the op, module and source line.

Inside ``with detect_anomaly():`` (or after ``set_detect_anomaly(True)``) every op's forward
output and every gradient its backward returns is checked. The first NaN, and the first
infinity that does harm, raises :class:`NonFiniteError` naming

- the op (``Log``), the phase (forward or backward) and, for a backward failure, which input's
  gradient went bad;
- the module path it ran in (``blocks.2.attn``), from the innermost ``Module.__call__`` on the
  Python stack when the op was created;
- the user's source line that created the op: the first stack frame outside chainrule's own
  files (and, when the op was made inside a chainrule layer or model, that line as well);
- the statistics of the inputs that explain it: ``log`` of negative or zero values, ``exp`` of
  inputs past the overflow threshold (88.7 in float32), division by zero, 0/0, ...

Infinities in the forward pass are judged by where they go, as a careful reader would:
``masked_fill(mask, -inf)`` followed by softmax is a standard idiom, and an infinity that the
next op absorbs into finite values (softmax, exp, max, a division) is harmless. An infinity
is reported when an op turns it into NaN (at that op, naming the op and line the infinity
came from), when it reaches the loss (backward starts from an infinite value), or when it is
still there at the end of a ``with detect_anomaly()`` block without anything having absorbed
it. Infinities in gradients are reported at once.

How: while it is on, a forward observer (``chainrule.autograd.register_forward_observer``)
checks each op's output; for a recorded op it stores where the op was made and registers a hook
on the op (``Op.register_hook``, holding the op only by a weak reference so that the graph
stays free of cycles) that checks the gradients its backward returns.

Cost: a forward check is one reduction over the output (a sum, which is finite exactly when
every element is, unless it overflows; then an exact check runs), plus one walk of the Python
stack per recorded op to find the source line and module. Measured on an MLP and the GPT baby
configuration in ``bench/diagnostics_overhead.py`` (see docs/diagnostics.md): expect a step to
take roughly 1.5x to 2x as long. Use it to find a NaN, not for whole runs.
"""

from __future__ import annotations

import functools
import itertools
import linecache
import math
import os
import sys
import weakref

import numpy as np

from .. import backend
from .op import register_forward_observer

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Files of the engine itself: a frame here is never the line to show anyone.
_CORE = tuple(os.path.join(_PKG_DIR, p) for p in (
    "autograd" + os.sep, "tensor.py", "creation.py", "backend" + os.sep, "random.py",
    "dtypes.py", "ops" + os.sep, "diagnostics" + os.sep, "nn" + os.sep + "module.py",
    "nn" + os.sep + "functional"))

_depth = 0  # nesting count of enabled scopes; the observer is registered while it is positive
_handle = None
# Forward outputs holding an infinity that nothing has absorbed yet: id(array) -> _Inf.
_pending: dict = {}
_PENDING_PURGE = 256  # purge records of arrays that are gone past this many
_seq = itertools.count()
_module_frames: set = set()  # code objects of the frames that run a module (register_module_frames)


def register_module_frames(*codes) -> None:
    """Tell anomaly mode which code objects run a module's forward (``nn.Module.__call__``),
    so that an error names the module path: the frame's ``self`` is the module. The nn layer
    registers its own when it is imported; the engine works without it."""
    _module_frames.update(codes)


class NonFiniteError(FloatingPointError, RuntimeError):
    """The first NaN or infinity found under :func:`detect_anomaly` (a FloatingPointError, and
    a RuntimeError as PyTorch raises for it).

    Attributes: ``op`` (name), ``phase`` ('forward' or 'backward'), ``module`` (path or ''),
    ``location`` ((file, line) of the user's source line or None), ``details`` (the statistics
    of the inputs, as text).
    """

    def __init__(self, message, op="", phase="", module="", location=None, details=""):
        super().__init__(message)
        self.op, self.phase, self.module = op, phase, module
        self.location, self.details = location, details


# ----------------------------------------------------------------------------- turning it on


def is_anomaly_enabled() -> bool:
    return _depth > 0


def set_detect_anomaly(mode: bool) -> None:
    """Turn NaN/Inf provenance checking on or off for everything that follows (the function
    form of :class:`detect_anomaly`)."""
    global _depth, _handle
    if mode:
        _depth += 1
        if _depth == 1:
            _handle = register_forward_observer(_forward_hook)
    elif _depth > 0:
        _depth -= 1
        if _depth == 0 and _handle is not None:
            _handle.remove()
            _handle = None
            _pending.clear()


class detect_anomaly:
    """Check every forward output and backward gradient for NaN/Inf inside the block (or the
    decorated function); raise :class:`NonFiniteError` at the first one.

    Ops recorded inside the block keep checking their gradients in a ``backward()`` called
    after it ends, so ``with detect_anomaly(): loss = model(x)`` then ``loss.backward()``
    works too.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = bool(enabled)

    def __enter__(self):
        if self.enabled:
            set_detect_anomaly(True)
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.enabled:
            left = _unabsorbed() if exc_type is None and _depth == 1 else None
            set_detect_anomaly(False)
            if left is not None:
                _raise_pending(left, "nothing absorbed it by the end of the detect_anomaly() "
                                     "block (it is in the block's result)")
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.enabled):
                return fn(*args, **kwargs)

        return wrapper


# ----------------------------------------------------------------------------- the checks


def _all_finite(a) -> bool:
    if getattr(a, "dtype", None) is None or a.dtype.kind not in "fc":
        return True
    xp = backend.array_module(a)
    # A sum is finite exactly when every element is, unless it overflows: confirm that case.
    with np.errstate(over="ignore", invalid="ignore"):
        if bool(xp.isfinite(a.sum())):
            return True
    return bool(xp.isfinite(a).all())


class _Inf:
    """An op output that holds an infinity (and no NaN), until something absorbs it."""

    __slots__ = ("ref", "op", "site", "why", "inputs", "kind", "seq", "consumed", "origin")

    def __init__(self, out, op, site, why, inputs, kind, origin):
        self.ref = weakref.ref(out)
        self.op, self.site, self.why, self.inputs, self.kind = op.name, site, why, inputs, kind
        self.seq = next(_seq)
        self.consumed = False
        self.origin = origin  # the _Inf that made the first infinity of this chain


def _consume(arrays):
    """Mark the pending infinities among an op's inputs as consumed; return the first one."""
    first = None
    for a in arrays:
        rec = _pending.get(id(a))
        if rec is not None and rec.ref() is a:
            rec.consumed = True
            if first is None:
                first = rec
    return first


def _unabsorbed():
    """The earliest infinity that no op consumed (kept as a result, read with ``.item()``
    or dropped), or None."""
    left = [r for r in _pending.values() if not r.consumed]
    return min(left, key=lambda r: r.seq) if left else None


def _forward_hook(op, out, arrays):
    src = _consume(arrays) if _pending else None
    if not _all_finite(out):
        site = _site()
        if _has_nan(out):
            _raise_forward(op, out, arrays, site, src)
        # An infinity: harmless if the ops that read it absorb it (masked_fill(-inf) then
        # softmax); judged when it turns into NaN, reaches the loss, or ends the block.
        origin = (src.origin or src) if src is not None else None
        rec = _Inf(out, op, site, _why_forward(op.name, arrays, out, src), _inputs(arrays),
                   _kind(out), origin)
        if len(_pending) >= _PENDING_PURGE:
            for k in [k for k, r in _pending.items() if r.consumed and r.ref() is None]:
                del _pending[k]
        old = _pending.get(id(out))
        if old is not None and not old.consumed and old.ref() is None:
            _pending[f"gone{old.seq}"] = old  # a dropped result whose id is reused: keep it
        _pending[id(out)] = rec
        if op.is_recorded:
            op._anomaly_inf = rec
    if op.is_recorded:  # its gradient will be computed, so check it too
        op._anomaly_site = _site()
        _check_gradients_of(op)


def _has_nan(a) -> bool:
    return bool(np.isnan(backend.to_numpy(a)).any())


def _kind(a) -> str:
    x = backend.to_numpy(a)
    pos, neg = bool(np.isposinf(x).any()), bool(np.isneginf(x).any())
    return "inf and -inf" if pos and neg else ("-inf" if neg else "inf")


def _check_gradients_of(op):
    ref = weakref.ref(op)

    def check(grads, grad_outputs):
        o = ref()
        rec = getattr(o, "_anomaly_inf", None)
        if rec is not None and not rec.consumed:
            # backward runs through an op whose infinite output no op consumed: the loss
            _raise_pending(rec, "it reached the loss (backward started from an infinite value)")
        for i, gi in enumerate(grads):
            if gi is None:
                continue
            arr = gi._data if hasattr(gi, "grad_fn") else gi
            if not _all_finite(arr):
                _raise_backward(o, grad_outputs[0], i, arr)

    op.register_hook(check)


# ----------------------------------------------------------------------------- where it came from


def _in_pkg(path):
    return path.startswith(_PKG_DIR)


def _site():
    """(user (file, line, function), library (file, line, function) or None, module)."""
    f = sys._getframe(2)
    call_codes = _module_frames
    user = lib = None
    module = None
    while f is not None:
        code = f.f_code
        fname = code.co_filename
        if user is None and not _in_pkg(fname):
            user = (fname, f.f_lineno, code.co_name)
        if lib is None and not fname.startswith(_CORE):
            lib = (fname, f.f_lineno, code.co_name)
        if module is None and code in call_codes:
            module = f.f_locals.get("self")
            if user is not None:
                break
        f = f.f_back
    if lib == user:
        lib = None
    return user, lib, _module_name(module)


def _module_name(module):
    if module is None:
        return ""
    path = getattr(module, "path", "")
    return f"{path} ({type(module).__name__})" if path else f"(root {type(module).__name__})"


def _show(loc):
    if loc is None:
        return "unknown (no frame outside chainrule)"
    fname, line, func = loc
    text = linecache.getline(fname, line).strip()
    return f'{fname}:{line} in {func}: "{text}"' if text else f"{fname}:{line} in {func}"


# ----------------------------------------------------------------------------- explanations


def _describe(a) -> str:
    a = backend.to_numpy(a)
    if a.dtype.kind not in "fciub":
        return f"{a.dtype}"
    if a.size == 0:
        return f"shape {a.shape}, empty"
    fin = np.isfinite(a) if a.dtype.kind in "fc" else np.ones(a.shape, bool)
    bad = int(a.size - np.count_nonzero(fin))
    vals = a[fin] if bad else a
    if vals.size == 0:
        return f"shape {tuple(a.shape)} {a.dtype}, all {bad} values non-finite"
    return (f"shape {tuple(a.shape)} {a.dtype}, min {vals.min():.4g}, max {vals.max():.4g}, "
            f"mean {vals.mean(dtype=np.float64):.4g}" + (f", {bad} non-finite" if bad else ""))


def _count(mask) -> int:
    return int(np.count_nonzero(mask))


def _overflow_limit(dtype):
    return math.log(float(np.finfo(dtype).max)) if np.dtype(dtype).kind == "f" else math.inf


def _why_forward(name, arrays, out, src=None) -> str:
    """The cause in plain words, from the op's inputs, for the ops where it is known."""
    xs = [backend.to_numpy(a) for a in arrays]
    x = xs[0] if xs else None
    if any(a.dtype.kind in "fc" and not np.isfinite(a).all() for a in xs):
        i = next(i for i, a in enumerate(xs) if a.dtype.kind in "fc" and not np.isfinite(a).all())
        if src is not None:
            first = src.origin or src
            user = first.site[0] if first.site else None
            how = ("turned it into NaN" if _has_nan(out) else "passed it on")
            return (f"input {i} holds {src.kind}, made by {first.op} at {_show(user)}, and "
                    f"{name} {how}" + (" (a row with every entry -inf, as when a mask hides "
                                       "every position?)" if name in _ROW_OPS and
                                       "-inf" in src.kind else ""))
        return (f"input {i} was already non-finite when it reached {name}: it came from outside "
                "the checked ops (the data, a parameter, or an op run before checking was on)")
    if name in ("Log", "Log2", "Log10"):
        neg, zero = _count(x < 0), _count(x == 0)
        return (f"log of a non-positive number: {neg} input value(s) are negative (NaN) and "
                f"{zero} are zero (-inf); smallest input {x.min():.4g}")
    if name == "Log1p":
        return (f"log1p of values <= -1: {_count(x < -1)} below -1 (NaN), {_count(x == -1)} "
                f"equal to -1 (-inf); smallest input {x.min():.4g}")
    if name in ("Exp", "Expm1"):
        lim = _overflow_limit(x.dtype)
        return (f"overflow in exp: {_count(x > lim)} input value(s) exceed log(max {x.dtype}) = "
                f"{lim:.4g}; largest input {x.max():.4g}")
    if name == "Div":
        a, b = (xs + [None])[:2]
        zb = _count(b == 0)
        both = _count((a == 0) & (b == 0)) if a is not None and a.shape == b.shape else 0
        if zb:
            return (f"division by zero: {zb} denominator value(s) are zero"
                    + (f" ({both} of them 0/0, giving NaN)" if both else ""))
        return (f"overflow in division: smallest |denominator| {np.abs(b).min():.4g}, largest "
                f"|numerator| {np.abs(a).max():.4g}")
    if name in ("Sqrt", "Rsqrt"):
        msg = f"square root of {_count(x < 0)} negative value(s); smallest input {x.min():.4g}"
        if name == "Rsqrt":
            msg += f"; {_count(x == 0)} zero(s) give 1/sqrt(0) = inf"
        return msg
    if name == "Pow" and len(xs) == 2:
        a, b = xs
        frac = (a < 0) & (backend.to_numpy(b) != np.round(b))
        zneg = (a == 0) & (backend.to_numpy(b) < 0)
        return (f"power: {_count(frac)} negative base(s) with a non-integer exponent (NaN), "
                f"{_count(zneg)} zero base(s) with a negative exponent (inf); otherwise overflow "
                f"(largest |base| {np.abs(a).max():.4g})")
    big = max((float(np.abs(a).max()) for a in xs if a.dtype.kind in "fc" and a.size), default=0)
    return (f"the inputs are finite (largest magnitude {big:.4g}) but the result overflowed or is "
            "undefined for them (e.g. inf - inf, 0 * inf)")


def _why_backward(op, g, i, arr) -> str:
    name = op.name
    saved = [backend.to_numpy(s._data if hasattr(s, "grad_fn") else s) for s in (op.saved or ())]
    garr = backend.to_numpy(g._data if hasattr(g, "grad_fn") else g)
    if garr.dtype.kind in "fc" and not np.isfinite(garr).all():
        return ("the incoming gradient was already non-finite (the seed passed to backward, or "
                "a sum of finite gradients that overflowed)")
    if name in ("Log", "Div", "Rsqrt", "Log1p") and saved:
        s = saved[1] if name == "Div" and len(saved) > 1 else saved[0]
        point = -1 if name == "Log1p" else 0
        n = _count(s == point)
        if n:
            return (f"the derivative is infinite where the saved input is {point}: {n} such "
                    f"value(s) (division by zero in the gradient rule)")
    if name == "Sqrt" and saved:
        n = _count(saved[0] == 0)
        if n:
            return (f"d sqrt(x)/dx = 1 / (2 sqrt(x)) is infinite at x = 0: {n} input value(s) "
                    "are zero; add a small epsilon inside the square root")
    if name == "Pow" and saved:
        n = _count(saved[0] == 0)
        if n:
            return f"d a**b / da = b a**(b-1) is infinite at a = 0 for b < 1: {n} zero base(s)"
    return (f"the incoming gradient is finite (largest |g| {np.abs(garr).max():.4g}); the "
            "rule's product overflowed or is undefined for the saved values: "
            + "; ".join(_describe(s) for s in saved[:3]))


# ----------------------------------------------------------------------------- raising

_ROW_OPS = frozenset({"Softmax", "LogSoftmax", "LogSumExp", "Logsumexp"})


def _inputs(arrays) -> str:
    return "\n".join(f"    input {i}: {_describe(a)}" for i, a in enumerate(arrays)
                     if hasattr(a, "dtype"))


def _raise_forward(op, out, arrays, site, src=None):
    user, lib, module = site
    name = op.name
    kind = "NaN" if np.isnan(backend.to_numpy(out)).any() else "inf"
    why = _why_forward(name, arrays, out, src)
    inputs = _inputs(arrays)
    lines = [f"{name} (forward) produced {kind}: {why}",
             f"  module: {module or '(not inside a module)'}",
             f"  created at: {_show(user)}"]
    if lib is not None:
        lines.append(f"  inside chainrule at: {_show(lib)}")
    lines.append("  inputs:\n" + inputs if inputs else "  inputs: none")
    raise NonFiniteError("\n".join(lines), name, "forward", module,
                         user[:2] if user else None, why)


def _raise_backward(op, g, i, arr):
    user, lib, module = getattr(op, "_anomaly_site", (None, None, ""))
    name = op.name
    kind = "NaN" if np.isnan(backend.to_numpy(arr)).any() else "inf"
    why = _why_backward(op, g, i, arr)
    lines = [f"{name} (backward) produced {kind} in the gradient of its input {i}: {why}",
             f"  module: {module or '(not inside a module)'}",
             f"  op created at: {_show(user)}"]
    if lib is not None:
        lines.append(f"  inside chainrule at: {_show(lib)}")
    lines.append(f"  incoming gradient: {_describe(g._data if hasattr(g, 'grad_fn') else g)}")
    raise NonFiniteError("\n".join(lines), name, "backward", module,
                         user[:2] if user else None, why)


def _raise_pending(rec, fate):
    """Raise for an infinity made in the forward pass that did harm: ``fate`` says how."""
    first = rec.origin or rec
    user, lib, module = first.site
    lines = [f"{first.op} (forward) produced {first.kind}: {first.why}; {fate}",
             f"  module: {module or '(not inside a module)'}",
             f"  created at: {_show(user)}"]
    if lib is not None:
        lines.append(f"  inside chainrule at: {_show(lib)}")
    if rec is not first:
        lines.append(f"  passed on by: {rec.op} at {_show(rec.site[0])}")
    lines.append("  inputs:\n" + first.inputs if first.inputs else "  inputs: none")
    _pending.clear()
    raise NonFiniteError("\n".join(lines), first.op, "forward", module,
                         user[:2] if user else None, first.why)
