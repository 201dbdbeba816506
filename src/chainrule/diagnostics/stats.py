"""Statistics of gradients, parameters and activations, computed in few passes over memory.

Every function takes raw arrays (``Tensor._data``) and returns a dict of plain Python floats, so
the records are JSON as they stand and the rules in :mod:`.doctor` run on data read back from
``diagnostics.jsonl`` exactly as on data gathered live.

Gradient statistics for an array g of n elements::

    norm = sqrt(sum g_i^2)          rms = norm / sqrt(n)        max_abs = max |g_i|
    zero_frac = #{g_i == 0} / n     nonfinite = #{g_i is nan or inf}

The sum of squares is one BLAS dot product; when it is finite every element is finite (a NaN or
an infinity anywhere makes it non-finite), so the element-wise finiteness count runs only when
something is wrong (or the squares overflowed).
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend

# Activation kinds: how a module or op's output is judged.
RELU_FAMILY = frozenset({"ReLU", "Relu", "ReLU6"})
SATURATING = {"Tanh": (-1.0, 1.0), "Sigmoid": (0.0, 1.0), "Hardsigmoid": (0.0, 1.0),
              "Hardtanh": (-1.0, 1.0), "Softsign": (-1.0, 1.0)}
SATURATION_MARGIN = 0.01  # an output within 1% of the range's end counts as saturated
HIST_BINS = 40
HIST_SAMPLES = 8192  # histograms come from a strided subsample of at most this many values


def activation_kind(name: str) -> str:
    """'relu', 'saturating' or '' for a module class name or op name."""
    if name in RELU_FAMILY:
        return "relu"
    if name in SATURATING:
        return "saturating"
    return ""


def _flat(a):
    a = to_host(a)
    return a.reshape(-1) if a.flags.c_contiguous else a.ravel()


def _sumsq(x):
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    return float(np.dot(x, x)) if x.size else 0.0


def grad_stats(g) -> dict:
    """norm, rms, max_abs, zero_frac, nonfinite of a gradient array (see the module docstring)."""
    x = _flat(g)
    n = x.size
    if n == 0:
        return {"norm": 0.0, "rms": 0.0, "max_abs": 0.0, "zero_frac": 0.0, "nonfinite": 0}
    ss = _sumsq(x)
    nonfinite = 0
    if not math.isfinite(ss):
        finite = np.isfinite(x)
        nonfinite = int(n - np.count_nonzero(finite))
        if nonfinite:
            x = x[finite]
        ss = _sumsq(x.astype(np.float64))
    if x.size:
        max_abs = float(max(x.max(), -x.min()))
        zeros = x.size - np.count_nonzero(x)
    else:
        max_abs, zeros = math.nan, 0
    norm = math.sqrt(ss)
    return {"norm": norm if not nonfinite else math.inf, "rms": norm / math.sqrt(n),
            "max_abs": max_abs, "zero_frac": zeros / n, "nonfinite": nonfinite}


def norm(a) -> float:
    """Euclidean norm of an array (all its elements), in float64."""
    return math.sqrt(_sumsq(_flat(a)))


def update_ratio(before, after) -> float:
    """||after - before|| / ||before||: the relative size of the last optimizer step.

    Returns NaN when the parameter was zero before the step (the ratio has no scale then).
    """
    b = _flat(before)
    nb = math.sqrt(_sumsq(b))
    d = _flat(after) - b
    nd = math.sqrt(_sumsq(d))
    if nb == 0.0:
        return math.nan if nd else 0.0
    return nd / nb


class ActivationAccumulator:
    """Running activation statistics of one module over one gathering step.

    Several forwards in one step (gradient accumulation) merge: mean and std come from the
    running sums n, sum y, sum y^2; a unit (last-axis feature) is dead when it was <= 0 for
    every example of every forward; saturation counts outputs within ``SATURATION_MARGIN`` of
    the ends of the activation's range.
    """

    __slots__ = ("kind", "name", "n", "s", "ss", "alive", "units", "sat", "zeros", "hist")

    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name
        self.n = 0
        self.s = self.ss = 0.0
        self.alive = None
        self.units = 0
        self.sat = 0
        self.zeros = 0
        self.hist = None

    def add(self, y):
        y = to_host(y)
        if y.dtype.kind != "f" or y.size == 0:
            return
        x = _flat(y)
        self.n += x.size
        self.s += float(x.sum(dtype=np.float64))
        self.ss += _sumsq(x)
        if self.kind == "relu":
            units = y.shape[-1] if y.ndim >= 2 else y.size
            positive = (y > 0).reshape(-1, units).any(axis=0)
            self.alive = positive if self.alive is None else (self.alive | positive)
            self.units = units
            self.zeros += x.size - np.count_nonzero(x)
        elif self.kind == "saturating":
            lo, hi = SATURATING[self.name]
            m = SATURATION_MARGIN * (hi - lo)
            self.sat += int(np.count_nonzero(x <= lo + m) + np.count_nonzero(x >= hi - m))
        if self.hist is None:
            step = max(1, x.size // HIST_SAMPLES)
            sample = x[::step].astype(np.float64)
            sample = sample[np.isfinite(sample)]
            if sample.size:
                try:
                    counts, edges = np.histogram(sample, bins=HIST_BINS)
                except ValueError:  # a range too wide for finite bins: no picture, no failure
                    return
                # uniform bins: the two ends say where every edge is
                self.hist = {"lo": float(edges[0]), "hi": float(edges[-1]),
                             "counts": counts.tolist()}

    def result(self) -> dict:
        if self.n == 0:
            return {}
        mean = self.s / self.n
        var = max(self.ss / self.n - mean * mean, 0.0)
        out = {"kind": self.kind, "type": self.name, "mean": mean, "std": math.sqrt(var)}
        if self.kind == "relu" and self.alive is not None:
            out["dead_frac"] = 1.0 - float(np.count_nonzero(self.alive)) / max(self.units, 1)
            out["zero_frac"] = self.zeros / self.n
            out["units"] = self.units
        elif self.kind == "saturating":
            out["sat_frac"] = self.sat / self.n
        if self.hist is not None:
            out["hist"] = self.hist
        return out


def activation_stats(y, kind: str = "", name: str = "") -> dict:
    """mean, std (and dead_frac / sat_frac by ``kind``) of one activation array."""
    acc = ActivationAccumulator(kind, name)
    acc.add(y)
    return acc.result()


def merge_grad_stats(parts: list[dict], sizes: list[int]) -> dict:
    """The grad_stats of the concatenation of several arrays, from each one's stats."""
    n = sum(sizes)
    if n == 0:
        return {"norm": 0.0, "rms": 0.0, "max_abs": 0.0, "zero_frac": 0.0, "nonfinite": 0}
    nonfinite = sum(p["nonfinite"] for p in parts)
    ss = sum(p["norm"] ** 2 for p in parts if math.isfinite(p["norm"]))
    if nonfinite:
        # the finite part's norm, for the rms; the norm itself is infinite
        finite_ss = sum(p["rms"] ** 2 * s for p, s in zip(parts, sizes))
        norm_, rms = math.inf, math.sqrt(finite_ss / n)
    else:
        norm_, rms = math.sqrt(ss), math.sqrt(ss / n)
    max_abs = max((p["max_abs"] for p in parts if not math.isnan(p["max_abs"])), default=math.nan)
    zeros = sum(p["zero_frac"] * s for p, s in zip(parts, sizes))
    return {"norm": norm_, "rms": rms, "max_abs": max_abs, "zero_frac": zeros / n,
            "nonfinite": nonfinite}


