"""The geometry of a 2-d sliding window (convolution or pooling), computed once from the
shapes and arguments, and the padding and strided window views that every strategy uses."""

from __future__ import annotations

from dataclasses import dataclass


def out_size(n, k, s, p, d, ceil_mode=False):
    """Output length of a window k (dilation d) sliding with stride s over n + 2p (PyTorch's
    rule: with ceil_mode the last window must start inside the input or left padding)."""
    span = n + 2 * p - d * (k - 1) - 1
    o = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


@dataclass(slots=True)
class ConvGeometry:
    """Input x (N, C, H, W), weight (O, Cg, kh, kw) in G groups (Cg = C / G input channels
    and Og = O / G output channels per group), stride (sh, sw), padding (ph, pw), dilation
    (dh, dw), output (N, O, Ho, Wo). Derived: K = Cg kh kw, the depth of one output pixel's
    dot product; rh, rw, the padding the last window needs past the input's right edge (on top
    of ph, pw); Hp, Wp = ph + H + rh, pw + W + rw, the padded input's size. A pooling window
    is the depthwise case: O = G = C, Cg = 1."""

    N: int
    C: int
    H: int
    W: int
    O: int
    Cg: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    G: int
    Ho: int
    Wo: int
    Og: int
    K: int
    rh: int
    rw: int
    Hp: int
    Wp: int

    @classmethod
    def make(cls, x_shape, w_shape, stride, padding, dilation, groups, out_hw=None):
        """The geometry of a convolution of an x of ``x_shape`` with a weight of ``w_shape``
        (the output size computed unless ``out_hw`` is given)."""
        N, C, H, W = x_shape
        O, Cg, kh, kw = w_shape
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        Ho, Wo = out_hw if out_hw is not None else (out_size(H, kh, sh, ph, dh),
                                                    out_size(W, kw, sw, pw, dw))
        rh = max((Ho - 1) * sh + dh * (kh - 1) + 1 - H - ph, 0)
        rw = max((Wo - 1) * sw + dw * (kw - 1) + 1 - W - pw, 0)
        return cls(N, C, H, W, O, Cg, kh, kw, sh, sw, ph, pw, dh, dw, groups, Ho, Wo,
                   O // groups, Cg * kh * kw, rh, rw, ph + H + rh, pw + W + rw)

    @classmethod
    def pool(cls, x_shape, kernel, stride, padding, dilation, out_hw):
        """The geometry of a pooling window over each channel of an x of ``x_shape``."""
        C = x_shape[1]
        return cls.make(x_shape, (C, 1) + tuple(kernel), stride, padding, dilation, C, out_hw)

    def hs(self, i):
        """The rows of the padded input that kernel row i reads, one per output row."""
        return slice(i * self.dh, i * self.dh + self.sh * (self.Ho - 1) + 1, self.sh)

    def ws(self, j):
        """The columns of the padded input that kernel column j reads."""
        return slice(j * self.dw, j * self.dw + self.sw * (self.Wo - 1) + 1, self.sw)

    def view(self, a, i, j):
        """The (N, C, Ho, Wo) strided view of a padded (N, C, Hp, Wp) ``a`` (or any array
        with those two trailing dims) seen by kernel offset (i, j)."""
        return a[:, :, self.hs(i), self.ws(j)]

    def pad(self, xp, x, value):
        """x padded with ``value`` by (ph, pw) on the left and (rh, rw) on the right: (N, C,
        Hp, Wp); x itself where no padding is needed."""
        ph, pw, H, W = self.ph, self.pw, self.H, self.W
        if not (ph or pw or self.rh or self.rw):
            return x
        out = xp.full((x.shape[0], x.shape[1], self.Hp, self.Wp), value, dtype=x.dtype)
        out[:, :, ph:ph + H, pw:pw + W] = x
        return out

    def windows(self, xp, a, axes):
        """Every kernel window of the padded ``a`` as a strided view: the window dims
        (kh, kw) appended after ``a``'s dims, the two spatial ``axes`` cut to the Ho x Wo
        window positions."""
        win = xp.sliding_window_view(
            a, (self.dh * (self.kh - 1) + 1, self.dw * (self.kw - 1) + 1), axis=axes)
        index = [slice(None)] * a.ndim + [slice(None, None, self.dh), slice(None, None, self.dw)]
        index[axes[0]] = slice(None, self.sh * (self.Ho - 1) + 1, self.sh)
        index[axes[1]] = slice(None, self.sw * (self.Wo - 1) + 1, self.sw)
        return win[tuple(index)]

    def samples_per_block(self, K, itemsize, budget=1 << 20):
        """Samples whose (Ho Wo, K) patch rows fill about ``budget`` bytes (1 MiB): a block
        that stays in cache between being copied and being multiplied."""
        return max(1, min(self.N, budget // max(1, self.Ho * self.Wo * K * itemsize)))

    def key(self):
        """The geometry as the tuple of ints the compiled kernels take: (N, C, H, W, kh, kw,
        sh, sw, ph, pw, dh, dw, Ho, Wo, Hp, Wp)."""
        return (self.N, self.C, self.H, self.W, self.kh, self.kw, self.sh, self.sw, self.ph,
                self.pw, self.dh, self.dw, self.Ho, self.Wo, self.Hp, self.Wp)
