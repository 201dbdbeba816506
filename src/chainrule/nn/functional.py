"""chainrule.nn.functional (import as F): layers and losses as functions, PyTorch's names and
arguments. The heavy ones are fused ops (see :mod:`chainrule.nn.fused` and
:mod:`chainrule.nn.conv`); the rest are short compositions of chainrule's primitive ops."""

from __future__ import annotations

import math
import numbers

from .. import ops as P
from ..backend import numpy_ns as _host  # Python data (lists, scalars) as host arrays
from ..dtypes import bool_, int64
from ..ops.activation import gelu as _gelu
from ..tensor import ShapeError, Tensor
from . import conv, fused
from . import functional_extra as _extra
from . import functional_resample as _resample
from .ctc import ctc_loss as ctc_loss
from .functional_extra import *  # noqa: F403  (batch/instance/group norm, more activations)
from .functional_resample import *  # noqa: F403  (transposed conv, resampling, unfold/fold)

# activations and softmax: the op library's fused ops, under F. ``inplace=`` is PyTorch's
# keyword; the result is a new tensor (chainrule changes no tensor inside the graph in place).
tanh = P.tanh
sigmoid = P.sigmoid
softplus = P.softplus


def relu(input, inplace=False):
    """y = max(x, 0)."""
    return P.relu(input)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """y = x if x > 0 else negative_slope x."""
    return P.leaky_relu(input, negative_slope)


def silu(input, inplace=False):
    """y = x sigmoid(x)."""
    return P.silu(input)


softmax = P.softmax
log_softmax = P.log_softmax
pad = P.pad


def gelu(input, approximate="none"):
    """y = x Phi(x) (Phi the standard normal CDF), or its tanh approximation; the op library's
    GELU (rows ``gelu`` and ``gelu_tanh`` of the elementwise table, one compiled pass)."""
    return _gelu(input, approximate)


