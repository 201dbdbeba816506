"""chainrule.linalg: PyTorch's ``torch.linalg`` norms over the op library (differentiable):
``vector_norm``, ``matrix_norm`` (Frobenius, 1, -1, inf, -inf) and ``norm``."""

from __future__ import annotations

import math
import numbers

from . import ops as P
from .tensor import Tensor

__all__ = ["norm", "vector_norm", "matrix_norm"]


def _float(x, op):
    if not isinstance(x, Tensor):
        raise TypeError(f"linalg.{op}: expected a Tensor, got {type(x).__name__}")
    if x._data.dtype.kind != "f":
        raise TypeError(f"linalg.{op}: expected a floating tensor, got dtype {x.dtype}")
    return x


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """(sum |x|^ord)^(1/ord) over ``dim`` (all elements by default); ord inf / -inf: the
    largest / smallest |x|; ord 0: the count of non-zeros."""
    x = _float(x, "vector_norm")
    if dtype is not None:
        x = x.to(dtype)
    if not isinstance(ord, numbers.Real):
        raise ValueError(f"linalg.vector_norm: ord must be a number, got {ord!r}")
    if dim is None and x.ndim:
        x, dim = x.reshape(-1), 0
        if keepdim:
            raise ValueError("linalg.vector_norm: keepdim=True needs dim")
    if ord == 2:
        return P.norm(x, 2, dim, keepdim)
    a = P.abs(x)
    if ord == math.inf:
        return P.amax(a, dim, keepdim)
    if ord == -math.inf:
        return P.amin(a, dim, keepdim)
    if ord == 0:
        return (a != 0).type(x.dtype).sum(dim, keepdim)
    if ord == 1:
        return a.sum(dim, keepdim)
    return P.pow(P.pow(a, float(ord)).sum(dim, keepdim), 1.0 / ord)


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    """The matrix norm over the two dims ``dim``: 'fro', 1 / -1 (largest / smallest column
    sum of |A|), inf / -inf (row sums). The spectral and nuclear norms are not supported."""
    A = _float(A, "matrix_norm")
    if dtype is not None:
        A = A.to(dtype)
    if A.ndim < 2:
        raise ValueError(f"linalg.matrix_norm: expected at least 2 dims, got shape "
                         f"{tuple(A.shape)}")
    r, c = (d % A.ndim for d in dim)
    if ord == "fro":
        out = P.sqrt((A * A).sum((r, c), keepdim=True))
    elif ord in (1, -1, math.inf, -math.inf):
        over, then = (r, c) if ord in (1, -1) else (c, r)
        s = P.abs(A).sum(over, keepdim=True)
        out = P.amax(s, then, keepdim=True) if ord > 0 else P.amin(s, then, keepdim=True)
    else:
        raise NotImplementedError(f"linalg.matrix_norm: ord {ord!r} is not supported (use "
                                  "'fro', 1, -1, inf or -inf)")
    return out if keepdim else out.squeeze((r, c))


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """torch.linalg.norm: a vector norm for 1-d input or an int ``dim``, a matrix norm for
    2-d input or a pair ``dim``; ord None is the 2-norm of the flattened input (or 'fro')."""
    A = _float(A, "norm")
    if isinstance(dim, numbers.Integral):
        return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)
    if dim is not None and len(tuple(dim)) == 2:
        return matrix_norm(A, "fro" if ord is None else ord, tuple(dim), keepdim, dtype=dtype)
    if ord is None:
        return vector_norm(A, 2, dim, keepdim, dtype=dtype)
    if A.ndim == 1:
        return vector_norm(A, ord, None, keepdim, dtype=dtype)
    if A.ndim == 2:
        return matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype)
    raise ValueError(f"linalg.norm: ord={ord!r} needs a 1-d or 2-d input or dim, got shape "
                     f"{tuple(A.shape)}")
