"""Every differentiable op's gradient against float64 central differences (gradcheck), and its
second derivative (gradgradcheck), over the shape cases of its row in ``op_specs.SPECS``; and
the registry test that no differentiable Op exists without a row."""

from __future__ import annotations

import importlib
import pkgutil
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import Op, gradcheck, gradgradcheck
from op_specs import SPECS

CASES = [pytest.param(s, c, id=f"{s.op}-{c.id}") for s in SPECS.values() for c in s.cases]

# Op subclasses that need no row of their own, with the reason. Keep this short.
EXCLUDED: dict[str, str] = {
    "Pointwise": "the base of the elementwise table's op classes; each row's class has a spec",
    "StandardGamma": "a random sample, so no finite differences: its implicit gradient is "
                     "checked against PyTorch's in tests/test_distributions_more.py",
}


def _fn(s, c):
    def f(*xs):
        return s.call(xs, c)

    f.__name__ = f"{s.op}[{c.id}]"
    return f


@pytest.mark.parametrize("s, c", CASES)
def test_gradient_matches_finite_differences(s, c):
    inputs = s.tensors(c)
    assert gradcheck(_fn(s, c), inputs, atol=s.atol, rtol=s.rtol)


GRADGRAD = [p for p in CASES if p.values[0].gradgrad and p.values[1].gradgrad]


@pytest.mark.parametrize("s, c", GRADGRAD)
def test_second_derivative_matches_finite_differences(s, c):
    inputs = s.tensors(c)
    assert gradgradcheck(_fn(s, c), inputs, atol=s.atol, rtol=s.rtol)


def test_rows_without_gradgradcheck_say_why():
    missing = [s.op for s in SPECS.values() if not s.gradgrad and not s.why]
    assert not missing, f"rows with gradgrad=False and no reason (why=...): {missing}"


# ----------------------------------------------------------------------------- the registry


def _import_all_chainrule_modules():
    """Import every module of the package so every Op subclass is defined. A module whose
    optional dependency is missing is skipped; one that fails otherwise is reported."""
    failed = []
    for info in pkgutil.walk_packages(cr.__path__, prefix="chainrule."):
        if info.name.endswith("__main__") or info.name == "chainrule.cli":
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:
            pass  # an optional extra that is not installed
        except Exception as e:  # someone else's module is broken: say so, check the rest
            failed.append(f"{info.name}: {type(e).__name__}: {e}")
    if failed:
        warnings.warn("modules that failed to import: " + "; ".join(failed), stacklevel=2)


def _all_subclasses(cls):
    out, stack = [], [cls]
    while stack:
        for sub in stack.pop().__subclasses__():
            out.append(sub)
            stack.append(sub)
    return out


def _registered_ops():
    _import_all_chainrule_modules()
    ops = {}
    for sub in _all_subclasses(Op):
        inside = sub.__module__ == "chainrule" or sub.__module__.startswith("chainrule.")
        if not inside or not sub.differentiable:
            continue
        ops.setdefault(sub.__name__, []).append(f"{sub.__module__}.{sub.__qualname__}")
    return ops


def test_every_differentiable_op_has_a_spec_row():
    ops = _registered_ops()
    missing = sorted(n for n in ops if n not in SPECS and n not in EXCLUDED)
    assert not missing, (
        "differentiable Op classes without a row in tests/op_specs.py: "
        + ", ".join(f"{n} ({', '.join(ops[n])})" for n in missing)
        + ". Add one spec(...) per class in the 'other packages' section at the end of "
        "tests/op_specs.py (the module docstring there shows how)."
    )


def test_every_spec_row_names_an_existing_op():
    ops = _registered_ops()
    stale = sorted(n for n in SPECS if n not in ops)
    assert not stale, f"rows in tests/op_specs.py for Op classes that do not exist: {stale}"


def test_non_differentiable_ops_record_no_graph():
    x = cr.tensor([[0.4, -1.6], [2.5, 0.1]], dtype=cr.float64, requires_grad=True)
    results = [x.argmax(), x.argmin(1), x > 0, x == x, x.sign(), x.floor(), x.round(),
               x.ceil(), x.trunc(), x.isfinite()]
    assert all(r.grad_fn is None and not r.requires_grad for r in results)