def _tensor(x, op, name="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
    return x


def _float(x, op, name="input"):
    _tensor(x, op, name)
    if x._data.dtype.kind != "f":
        raise TypeError(
            f"{op}: {name} must be a floating tensor, got dtype {x.dtype}; convert with .float()"
        )
    return x


def _same_dtype(x, w, op, wname="weight"):
    if w is not None and x._data.dtype != w._data.dtype:
        raise TypeError(
            f"{op}: input dtype {x.dtype} differs from {wname} dtype {w.dtype}; convert one "
            f"(e.g. input.to({w.dtype}))"
        )


def _reduction(reduction, op):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


# ----------------------------------------------------------------------------- layers


def linear(input, weight, bias=None):
    """y = input @ weight^T + bias, weight (out_features, in_features)."""
    _float(input, "linear")
    _float(weight, "linear", "weight")
    if weight.ndim != 2:
        raise ShapeError(f"linear: weight must be 2-d (out, in), got shape {tuple(weight.shape)}")
    if input.ndim == 0 or input._data.shape[-1] != weight._data.shape[1]:
        raise ShapeError(
            f"linear: input of shape {tuple(input.shape)} received, expected (*, "
            f"{weight.shape[1]}) to match weight of shape {tuple(weight.shape)}"
        )
    _same_dtype(input, weight, "linear")
    if bias is not None:
        _same_dtype(input, bias, "linear", "bias")
        if tuple(bias.shape) != (weight.shape[0],):
            raise ShapeError(
                f"linear: bias of shape {tuple(bias.shape)}, expected ({weight.shape[0]},)"
            )
    return fused.apply_present(fused.LinearOp, input, weight, bias)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only)."""
    _float(input, "dropout")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    return fused.DropoutOp.apply(input, p=p)


def embedding(input, weight, padding_idx=None):
    """Rows of ``weight`` (num_embeddings, embedding_dim) at the integer ``input`` indices."""
    idx = input._data if isinstance(input, Tensor) else _host.asarray(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(
            f"embedding: indices must be an integer tensor, got dtype {idx.dtype}; convert "
            "with .long()"
        )
    _float(weight, "embedding", "weight")
    V = weight.shape[0]
    if idx.size and (idx.min() < -V or idx.max() >= V):
        bad = idx.max() if idx.max() >= V else idx.min()
        raise IndexError(
            f"embedding: index {int(bad)} out of range for a table of {V} embeddings "
            f"(expected 0..{V - 1})"
        )
    if padding_idx is not None and padding_idx < 0:
        padding_idx += V
    return fused.EmbeddingOp.apply(weight, idx, padding_idx=padding_idx)


def _norm_shape(normalized_shape):
    if isinstance(normalized_shape, numbers.Integral):
        return (int(normalized_shape),)
    return tuple(int(s) for s in normalized_shape)


def _check_norm(input, shape, weight, bias, op):
    _float(input, op)
    if tuple(input.shape[input.ndim - len(shape):]) != shape or input.ndim < len(shape):
        raise ShapeError(
            f"{op}: input of shape {tuple(input.shape)} received, expected (*, "
            f"{', '.join(map(str, shape))}) (trailing dims = normalized_shape)"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _same_dtype(input, t, op, name)
            if tuple(t.shape) != shape:
                raise ShapeError(f"{op}: {name} of shape {tuple(t.shape)}, expected {shape}")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize over the trailing ``normalized_shape`` dims: (x - mean) / sqrt(var + eps),
    then scale by weight and shift by bias."""
    shape = _norm_shape(normalized_shape)
    _check_norm(input, shape, weight, bias, "layer_norm")
    if weight is None and bias is not None:
        weight = Tensor._wrap(input.xp.ones(shape, dtype=input.dtype))
    return fused.apply_present(fused.LayerNormOp, input, weight, bias, n=math.prod(shape), eps=eps)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x^2) + eps) * weight over the trailing dims (eps defaults to the dtype's
    machine epsilon, as PyTorch)."""
    shape = _norm_shape(normalized_shape)
    _check_norm(input, shape, weight, None, "rms_norm")
    if eps is None:
        eps = float(input.xp.finfo(input.dtype).eps)
    return fused.apply_present(fused.RMSNormOp, input, weight, n=math.prod(shape), eps=eps)


# ----------------------------------------------------------------------------- attention


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None):
    """softmax(q k^T * scale + mask) @ v over the last two dims (scale = 1/sqrt(E) by default).

    ``attn_mask``: boolean (True = may attend) or additive float, broadcastable to (..., L, S);
    ``is_causal`` masks j > i; ``dropout_p`` drops attention weights (always applied: pass 0
    in evaluation).
    """
    op = "scaled_dot_product_attention"
    for name, t in (("query", query), ("key", key), ("value", value)):
        _float(t, op, name)
        if t.ndim < 2:
            raise ShapeError(f"{op}: {name} must have at least 2 dims (..., L, E), got "
                             f"shape {tuple(t.shape)}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ShapeError(
            f"{op}: query {tuple(query.shape)}, key {tuple(key.shape)}, value "
            f"{tuple(value.shape)}: expected (..., L, E), (..., S, E), (..., S, Ev)"
        )
    if query.dtype != key.dtype or query.dtype != value.dtype:
        raise TypeError(f"{op}: query, key and value dtypes differ ({query.dtype}, {key.dtype}, "
                        f"{value.dtype})")
    if is_causal and attn_mask is not None:
        raise ValueError(f"{op}: pass either attn_mask or is_causal=True, not both")
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    mask = attn_mask
    if mask is not None:
        if not isinstance(mask, Tensor):
            mask = Tensor._wrap(_host.asarray(mask))
        if mask.dtype != bool_:
            mask = mask.type(query.dtype)
        L, S = query.shape[-2], key.shape[-2]
        try:
            _host.broadcast_shapes(tuple(mask.shape), tuple(query.shape[:-2]) + (L, S))
        except ValueError:
            raise ShapeError(
                f"{op}: attn_mask of shape {tuple(mask.shape)} does not broadcast to the "
                f"attention weights' shape {tuple(query.shape[:-2]) + (L, S)}"
            ) from None
    return fused.apply_present(fused.AttentionOp, query, key, value, mask, scale=float(scale),
                               causal=bool(is_causal), dropout_p=float(dropout_p))


# ----------------------------------------------------------------------------- losses


def _class_last(input, op):
    """(M, C) view of logits whose class dim is 1 (or 0 for a 1-d input)."""
    if input.ndim == 1:
        return input.reshape(1, -1)
    if input.ndim == 2:
        return input
    C = input.shape[1]
    return P.movedim(input, 1, -1).reshape(-1, C)


def _weight_array(weight, C, dtype, op):
    if weight is None:
        return None
    w = weight._data if isinstance(weight, Tensor) else _host.asarray(weight)
    if w.shape != (C,):
        raise ShapeError(f"{op}: weight of shape {tuple(w.shape)}, expected ({C},) (one per "
                         "class)")
    return w.astype(dtype, copy=False)


def _classes_last(input, target):
    """True for integer targets shaped like the input without its last dim, where PyTorch's
    class-dim-1 reading does not fit: the classes are then the last dim (an extension)."""
    t = target._data if isinstance(target, Tensor) else _host.asarray(target)
    if input.ndim < 3 or t.dtype.kind not in "iu":
        return False
    pytorch = (input.shape[0],) + tuple(input.shape[2:])
    return tuple(t.shape) == tuple(input.shape[:-1]) and tuple(t.shape) != pytorch


def _flat_targets(target):
    t = target._data if isinstance(target, Tensor) else _host.asarray(target)
    return Tensor._wrap(t.reshape(-1))


def _check_targets(input, target, op):
    """Validate class-index targets against (N, C, d1...) input; returns the int array."""
    t = target._data if isinstance(target, Tensor) else _host.asarray(target)
    if input.ndim == 1:
        expected = ()
    else:
        expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(t.shape) != expected:
        raise ShapeError(
            f"{op}: target of shape {tuple(t.shape)} received, expected {expected} for input of "
            f"shape {tuple(input.shape)} (class dim 1)"
        )
    return t


def _check_range(t, C, ignore_index, op):
    if t.size == 0:
        return
    valid = t[t != ignore_index]
    if valid.size and (valid.min() < 0 or valid.max() >= C):
        bad = int(valid.max() if valid.max() >= C else valid.min())
        raise IndexError(
            f"{op}: target contains class {bad} but the input has {C} classes (expected 0.."
            f"{C - 1}, or ignore_index={ignore_index})"
        )


def _restore(loss, input, reduction):
    if reduction != "none":
        return loss
    if input.ndim == 1:
        return loss.reshape(())
    return loss.reshape((input.shape[0],) + tuple(input.shape[2:]))


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross-entropy of logits ``input`` (C,), (N, C) or (N, C, d1, ...) against class indices
    (integer target of shape (), (N,) or (N, d1, ...)) or class probabilities (float target
    shaped like the input). Fused with log-softmax; see :class:`fused.CrossEntropyOp`.

    Beyond PyTorch: logits (..., C) with integer targets (...) (say (B, T, V) and (B, T)),
    which PyTorch rejects, are read with the classes in the last dim.
    """
    op = "cross_entropy"
    _float(input, op)
    _reduction(reduction, op)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if _classes_last(input, target):
        # (..., C) logits with (...) indices, e.g. (B, T, V) and (B, T): rows of classes
        loss = cross_entropy(input.reshape(-1, input.shape[-1]), _flat_targets(target), weight,
                             ignore_index, reduction, label_smoothing)
        return loss.reshape(tuple(target.shape)) if reduction == "none" else loss
    C = input.shape[0] if input.ndim == 1 else input.shape[1]
    w = _weight_array(weight, C, input.dtype, op)
    x2 = _class_last(input, op)
    tdtype = target.dtype if isinstance(target, Tensor) else _host.asarray(target).dtype
    if tdtype.kind == "f":
        if tuple(target.shape) != tuple(input.shape):
            raise ShapeError(
                f"{op}: probability target of shape {tuple(target.shape)} received, expected the "
                f"input's shape {tuple(input.shape)}"
            )
        if not isinstance(target, Tensor):
            target = Tensor._wrap(_host.asarray(target))
        y2 = _class_last(target.type(input.dtype), op)
        loss = fused.SoftCrossEntropyOp.apply(x2, y2, weight=w, label_smoothing=label_smoothing,
                                              reduction=reduction)
        return _restore(loss, input, reduction)
    if tdtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold class indices (integer) or probabilities "
                        f"(float), got dtype {tdtype}")
    t = _check_targets(input, target, op)
    _check_range(t, C, ignore_index, op)
    loss = fused.CrossEntropyOp.apply(x2, t=t.reshape(-1), weight=w, ignore_index=ignore_index,
                                      label_smoothing=label_smoothing, reduction=reduction)
    return _restore(loss, input, reduction)


