"""The package's layers form a DAG: every import (function-level ones included) points down or
sideways, never up, and no circle of imports reaches outside the engine core.

The layers, bottom to top (docs/architecture.md explains each):

0. the engine core: backend, random, dtypes, tensor, autograd, ops, creation, backends (Tensor
   and Op refer to each other inside this layer, so circles are allowed within it)
1. nn, optim, serialization, utils (data loading), cuda, amp, accelerator, onnx, and the
   package's own ``__init__`` (the public names)
2. diagnostics, models, data, distributed
3. pretrained (reads formats into models; models never import it), train
4. finetune
5. cli
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

import chainrule

PKG_DIR = os.path.dirname(chainrule.__file__)

LAYERS = {
    "backend": 0, "_native": 0, "random": 0, "dtypes": 0, "tensor": 0, "autograd": 0,
    "ops": 0, "creation": 0, "backends": 0,
    "nn": 1, "optim": 1, "serialization": 1, "utils": 1, "__init__": 1, "cuda": 1, "amp": 1,
    "accelerator": 1, "onnx": 1, "linalg": 1,
    "diagnostics": 2, "models": 2, "data": 2, "distributed": 2, "distributions": 2,
    "pretrained": 3, "train": 3,
    "finetune": 4,
    "cli": 5,
}


def _modules():
    """{dotted module name: file path} for every module of the package."""
    out = {}
    for root, _dirs, files in os.walk(PKG_DIR):
        for f in files:
            if f.endswith(".py") or f.endswith((".so", ".pyd")):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, PKG_DIR).split(".")[0].replace(os.sep, ".")
                if rel.endswith(".__init__"):
                    rel = rel[: -len(".__init__")]
                out["chainrule" if rel == "__init__" else "chainrule." + rel] = path
    return out


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: str, known) -> set[str]:
    """The package modules that ``module`` imports anywhere in its file (also inside
    functions), each resolved to the longest known module name."""
    if not path.endswith(".py"):
        return set()  # a compiled extension
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_pkg = path.endswith("__init__.py")
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_pkg, node)
            for a in node.names:
                full = f"{base}.{a.name}"
                targets.add(full if full in known else base)
    out = set()
    for t in targets:
        if not (t == "chainrule" or t.startswith("chainrule.")):
            continue
        while t not in known and "." in t:
            t = t.rsplit(".", 1)[0]
        if t != module:
            out.add(t)
    return out


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = "__init__" if len(parts) == 1 else parts[1]
    if top not in LAYERS:
        raise AssertionError(f"{module}: its top-level name {top!r} has no layer in LAYERS "
                             "(add it here and to docs/architecture.md)")
    return LAYERS[top]


def import_graph():
    mods = _modules()
    return {m: imports_of(m, p, mods) for m, p in mods.items()}


def test_every_import_points_down_or_sideways():
    graph = import_graph()
    upward = sorted(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
                    for m, ts in graph.items() for t in ts if layer_of(t) > layer_of(m))
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))
    return comps


def test_no_import_circle_reaches_outside_the_engine_core():
    bad = [c for c in _cycles(import_graph()) if any(layer_of(m) > 0 for m in c)]
    assert not bad, "import circles outside the engine core:\n" + "\n".join(
        " <-> ".join(c) for c in bad)


def test_the_layer_checks_catch_an_upward_import_and_a_circle():
    # the checks themselves, on a made-up graph: an engine module importing nn, and a circle
    # between models and pretrained
    graph = {"chainrule.autograd": {"chainrule.nn.module"}, "chainrule.nn.module": set(),
             "chainrule.models.llama": {"chainrule.pretrained.hf"},
             "chainrule.pretrained.hf": {"chainrule.models.llama"}}
    assert layer_of("chainrule.nn.module") > layer_of("chainrule.autograd")
    assert [sorted(c) for c in _cycles(graph)] == [["chainrule.models.llama",
                                                    "chainrule.pretrained.hf"]]


def test_function_level_imports_are_seen(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from .nn import module\n    import chainrule.train.loop\n")
    known = {"chainrule.nn", "chainrule.nn.module", "chainrule.train.loop", "chainrule.autograd"}
    assert imports_of("chainrule.autograd", str(f), known) == {"chainrule.nn.module",
                                                               "chainrule.train.loop"}


@pytest.mark.parametrize("module", ["chainrule"])
def test_import_chainrule_loads_neither_the_watcher_nor_the_doctor(module):
    code = (f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith("
            "'chainrule.diagnostics') or m.startswith('chainrule.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", f"import chainrule loaded {out}"
