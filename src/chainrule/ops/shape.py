"""Shape and indexing ops: views, joins, splits, gathers and scatters."""

from __future__ import annotations

from ..autograd import Op


class Reshape(Op):
    """y = x reshaped;  dx = g reshaped back."""

    def forward(self, x, shape=()):
        self.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot view a tensor of shape {tuple(x.shape)} ({x.size} elements) as "
                f"{tuple(shape)}"
            ) from None

    def backward(self, g):
        return (g.reshape(self.shape),)


class Permute(Op):
    """y = x with dims permuted;  dx = g with the inverse permutation."""

    def forward(self, x, dims=()):
        self.dims = dims
        return self.xp.transpose(x, dims)

    def backward(self, g):
        inv = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inv[d] = i
        return (self.xp.transpose(g, tuple(inv)),)


class Expand(Op):
    """y = x broadcast to shape (a view);  dx = g summed back (the engine's unbroadcast)."""

    def forward(self, x, shape=()):
        try:
            return self.xp.broadcast_to(x, shape)
        except ValueError:
            raise ValueError(
                f"expand: cannot expand shape {tuple(x.shape)} to {tuple(shape)}: only size-1 "
                "dims can grow"
            ) from None

    def backward(self, g):
        return (g,)


class GetItem(Op):
    """y = x[index];  dx = zeros with g added at index (repeated indices accumulate)."""

    def forward(self, x, index=None):
        self.index, self.shape, self.dtype = index, x.shape, x.dtype
        return x[index]

    def backward(self, g):
        return (index_add_zeros(self.xp, self.shape, self.index, g),)

    def backward_into(self, g, out):
        if _is_basic(self.index):
            out[self.index] += g  # a basic index selects each element at most once
        else:
            self.xp.add.at(out, self.index, g)


def _is_basic(index):
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in items)


def index_add_zeros(xp, shape, index, g):
    """zeros(shape) with ``g`` added at ``index``: the VJP of ``x[index]``."""
    if hasattr(xp, "index_put_add"):  # the Tensor namespace: recorded, differentiable
        return xp.index_put_add(shape, index, g)
    out = xp.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        out[index] = g  # a basic index selects each element at most once
    else:
        xp.add.at(out, index, g)
    return out


class IndexPutAdd(Op):
    """y = zeros(shape) with x added at index;  dx = g[index].  (The VJP of GetItem, recorded
    for higher-order gradients.)"""

    def forward(self, x, shape=(), index=None):
        self.index = index
        return index_add_zeros(self.xp, shape, index, x)

    def backward(self, g):
        return (g[self.index],)


class Cat(Op):
    """y = concatenate(xs, dim);  dx_i = the slice of g that x_i filled."""

    def forward(self, *xs, dim=0):
        self.dim = dim
        self.sizes = [x.shape[dim] for x in xs]
        return self.xp.concatenate(xs, axis=dim)

    def backward(self, g):
        out, start = [], 0
        for n, need in zip(self.sizes, self.needs):
            if need:
                idx = (slice(None),) * self.dim + (slice(start, start + n),)
                out.append(g[idx])
            else:
                out.append(None)
            start += n
        return tuple(out)


class Stack(Op):
    """y = stack(xs, dim);  dx_i = g taken at position i along dim."""

    def forward(self, *xs, dim=0):
        self.dim = dim
        return self.xp.stack(xs, axis=dim)

    def backward(self, g):
        idx = (slice(None),) * self.dim
        return tuple(g[idx + (i,)] if need else None for i, need in enumerate(self.needs))


class Gather(Op):
    """y[i][j][k] = x[i][index[i][j][k]][k] (dim 1);  dx = zeros with g added at the same places
    (repeats accumulate). As in PyTorch, index may be smaller than x in the other dims."""

    def forward(self, x, index, dim=0):
        self.dim, self.shape = dim, x.shape
        self.where = _scatter_index(self.xp, index, dim)
        return x[self.where]

    def backward(self, g):
        return (scatter_add_zeros(self.xp, self.shape, self.dim, self.where, g), None)


def scatter_add_zeros(xp, shape, dim, where, src):
    """zeros(shape) with ``src`` added at ``where`` (an index tuple from ``_scatter_index``;
    duplicates accumulate)."""
    if hasattr(xp, "scatter_add_zeros"):
        return xp.scatter_add_zeros(shape, where, src)
    out = xp.zeros(shape, dtype=src.dtype)
    xp.add.at(out, where, src)
    return out


def _scatter_index(xp, index, dim):
    """Full advanced index tuple addressing out[..., index, ...] along ``dim``."""
    grids = list(xp.indices(index.shape, sparse=True))
    grids[dim] = index
    return tuple(grids)


