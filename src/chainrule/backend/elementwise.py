"""The table of elementwise ops: one row per op, from which every implementation is made.

A row gives the forward ``y = f(x)`` and the local derivative ``dy/dx`` as expressions in a
small language (Python's syntax for arithmetic, one comparison inside ``where``, and the
functions of :data:`FUNCTIONS`), and says whether the derivative reads the input ``x`` or the
output ``y`` (what the forward keeps for the backward). From one row come:

- the compiled CPU kernels (float32 and float64, one pass each way, ``dx = g * dy/dx`` fused),
  generated as C at build time (:func:`c_source`, called by ``setup.py``; the float32
  functions map to branch-free vectorizable versions in ``_native.c``);
- the NumPy code the NumPy namespace runs where the compiled code does not apply, and the
  Tensor code that the Tensor namespace runs under ``create_graph=True`` (so that a backward
  rule is itself differentiable): :func:`python_function`, the same expressions called on a
  namespace;
- CUDA C for CuPy's ``ElementwiseKernel`` (:func:`cuda_kernel_spec`): the expressions are C
  already, and CUDA's math library has the functions under the names used here (with
  :data:`CUDA_PRELUDE` for the three it lacks).

Adding an activation is adding a row. This module imports only the standard library (the build
imports it by path, before NumPy is installed).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

FUNCTIONS = {
    # name: (float32 C function in _native.c, float64 C function, CUDA function)
    "exp": ("exp_f", "exp", "exp"),
    "expm1": ("expm1_f", "expm1", "expm1"),
    "log": ("log_f", "log", "log"),
    "log1p": ("log1p_f", "log1p", "log1p"),
    "tanh": ("tanh_f", "tanh", "tanh"),
    "sqrt": ("sqrtf", "sqrt", "sqrt"),
    "abs": ("fabsf", "fabs", "fabs"),
    "sigmoid": ("sigmoid_f", "sigmoid_d", "cr_sigmoid"),
    "ncdf": ("phi_cdf", "ncdf_d", "cr_ncdf"),
    "powi": ("powi_f", "powi_d", "cr_powi"),
}
"""The functions an expression may call (besides ``where(cond, a, b)``): ``ncdf`` is the
standard normal CDF, ``sigmoid(u) = 1 / (1 + exp(-u))`` and ``powi(x, p)`` is ``x ** p`` for an
exponent ``p`` with ``2 p`` an integer and ``|p| < 16`` (multiplications and a square root; a
half-integral power above 1/2 of -inf is inf, or 0 for its negative, as C's pow; the powers
+-1/2 are sqrt and 1/sqrt, as PyTorch computes them)."""

CUDA_PRELUDE = """\
template <typename T> __device__ T cr_sigmoid(T u) { return T(1) / (T(1) + exp(-u)); }
template <typename T> __device__ T cr_ncdf(T x) {
    return T(0.5) * erfc(-x * T(0.7071067811865476));
}
template <typename T> __device__ T cr_powi(T x, T p) {
    T a = fabs(p); int n = (int)a; T r = 1, b = x;
    for (int k = 0; k < 4; k++) { if (n & (1 << k)) r *= b; b *= b; }
    if (a != (T)n) r = (n && isinf(x) && x < 0) ? T(INFINITY) : r * sqrt(x);
    return p < 0 ? T(1) / r : r;
}
"""
"""Definitions the CUDA expressions need (prepend to an ``ElementwiseKernel``'s preamble)."""


@dataclass(frozen=True)
class Row:
    """One elementwise op: ``forward`` (of ``x`` and the parameters), ``derivative`` (of
    ``x`` or ``y``, as ``reads`` says, and the parameters): dy/dx, which the kernels multiply
    by the incoming gradient ``g``, or, where it names ``g``, the gradient itself (so that a
    zero slope gives 0 even where ``g`` is infinite, as PyTorch's masked gradients do);
    ``keep``: the name of a def that the forward stores beside ``y`` for the backward to
    read instead of computing it again (GELU's Phi(x)); ``defs``: named subexpressions
    ``(name, expression)`` that the forward and derivative may use, computed in order (from
    ``x`` in the forward; from what ``reads`` names in the derivative, so a def used by the
    derivative must be written in terms of it)."""

    name: str
    op: str  # the op's class name (what graphs, profiles and the training doctor show)
    forward: str
    derivative: str
    reads: str = "x"
    params: tuple = ()
    defs: tuple = ()
    keep: str = ""

    def names_used(self, expr):
        return {n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)}

    @property
    def gradient(self) -> str:
        """The gradient's expression in ``g`` and what ``reads`` names."""
        if "g" in self.names_used(self.derivative):
            return self.derivative
        return f"g * ({self.derivative})"


