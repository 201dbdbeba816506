"""Pictures of a run's statistics, as PNG: gradient flow, update ratios, activation histograms.

Drawn with matplotlib's object API (``Figure`` and its Agg canvas), so the caller's pyplot
state and backend are left alone. matplotlib is an optional dependency (the ``train`` extra);
importing this module without it raises ImportError naming the extra.
"""

from __future__ import annotations

import math
import os

try:
    from matplotlib.figure import Figure
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("diagnostics pictures need matplotlib: pip install 'chainrule[train]'") \
        from e

import numpy as np

_MAX_LABELS = 48  # more layers than this: label every k-th row of the heatmap


def _layers(meta, records):
    seen = set()
    for r in records:
        seen.update(p for p, m in r["modules"].items() if m.get("grad"))
    return [p for p in meta.get("order", []) if p in seen]


def _log10(x):
    if x is None or not math.isfinite(x) or x <= 0:
        return np.nan
    return math.log10(x)


def _label(meta, path):
    typ = meta.get("modules", {}).get(path, {}).get("type", "")
    return f"{path or '(root)'} {typ}".strip()


def _no_data(fig, text):
    ax = fig.add_subplot(1, 1, 1)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _save(fig, out):
    """PNG into a file object, or into a path replaced atomically (never through a link)."""
    if hasattr(out, "write"):
        fig.savefig(out, format="png", dpi=100)
        return
    from ..serialization import atomic_open

    with atomic_open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


def gradient_flow(meta, records, out):
    """Heatmap of log10 gradient norm, one row per layer (input at the top), one column per
    gathered step. Grey cells: no gradient (or exactly zero)."""
    layers = _layers(meta, records)
    fig = Figure(figsize=(max(6.0, min(16.0, 2 + 0.25 * len(records))),
                          max(3.0, min(20.0, 1 + 0.22 * len(layers)))))
    if not layers:
        _no_data(fig, "no gradients recorded")
        return _save(fig, out)
    grid = np.full((len(layers), len(records)), np.nan)
    for j, r in enumerate(records):
        for i, p in enumerate(layers):
            g = r["modules"].get(p, {}).get("grad")
            if g:
                grid[i, j] = _log10(g["norm"])
    ax = fig.add_subplot(1, 1, 1)
    cmap = _cmap()
    im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, label="log10 gradient norm")
    k = max(1, math.ceil(len(layers) / _MAX_LABELS))
    ax.set_yticks(range(0, len(layers), k))
    ax.set_yticklabels([_label(meta, layers[i]) for i in range(0, len(layers), k)], fontsize=7)
    kx = max(1, math.ceil(len(records) / 12))
    ax.set_xticks(range(0, len(records), kx))
    ax.set_xticklabels([str(records[j]["step"]) for j in range(0, len(records), kx)], fontsize=8)
    ax.set_xlabel("step")
    ax.set_title("gradient flow: gradient norm per layer (input at the top)")
    fig.tight_layout()
    return _save(fig, out)


def _cmap():
    from matplotlib import colormaps

    return colormaps["viridis"].with_extremes(bad="#bbbbbb")


def update_ratio(meta, records, out):
    """log10 of ||update|| / ||parameter|| per layer over the gathered steps, with the healthy
    band around 1e-3 shaded."""
    layers = [p for p in meta.get("order", [])
              if any("update_ratio" in r["modules"].get(p, {}) for r in records)]
    fig = Figure(figsize=(8, 4.5))
    if not layers:
        _no_data(fig, "no updates recorded")
        return _save(fig, out)
    ax = fig.add_subplot(1, 1, 1)
    steps = [r["step"] for r in records]
    from matplotlib import colormaps

    colors = colormaps["viridis"](np.linspace(0, 1, len(layers)))
    for c, p in zip(colors, layers):
        ys = [_log10(r["modules"].get(p, {}).get("update_ratio")) for r in records]
        ax.plot(steps, ys, color=c, lw=1, marker="." if len(steps) < 30 else None,
                label=_label(meta, p))
    ax.axhspan(-4, -2, color="#2ecc71", alpha=0.12, lw=0)
    ax.axhline(-3, color="#27ae60", ls="--", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("log10 update / parameter")
    ax.set_title("update ratio per layer (healthy: about -3)")
    if len(layers) <= 12:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, out)


def activations(meta, records, out, max_panels: int = 16):
    """Histograms of the latest gathered activations, activation layers first."""
    latest: dict = {}
    for r in records:
        for p, a in r.get("activations", {}).items():
            if "hist" in a:
                latest[p] = (r["step"], a)
    seen = list(latest)  # in the order the layers ran
    acts = [p for p in seen if latest[p][1].get("kind")][:max_panels]
    rest = [p for p in seen if p not in acts]
    room = max_panels - len(acts)
    if len(rest) > room:  # spread the panels over the whole depth of the network
        rest = [rest[round(i * (len(rest) - 1) / max(room - 1, 1))] for i in range(room)]
    paths = [p for p in seen if p in acts or p in rest]
    n = len(paths)
    cols = min(4, max(1, n))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows))
    if not paths:
        _no_data(fig, "no activations recorded")
        return _save(fig, out)
    for k, p in enumerate(paths):
        step, a = latest[p]
        ax = fig.add_subplot(rows, cols, k + 1)
        h = a["hist"]
        edges = np.linspace(h["lo"], h["hi"], len(h["counts"]) + 1)
        ax.stairs(h["counts"], edges, fill=True, color="#5dade2")
        title = f"{p or '(root)'} {a.get('type', '')}"
        sub = f"mean {a['mean']:.3g} std {a['std']:.3g}"
        if "dead_frac" in a:
            sub += f" dead {a['dead_frac']:.0%}"
        if "sat_frac" in a:
            sub += f" sat {a['sat_frac']:.0%}"
        ax.set_title(f"{title}\n{sub} (step {step})", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _save(fig, out)


PLOTS = {"gradient_flow.png": gradient_flow, "update_ratio.png": update_ratio,
         "activations.png": activations}


def save_all(meta, records, run_dir) -> list[str]:
    paths = []
    for name, fn in PLOTS.items():
        path = os.path.join(run_dir, name)
        fn(meta, records, path)
        paths.append(path)
    return paths
