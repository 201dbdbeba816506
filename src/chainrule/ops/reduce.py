"""Reductions: sum, mean, var/std, max/min (values and indices), amax/amin, logsumexp, prod,
norm, cumsum, and the fused softmax / log_softmax."""

from __future__ import annotations

from ..autograd import Op


class DimError(IndexError, ValueError):
    """A dim or index out of range: an IndexError, as PyTorch raises, and a ValueError, as every
    other shape mistake here is."""


def norm_dims(dim, ndim, op="reduce"):
    """Normalise ``dim`` (None, int or sequence, negatives allowed) to a sorted tuple."""
    if dim is None:
        return tuple(range(ndim))
    if type(dim) is int and -ndim <= dim < ndim:  # the common case, first
        return (dim % ndim,)
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise DimError(
                f"{op}: dim {d} is out of range for a tensor of {ndim} dims "
                f"(expected {-max(ndim, 1)}..{max(ndim, 1) - 1})"
            )
        out.append(d % max(ndim, 1))
    return tuple(sorted(set(out))) if ndim else ()


def _expand_back(g, shape, dims, keepdim):
    """Reshape a reduced gradient so it broadcasts against the input of ``shape``."""
    if not keepdim and dims:
        kshape = tuple(1 if i in dims else n for i, n in enumerate(shape))
        g = g.reshape(kshape)
    return g


class Sum(Op):
    """y = sum_dims x;  dx = g broadcast back over the summed dims."""

    def forward(self, x, dims=(), keepdim=False):
        self.dims, self.keepdim, self.shape = dims, keepdim, x.shape
        return x.sum(axis=dims, keepdims=keepdim)

    def backward(self, g):
        g = _expand_back(g, self.shape, self.dims, self.keepdim)
        return (self.xp.broadcast_to(g, self.shape),)


class Mean(Op):
    """y = mean_dims x;  dx = g / n broadcast back."""

    def forward(self, x, dims=(), keepdim=False):
        self.dims, self.keepdim, self.shape = dims, keepdim, x.shape
        n = 1
        for d in dims:
            n *= x.shape[d]
        self.n = n
        return x.mean(axis=dims, keepdims=keepdim)

    def backward(self, g):
        g = _expand_back(g, self.shape, self.dims, self.keepdim)
        return (self.xp.broadcast_to(g / self.n, self.shape),)


class Var(Op):
    """y = sum (x - mean)^2 / (n - correction);  dx = g 2 (x - mean) / (n - correction)."""

    def forward(self, x, dims=(), correction=1, keepdim=False):
        self.dims, self.keepdim = dims, keepdim
        n = 1
        for d in dims:
            n *= x.shape[d]
        self.denom = max(n - correction, 0)
        self.save(x)
        return x.var(axis=dims, ddof=correction, keepdims=keepdim)

    def backward(self, g):
        x = self.saved[0]
        g = _expand_back(g, x.shape, self.dims, self.keepdim)
        xc = x - x.mean(axis=self.dims, keepdims=True)
        return (g * xc * (2.0 / self.denom),)


class MaxMin(Op):
    """y = max (or min) over one dim or all;  the gradient goes to the chosen element (the first
    one, as the index returned), or, over all dims, split evenly among ties (as PyTorch amax)."""

    def forward(self, x, dims=(), keepdim=False, mode="max", evenly=True):
        xp = self.xp
        self.dims, self.keepdim, self.evenly = dims, keepdim, evenly
        y = (x.max if mode == "max" else x.min)(axis=dims, keepdims=True)
        if evenly:
            self.save(x, y)
        else:
            d = dims[0]
            idx = (xp.argmax if mode == "max" else xp.argmin)(x, axis=d, keepdims=True)
            self.indices = idx
            self.shape = x.shape
        return y if keepdim else y.reshape(tuple(n for i, n in enumerate(x.shape) if i not in dims))

    def backward(self, g):
        xp = self.xp
        if not self.evenly:
            g = _expand_back(g, self.shape, self.dims, self.keepdim)
            return (put_along(xp, self.shape, self.indices, g, self.dims[0]),)
        x, y = self.saved
        g = _expand_back(g, x.shape, self.dims, self.keepdim)
        mask = x == y
        count = mask.sum(axis=self.dims, keepdims=True).astype(g.dtype)
        return (g * mask / count,)


def put_along(xp, shape, idx, g, dim):
    """Zeros of ``shape`` with ``g`` placed at ``idx`` along ``dim`` (the VJP of take_along)."""
    if hasattr(xp, "put_along_dim"):  # the Tensor namespace: a differentiable scatter
        return xp.put_along_dim(shape, idx, g, dim)
    out = xp.zeros(shape, dtype=g.dtype)
    xp.put_along_axis(out, idx, g, axis=dim)
    return out