_S2PI = "0.7978845608028654"  # sqrt(2 / pi)
_SELU_A, _SELU_S = "1.6732632423543772", "1.0507009873554805"

TABLE = (
    # (each derivative's comparisons are PyTorch's, so that a NaN input takes the same branch)
    Row("relu", "Relu", "where(x < 0, 0, x)", "where(y <= 0, 0, g)", reads="y"),
    Row("leaky_relu", "LeakyRelu", "where(x > 0, x, x * negative_slope)",
        "where(x > 0, g, g * negative_slope)", params=("negative_slope",)),
    Row("sigmoid", "Sigmoid", "sigmoid(x)", "y * (1 - y)", reads="y"),
    Row("tanh", "Tanh", "tanh(x)", "1 - y * y", reads="y"),
    Row("silu", "Silu", "x * sigmoid(x)", "s * (1 + x * (1 - s))", defs=(("s", "sigmoid(x)"),)),
    Row("gelu", "Gelu", "x * c", "c + x * 0.3989422804014327 * exp(-0.5 * x * x)",
        defs=(("c", "ncdf(x)"),), keep="c"),
    Row("gelu_tanh", "Gelu", "0.5 * x * (1 + t)",
        # (NaN where x^3 overflows or x is infinite, as PyTorch's)
        f"0.5 * (1 + t) + 0.5 * x * (1 - t * t) * {_S2PI} * (1 + 0.134145 * x * x)",
        defs=(("t", f"tanh({_S2PI} * (x + 0.044715 * x * x * x))"),), keep="t"),
    Row("elu", "Elu", "where(x > 0, x, alpha * expm1(x))", "where(x <= 0, alpha * exp(x), 1)",
        params=("alpha",)),
    Row("selu", "Selu", f"{_SELU_S} * where(x > 0, x, {_SELU_A} * expm1(x))",
        f"{_SELU_S} * where(x <= 0, {_SELU_A} * exp(x), 1)"),
    Row("celu", "Celu", "where(x > 0, x, alpha * expm1(x / alpha))",
        "where(x <= 0, exp(x / alpha), 1)", params=("alpha",)),
    Row("softplus", "Softplus", "where(x * beta > threshold, x, log1p(exp(x * beta)) / beta)",
        "where(x * beta > threshold, 1, sigmoid(x * beta))", params=("beta", "threshold")),
    Row("mish", "Mish", "x * t", "t + x * (1 - t * t) * sigmoid(x)",
        defs=(("t", "tanh(where(x > 20, x, log1p(exp(x))))"),)),
    Row("logsigmoid", "LogSigmoid", "where(x < 0, x, 0) - log1p(exp(-abs(x)))",
        "sigmoid(-x)"),
    Row("hardtanh", "Hardtanh", "where(x < min_val, min_val, where(x > max_val, max_val, x))",
        "where(x <= min_val, 0, where(x >= max_val, 0, g))", params=("min_val", "max_val")),
    Row("hardsigmoid", "Hardsigmoid", "where(x + 3 < 0, 0, where(x + 3 > 6, 6, x + 3)) / 6",
        "where(x > -3, where(x < 3, g * 0.16666666666666666, 0), 0)"),
    Row("hardswish", "Hardswish", "x * where(x + 3 < 0, 0, where(x + 3 > 6, 6, x + 3)) / 6",
        "where(x <= -3, 0, where(x >= 3, g, g * (x / 3 + 0.5)))"),
    Row("softsign", "Softsign", "x / (1 + abs(x))", "1 / ((1 + abs(x)) * (1 + abs(x)))"),
    Row("tanhshrink", "Tanhshrink", "x - tanh(x)", "t * t", defs=(("t", "tanh(x)"),)),
    Row("exp", "Exp", "exp(x)", "y", reads="y"),
    Row("expm1", "Expm1", "expm1(x)", "y + 1", reads="y"),
    Row("log", "Log", "log(x)", "1 / x"),
    Row("log1p", "Log1p", "log1p(x)", "1 / (1 + x)"),
    Row("sqrt", "Sqrt", "sqrt(x)", "0.5 / y", reads="y"),
    Row("rsqrt", "Rsqrt", "1 / sqrt(x)", "-0.5 * y * y * y", reads="y"),
    Row("reciprocal", "Reciprocal", "1 / x", "-(y * y)", reads="y"),
    Row("pow", "Pow", "powi(x, exponent)",
        "where(exponent == 0, 0, g * exponent * powi(x, exponent - 1))", params=("exponent",)),
)
"""Every elementwise op with generated kernels."""