# ----------------------------------------------------------------------------- compositions
# Functions written with the ops above: their gradients must come out right too.

COMPOSED = {
    "topk": (lambda x: x.topk(2, dim=1)[0], (3, 5)),
    "sort": (lambda x: x.sort(0, descending=True)[0], (3, 5)),
    "lerp": (lambda a, b, w: a.lerp(b, w), (3, 1), (4,), (3, 4)),
    "repeat_interleave": (lambda x: x.repeat_interleave(2, dim=-1), (2, 3)),
    "narrow-select": (lambda x: x.narrow(0, 1, 2).select(1, 2), (3, 4)),
    "tile": (lambda x: x.tile((2, 1)), (2, 3)),
    "std": (lambda x: x.std(-1, keepdim=True), (3, 4)),
    "norm-p3": (lambda x: x.norm(3, dim=0), (3, 4)),
    "norm-inf": (lambda x: x.norm(float("inf")), (3, 4)),
    "clamp-tensor-bounds": (lambda x, lo, hi: x.clamp(lo, hi), (3, 4), (4,), (3, 1)),
    "outer-square-reciprocal": (lambda a, b: a.outer(b).square() + (b * b + 1).reciprocal(),
                                (3,), (4,)),
    "log2-log10": (lambda x: (x * x + 1).log2() + (x * x + 2).log10(), (3, 4)),
    "split-chunk-unbind": (lambda x: x.split([1, 3], 1)[1] * x.chunk(2, 1)[0].sum()
                           + x.unbind(1)[2].unsqueeze(1), (3, 4)),
    "masked_fill-tensor-value": (lambda x, v: x.masked_fill(x.detach() > 0, v), (3, 4), ()),
}


@pytest.mark.parametrize("name", sorted(COMPOSED))
def test_composed_function_gradients_match_finite_differences(name):
    fn, *shapes = COMPOSED[name]
    rng = np.random.default_rng(len(name))
    xs = [cr.tensor(rng.uniform(-2, 2, s), dtype=cr.float64, requires_grad=True) for s in shapes]
    assert gradcheck(fn, xs)
    assert gradgradcheck(fn, xs)


# ----------------------------------------------------------------------------- fused ops
# An op with a ``composite`` (the same function written with primitive ops, used for
# create_graph) must equal it: forward values and first derivatives.

COMPOSITE_CASES = [p for p in CASES
                   if any(c.__name__ == p.values[0].op and hasattr(c, "composite")
                          for c in _all_subclasses(Op))]


@pytest.mark.parametrize("s, c", COMPOSITE_CASES)
def test_fused_op_equals_its_composite(s, c):
    xs = s.tensors(c)
    y = s.call(xs, c)
    op = y.grad_fn
    assert type(op).__name__ == s.op, f"{s.op}'s spec fn should end in the op itself"
    leaves = [t.detach().requires_grad_() for t in op._saved_tensors()]
    z = op.composite(*leaves)
    np.testing.assert_allclose(z._data, y._data, rtol=1e-10, atol=1e-12)
    u = cr.tensor(np.random.default_rng(0).standard_normal(tuple(y.shape)), dtype=cr.float64)
    inputs = [x for x in xs if isinstance(x, cr.Tensor) and x.requires_grad]
    fused = cr.grad(y, inputs, u, retain_graph=True)
    ref = cr.grad(z, leaves, u, allow_unused=True)
    by_data = {id(t._data): g for t, g in zip(op._saved_tensors(), ref)}
    for x, g in zip(inputs, fused):
        if id(x._data) in by_data and by_data[id(x._data)] is not None:
            np.testing.assert_allclose(g._data, by_data[id(x._data)]._data, rtol=1e-8, atol=1e-10)


def _graph_op_names(y):
    names, stack, seen = set(), [y.grad_fn], set()
    while stack:
        op = stack.pop()
        if op is None or id(op) in seen or isinstance(op, cr.Tensor):
            continue
        seen.add(id(op))
        names.add(type(op).__name__)
        stack.extend(op.parents)
    return names


@pytest.mark.parametrize("s, c", CASES)
def test_spec_case_records_the_op_its_row_names(s, c):
    y = s.call(s.tensors(c), c)
    assert s.op in _graph_op_names(y), f"{s.op}[{c.id}] never calls {s.op}"
