"""Statistics of gradients, parameters and activations, computed in few passes over memory.

Every function takes raw arrays (``Tensor.data``) and returns a dict of plain Python floats, so
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
    a = np.asarray(a)
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
        y = np.asarray(y)
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