ROWS = {r.name: r for r in TABLE}

POWI_MAX = 14.5
"""The ``pow`` row takes an exponent ``p`` with ``2 p`` integral and ``|p| <= POWI_MAX`` (so
that its derivative's ``p - 1`` stays within what ``powi`` computes)."""


def powi_exponent(p) -> bool:
    """Whether a Python number ``p`` is an exponent the ``pow`` row computes exactly (by
    multiplications and at most one square root)."""
    return (type(p) in (int, float) and abs(p) <= POWI_MAX and float(2 * p).is_integer())


# ----------------------------------------------------------------------------- the language

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
           ast.NotEq: "!="}


def _emit(node, call, num, cond):
    """Source text of an expression tree; ``call(name, args)``, ``num(value)`` and
    ``cond(c, a, b)`` spell what differs between the targets."""
    rec = lambda n: _emit(n, call, num, cond)  # noqa: E731
    if isinstance(node, ast.Expression):
        return rec(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return num(float(node.value))
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return f"({rec(node.left)} {_BINOPS[type(node.op)]} {rec(node.right)})"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return f"(-{rec(node.operand)})"
    if (isinstance(node, ast.Compare) and len(node.ops) == 1
            and type(node.ops[0]) in _CMPOPS):
        return f"({rec(node.left)} {_CMPOPS[type(node.ops[0])]} {rec(node.comparators[0])})"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        name, args = node.func.id, [rec(a) for a in node.args]
        if name == "where" and len(args) == 3:
            return cond(*args)
        if name in FUNCTIONS:
            return call(name, args)
    raise ValueError(f"elementwise table: cannot translate {ast.unparse(node)!r}")


def _check(row: Row):
    inputs = {"x", "g"} if row.reads == "x" else {"y", "g"}
    known = set(row.params) | set(FUNCTIONS) | {"where"}
    defined = {dname for dname, _ in row.defs}
    if row.keep and row.keep not in defined:
        raise ValueError(f"elementwise table: row {row.name!r} keeps {row.keep!r}, not a def")
    if row.keep and row.reads != "x":
        raise ValueError(f"elementwise table: row {row.name!r} keeps a def but reads y")
    for what, expr, allowed in (("forward", row.forward, {"x"} | defined),
                                ("derivative", row.derivative, inputs | defined)):
        bad = row.names_used(expr) - allowed - known
        if bad:
            raise ValueError(f"elementwise table: row {row.name!r} {what} uses "
                             f"{sorted(bad)}, which it does not have")


def _defs_for(row: Row, expr: str, given=()):
    """The defs an expression needs (transitively), in the row's order, less those ``given``."""
    need = row.names_used(expr)
    out = []
    for dname, dexpr in reversed(row.defs):
        if dname in need and dname not in given:
            out.append((dname, dexpr))
            need |= row.names_used(dexpr)
    return out[::-1]


def _c_num(ctype):
    def num(v):
        s = repr(v)
        if "inf" in s or "nan" in s:
            raise ValueError(f"elementwise table: literal {v!r}")
        return s + ("f" if ctype == "float" else "")
    return num


def _c_expr(expr: str, ctype: str, k: int):
    """C for ``expr`` in ``ctype`` (float: k = 0, double: k = 1, CUDA: k = 2)."""
    def call(name, args):
        return f"{FUNCTIONS[name][k]}({', '.join(args)})"

    def cond(c, a, b):
        return f"({c} ? ({ctype})({a}) : ({ctype})({b}))"
    num = _c_num(ctype) if k < 2 else (lambda v: f"(({ctype}){v!r})")
    return _emit(ast.parse(expr, mode="eval"), call, num, cond)


def c_source() -> str:
    """The C of every row's kernels (float32 and float64, forward and backward) and the tables
    ``_native.c`` dispatches on: included by ``_native.c`` as ``_elementwise.h``, written at
    build time by ``setup.py``."""
    out = ["/* Generated from chainrule/backend/elementwise.py at build time. */", ""]
    for row in TABLE:
        _check(row)
        for ctype, k, sfx in (("float", 0, "f32"), ("double", 1, "f64")):
            pnames = "".join(f"    const {ctype} {p} = ({ctype})P[{i}];\n"
                             for i, p in enumerate(row.params))
            fdefs = "".join(f"        const {ctype} {d} = {_c_expr(e, ctype, k)};\n"
                            for d, e in _defs_for(row, row.forward))
            keep = f"        K[i] = {row.keep};\n" if row.keep else ""
            out.append(
                f"MULTIVERSION static void ew_{row.name}_fwd_{sfx}(const {ctype} *restrict X, "
                f"{ctype} *restrict Y, {ctype} *restrict K, Py_ssize_t n, const double *P) "
                f"{{\n{pnames}"
                f"    for (Py_ssize_t i = 0; i < n; i++) {{\n"
                f"        const {ctype} x = X[i];\n{fdefs}"
                f"        Y[i] = {_c_expr(row.forward, ctype, k)};\n{keep}    }}\n}}\n")
            given = (row.keep,) if row.keep else ()
            bdefs = "".join(f"        const {ctype} {d} = {_c_expr(e, ctype, k)};\n"
                            for d, e in _defs_for(row, row.gradient, given))
            kept = f"        const {ctype} {row.keep} = K[i];\n" if row.keep else ""
            v = row.reads
            out.append(
                f"MULTIVERSION static void ew_{row.name}_bwd_{sfx}(const {ctype} *restrict S, "
                f"const {ctype} *restrict K, const {ctype} *restrict G, {ctype} *restrict D, "
                f"Py_ssize_t n, const double *P) {{\n{pnames}"
                f"    for (Py_ssize_t i = 0; i < n; i++) {{\n"
                f"        const {ctype} {v} = S[i];\n        const {ctype} g = G[i];\n"
                f"{kept}{bdefs}"
                f"        D[i] = {_c_expr(row.gradient, ctype, k)};\n    }}\n}}\n")
    names = ", ".join(f'"{r.name}"' for r in TABLE)
    out.append(f"#define EW_COUNT {len(TABLE)}")
    out.append(f"static const char *const EW_NAMES[EW_COUNT] = {{{names}}};")
    out.append(f"static const int EW_NPARAMS[EW_COUNT] = "
               f"{{{', '.join(str(len(r.params)) for r in TABLE)}}};")
    out.append(f"static const int EW_KEEPS[EW_COUNT] = "
               f"{{{', '.join(str(int(bool(r.keep))) for r in TABLE)}}};")
    for sfx, ctype in (("f32", "float"), ("f64", "double")):
        out.append(f"static void (*const EW_FWD_{sfx.upper()}[EW_COUNT])(const {ctype} *, "
                   f"{ctype} *, {ctype} *, Py_ssize_t, const double *) = "
                   f"{{{', '.join(f'ew_{r.name}_fwd_{sfx}' for r in TABLE)}}};")
        out.append(f"static void (*const EW_BWD_{sfx.upper()}[EW_COUNT])(const {ctype} *, "
                   f"const {ctype} *, const {ctype} *, {ctype} *, Py_ssize_t, "
                   f"const double *) = "
                   f"{{{', '.join(f'ew_{r.name}_bwd_{sfx}' for r in TABLE)}}};")
    return "\n".join(out) + "\n"


def cuda_kernel_spec(row: Row):
    """The pieces of CuPy ``ElementwiseKernel``s for a row, generic in the type ``T``:
    ``{"forward": (in_params, out_params, operation), "backward": (...)}``. Forward inputs:
    ``x`` and the params; outputs ``y`` (and ``kept_`` for a row with ``keep``). Backward
    inputs: the read value (``x`` or ``y``), ``g``, ``kept_`` where kept, and the params;
    output ``dx``. The preamble is :data:`CUDA_PRELUDE`."""
    params = "".join(f", T {p}" for p in row.params)

    def stmts(expr, given=()):
        return "".join(f"T {d} = {_c_expr(e, 'T', 2)}; "
                       for d, e in _defs_for(row, expr, given))
    fwd = stmts(row.forward) + f"y = {_c_expr(row.forward, 'T', 2)};"
    fwd_out = "T y"
    if row.keep:
        fwd += f" kept_ = {row.keep};"
        fwd_out += ", T kept_"
    given = (row.keep,) if row.keep else ()
    bwd = (f"T {row.keep} = kept_; " if row.keep else "") + stmts(row.gradient, given)
    bwd += f"dx = {_c_expr(row.gradient, 'T', 2)};"
    bwd_in = f"T {row.reads}, T g" + (", T kept_" if row.keep else "") + params
    return {"forward": ("T x" + params, fwd_out, fwd), "backward": (bwd_in, "T dx", bwd)}


def python_function(row: Row, which: str):
    """A Python function computing the row's forward, ``f(x, params, M)`` (``which="forward"``;
    ``(y, kept)`` for a row with ``keep``)
    or its gradient, ``f(v, g, params, M)`` (``"backward"``, ``v`` what ``reads`` names), with
    the functions of the namespace object ``M`` (``M.exp``, ``M.where``, ...). On NumPy arrays
    it is the NumPy fallback; on Tensors, the differentiable version. The backward of a row
    with ``keep`` takes ``kept=`` (what the forward stored), and computes it again without."""
    expr = row.forward if which == "forward" else row.gradient
    v = "x" if which == "forward" else f"{row.reads}, g"
    given, tail = (), ""
    if which != "forward" and row.keep:  # the kept def when given, else computed again
        tail = ", kept=None"

    def call(name, args):
        return f"M.{name}({', '.join(args)})"

    def cond(c, a, b):
        return f"M.where({c}, {a}, {b})"
    body = [f"    {p} = params[{i}]" for i, p in enumerate(row.params)]
    for d, e in _defs_for(row, expr, given):
        code = _emit(ast.parse(e, mode="eval"), call, repr, cond)
        if which != "forward" and d == row.keep:
            code = f"kept if kept is not None else {code}"
        body.append(f"    {d} = {code}")
    ret = _emit(ast.parse(expr, mode="eval"), call, repr, cond)
    if which == "forward" and row.keep:
        ret += f", {row.keep}"
    body.append(f"    return {ret}")
    src = f"def {row.name}_{which}({v}, params, M{tail}):\n" + "\n".join(body) + "\n"
    scope: dict = {}
    exec(compile(src, f"<elementwise {row.name} {which}>", "exec"), scope)  # noqa: S102
    return scope[f"{row.name}_{which}"]
