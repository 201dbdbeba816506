"""Rules of the code's structure, checked on the source: op code reaches arrays only through
its array namespace (no NumPy import, no ``hasattr(xp, ...)`` or ``xp is numpy`` test), and
every namespace provides the whole interface (``chainrule.backend.API``).

The helpers (``python_files``, ``numpy_imports``, ``namespace_tests``, ``namespace_calls``) take
any file or folder, so rules for other parts of the package can be written with them."""

from __future__ import annotations

import ast
import os

import pytest

import chainrule
from chainrule import backend
from chainrule.backend import numpy_ns
from chainrule.ops import tensor_ns

PKG_DIR = os.path.dirname(chainrule.__file__)
OPS_DIR = os.path.join(PKG_DIR, "ops")


def python_files(folder):
    """Every ``.py`` file under ``folder``, sorted."""
    out = []
    for root, _dirs, files in os.walk(folder):
        out += [os.path.join(root, f) for f in files if f.endswith(".py")]
    return sorted(out)


def _tree(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), filename=path)


def numpy_imports(path, modules=("numpy",)):
    """``(line, statement)`` for each import of NumPy (or of any of ``modules`` and their
    submodules) in the file, function-level imports included."""
    def hit(name):
        return any(name == m or name.startswith(m + ".") for m in modules)

    out = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, f"import {a.name}") for a in node.names if hit(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and hit(node.module or ""):
            out.append((node.lineno, f"from {node.module} import ..."))
    return out


def _is_xp(node):
    """``xp`` or ``<anything>.xp``."""
    return (isinstance(node, ast.Name) and node.id == "xp"
            or isinstance(node, ast.Attribute) and node.attr == "xp")


def namespace_tests(path):
    """``(line, text)`` for each test of which namespace is in hand: ``hasattr(xp, ...)``,
    ``getattr(xp, name, default)`` and ``xp is ...`` / ``xp is not ...`` comparisons."""
    out = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "hasattr" and node.args and _is_xp(node.args[0]):
                out.append((node.lineno, ast.unparse(node)))
            elif node.func.id == "getattr" and len(node.args) == 3 and _is_xp(node.args[0]):
                out.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if (any(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops)
                    and any(_is_xp(s) for s in sides)):
                out.append((node.lineno, ast.unparse(node)))
    return out


def namespace_calls(path):
    """``(line, name)`` for each ``xp.<name>`` (or ``<anything>.xp.<name>``) in the file: the
    functions it asks of its array namespace."""
    return [(node.lineno, node.attr) for node in ast.walk(_tree(path))
            if isinstance(node, ast.Attribute) and _is_xp(node.value)]


def _report(found):
    return "\n".join(f"{os.path.relpath(p, PKG_DIR)}:{line}: {text}"
                     for p, hits in found.items() for line, text in hits)


# ----------------------------------------------------------------------------- the rules


def test_no_op_file_imports_numpy():
    found = {p: numpy_imports(p) for p in python_files(OPS_DIR)}
    found = {p: h for p, h in found.items() if h}
    assert not found, "op files import NumPy (use self.xp, x.xp or chainrule.dtypes):\n" + \
        _report(found)


def test_no_op_file_tests_which_namespace_it_has():
    found = {p: namespace_tests(p) for p in python_files(OPS_DIR)}
    found = {p: h for p, h in found.items() if h}
    assert not found, ("op files test the array namespace (add a named function to every "
                       "namespace instead):\n" + _report(found))


def test_op_files_ask_their_namespace_only_for_names_of_the_interface():
    api = set(backend.API)
    found = {p: [(line, f"xp.{name}") for line, name in namespace_calls(p) if name not in api]
             for p in python_files(OPS_DIR)}
    found = {p: h for p, h in found.items() if h}
    assert not found, ("op files call namespace functions that chainrule.backend.API does not "
                       "list (add them to every namespace):\n" + _report(found))


@pytest.mark.parametrize("name", backend.API)
def test_numpy_namespace_provides_the_interface(name):
    assert hasattr(numpy_ns, name)


@pytest.mark.parametrize("name", backend.EXTENSIONS)
def test_tensor_namespace_provides_every_extension(name):
    assert callable(getattr(tensor_ns, name, None))


def test_the_interface_lists_have_no_repeats():
    assert len(set(backend.API)) == len(backend.API)


NN_OP_FILES = sorted([os.path.join(PKG_DIR, "nn", "functional.py"),
                      os.path.join(PKG_DIR, "nn", "attention.py")]
                     + python_files(os.path.join(PKG_DIR, "nn", "fused"))
                     + python_files(os.path.join(PKG_DIR, "nn", "conv")))


def test_the_nn_op_files_import_no_numpy_and_test_no_namespace():
    """nn.functional, MultiheadAttention, the fused ops and the convolution and pooling ops
    reach arrays through their namespace only (kernels included: ``xp.pointwise_forward``,
    ...)."""
    found = {p: numpy_imports(p) + namespace_tests(p) for p in NN_OP_FILES}
    found = {p: h for p, h in found.items() if h}
    assert not found, "nn op files import NumPy or test the namespace:\n" + _report(found)
    assert len(NN_OP_FILES) > 8


# ----------------------------------------------------------------------------- the helpers


def test_helpers_find_what_they_look_for(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "import os\n"
        "import numpy as np\n"
        "from numpy.lib import stride_tricks\n"
        "def f(xp, x):\n"
        "    import numpy\n"
        "    if hasattr(xp, 'erf') or self.xp is np:\n"
        "        return getattr(xp, 'erf', None)\n"
        "    from .numpy_ns import erf\n"
        "    return xp.erf(self.xp.exp(x))\n"
    )
    assert [line for line, _ in numpy_imports(str(src))] == [2, 3, 5]
    assert sorted(line for line, _ in namespace_tests(str(src))) == [6, 6, 7]
    assert sorted(name for _, name in namespace_calls(str(src))) == ["erf", "exp"]


# ----------------------------------------------------------------------------- the CuPy namespace

CUPY_NS = os.path.join(PKG_DIR, "backend", "cupy_ns.py")


def _module_level_names(path):
    """Names a module defines at its top level (functions, classes, assignments, imports),
    those inside top-level ``if`` blocks and ``for`` loops too."""
    names = set()

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            names.add(n.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.If, ast.For, ast.With, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
    visit(_tree(path).body)
    return names


def test_cupy_namespace_provides_the_interface_without_importing_cupy():
    """cupy_ns (never imported here: no CuPy on most machines) takes NumPy's names from CuPy
    in one loop over ``NUMPY_NAMES``, binds every kernel's NumPy code, and defines each
    extension and random draw itself; its fused kernels take the CPU kernels' arguments."""
    src = open(CUPY_NS, encoding="utf-8").read()
    assert "for _name in numpy_ns.NUMPY_NAMES:" in src
    assert "numpy_kernels.bind(sys.modules[__name__])" in src
    defined = _module_level_names(CUPY_NS)
    missing = [n for n in backend.EXTENSIONS + backend.RANDOM if n not in defined]
    assert not missing, f"cupy_ns lacks the extensions {missing}"
    from chainrule.backend import numpy_kernels

    tree = _tree(CUPY_NS)
    fused = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)
             and n.name in backend.KERNELS}
    assert {"pointwise_forward", "pointwise_backward", "attention_softmax", "layer_norm_forward",
            "layer_norm_backward", "adam_step"} <= set(fused)
    import inspect

    for name, node in fused.items():
        ours = [a.arg for a in node.args.args + node.args.kwonlyargs]
        cpu = list(inspect.signature(getattr(numpy_kernels, name)).parameters)
        assert ours == cpu, f"cupy_ns.{name} takes {ours}, the CPU kernel {cpu}"


def test_import_chainrule_never_imports_cupy():
    import subprocess
    import sys

    code = ("import sys, chainrule, chainrule.cuda, chainrule.nn, chainrule.optim; "
            "import chainrule.backend as b; chainrule.cuda.memory_allocated(); "
            "print(any(m == 'cupy' or m.startswith('cupy.') or m.endswith('cupy_ns') "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "CHAINRULE_FAKE_CUDA": "0"})
    assert out.stdout.strip() == "False"