# ----------------------------------------------------------------------------- the loop's data


def dot(a, b) -> float:
    """sum a_i b_i of two arrays of the same shape (one BLAS dot product)."""
    x, y = _flat(a), _flat(b)
    if x.dtype != y.dtype:
        x, y = x.astype(np.float64), y.astype(np.float64)
    elif x.dtype.kind != "f":
        x, y = x.astype(np.float64), y.astype(np.float64)
    return float(np.dot(x, y)) if x.size else 0.0


def sumsq(a) -> float:
    """sum a_i^2 of an array."""
    return _sumsq(_flat(a))


def rows_identical(w, rtol: float = 1e-4) -> bool:
    """Whether every row (output unit) of a weight array of two or more rows is the same, up
    to ``rtol`` of the array's largest value (rounding in matrix products makes exact copies
    differ in the last bits): units that compute the same thing. Comparing the first two rows
    decides almost every case; only when they agree is the whole array compared."""
    w = to_host(w)
    if w.ndim < 2 or w.shape[0] < 2 or w.size == 0 or w.dtype.kind != "f":
        return False
    r = w.reshape(w.shape[0], -1)
    tol = rtol * float(max(np.abs(r[0]).max(), np.abs(r[1]).max()))
    if not np.all(np.abs(r[1] - r[0]) <= tol):
        return False
    tol = rtol * float(np.abs(r).max())
    return bool(np.all(np.abs(r - r[0]) <= tol))


