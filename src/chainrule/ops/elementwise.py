"""Elementwise ops: arithmetic, math functions and activations.

Each rule is the vector-Jacobian product written with ``self.xp`` and operators, so it runs on
arrays (first order) and on Tensors (create_graph) alike. Gradients may keep the broadcast shape;
the engine sums them back.
"""

from __future__ import annotations

import math

from ..autograd import Op
from ..tensor import Tensor

# ---------------------------------------------------------------------------- arithmetic


class Add(Op):
    """y = a + b;  da = g, db = g."""

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


class Sub(Op):
    """y = a - b;  da = g, db = -g."""

    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, (-g if self.needs[1] else None)


class Mul(Op):
    """y = a * b;  da = g * b, db = g * a."""

    def forward(self, a, b):
        self.save(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        return (g * b if self.needs[0] else None), (g * a if self.needs[1] else None)


class Div(Op):
    """y = a / b;  da = g / b, db = -g * a / b**2 = -g * y / b."""

    def forward(self, a, b):
        y = a / b
        self.save(a, b)
        return y

    def backward(self, g):
        a, b = self.saved
        ga = g / b
        return (ga if self.needs[0] else None), (-ga * a / b if self.needs[1] else None)


class Neg(Op):
    """y = -x;  dx = -g."""

    def forward(self, x):
        return -x

    def backward(self, g):
        return (-g,)


class Pow(Op):
    """y = a ** b;  da = g * b * a**(b-1), db = g * y * log(a) (a > 0 where b needs a grad)."""

    def forward(self, a, b):
        y = a**b
        self.save(a, b, y)
        return y

    def backward(self, g):
        a, b, y = self.saved
        xp = self.xp
        ga = gb = None
        if self.needs[0]:
            ga = g * b * a ** (b - 1)
        if self.needs[1]:
            if type(a) in (int, float):  # a Python base stays a weak scalar (keeps g's dtype)
                gb = g * y * (math.log(a) if a > 0 else 0.0)
            else:
                gb = g * y * xp.log(xp.where(a > 0, a, 1))
        return ga, gb


# ---------------------------------------------------------------------------- math


class Exp(Op):
    """y = exp(x);  dx = g * y."""

    def forward(self, x):
        y = self.xp.exp(x)
        self.save(y)
        return y

    def backward(self, g):
        return (g * self.saved[0],)


class Expm1(Op):
    """y = exp(x) - 1;  dx = g * (y + 1)."""

    def forward(self, x):
        y = self.xp.expm1(x)
        self.save(y)
        return y

    def backward(self, g):
        return (g * (self.saved[0] + 1),)


class Log(Op):
    """y = log(x);  dx = g / x."""

    def forward(self, x):
        self.save(x)
        return self.xp.log(x)

    def backward(self, g):
        return (g / self.saved[0],)


class Log1p(Op):
    """y = log(1 + x);  dx = g / (1 + x)."""

    def forward(self, x):
        self.save(x)
        return self.xp.log1p(x)

    def backward(self, g):
        return (g / (1 + self.saved[0]),)


class Sqrt(Op):
    """y = sqrt(x);  dx = g / (2 y)."""

    def forward(self, x):
        y = self.xp.sqrt(x)
        self.save(y)
        return y

    def backward(self, g):
        return (g / (2 * self.saved[0]),)


class Rsqrt(Op):
    """y = 1 / sqrt(x);  dx = -g y**3 / 2."""

    def forward(self, x):
        y = 1 / self.xp.sqrt(x)
        self.save(y)
        return y

    def backward(self, g):
        y = self.saved[0]
        return (-0.5 * g * y * y * y,)


class Abs(Op):
    """y = |x|;  dx = g * sign(x) (0 at x = 0, as PyTorch)."""

    def forward(self, x):
        self.save(x)
        return self.xp.abs(x)

    def backward(self, g):
        return (g * self.xp.sign(self.saved[0]),)


class Sin(Op):
    """y = sin(x);  dx = g cos(x)."""

    def forward(self, x):
        self.save(x)
        return self.xp.sin(x)

    def backward(self, g):
        return (g * self.xp.cos(self.saved[0]),)


class Cos(Op):
    """y = cos(x);  dx = -g sin(x)."""

    def forward(self, x):
        self.save(x)
        return self.xp.cos(x)

    def backward(self, g):
        return (-g * self.xp.sin(self.saved[0]),)


class Tanh(Op):
    """y = tanh(x);  dx = g (1 - y**2) (from the saved output, not x)."""

    def forward(self, x):
        y = self.xp.tanh(x)
        self.save(y)
        return y

    def backward(self, g):
        y = self.saved[0]
        return (g * (1 - y * y),)


class Sigmoid(Op):
    """y = 1 / (1 + exp(-x));  dx = g y (1 - y)."""

    def forward(self, x):
        xp = self.xp
        # stable on both tails: exp of a non-positive number only; y = num / (1 + e) with
        # num = 1 where x >= 0 and e elsewhere, i.e. max(e, [x >= 0]) as e <= 1 (a maximum,
        # not a masked where, which is many times slower)
        e = xp.abs(x, out=xp.empty_like(x))  # out=: a 0-d input stays an array
        xp.negative(e, out=e)
        xp.exp(e, out=e)
        y = xp.maximum(e, x >= 0, out=xp.empty_like(x))
        e += 1
        xp.divide(y, e, out=y)
        self.save(y)
        return y

    def backward(self, g):
        y = self.saved[0]
        return (g * y * (1 - y),)


class Relu(Op):
    """y = max(x, 0);  dx = g [y > 0]."""

    def forward(self, x):
        y = self.xp.maximum(x, 0)
        self.save(y)
        return y

    def backward(self, g):
        y = self.saved[0]
        if isinstance(g, Tensor) or y.shape != g.shape:
            return (g * (y > 0),)
        # the mask written as 0/1 in g's dtype, then one same-dtype multiply in place: about
        # twice as fast as g times a boolean array (a casting loop); the same values
        m = self.xp.greater(y, 0, out=self.xp.empty(g.shape, dtype=g.dtype), casting="unsafe")
        m *= g
        return (m,)


class LeakyRelu(Op):
    """y = x if x > 0 else s x;  dx = g (1 if x > 0 else s)."""

    def forward(self, x, negative_slope=0.01):
        self.slope = negative_slope
        self.save(x)
        y = self.xp.multiply(x, negative_slope, out=self.xp.empty_like(x))
        # for 0 <= s <= 1, max(x, s x) picks x above 0 and s x below; s > 1: the min
        if 0 <= negative_slope <= 1:
            return self.xp.maximum(x, y, out=y)
        if negative_slope > 1:
            return self.xp.minimum(x, y, out=y)
        return self.xp.where(x > 0, x, y)

    def backward(self, g):
        x = self.saved[0]
        s = self.slope
        # g (s + (1 - s) [x > 0]): products, not a masked where
        return (g * ((x > 0).astype(g.dtype) * (1 - s) + s),)


class Softplus(Op):
    """y = log(1 + exp(beta x)) / beta (linear above threshold);  dx = g sigmoid(beta x)."""

    def forward(self, x, beta=1.0, threshold=20.0):
        xp = self.xp
        self.beta, self.threshold = beta, threshold
        bx = beta * x
        y = xp.where(bx > threshold, x, (xp.maximum(bx, 0) + xp.log1p(xp.exp(-xp.abs(bx)))) / beta)
        self.save(x)
        return y.astype(x.dtype, copy=False)

    def backward(self, g):
        xp = self.xp
        bx = self.saved[0] * self.beta
        s = 1 / (1 + xp.exp(-bx))
        return (xp.where(bx > self.threshold, g, g * s),)


class Silu(Op):
    """y = x sigmoid(x);  dx = g s (1 + x (1 - s)), s = sigmoid(x)."""

    def forward(self, x):
        xp = self.xp
        s = 1 / (1 + xp.exp(-x))
        self.save(x)
        return x * s

    def backward(self, g):
        xp = self.xp
        x = self.saved[0]
        s = 1 / (1 + xp.exp(-x))
        return (g * s * (1 + x * (1 - s)),)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def erf(xp, x):
    """erf on arrays: exact (math.erf) in float64; otherwise to about 1e-7 relative, below
    float32's resolution (Numerical Recipes' Chebyshev erfc), also on Tensors."""
    if x.dtype == "float64" and hasattr(xp, "frompyfunc"):
        return xp.asarray(xp.frompyfunc(math.erf, 1, 1)(x), dtype=x.dtype)
    z = xp.abs(x)
    t = 1 / (1 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    r = 1 - t * xp.exp(poly)
    return r * xp.sign(x)  # erf is odd (and sign(0) = 0 gives erf(0) = 0 exactly)


class Gelu(Op):
    """Exact: y = x Phi(x), dx = g (Phi(x) + x phi(x)).
    Tanh form: y = x/2 (1 + tanh(u)), u = sqrt(2/pi)(x + 0.044715 x^3),
    dx = g (1/2 (1 + t) + x/2 (1 - t^2) du/dx)."""

    def forward(self, x, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        xp = self.xp
        self.approximate = approximate
        self.save(x)
        if approximate == "tanh":
            return (0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))).astype(
                x.dtype, copy=False)
        return (0.5 * x * (1 + erf(xp, x * _INV_SQRT_2))).astype(x.dtype, copy=False)

    def backward(self, g):
        xp = self.xp
        x = self.saved[0]
        if self.approximate == "tanh":
            t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du),)
        cdf = 0.5 * (1 + erf(xp, x * _INV_SQRT_2))
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
        return (g * (cdf + x * pdf),)


