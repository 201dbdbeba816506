"""Pictures and traces of a computational graph, for looking at and for learning from.

- :func:`draw_graph` gives Graphviz DOT text: one node per op (its name and the shape of the
  value it made) and per leaf tensor (its ``name`` or 'leaf', value shape, gradient shape when
  ``.grad`` is set), edges in the direction data flows.
- :func:`render` turns DOT text into SVG/PNG/PDF with the ``dot`` program, when installed.
- :func:`explain_backward` walks the backward pass of a small graph one node at a time and
  says, for each, the rule it applies, its local derivative (the Jacobian of its output with
  respect to each input, computed by the op's own backward rule on unit vectors) and the
  gradient it passes on, which is the chain rule at work: g_in = J^T g_out.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

import numpy as np

from .. import backend
from ..autograd import Op, topological_order, unbroadcast
from ..tensor import Tensor


def _walk(root):
    """Ops and leaves reachable from ``root`` (a tensor), each before the nodes that made its
    inputs, the shape of each one's value, and each one's consumers."""
    start = root.grad_fn if root.grad_fn is not None else root
    order = topological_order([start])
    out_shape = {id(start): tuple(root.shape)}
    consumers: dict = {}
    for node in order:
        if isinstance(node, Op):
            for i, p in enumerate(node.parents):
                if p is not None:
                    out_shape.setdefault(id(p), tuple(node.shapes[i]))
                    consumers.setdefault(id(p), []).append(node)
    return order, out_shape, consumers


def _shape_text(shape):
    return "scalar" if shape == () else str(tuple(int(d) for d in shape))


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _leaf_label(t: Tensor, index: int) -> str:
    return t.name if getattr(t, "name", None) else ("leaf" if index == 0 else f"leaf{index}")


def draw_graph(tensor: Tensor, title: str | None = None) -> str:
    """Graphviz DOT text of the graph that made ``tensor``.

    Op nodes (boxes) show the op name and the shape of the value it made; leaf nodes (ovals)
    show their ``name`` (or 'leaf'), value shape and, when present, gradient shape; constants
    that entered an op are small grey notes with their shape. The output is drawn with a
    double border.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"draw_graph: expected a Tensor, got {type(tensor).__name__}")
    order, out_shape, _ = _walk(tensor)
    ids = {id(n): f"n{k}" for k, n in enumerate(order)}
    lines = ["digraph chainrule {", "  rankdir=LR;",
             '  node [fontname="Helvetica", fontsize=11];']
    if title:
        lines.append(f'  label="{_esc(title)}"; labelloc=t;')
    for n in order:
        nid = ids[id(n)]
        shape = out_shape[id(n)]
        extra = ", peripheries=2" if n is order[0] else ""
        if isinstance(n, Op):
            lines.append(f'  {nid} [shape=box, style=filled, fillcolor="#dbe9f6", '
                         f'label="{_esc(n.name)}\\nvalue {_shape_text(shape)}"{extra}];')
            continue
        name = n.name if getattr(n, "name", None) else "leaf"
        label = f"{_esc(name)}\\nvalue {_shape_text(tuple(n.shape))}"
        if n.grad is not None:
            label += f"\\ngrad {_shape_text(tuple(n.grad.shape))}"
        lines.append(f'  {nid} [shape=ellipse, style=filled, fillcolor="#e6f4df", '
                     f'label="{label}"{extra}];')
    const_no = 0
    for n in order:
        if not isinstance(n, Op):
            continue
        for i, p in enumerate(n.parents):
            if p is None:
                cid = f"c{const_no}"
                const_no += 1
                lines.append(f'  {cid} [shape=note, fontsize=9, color=gray, fontcolor=gray, '
                             f'label="constant"];')
                lines.append(f"  {cid} -> {ids[id(n)]} [color=gray];")
            else:
                lines.append(f'  {ids[id(p)]} -> {ids[id(n)]} [label="{i}", fontsize=9];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot: str, path, format: str | None = None) -> str:
    """Render DOT text to ``path`` (SVG, PNG or PDF, from ``format`` or the file suffix) with
    Graphviz's ``dot`` program. Returns the path."""
    path = os.fspath(path)
    fmt = (format or os.path.splitext(path)[1].lstrip(".") or "svg").lower()
    if fmt not in ("svg", "png", "pdf"):
        raise ValueError(f"render: format must be svg, png or pdf, got {fmt!r} (from {path!r})")
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError(
            "render: the Graphviz 'dot' program is not installed (apt install graphviz, brew "
            "install graphviz, or conda install graphviz); the DOT text from draw_graph() can "
            "still be pasted into any Graphviz viewer")
    res = subprocess.run([exe, f"-T{fmt}", "-o", path], input=dot.encode(), capture_output=True,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(f"render: dot failed ({res.returncode}): {res.stderr.decode()[:500]}")
    return path


# ----------------------------------------------------------------------------- explain backward

_MAX_SHOW = 12  # arrays with more elements are summarised
_MAX_JACOBIAN = 64  # local derivatives computed in full up to out.size * in.size elements


def _num(a) -> str:
    a = backend.to_numpy(a)
    if a.size <= _MAX_SHOW:
        if a.ndim == 0:
            return f"{float(a):.5g}"
        return np.array2string(a, precision=4, separator=", ", suppress_small=True).replace(
            "\n", "")
    return (f"<{_shape_text(a.shape)}: mean {a.mean():.4g}, min {a.min():.4g}, "
            f"max {a.max():.4g}>")


def _rule(op: Op) -> str:
    doc = (type(op).__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def _local_jacobians(op, out_shape, dtype):
    """d out / d input_i for each input, as (kind, array): 'elementwise' with the diagonal,
    'full' with the (out.size, in.size) matrix, or None when too large to show."""
    size = int(np.prod(out_shape, dtype=np.int64))
    rows: list = [[] for _ in op.parents]
    too_big = [size * int(np.prod(s, dtype=np.int64)) > _MAX_JACOBIAN for s in op.shapes]
    if all(too_big[i] or op.parents[i] is None for i in range(len(op.parents))):
        return [None] * len(op.parents)
    for k in range(size):
        e = np.zeros(size, dtype=dtype)
        e[k] = 1
        grads = op.backward(e.reshape(out_shape))
        grads = grads if isinstance(grads, tuple) else (grads,)
        for i, gi in enumerate(grads):
            if gi is None or too_big[i]:
                continue
            gi = unbroadcast(backend.to_numpy(gi), tuple(op.shapes[i]))
            rows[i].append(gi.reshape(-1))
    out = []
    for i, r in enumerate(rows):
        if not r or too_big[i]:
            out.append(None)
            continue
        J = np.stack(r)  # (out.size, in.size)
        if J.shape[0] == J.shape[1] and tuple(op.shapes[i]) == tuple(out_shape) and \
                np.count_nonzero(J - np.diag(np.diag(J))) == 0:
            out.append(("elementwise", np.diag(J).reshape(out_shape)))
        else:
            out.append(("full", J))
    return out


def explain_backward(tensor: Tensor, gradient=None, file=None) -> str:
    """Trace the backward pass of ``tensor``'s graph step by step; returns the text and prints
    it (to ``file``, default stdout; ``file=False`` prints nothing).

    For each op from the output back to the leaves: the rule it applies, the gradient g it
    receives (the sum of what its consumers passed it), its local derivative d out/d in, and
    the gradient it passes to each input, g_in = J^T g. Leaves get the final gradients. Nothing
    is written to any ``.grad`` and the graph is left as it was, so ``backward()`` can follow.
    Meant for small graphs (a few ops, a few elements); larger arrays are summarised.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"explain_backward: expected a Tensor, got {type(tensor).__name__}")
    if not tensor.requires_grad:
        raise RuntimeError("explain_backward: the tensor does not require grad (no graph)")
    order, out_shape, consumers = _walk(tensor)
    if gradient is None:
        if tensor._data.size != 1:
            raise RuntimeError(
                f"explain_backward: output has shape {tuple(tensor.shape)}; pass gradient= "
                "(the gradient of the output) for a non-scalar output")
        seed = np.ones_like(backend.to_numpy(tensor._data))
    else:
        seed = backend.to_numpy(gradient._data if isinstance(gradient, Tensor) else gradient)
    names = {}
    op_no = leaf_no = 0
    for n in order:
        if isinstance(n, Op):
            op_no += 1
            names[id(n)] = f"[{op_no}] {n.name}"
        else:
            names[id(n)] = _leaf_label(n, leaf_no)
            leaf_no += 1
    buf = io.StringIO()
    w = buf.write
    w(f"Backward pass of {names[id(order[0])]} (output shape {_shape_text(tuple(tensor.shape))})"
      f", seeded with d out/d out = {_num(seed)}\n\n")
    grads = {id(order[0]): seed}
    parts: dict = {}
    for n in order:
        g = grads.get(id(n))
        src = parts.get(id(n), [])
        if not isinstance(n, Op):
            w(f"leaf {names[id(n)]}: gradient = {_num(g) if g is not None else 'none'}")
            w(f"  (sum of {len(src)} contributions: {', '.join(src)})\n\n" if len(src) > 1
              else "\n\n")
            continue
        if n.saved is None:
            raise RuntimeError(
                f"explain_backward: the graph was freed by an earlier backward() ({n.name}); "
                "call explain_backward first, or backward(retain_graph=True)")
        w(f"{names[id(n)]}: value {_shape_text(out_shape[id(n)])}")
        value = n.saved_output()
        if value is not None:
            w(f" = {_num(value)}")
        w("\n")
        rule = _rule(n)
        if rule:
            w(f"    rule: {rule}\n")
        if g is None:
            w("    receives no gradient\n\n")
            continue
        w(f"    receives g = {_num(g)}"
          + (f"  (sum of {len(src)}: {', '.join(src)})" if len(src) > 1 else "") + "\n")
        jac = _local_jacobians(n, out_shape[id(n)], g.dtype)
        res = n.backward(g)
        res = res if isinstance(res, tuple) else (res,)
        for i, p in enumerate(n.parents):
            if p is None:
                continue
            target = names[id(p)]
            if jac[i] is not None:
                kind, J = jac[i]
                if kind == "elementwise":
                    w(f"    local derivative d out/d {target} = {_num(J)} (elementwise)\n")
                else:
                    w(f"    local derivative d out/d {target} (Jacobian {J.shape[0]}x"
                      f"{J.shape[1]}) = {_num(J)}\n")
            gi = res[i]
            if gi is None:
                continue
            gi = unbroadcast(backend.to_numpy(gi), tuple(n.shapes[i]))
            w(f"    passes to {target}: {_num(gi)}\n")
            grads[id(p)] = gi if id(p) not in grads else grads[id(p)] + gi
            parts.setdefault(id(p), []).append(names[id(n)])
        w("\n")
    text = buf.getvalue()
    if file is not False:
        (file or sys.stdout).write(text)
    return text
