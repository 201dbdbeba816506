"""Gradients at the edges of every op's domain, against PyTorch.

Each row of ``op_specs.SPECS`` that PyTorch can run is called again with its float inputs
filled by edge values instead of values drawn away from the kinks: exact zeros (and negative
zero), the op's own kinks (0 for relu and abs, a clamp's bounds), ties (every element equal:
max, min, maximum, median), very large and very small magnitudes (overflow, subnormals), and
infinities and NaN. Forward values and the gradient for a fixed output covector must equal
PyTorch's, NaN for NaN and infinity for infinity. The places where chainrule deliberately
differs are listed in ``DELIBERATE`` with the reason; differences still to resolve, in
``OPEN``.
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from op_specs import SPECS, Arg

torch = pytest.importorskip("torch")

INF, NAN = float("inf"), float("nan")
EDGES = {
    "zeros": [0.0, -0.0],
    "kinks": None,  # the row's kinks, and 0
    "ties": [0.5],
    "large": [1e30, 3e30, -2e30, 7e29],
    "overflow": [800.0, -800.0, 1e200, -3e200],
    "small": [1e-300, -1e-300, 5e-324, -5e-324, 1e-40],
    "inf": [INF, -INF, 1.0, -2.0],
    "nan": [NAN, 1.0, -0.5],
}

_PROD = ("the gradient is the product of the other elements, computed without dividing; "
         "PyTorch divides the product by the element, which gives NaN at an infinity or a NaN "
         "and overflows where the product does")
_ACT_NAN = ("at NaN the op's mask (x > 0, or inside the bounds) is false; PyTorch's (x <= 0 "
            "false) lets the gradient through, or the reverse; the output is NaN either way")
# op -> {edge: why chainrule's result differs from PyTorch's there, on purpose}
DELIBERATE = {
    "Prod": dict.fromkeys(("inf", "nan", "overflow"), _PROD),
    "LayerNormOp": {"overflow": "the variance overflows to inf: the gradient is 0 (the true "
                                "one, about 1/std, underflows); PyTorch's is NaN (inf * 0)"},
    "RMSNormOp": {"overflow": "the mean square overflows to inf: the gradient is 0 (the true "
                              "one underflows); PyTorch's is NaN (inf * 0)"},
    "Einsum": {"overflow": "three overflowing operands: the result depends on the order of "
                           "the contraction (inf - inf or one infinity)"},
    "Conv2dOp": dict.fromkeys(("inf", "nan"), "the stride-1 input gradient is a full "
                              "convolution of the zero-padded output gradient with the flipped "
                              "kernel: a non-finite weight times those zeros is NaN at pixels "
                              "PyTorch leaves finite (the forward is already non-finite)"),
    "MaxPool2dOp": {"nan": "a window holding NaN: the output is NaN in both; PyTorch routes "
                           "the gradient to the NaN, chainrule to the largest number"},
    "AttentionOp": {"large": "scores near 1e60 saturate the softmax: its gradient is rounding "
                             "noise of that size, in a different order than PyTorch's kernel"},
}
# op -> {edge: the difference}, found by this sweep and not yet resolved
OPEN = {
    **{op: {"nan": _ACT_NAN} for op in ("Abs", "Relu", "Elu", "Selu", "Celu", "Hardtanh",
                                        "Hardsigmoid", "Hardswish")},
    "Softsign": {"inf": "at +-inf the gradient is 0; PyTorch's is NaN (inf / inf**2)"},
    "Pow": dict.fromkeys(("inf", "nan", "large", "overflow"),
                         "the exponent's gradient a**b log(a) is 0 where PyTorch's is NaN "
                         "(an infinite or NaN factor)"),
    "Atan2": dict.fromkeys(("zeros", "kinks", "small"),
                           "at (0, 0), and where x*x + y*y underflows, the gradient is NaN or "
                           "inf; PyTorch's is 0"),
    "Norm": {"small": "the 2-norm of a subnormal scalar: gradient x, PyTorch's sign(x)"},
    "MaxMin": {"nan": "a full max/min over NaN: the gradient is NaN everywhere; PyTorch "
                      "splits it evenly among the NaN elements"},
    "AttentionOp": dict.fromkeys(("overflow", "inf"), "infinite scores: NaN outputs and "
                                 "gradients where PyTorch's kernel gives 0"),
    "ScatterProd": dict.fromkeys(("small", "inf", "nan"), "the gradient at underflowing, "
                                 "infinite or NaN factors differs from PyTorch's"),
}


def _edge_values(s, edge):
    vals = EDGES[edge]
    if vals is None:
        vals = sorted({0.0, *s.kinks})
    return np.array(vals, dtype=np.float64)


def _inputs(s, c, edge):
    """The case's inputs with every float tensor input filled by the edge values (cycled
    along the flattened input, shifted per input so that binary ops meet every pairing)."""
    vals = _edge_values(s, edge)
    out = []
    for k, (a, grad) in enumerate(s.arrays(c)):
        if grad is None or not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            out.append((a, grad))
            continue
        n = a.size
        filled = np.resize(np.roll(vals, k), n).reshape(a.shape) if n else a.copy()
        out.append((filled, grad))
    return out


def _as(lib, inputs):
    out = []
    for a, grad in inputs:
        if grad is None:
            out.append(a)
        elif lib is cr:
            out.append(cr.tensor(a, dtype=a.dtype, requires_grad=grad))
        else:
            out.append(torch.from_numpy(np.array(a)).requires_grad_(grad))
    return out


def _torch_ok(s, c):
    return s.torch and c.torch and any(isinstance(i, (tuple, Arg)) for i in c.inputs)


CASES = [pytest.param(s, c, edge, id=f"{s.op}-{c.id}-{edge}")
         for s in SPECS.values() for c in s.cases if _torch_ok(s, c) for edge in EDGES]


def _close(ours, theirs, what, scale=False):
    """NaN where PyTorch has NaN, the same infinities, and finite values within 1e-6 of
    PyTorch's; ``scale``: relative to the largest finite value of the array (where huge terms
    cancel, the result is rounding noise of that size and depends on the order of the sum)."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    same_nan = np.isnan(ours) == np.isnan(theirs)
    finite = np.isfinite(ours) & np.isfinite(theirs)
    same_inf = np.where(np.isinf(ours) | np.isinf(theirs), ours == theirs, True)
    ref = np.abs(theirs)
    if scale and finite.any():
        ref = np.maximum(ref, ref[finite].max())
    close = np.where(finite, np.abs(ours - theirs) <= 1e-12 + 1e-6 * ref, True)
    bad = ~(same_nan & same_inf & close)
    assert not bad.any(), (f"{what} differs from PyTorch at {np.argwhere(bad)[:4].tolist()}: "
                           f"ours {ours[bad][:4].tolist()}, torch {theirs[bad][:4].tolist()}")