class Norm(Op):
    """y = ||x||_2 = sqrt(sum_dims x^2);  dx = g x / y, and 0 where y = 0 (the subgradient
    PyTorch takes at the origin, where the composition sqrt(sum(x*x)) would give NaN)."""

    def forward(self, x, dims=(), keepdim=False):
        self.dims, self.keepdim = dims, keepdim
        y = self.xp.sqrt((x * x).sum(axis=dims, keepdims=keepdim))
        self.save(x, y)
        return y

    def backward(self, g):
        x, y = self.saved
        g = _expand_back(g, x.shape, self.dims, self.keepdim)
        y = _expand_back(y, x.shape, self.dims, self.keepdim)
        return (g * x / self.xp.where(y == 0, 1.0, y),)


class Logsumexp(Op):
    """y = log sum exp x (stable);  dx = g exp(x - y)."""

    def forward(self, x, dims=(), keepdim=False):
        xp = self.xp
        self.dims, self.keepdim = dims, keepdim
        m = x.max(axis=dims, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        y = xp.log(xp.exp(x - m).sum(axis=dims, keepdims=True)) + m
        if not keepdim:
            y = y.reshape(tuple(n for i, n in enumerate(x.shape) if i not in dims))
        self.save(x, y)  # the output itself, so create_graph differentiates through it
        return y

    def backward(self, g):
        x, y = self.saved
        g = _expand_back(g, x.shape, self.dims, self.keepdim)
        y = _expand_back(y, x.shape, self.dims, self.keepdim)
        return (g * self.xp.exp(x - y),)


class Prod(Op):
    """y = prod x;  dx_i = g prod_{j != i} x_j, from exclusive products to the left and right
    (no division, so zeros are exact).  Higher orders run through ``composite``: the same
    product as a chain of multiplications."""

    def forward(self, x, dim=None, keepdim=False):
        self.dim, self.keepdim = dim, keepdim
        self.save(x)
        if dim is None:
            return x.prod()
        return x.prod(axis=dim, keepdims=keepdim)

    def backward(self, g):
        xp = self.xp
        x = self.saved[0]
        shape = x.shape
        if self.dim is None:
            x, dim = x.reshape(-1), 0
            g = g.reshape((1,))
        else:
            dim = self.dim
            if not self.keepdim:
                g = xp.expand_dims(g, dim)
        ones = xp.ones_like(x.sum(axis=dim, keepdims=True))
        n = x.shape[dim]
        head = (slice(None),) * dim
        # left[i] = x_0 ... x_{i-1},  right[i] = x_{i+1} ... x_{n-1}
        left = xp.cumprod(xp.concatenate([ones, x], axis=dim), axis=dim)[head + (slice(0, n),)]
        rev = xp.flip(x, axis=dim)
        right = xp.cumprod(xp.concatenate([ones, rev], axis=dim), axis=dim)[head + (slice(0, n),)]
        return ((g * left * xp.flip(right, axis=dim)).reshape(shape),)

    def composite(self, x):
        from . import getitem, mul, unsqueeze

        if self.dim is None:
            x, dim = x.reshape((-1,)), 0
        else:
            dim = self.dim
        head = (slice(None),) * dim
        n = x.shape[dim]
        if n == 0:
            y = x.sum(dim) + 1.0  # the empty product
        else:
            y = getitem(x, head + (0,))
            for i in range(1, n):
                y = mul(y, getitem(x, head + (i,)))
        return unsqueeze(y, dim) if self.keepdim and self.dim is not None else y


class Cumsum(Op):
    """y_i = sum_{j<=i} x_j;  dx_i = sum_{j>=i} g_j (a reversed cumsum)."""

    def forward(self, x, dim=0):
        self.dim = dim
        return x.cumsum(axis=dim)

    def backward(self, g):
        xp = self.xp
        return (xp.flip(xp.cumsum(xp.flip(g, axis=self.dim), axis=self.dim), axis=self.dim),)


class Softmax(Op):
    """y = exp(x - logsumexp x);  dx = y (g - sum(g y)) (from the saved output)."""

    def forward(self, x, dim=-1):
        xp = self.xp
        self.dim = dim
        e = x - x.max(axis=dim, keepdims=True)
        xp.exp(e, out=e)
        e /= e.sum(axis=dim, keepdims=True)
        self.save(e)
        return e

    def backward(self, g):
        y = self.saved[0]
        gy = g * y
        return (gy - y * gy.sum(axis=self.dim, keepdims=True),)


class LogSoftmax(Op):
    """y = x - logsumexp x;  dx = g - exp(y) sum(g) (from the saved output)."""

    def forward(self, x, dim=-1):
        xp = self.xp
        self.dim = dim
        s = x - x.max(axis=dim, keepdims=True)
        s -= xp.log(xp.exp(s).sum(axis=dim, keepdims=True))
        self.save(s)
        return s

    def backward(self, g):
        y = self.saved[0]
        return (g - self.xp.exp(y) * g.sum(axis=self.dim, keepdims=True),)
