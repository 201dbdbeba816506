"""The run report: ``report.png`` (four panels) and ``report.html`` (the figure inline, the
evaluations as a table, the last sample and the training doctor's diagnosis)."""

from __future__ import annotations

import base64
import html
import io
import os

from .run import RunDir, read_metrics, write_bytes, write_text

DIAGNOSTIC_PICTURES = ("gradient_flow.png", "update_ratio.png", "activations.png")


def _series(records, key):
    pts = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def write_png(records: list[dict], path: str, title: str = "") -> bool:
    """Train/validation loss, learning rate, gradient norm and tokens/s against step.
    Returns False (and writes nothing) when matplotlib is not installed."""
    png = _png(records, title)
    if png is None:
        return False
    write_bytes(path, png)
    return True


def _png(records: list[dict], title: str = "") -> bytes | None:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0, 0]
    s, v = _series(records, "loss")
    ax.plot(s, v, lw=0.8, alpha=0.6, label="train (batch)")
    for key, label, style in (("train_loss", "train (eval)", "o-"), ("val_loss", "validation",
                                                                      "s-")):
        s, v = _series(records, key)
        if s:
            ax.plot(s, v, style, ms=3, label=label)
    ax.set_title("loss (cross-entropy, nats/token)")
    ax.set_xlabel("step")
    ax.legend()
    for ax, key, name in ((axes[0, 1], "lr", "learning rate"),
                          (axes[1, 0], "grad_norm", "gradient norm (before clipping)"),
                          (axes[1, 1], "tokens_per_s", "tokens / s")):
        s, v = _series(records, key)
        ax.plot(s, v, lw=0.9)
        ax.set_title(name)
        ax.set_xlabel("step")
        if key == "grad_norm" and v and min(v) > 0:
            ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()  # matplotlib never opens a file of the run itself
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def write_report(run: RunDir, summary: dict, sample: str = "", findings=None) -> None:
    """Write report.png and report.html from the run's metrics.

    ``summary``: key/value rows shown at the top (model size, steps, losses, time...);
    ``findings``: objects with a ``.message`` (the training doctor's diagnosis), or None when
    the doctor did not run."""
    records = read_metrics(run.metrics)
    png = _png(records, title=os.path.basename(run.path))
    if png is not None:
        write_bytes(run.report_png, png)
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>chainrule run {e(os.path.basename(run.path))}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}</style>",
        "</head><body>",
        f"<h1>chainrule run <code>{e(os.path.basename(run.path))}</code></h1>",
        "<h2>Summary</h2><table>",
    ]
    for k, v in summary.items():
        parts.append(f"<tr><th style='text-align:left'>{e(str(k))}</th><td>{e(str(v))}</td></tr>")
    parts.append("</table>")
    if png is not None:
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>Curves</h2><img alt='training curves' style='max-width:100%' "
                     f"src='data:image/png;base64,{b64}'>")
    else:
        parts.append("<p>(install matplotlib for the curves: pip install 'chainrule[train]')</p>")
    evals = [r for r in records if "val_loss" in r]
    if evals:
        parts.append("<h2>Evaluations</h2><table><tr><th>step</th><th>train loss</th>"
                     "<th>validation loss</th><th>elapsed (s)</th></tr>")
        for r in evals:
            parts.append(
                f"<tr><td>{r['step']}</td><td>{_fmt(r.get('train_loss'))}</td>"
                f"<td>{_fmt(r.get('val_loss'))}</td><td>{_fmt(r.get('time'), 1)}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Diagnosis</h2>")
    if findings is None:
        parts.append("<p>(the training doctor, chainrule.diagnostics, did not run: it is not "
                     "installed or diagnose_interval is 0)</p>")
    elif findings:
        parts.append("<ul>")
        for f in findings:
            parts.append(f"<li>{e(str(getattr(f, 'message', f)))}</li>")
        parts.append("</ul>")
    else:
        parts.append("<p>No findings: the training doctor saw nothing wrong.</p>")
    for pic in DIAGNOSTIC_PICTURES:  # written beside the report by the training doctor
        if os.path.exists(os.path.join(run.path, pic)):
            parts.append(f"<p><img alt='{e(pic)}' style='max-width:100%' src='{e(pic)}'></p>")
    if sample:
        parts.append(f"<h2>Sample</h2><pre>{e(sample)}</pre>")
    parts.append("</body></html>")
    write_text(run.report_html, "\n".join(parts))


def _fmt(v, digits=4):
    return "" if v is None else f"{v:.{digits}f}"