def _feature_axis(ndim: int):
    """The axis that holds features: 1 for (N, F) and images (N, C, H, W), the last for
    sequences (N, T, F); None otherwise."""
    if ndim in (2, 4):
        return 1
    if ndim == 3:
        return 2
    return None


def input_stats(a) -> dict:
    """What the model was fed: shape, scale (mean, std, rms, max |x|), the fraction of zeros,
    per-feature RMS (largest and smallest), and whether every example of the batch (the first
    axis) is the same. Integer inputs (token ids) get their range only."""
    a = to_host(a)
    out = {"shape": list(a.shape), "dtype": a.dtype.kind}
    if a.size == 0:
        return out
    if a.dtype.kind != "f":
        if a.dtype.kind in "iub":
            out["min"], out["max"] = int(a.min()), int(a.max())
        return out
    x = _flat(a)
    ss = _sumsq(x)
    if not math.isfinite(ss):
        out["nonfinite"] = int(x.size - np.count_nonzero(np.isfinite(x)))
        return out
    n = x.size
    mean = float(x.sum(dtype=np.float64)) / n
    out["mean"] = mean
    out["rms"] = math.sqrt(ss / n)
    out["std"] = math.sqrt(max(ss / n - mean * mean, 0.0))
    out["max_abs"] = float(max(x.max(), -x.min()))
    out["zero_frac"] = (n - np.count_nonzero(x)) / n
    axis = _feature_axis(a.ndim)
    if axis is not None and a.shape[axis] > 1:
        other = tuple(i for i in range(a.ndim) if i != axis)
        feat = np.sqrt(np.mean(np.square(a, dtype=np.float64), axis=other))
        out["features"] = int(a.shape[axis])
        out["feature_rms_max"] = float(feat.max())
        out["feature_rms_min"] = float(feat.min())
        out["feature_rms_median"] = float(np.median(feat))
    if a.ndim >= 2 and a.shape[0] >= 2:
        out["batch"] = int(a.shape[0])
        r = a.reshape(a.shape[0], -1)
        out["identical"] = bool(np.array_equal(r[0], r[1]) and (r == r[0]).all())
    return out


