"""The fused recurrent cells: one time step's gate arithmetic of an LSTM or a GRU as one op."""

from __future__ import annotations

from ... import ops as P
from ...autograd import Op


class LSTMCellOp(Op):
    """One LSTM step from the gate pre-activations ``gates`` (B, 4H) = x W_ih^T + b_ih +
    h W_hh^T + b_hh (PyTorch's gate order i, f, g, o) and the cell state c (B, H):

    i, f, o = sigmoid(.),  g = tanh(.),  c' = f c + i g,  h' = o tanh(c').

    The output is [h', c'] (B, 2H). With gh, gc the two halves of the incoming gradient:
    dc' = gc + gh o (1 - tanh(c')^2),  do = gh tanh(c'),  di = dc' g,  df = dc' c,  dg = dc' i,
    dc = dc' f, and the pre-activations' gradients are those times the gates' derivatives
    (s (1 - s) for a sigmoid, 1 - t^2 for the tanh).
    """

    def forward(self, gates, c):
        xp = self.xp
        self.save(gates, c)
        H = c.shape[-1]
        a = xp.empty_like(gates)
        xp.negative(gates, out=a)
        xp.exp(a, out=a)
        a += 1.0
        xp.reciprocal(a, out=a)
        xp.tanh(gates[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
        out = xp.empty((gates.shape[0], 2 * H), dtype=gates.dtype)
        h, c2 = out[:, :H], out[:, H:]
        xp.multiply(a[:, H:2 * H], c, out=c2)
        c2 += a[:, :H] * a[:, 2 * H:3 * H]
        tc = xp.tanh(c2)
        xp.multiply(a[:, 3 * H:], tc, out=h)
        self.a, self.tc = a, tc
        return out

    def backward(self, g):
        xp = self.xp
        a, tc = self.a, self.tc
        c = self.saved[1]
        H = c.shape[-1]
        gh, gc = g[:, :H], g[:, H:]
        i, f, gg, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        dc = gh * o
        dc *= 1.0 - tc * tc
        dc += gc
        da = xp.empty_like(a)
        xp.multiply(dc, gg, out=da[:, :H])
        da[:, :H] *= i * (1.0 - i)
        xp.multiply(dc, c, out=da[:, H:2 * H])
        da[:, H:2 * H] *= f * (1.0 - f)
        xp.multiply(dc, i, out=da[:, 2 * H:3 * H])
        da[:, 2 * H:3 * H] *= 1.0 - gg * gg
        xp.multiply(gh, tc, out=da[:, 3 * H:])
        da[:, 3 * H:] *= o * (1.0 - o)
        dcp = dc * f if self.needs[1] else None
        return (da if self.needs[0] else None, dcp)

    def composite(self, gates, c):
        """The same step from primitives."""
        i, f, g, o = P.chunk(gates, 4, 1)
        c2 = P.sigmoid(f) * c + P.sigmoid(i) * P.tanh(g)
        return P.cat([P.sigmoid(o) * P.tanh(c2), c2], 1)


class GRUCellOp(Op):
    """One GRU step from gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh (both (B, 3H), gate
    order r, z, n) and h (B, H):

    r = sigmoid(gi_r + gh_r),  z = sigmoid(gi_z + gh_z),  n = tanh(gi_n + r gh_n),
    h' = (1 - z) n + z h.

    Backward with d = dh':  dz = d (h - n),  dn = d (1 - z),  dh = d z,  da_n = dn (1 - n^2),
    dgh_n = da_n r,  dr = da_n gh_n,  and the r, z pre-activations' gradients dr r (1 - r),
    dz z (1 - z) go to both gi and gh.
    """

    def forward(self, gi, gh, h):
        xp = self.xp
        self.save(gi, gh, h)
        H = h.shape[-1]
        rz = gi[:, :2 * H] + gh[:, :2 * H]
        xp.negative(rz, out=rz)
        xp.exp(rz, out=rz)
        rz += 1.0
        xp.reciprocal(rz, out=rz)
        r, z = rz[:, :H], rz[:, H:]
        n = r * gh[:, 2 * H:]
        n += gi[:, 2 * H:]
        xp.tanh(n, out=n)
        out = h - n
        out *= z
        out += n
        self.rz, self.n = rz, n
        return out

    def backward(self, d):
        xp = self.xp
        rz, n = self.rz, self.n
        gi, gh, h = self.saved
        H = h.shape[-1]
        r, z = rz[:, :H], rz[:, H:]
        dgi = xp.empty_like(gi)
        dan = dgi[:, 2 * H:]
        xp.multiply(d, 1.0 - z, out=dan)
        dan *= 1.0 - n * n
        xp.multiply(dan, gh[:, 2 * H:], out=dgi[:, :H])
        dgi[:, :H] *= r * (1.0 - r)
        xp.subtract(h, n, out=dgi[:, H:2 * H])
        dgi[:, H:2 * H] *= d
        dgi[:, H:2 * H] *= z * (1.0 - z)
        dgh = None
        if self.needs[1]:
            dgh = dgi.copy()
            dgh[:, 2 * H:] *= r
        dh = d * z if self.needs[2] else None
        return (dgi if self.needs[0] else None, dgh, dh)

    def composite(self, gi, gh, h):
        """The same step from primitives."""
        ir, iz, in_ = P.chunk(gi, 3, 1)
        hr, hz, hn = P.chunk(gh, 3, 1)
        r, z = P.sigmoid(ir + hr), P.sigmoid(iz + hz)
        n = P.tanh(in_ + r * hn)
        return (1 - z) * n + z * h
