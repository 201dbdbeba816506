"""Matrix products: matmul (1-d, 2-d, batched with broadcast batch dims), mm, bmm, dot, outer
and einsum."""

from __future__ import annotations

import string

from ..autograd import Op
from ..tensor import ShapeError, Tensor
from ._args import _t
from ._methods import tensor_method
from .arithmetic import mul
from .shape import reshape


class Matmul(Op):
    """y = a @ b;  da = g @ b^T, db = a^T @ g (1-d operands promoted as in NumPy; batch dims
    broadcast and summed back by the engine)."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ShapeError(
                f"matmul: both operands need at least 1 dim, got shapes {tuple(a.shape)} and "
                f"{tuple(b.shape)}; use * for scalars"
            )
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            k2 = b.shape[-2 if b.ndim > 1 else 0]
            raise ShapeError(
                f"matmul: {tuple(a.shape)} @ {tuple(b.shape)}: inner dims {a.shape[-1]} and {k2} "
                "differ"
            )
        self.save(a, b)
        try:
            return a @ b
        except ValueError:
            raise ShapeError(
                f"matmul: {tuple(a.shape)} @ {tuple(b.shape)}: batch dims {tuple(a.shape[:-2])} "
                f"and {tuple(b.shape[:-2])} cannot be broadcast together"
            ) from None

    def backward(self, g):
        a, b = self.saved
        xp = self.xp
        a1, b1 = a.ndim == 1, b.ndim == 1
        if a1 and b1:
            return (g * b if self.needs[0] else None), (g * a if self.needs[1] else None)
        if a1:
            a = a.reshape((1, a.shape[0]))
            g = xp.expand_dims(g, -2)
        if b1:
            b = b.reshape((b.shape[0], 1))
            g = xp.expand_dims(g, -1)
        ga = gb = None
        if self.needs[0]:
            if b.ndim == 2 and a.ndim > 2:
                ga = g @ b.T  # (..., n, m) @ (m, k)
            else:
                ga = g @ xp.swapaxes(b, -1, -2)
            if a1:
                ga = ga.reshape(ga.shape[:-2] + (ga.shape[-1],))
        if self.needs[1]:
            if b.ndim == 2 and a.ndim > 2:
                # fold the batch into the rows: one GEMM instead of a batch summed afterwards
                k, m = a.shape[-1], g.shape[-1]
                gb = a.reshape((-1, k)).T @ g.reshape((-1, m))
            else:
                gb = xp.swapaxes(a, -1, -2) @ g
            if b1:
                gb = gb.reshape(gb.shape[:-1])
        return ga, gb


def parse_einsum(subscripts, shapes):
    """Split 'ij,jk->ik' into input and output subscript strings, expanding '...'."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        lhs, out = subscripts.split("->")
    else:
        lhs, out = subscripts, None
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise ValueError(f"einsum: {len(ins)} operand subscripts but {len(shapes)} operands")
    used = set(subscripts) - {".", ",", "-", ">"}
    free = [c for c in string.ascii_letters if c not in used]
    ell_len = max((len(s) - (len(sub) - 3) for sub, s in zip(ins, shapes) if "..." in sub),
                  default=0)
    ell = "".join(free[:ell_len])
    exp = []
    for sub, s in zip(ins, shapes):
        if "..." in sub:
            n = len(s) - (len(sub) - 3)
            sub = sub.replace("...", ell[ell_len - n:])
        if len(sub) != len(s):
            raise ShapeError(f"einsum: subscripts '{sub}' do not fit an operand of shape {s}")
        exp.append(sub)
    sizes = {}
    for k, (sub, s) in enumerate(zip(exp, shapes)):
        for c, n in zip(sub, s):
            m = sizes.setdefault(c, (n, k))[0]
            if n != m and 1 not in (n, m):
                raise ShapeError(
                    f"einsum: index '{c}' has size {m} in operand {sizes[c][1]} but {n} in "
                    f"operand {k} (shapes {[tuple(x) for x in shapes]})"
                )
    if out is None:
        counts = {}
        for sub in exp:
            for c in sub:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    return exp, out


class Einsum(Op):
    """y = einsum(subscripts, *xs);  dx_i = einsum(g and the other operands -> x_i's indices),
    broadcast over the indices only x_i carries."""

    def forward(self, *xs, subscripts=""):
        self.ins, self.out = parse_einsum(subscripts, [x.shape for x in xs])
        self.save(*xs)
        spec = ",".join(self.ins) + "->" + self.out
        return self.xp.einsum(spec, *xs, optimize=len(xs) > 2)

    def backward(self, g):
        xs = self.saved
        xp = self.xp
        grads = []
        for i, (x, sub) in enumerate(zip(xs, self.ins)):
            if not self.needs[i]:
                grads.append(None)
                continue
            others = [(s, o) for j, (s, o) in enumerate(zip(self.ins, xs)) if j != i]
            avail = set(self.out).union(*[set(s) for s, _ in others])
            size = dict(zip(sub, x.shape))
            once = "".join(dict.fromkeys(sub))  # 'bii' -> 'bi': the operand's diagonal
            target = "".join(c for c in once if c in avail)
            spec = ",".join([self.out] + [s for s, _ in others]) + "->" + target
            gi = xp.einsum(spec, g, *[o for _, o in others])
            if target != once:  # indices only this operand has: the gradient is constant there
                shape = tuple(size[c] if c in avail else 1 for c in once)
                gi = xp.broadcast_to(gi.reshape(shape), tuple(size[c] for c in once))
            if once != sub:
                gi = self._undiagonal(gi, once, sub, size, x.dtype)
            grads.append(gi)
        return tuple(grads)


    def _undiagonal(self, gi, once, sub, size, dtype):
        """The gradient on an operand with a repeated index ('bii'): its gradient on the
        diagonal ('bi') placed back on the diagonal, zero elsewhere, as
        einsum('bi,ij->bij', gi, eye) with a fresh letter for each repeat."""
        free = iter(c for c in string.ascii_letters if c not in sub)
        spread, deltas = "", []
        for k, c in enumerate(sub):
            if c in sub[:k]:
                fresh = next(free)
                spread += fresh
                deltas.append((c + fresh, self.xp.eye(size[c], dtype=dtype)))
            else:
                spread += c
        spec = ",".join([once] + [d for d, _ in deltas]) + "->" + spread
        return self.xp.einsum(spec, gi, *[e for _, e in deltas])


# ----------------------------------------------------------------------------- functions


@tensor_method()
def matmul(a, b):
    if type(a) is not Tensor or type(b) is not Tensor:
        a, b = _t(a, "matmul"), _t(b, "matmul")
    return Matmul.apply(a, b)


@tensor_method()
def mm(a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"mm: expects 2-d operands, got {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


@tensor_method()
def bmm(a, b):
    if a.ndim != 3 or b.ndim != 3:
        raise ShapeError(f"bmm: expects 3-d operands, got {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


@tensor_method()
def dot(a, b):
    return matmul(a, b)


@tensor_method()
def outer(a, b):
    return mul(reshape(a, (-1, 1)), reshape(b, (1, -1)))


def einsum(subscripts, *operands):
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return Einsum.apply(*[_t(o, "einsum") for o in operands], subscripts=subscripts)


__all__ = ["matmul", "mm", "bmm", "dot", "outer", "einsum"]