@pytest.mark.parametrize("s, c, edge", CASES)
def test_gradient_at_the_edges_matches_pytorch(s, c, edge):
    if edge in DELIBERATE.get(s.op, {}):
        pytest.skip(DELIBERATE[s.op][edge])
    try:
        _check(s, c, edge)
    except AssertionError:
        if edge in OPEN.get(s.op, {}):
            pytest.xfail(OPEN[s.op][edge])
        raise


def _check(s, c, edge):
    inputs = _inputs(s, c, edge)
    ours, theirs = _as(cr, inputs), _as(torch, inputs)
    big = edge in ("large", "overflow")
    with np.errstate(all="ignore"):
        y = s.call(ours, c)
        yt = s.call(theirs, c, F=torch)
        _close(y.data, yt.detach().numpy(), "forward", big)
        u = np.resize(np.array([1.0, -0.5, 2.0]), int(np.prod(y.shape))).reshape(tuple(y.shape))
        pairs = [(a, b) for a, b in zip(ours, theirs)
                 if isinstance(a, cr.Tensor) and a.requires_grad]
        if not pairs or not yt.requires_grad:
            return
        grads = cr.grad(y, [a for a, _ in pairs], cr.tensor(u, dtype=cr.float64),
                        allow_unused=True)
        grads_t = torch.autograd.grad(yt, [b for _, b in pairs], torch.from_numpy(u),
                                      allow_unused=True)
        for i, (g, gt) in enumerate(zip(grads, grads_t)):
            g = np.zeros(pairs[i][0].shape) if g is None else g.data
            gt = np.zeros(tuple(pairs[i][1].shape)) if gt is None else gt.numpy()
            _close(g, gt, f"gradient of input {i}", big)