def _pair2(v, name, op):
    if isinstance(v, numbers.Integral):
        return (int(v), int(v))
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair, got {v}")
    return v


def _batched4(input, op, what="(N, C, H, W) or (C, H, W)"):
    _float(input, op)
    if input.ndim == 3:
        return input.unsqueeze(0), True
    if input.ndim != 4:
        raise ShapeError(f"{op}: input of shape {tuple(input.shape)} received, expected {what}")
    return input, False


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d cross-correlation (PyTorch's conv2d): input (N, C, H, W), weight (O, C/groups, kh,
    kw); padding an int, a pair, 'valid' or 'same' (stride 1)."""
    op = "conv2d"
    x, unbatched = _batched4(input, op)
    _float(weight, op, "weight")
    if weight.ndim != 4:
        raise ShapeError(f"{op}: weight must be 4-d (out, in/groups, kh, kw), got shape "
                         f"{tuple(weight.shape)}")
    _same_dtype(x, weight, op)
    N, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    if groups < 1 or C % groups or O % groups or C // groups != Cg:
        raise ShapeError(
            f"{op}: input of shape {tuple(input.shape)} with groups={groups} received, expected "
            f"{Cg * groups} input channels for weight of shape {tuple(weight.shape)} (and out "
            f"channels divisible by groups)"
        )
    stride, dilation = _pair2(stride, "stride", op), _pair2(dilation, "dilation", op)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1, got {stride}")
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            if th % 2 or tw % 2:  # odd total padding: the extra row/column goes right/bottom
                x = P.pad(x, (tw // 2, tw - tw // 2, th // 2, th - th // 2))
                padding = (0, 0)
            else:
                padding = (th // 2, tw // 2)
        else:
            raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', got "
                             f"{padding!r}")
    padding = _pair2(padding, "padding", op)
    if bias is not None:
        _same_dtype(x, bias, op, "bias")
        if tuple(bias.shape) != (O,):
            raise ShapeError(f"{op}: bias of shape {tuple(bias.shape)}, expected ({O},)")
    Hx, Wx = x.shape[2], x.shape[3]
    for n, k, s_, p_, d_ in ((Hx, kh, stride[0], padding[0], dilation[0]),
                             (Wx, kw, stride[1], padding[1], dilation[1])):
        if conv.out_size(n, k, s_, p_, d_) < 1:
            raise ShapeError(
                f"{op}: input of shape {tuple(input.shape)} received: a {kh}x{kw} kernel (dilation"
                f" {dilation}, padding {padding}) needs spatial size at least {d_ * (k - 1) + 1}"
                f" with padding included"
            )
    y = fused.apply_present(conv.Conv2dOp, x, weight, bias, stride=stride, padding=padding,
                            dilation=dilation, groups=groups)
    return y.squeeze(0) if unbatched else y


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d cross-correlation: input (N, C, L), weight (O, C/groups, k); run as conv2d over a
    height of 1."""
    op = "conv1d"
    _float(input, op)
    if input.ndim not in (2, 3):
        raise ShapeError(f"{op}: input of shape {tuple(input.shape)} received, expected (N, C, L)"
                         " or (C, L)")
    if weight.ndim != 3:
        raise ShapeError(f"{op}: weight must be 3-d (out, in/groups, k), got shape "
                         f"{tuple(weight.shape)}")
    O, Cg, k = weight.shape
    C = input.shape[-2]
    if groups < 1 or C % groups or O % groups or C // groups != Cg:
        raise ShapeError(
            f"{op}: input of shape {tuple(input.shape)} with groups={groups} received, expected "
            f"{Cg * groups} input channels for weight of shape {tuple(weight.shape)} (and out "
            f"channels divisible by groups)"
        )
    if bias is not None and tuple(bias.shape) != (O,):
        raise ShapeError(f"{op}: bias of shape {tuple(bias.shape)}, expected ({O},)")
    if not isinstance(padding, str):
        def one(v):
            return int(v) if isinstance(v, numbers.Integral) else int(tuple(v)[0])

        if conv.out_size(input.shape[-1], k, one(stride), one(padding), one(dilation)) < 1:
            raise ShapeError(
                f"{op}: input of shape {tuple(input.shape)} received: a kernel of size {k} "
                f"(dilation {one(dilation)}, padding {one(padding)}) needs length at least "
                f"{one(dilation) * (k - 1) + 1} with padding included"
            )

    def along_w(v, h):  # a 1-d argument as the pair (h, v) of the 2-d convolution
        return v if isinstance(v, str) else (h, int(v) if isinstance(v, numbers.Integral)
                                             else int(tuple(v)[0]))

    y = conv2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, along_w(stride, 1),
               along_w(padding, 0), along_w(dilation, 1), groups)
    return y.squeeze(-2)