class ScatterAdd(Op):
    """y = x with src added at index along dim (y[i][index[i][j]] += src[i][j] for dim 1);
    dx = g, dsrc = g gathered at index (zero where src has more elements than index, which
    PyTorch allows)."""

    def forward(self, x, index, src, dim=0):
        self.where = _scatter_index(self.xp, index, dim)  # arrays, reused by a create_graph rule
        self.src_pad = [(0, s - n) for n, s in zip(index.shape, src.shape)]
        if any(hi for _, hi in self.src_pad):
            src = src[tuple(slice(0, n) for n in index.shape)]
        else:
            self.src_pad = None
        out = x.copy()
        self.xp.add.at(out, self.where, src)
        return out

    def backward(self, g):
        gsrc = None
        if self.needs[2]:
            gsrc = g[self.where]
            if self.src_pad:
                gsrc = self.xp.pad(gsrc, self.src_pad)
        return g, None, gsrc


class IndexSelect(Op):
    """y = x.take(index, dim);  dx = zeros with g added at index along dim."""

    def forward(self, x, index, dim=0):
        self.dim, self.index, self.shape = dim, index, x.shape
        return self.xp.take(x, index, axis=dim)

    def backward(self, g):
        idx = (slice(None),) * self.dim + (self.index,)
        return (index_add_zeros(self.xp, self.shape, idx, g), None)


class Pad(Op):
    """y = x padded with a constant (a negative pad crops, as in PyTorch);  dx = g cropped back
    to x's place (and zero-padded where x was cropped)."""

    def forward(self, x, pad=(), value=0.0):
        # pad is PyTorch's: (last_lo, last_hi, prev_lo, prev_hi, ...)
        nd = x.ndim
        lohi = [(0, 0)] * nd
        for i in range(len(pad) // 2):
            lohi[nd - 1 - i] = (pad[2 * i], pad[2 * i + 1])
        self.cut = [(max(-lo, 0), max(-hi, 0)) for lo, hi in lohi]
        if any(lo or hi for lo, hi in self.cut):
            x = x[tuple(slice(lo, n - hi) for (lo, hi), n in zip(self.cut, x.shape))]
        else:
            self.cut = None
        widths = [(max(lo, 0), max(hi, 0)) for lo, hi in lohi]
        self.crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
        return self.xp.pad(x, widths, constant_values=value)

    def backward(self, g):
        g = g[self.crop]
        return (self.xp.pad(g, self.cut) if self.cut else g,)


class Flip(Op):
    """y = x reversed along dims;  dx = g reversed back."""

    def forward(self, x, dims=()):
        self.dims = dims
        return self.xp.flip(x, axis=dims)

    def backward(self, g):
        return (self.xp.flip(g, axis=self.dims),)


class Roll(Op):
    """y = roll(x, shifts, dims);  dx = roll(g, -shifts, dims)."""

    def forward(self, x, shifts=0, dims=None):
        self.shifts, self.dims = shifts, dims
        return self.xp.roll(x, shifts, axis=dims)

    def backward(self, g):
        neg = tuple(-s for s in self.shifts) if isinstance(self.shifts, tuple) else -self.shifts
        return (self.xp.roll(g, neg, axis=self.dims),)


class Tile(Op):
    """y = x repeated (torch.repeat) by reps;  dx = g summed over the copies."""

    def forward(self, x, reps=()):
        self.xshape = (1,) * (len(reps) - x.ndim) + x.shape
        self.reps = reps
        self.orig = x.shape
        return self.xp.tile(x, reps)

    def backward(self, g):
        # (r0, n0, r1, n1, ...) then sum the r axes
        split = []
        for r, n in zip(self.reps, self.xshape):
            split += [r, n]
        g = g.reshape(tuple(split)).sum(axis=tuple(range(0, 2 * len(self.reps), 2)))
        return (g.reshape(self.orig),)


class TriMask(Op):
    """y = tril(x, k) or triu(x, k);  dx = g masked the same way."""

    def forward(self, x, k=0, upper=False):
        self.k, self.upper = k, upper
        return (self.xp.triu if upper else self.xp.tril)(x, k)

    def backward(self, g):
        return ((self.xp.triu if self.upper else self.xp.tril)(g, self.k),)


class MaskedFill(Op):
    """y = where(mask, value, x);  dx = g where not mask."""

    def forward(self, x, mask, value=0.0):
        self.mask = mask
        return self.xp.where(mask, self.xp.asarray(value, dtype=x.dtype), x)

    def backward(self, g):
        return (self.xp.where(self.mask, self.xp.zeros_like(g), g), None)