def logit_stats(x, rows: int = 256):
    """Statistics of the input (M, C) of a cross-entropy, from at most ``rows`` of its rows:
    whether they are already probabilities (each in [0, 1], summing to 1), the mean entropy of
    the rows' softmax, the entropy of their average (what the model predicts regardless of
    the example). Returns (stats, sampled row indices, (argmax, max probability) per sampled
    row) for :func:`targets_from_grad`."""
    x = to_host(x)
    M, C = x.shape
    idx = np.arange(0, M, max(1, M // rows))[:rows]
    s = x[idx].astype(np.float64)
    ok = np.isfinite(s).all(axis=1)
    out = {"classes": int(C), "rows": int(M)}
    if not ok.any():
        return out, idx, None
    s, idx = s[ok], idx[ok]
    out["bounded"] = bool(s.min() >= 0.0 and s.max() <= 1.0)  # a sigmoid's or a softmax's
    out["prob_like"] = bool(out["bounded"]
                            and float(np.abs(s.sum(axis=1) - 1.0).max()) < 1e-3)
    z = s - s.max(axis=1, keepdims=True)
    e = np.exp(z)
    tot = e.sum(axis=1, keepdims=True)
    p = e / tot
    logp = z - np.log(tot)
    out["row_entropy"] = float(-(p * logp).sum(axis=1).mean())
    pbar = p.mean(axis=0)
    out["pred_entropy"] = float(-(pbar * np.log(np.maximum(pbar, 1e-300))).sum())
    return out, idx, (p.argmax(axis=1), p.max(axis=1))


def targets_from_grad(dx, idx, pred) -> dict:
    """The class targets of a cross-entropy, read from the gradient of its logits: for row i,
    d loss / d x_ij = s_i (p_ij - [j = t_i]) (with label smoothing or class weights the target
    is still the most negative entry), so t_i = argmin_j. A row with no negative entry is a
    prediction certain and right (p = 1 at the target) when its top probability is 1, else an
    ignored target, left out. Returns the label counts' entropy, the number of classes
    present, the share of the most common one (and which it is), the accuracy of the
    predictions (and the label counts, for up to 64 classes)."""
    dx = to_host(dx)
    if dx.ndim != 2 or pred is None:
        return {}
    argmax, pmax = pred
    d = dx[idx].astype(np.float64)
    fin = np.isfinite(d).all(axis=1)
    neg = d.min(axis=1) < 0
    sure = ~neg & (pmax >= 1.0 - 1e-6)
    valid = fin & (neg | sure)
    if not valid.any():
        return {}
    t = np.where(neg, d.argmin(axis=1), argmax)[valid]
    counts = np.bincount(t, minlength=dx.shape[1])
    f = counts[counts > 0] / t.size
    out = {"target_entropy": float(-(f * np.log(f)).sum()),
           "target_classes": int((counts > 0).sum()), "target_rows": int(t.size),
           "majority": float(counts.max() / t.size), "majority_class": int(counts.argmax()),
           "accuracy": float((argmax[valid] == t).mean())}
    if dx.shape[1] <= 64:
        out["counts"] = counts.tolist()
    return out


PROBE_TOL = 1e-4  # outputs that move by more than this share of their size have changed


def to_host(a):
    """A NumPy array of ``a`` (a device array is copied to the host, explicitly)."""
    if isinstance(a, np.ndarray):
        return a
    return backend.to_numpy(a)


def first_targets(dx, logits):
    """The targets of the first rows of a cross-entropy (as :func:`targets_from_grad`, with
    a row that has no negative entry taken as predicted right: its argmax)."""
    d = to_host(dx)[:len(logits)].astype(np.float64)
    return np.where(d.min(axis=1) < 0, d.argmin(axis=1), to_host(logits).argmax(axis=1))


def target_stats(t, sample: int = 4096) -> dict:
    """A regression target's range, mean, variance, and whether it holds only integers (and
    how many distinct values, up to 100), from at most ``sample`` of its values."""
    t = to_host(t)
    x = _flat(t)
    if x.size == 0 or x.dtype.kind != "f":
        return {}
    s = x[:: max(1, x.size // sample)].astype(np.float64)
    s = s[np.isfinite(s)]
    if not s.size:
        return {}
    out = {"min": float(s.min()), "max": float(s.max()), "mean": float(s.mean()),
           "var": float(s.var()), "n": int(x.size)}
    out["below_0"] = float(np.mean(s < 0.0))
    out["below_-1"] = float(np.mean(s < -1.0))
    out["above_1"] = float(np.mean(s > 1.0))
    out["integral"] = bool(np.all(s == np.round(s)))
    if out["integral"]:
        vals, counts = np.unique(s, return_counts=True)
        out["distinct"] = int(min(len(vals), 100))
        out["max_share"] = float(counts.max() / s.size)
        out["min_share"] = float(counts.min() / s.size)
        if len(vals) <= 32:
            out["values"], out["counts"] = vals.tolist(), counts.tolist()
    return out