def _pool_args(input, kernel_size, stride, padding, dilation, ceil_mode, op):
    x, unbatched = _batched4(input, op)
    k = _pair2(kernel_size, "kernel_size", op)
    s = k if stride is None or (not isinstance(stride, numbers.Integral) and len(stride) == 0) \
        else _pair2(stride, "stride", op)
    p, d = _pair2(padding, "padding", op), _pair2(dilation, "dilation", op)
    if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
        raise ValueError(f"{op}: padding {p} must be at most half the kernel size {k}")
    H, W = x.shape[2], x.shape[3]
    out = (conv.out_size(H, k[0], s[0], p[0], d[0], ceil_mode),
           conv.out_size(W, k[1], s[1], p[1], d[1], ceil_mode))
    if out[0] < 1 or out[1] < 1:
        raise ShapeError(f"{op}: input of shape {tuple(input.shape)} received, too small for "
                         f"kernel {k} with padding {p} and dilation {d}")
    return x, unbatched, k, s, p, d, out


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Maximum over each window (stride defaults to the kernel size)."""
    x, unbatched, k, s, p, d, out = _pool_args(input, kernel_size, stride, padding, dilation,
                                               ceil_mode, "max_pool2d")
    y = conv.MaxPool2dOp.apply(x, kernel=k, stride=s, padding=p, dilation=d, out_hw=out)
    if return_indices:
        from ..autograd import no_grad

        with no_grad():  # the indices, from the same windows (no gradient)
            op = conv.MaxPool2dOp()
            op.xp = x.xp
            op.forward(x._data, kernel=k, stride=s, padding=p, dilation=d, out_hw=out)
            idx = Tensor._wrap(op.indices(x.shape[3]))
        if unbatched:
            return y.squeeze(0), idx.squeeze(0)
        return y, idx
    return y.squeeze(0) if unbatched else y


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Mean over each window (zero padding counted when ``count_include_pad``)."""
    x, unbatched, k, s, p, _, out = _pool_args(input, kernel_size, stride, padding, 1,
                                               ceil_mode, "avg_pool2d")
    if divisor_override is not None:
        divisor = float(divisor_override)
    else:
        divisor = conv.avg_divisor(x.xp, x.shape[2], x.shape[3], k, s, p, out,
                                   count_include_pad, x.dtype)
        if (divisor == divisor.flat[0]).all():
            divisor = float(divisor.flat[0])
    y = conv.AvgPool2dOp.apply(x, kernel=k, stride=s, padding=p, out_hw=out, divisor=divisor)
    return y.squeeze(0) if unbatched else y


