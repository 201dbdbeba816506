"""Gradient clipping and flat parameter vectors (PyTorch's ``torch.nn.utils``)."""

from __future__ import annotations

import math
import sys

from .. import ops as P
from ..autograd import no_grad
from ..tensor import Tensor
from . import rnn_utils as rnn

sys.modules[__name__ + ".rnn"] = rnn  # `from chainrule.nn.utils.rnn import pad_sequence`

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]


def _params(parameters):
    if isinstance(parameters, Tensor):
        return [parameters]
    return list(parameters)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                    foreach=None):
    """Scale all gradients in place by min(1, max_norm / (total + 1e-6)), where total is the
    norm of the concatenation of every gradient (p-norm, or the max for inf). Returns total
    (a 0-d tensor)."""
    grads = [p.grad._data for p in _params(parameters) if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return Tensor._wrap(Tensor(0.0)._data)
    xp = Tensor._wrap(grads[0]).xp
    if math.isinf(norm_type):
        total = max(float(xp.abs(g).max()) for g in grads if g.size) if any(
            g.size for g in grads) else 0.0
    elif norm_type == 2.0:
        # one fused dot per gradient in float64 accumulation of the partial sums
        total = math.sqrt(sum(float(xp.vdot(g.ravel(), g.ravel())) for g in grads))
    else:
        total = sum(float((xp.abs(g) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}; "
            "pass error_if_nonfinite=False to clip anyway"
        )
    coef = float(max_norm) / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return Tensor._wrap(xp.asarray(total, dtype=grads[0].dtype))


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    c = float(clip_value)
    for p in _params(parameters):
        if p.grad is not None:
            p.grad.xp.clip(p.grad._data, -c, c, out=p.grad._data)


def parameters_to_vector(parameters):
    """All parameters flattened and concatenated into one 1-d tensor (differentiable)."""
    ps = _params(parameters)
    if not ps:
        raise ValueError("parameters_to_vector: no parameters given")
    return P.cat([p.reshape(-1) for p in ps])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-d ``vec`` into the parameters, in place."""
    if not isinstance(vec, Tensor) or vec.ndim != 1:
        raise TypeError(f"vector_to_parameters: expected a 1-d Tensor, got "
                        f"{getattr(vec, 'shape', type(vec).__name__)}")
    ps = _params(parameters)
    n = sum(p.numel() for p in ps)
    if vec.numel() != n:
        raise ValueError(f"vector_to_parameters: vector of {vec.numel()} elements received, the "
                         f"parameters hold {n}")
    i = 0
    with no_grad():
        for p in ps:
            k = p.numel()
            p._data[...] = vec._data[i:i + k].reshape(p._data.shape)
            p._bump()
            i += k