class Clamp(Op):
    """y = min(max(x, lo), hi);  dx = g where lo <= x <= hi (PyTorch passes the bound's gradient
    at ties to x)."""

    def forward(self, x, lo=None, hi=None):
        self.save(x)
        self.lo, self.hi = lo, hi
        return self.xp.clip(x, lo, hi)

    def backward(self, g):
        x = self.saved[0]
        mask = True
        if self.lo is not None:
            mask = x >= self.lo
        if self.hi is not None:
            mask = (x <= self.hi) * mask
        return (g * mask,)


class Maximum(Op):
    """y = max(a, b);  the gradient goes to the larger, split evenly at ties (as PyTorch)."""

    def forward(self, a, b):
        self.save(a, b)
        return self.xp.maximum(a, b)

    def backward(self, g):
        a, b = self.saved
        w = (a > b).astype(g.dtype) + (a == b).astype(g.dtype) * 0.5
        return (g * w if self.needs[0] else None), (g * (1 - w) if self.needs[1] else None)


class Minimum(Op):
    """y = min(a, b);  the gradient goes to the smaller, split evenly at ties."""

    def forward(self, a, b):
        self.save(a, b)
        return self.xp.minimum(a, b)

    def backward(self, g):
        a, b = self.saved
        w = (a < b).astype(g.dtype) + (a == b).astype(g.dtype) * 0.5
        return (g * w if self.needs[0] else None), (g * (1 - w) if self.needs[1] else None)


class Where(Op):
    """y = where(c, a, b);  da = g [c], db = g [not c]."""

    def forward(self, c, a, b):
        self.save(c)
        return self.xp.where(c, a, b)

    def backward(self, g):
        c = self.saved[0]
        xp = self.xp
        zero = xp.zeros_like(g)
        return (None, xp.where(c, g, zero) if self.needs[1] else None,
                xp.where(c, zero, g) if self.needs[2] else None)


class Cast(Op):
    """y = x as another dtype;  dx = g cast back (no gradient into integer dtypes)."""

    def forward(self, x, dtype=None):
        self.src = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return (g.astype(self.src),)

    @classmethod
    def apply(cls, x, dtype):
        if dtype.kind != "f":
            return NoGradElementwise.apply(x, fn=lambda xp, a: a.astype(dtype))
        return super().apply(x, dtype=dtype)


class NoGradElementwise(Op):
    """Any op whose output carries no gradient (comparisons, sign, floor, argmax...)."""

    differentiable = False

    def forward(self, *arrays, fn):
        return fn(self.xp, *arrays)


def _check_tensor(x, name):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