def _adaptive_matrix(xp, n, o, dtype):
    """(o, n) averaging matrix: row i averages [floor(i n / o), ceil((i + 1) n / o))."""
    m = xp.zeros((o, n), dtype=dtype)
    for i in range(o):
        a, b = (i * n) // o, -((-(i + 1) * n) // o)
        m[i, a:b] = 1.0 / (b - a)
    return m


def adaptive_avg_pool2d(input, output_size):
    """Average over PyTorch's adaptive windows so the output is ``output_size``; the windows are
    products of row and column intervals, so y = A_h x A_w^T with averaging matrices."""
    x, unbatched = _batched4(input, "adaptive_avg_pool2d")
    H, W = x.shape[2], x.shape[3]
    oh, ow = (output_size, output_size) if isinstance(output_size, numbers.Integral) or \
        output_size is None else tuple(output_size)
    oh, ow = H if oh is None else int(oh), W if ow is None else int(ow)
    if (oh, ow) == (1, 1):
        y = x.mean(dim=(2, 3), keepdim=True)
    elif H % oh == 0 and W % ow == 0:
        y = avg_pool2d(x, (H // oh, W // ow))
    else:
        Ah = Tensor._wrap(_adaptive_matrix(x.xp, H, oh, x.dtype))
        Aw = Tensor._wrap(_adaptive_matrix(x.xp, W, ow, x.dtype).T.copy())
        y = Ah @ x @ Aw
    return y.squeeze(0) if unbatched else y


def one_hot(tensor, num_classes=-1):
    """int64 (..., num_classes) with a 1 at each index (num_classes = max + 1 by default)."""
    xp = tensor.xp if isinstance(tensor, Tensor) else _host
    idx = tensor._data if isinstance(tensor, Tensor) else xp.asarray(tensor)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected an integer tensor, got dtype {idx.dtype}")
    if num_classes < 0:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
        raise ValueError(f"one_hot: class values must be in [0, {num_classes}), got "
                         f"{int(idx.min())}..{int(idx.max())}")
    return Tensor._wrap((idx[..., None] == xp.arange(num_classes)).astype(int64))


# ----------------------------------------------------------------------------- more losses


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _pointwise_pair(input, target, op):
    _float(input, op)
    if not isinstance(target, Tensor):
        target = Tensor._wrap(input.xp.asarray(target, dtype=input.dtype))
    if tuple(target.shape) != tuple(input.shape):
        raise ShapeError(f"{op}: target of shape {tuple(target.shape)} received, expected the "
                         f"input's shape {tuple(input.shape)}")
    return target


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """-input[i, t_i] w_{t_i} for log-probabilities ``input`` (C,), (N, C) or (N, C, d...);
    'mean' divides by the summed weights of the non-ignored targets."""
    op = "nll_loss"
    _float(input, op)
    _reduction(reduction, op)
    if _classes_last(input, target):
        loss = nll_loss(input.reshape(-1, input.shape[-1]), _flat_targets(target), weight,
                        ignore_index, reduction)
        return loss.reshape(tuple(target.shape)) if reduction == "none" else loss
    C = input.shape[0] if input.ndim == 1 else input.shape[1]
    t = _check_targets(input, target, op).reshape(-1)
    _check_range(t, C, ignore_index, op)
    w = _weight_array(weight, C, input.dtype, op)
    x2 = _class_last(input, op)
    valid = t != ignore_index
    xp = input.xp
    ti = xp.where(valid, t, 0)
    wt = (w[ti] if w is not None else xp.ones(t.shape, input.dtype)) * valid
    wt = wt.astype(input.dtype)
    picked = P.gather(x2, 1, ti.reshape(-1, 1)).reshape(-1)
    loss = -picked * Tensor._wrap(wt)
    if reduction == "mean":
        return loss.sum() / float(wt.sum())
    return _restore(_reduce(loss, reduction), input, reduction)


def mse_loss(input, target, reduction="mean"):
    """(input - target)^2, reduced."""
    _reduction(reduction, "mse_loss")
    target = _pointwise_pair(input, target, "mse_loss")
    d = input - target
    return _reduce(d * d, reduction)


def l1_loss(input, target, reduction="mean"):
    """|input - target|, reduced."""
    _reduction(reduction, "l1_loss")
    target = _pointwise_pair(input, target, "l1_loss")
    return _reduce(P.abs(input - target), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target)."""
    _reduction(reduction, "smooth_l1_loss")
    target = _pointwise_pair(input, target, "smooth_l1_loss")
    d = P.abs(input - target)
    if beta == 0:
        return _reduce(d, reduction)
    loss = P.where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta)
    return _reduce(loss, reduction)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta)."""
    _reduction(reduction, "huber_loss")
    target = _pointwise_pair(input, target, "huber_loss")
    d = P.abs(input - target)
    return _reduce(P.where(d < delta, d * d * 0.5, (d - 0.5 * delta) * delta), reduction)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """-w (y log x + (1 - y) log(1 - x)) for probabilities x, each log clamped at -100 (as
    PyTorch)."""
    op = "binary_cross_entropy"
    _reduction(reduction, op)
    target = _pointwise_pair(input, target, op)
    lo, hi = float(input._data.min()) if input.numel() else 0.0, \
        float(input._data.max()) if input.numel() else 0.0
    if lo < 0 or hi > 1:
        raise ValueError(f"{op}: input values must be probabilities in [0, 1], got "
                         f"{lo:g}..{hi:g}; use binary_cross_entropy_with_logits for logits")
    loss = -(target * P.clamp(P.log(input), min=-100.0)
             + (1 - target) * P.clamp(P.log(1 - input), min=-100.0))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """-w (p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))), computed stably as
    (1 - y) x + (1 + (p - 1) y) softplus(-x)."""
    op = "binary_cross_entropy_with_logits"
    _reduction(reduction, op)
    target = _pointwise_pair(input, target, op)
    sp = P.softplus(-input)  # log(1 + exp(-x)) = -log sigmoid(x)
    if pos_weight is not None:
        loss = (1 - target) * input + (1 + (pos_weight - 1) * target) * sp
    else:
        loss = (1 - target) * input + sp
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def kl_div(input, target, reduction="mean", log_target=False):
    """Pointwise KL: target (log target - input) with input log-probabilities (0 where
    target = 0); 'batchmean' divides the sum by the batch size."""
    op = "kl_div"
    if reduction not in ("mean", "sum", "none", "batchmean"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum', 'none' or 'batchmean', got "
                         f"{reduction!r}")
    target = _pointwise_pair(input, target, op)
    if log_target:
        loss = P.exp(target) * (target - input)
    else:
        pos = target > 0
        safe = P.where(pos, target, 1.0)
        loss = P.where(pos, target * P.log(safe), 0.0) - target * input
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


def _in_place(f, name):
    def f_(input, *args, **kwargs):
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(input).__name__}")
        return input._inplace(f(input, *args, **kwargs), name)

    f_.__name__ = f_.__qualname__ = name
    f_.__doc__ = f"{f.__name__}, written into the input (outside the graph, as every in-place op)."
    return f_


# PyTorch's in-place activations: the input changed and returned
relu_ = _in_place(relu, "relu_")
leaky_relu_ = _in_place(leaky_relu, "leaky_relu_")
elu_ = _in_place(_extra.elu, "elu_")
celu_ = _in_place(_extra.celu, "celu_")
selu_ = _in_place(_extra.selu, "selu_")
hardtanh_ = _in_place(_extra.hardtanh, "hardtanh_")
threshold_ = _in_place(_extra.threshold, "threshold_")
rrelu_ = _in_place(_extra.rrelu, "rrelu_")


__all__ = [
    "relu_", "leaky_relu_", "elu_", "celu_", "selu_", "hardtanh_", "threshold_", "rrelu_",
    "linear", "relu", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "softplus", "softmax",
    "log_softmax", "pad", "dropout", "embedding", "layer_norm", "rms_norm",
    "scaled_dot_product_attention", "cross_entropy", "conv1d", "conv2d", "max_pool2d",
    "avg_pool2d", "adaptive_avg_pool2d", "one_hot", "nll_loss", "mse_loss", "l1_loss",
    "smooth_l1_loss", "huber_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "kl_div", "ctc_loss",
] + _extra.__all__ + _resample.__all__
