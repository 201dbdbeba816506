"""chainrule.nn.functional (import as F): layers and losses as functions, PyTorch's names and
arguments. The heavy ones are fused ops (see :mod:`chainrule.nn.fused`); the rest are short
compositions of chainrule's primitive ops."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import ops as P
from ..tensor import Tensor
from . import fused

# activations and softmax: the op library's fused ops, re-exported under F
relu = P.relu
gelu = P.gelu
silu = P.silu
tanh = P.tanh
sigmoid = P.sigmoid
leaky_relu = P.leaky_relu
softplus = P.softplus
softmax = P.softmax
log_softmax = P.log_softmax
pad = P.pad


def _tensor(x, op, name="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
    return x


def _float(x, op, name="input"):
    _tensor(x, op, name)
    if x.data.dtype.kind != "f":
        raise TypeError(
            f"{op}: {name} must be a floating tensor, got dtype {x.dtype}; convert with .float()"
        )
    return x


def _same_dtype(x, w, op, wname="weight"):
    if w is not None and x.data.dtype != w.data.dtype:
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
        raise ValueError(f"linear: weight must be 2-d (out, in), got shape {tuple(weight.shape)}")
    if input.ndim == 0 or input.data.shape[-1] != weight.data.shape[1]:
        raise ValueError(
            f"linear: input of shape {tuple(input.shape)} received, expected (*, "
            f"{weight.shape[1]}) to match weight of shape {tuple(weight.shape)}"
        )
    _same_dtype(input, weight, "linear")
    if bias is not None:
        _same_dtype(input, bias, "linear", "bias")
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(
                f"linear: bias of shape {tuple(bias.shape)}, expected ({weight.shape[0]},)"
            )
    return fused.LinearOp.apply(input, weight, bias)


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
    idx = input.data if isinstance(input, Tensor) else np.asarray(input)
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
        raise ValueError(
            f"{op}: input of shape {tuple(input.shape)} received, expected (*, "
            f"{', '.join(map(str, shape))}) (trailing dims = normalized_shape)"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _same_dtype(input, t, op, name)
            if tuple(t.shape) != shape:
                raise ValueError(f"{op}: {name} of shape {tuple(t.shape)}, expected {shape}")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize over the trailing ``normalized_shape`` dims: (x - mean) / sqrt(var + eps),
    then scale by weight and shift by bias."""
    shape = _norm_shape(normalized_shape)
    _check_norm(input, shape, weight, bias, "layer_norm")
    if weight is None and bias is not None:
        weight = Tensor._wrap(np.ones(shape, dtype=input.dtype))
    return fused.LayerNormOp.apply(input, weight, bias, n=math.prod(shape), eps=eps)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x^2) + eps) * weight over the trailing dims (eps defaults to the dtype's
    machine epsilon, as PyTorch)."""
    shape = _norm_shape(normalized_shape)
    _check_norm(input, shape, weight, None, "rms_norm")
    if eps is None:
        eps = float(np.finfo(input.dtype).eps)
    return fused.RMSNormOp.apply(input, weight, n=math.prod(shape), eps=eps)


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
            raise ValueError(f"{op}: {name} must have at least 2 dims (..., L, E), got "
                             f"shape {tuple(t.shape)}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(
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
            mask = Tensor._wrap(np.asarray(mask))
        if mask.dtype != np.bool_:
            mask = mask.type(query.dtype)
        L, S = query.shape[-2], key.shape[-2]
        try:
            np.broadcast_shapes(tuple(mask.shape), tuple(query.shape[:-2]) + (L, S))
        except ValueError:
            raise ValueError(
                f"{op}: attn_mask of shape {tuple(mask.shape)} does not broadcast to the "
                f"attention weights' shape {tuple(query.shape[:-2]) + (L, S)}"
            ) from None
    return fused.AttentionOp.apply(query, key, value, mask, scale=float(scale),
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
    w = weight.data if isinstance(weight, Tensor) else np.asarray(weight)
    if w.shape != (C,):
        raise ValueError(f"{op}: weight of shape {tuple(w.shape)}, expected ({C},) (one per "
                         "class)")
    return w.astype(dtype, copy=False)


def _check_targets(input, target, op):
    """Validate class-index targets against (N, C, d1...) input; returns the int array."""
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if input.ndim == 1:
        expected = ()
    else:
        expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(t.shape) != expected:
        raise ValueError(
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
    shaped like the input). Fused with log-softmax; see :class:`fused.CrossEntropyOp`."""
    op = "cross_entropy"
    _float(input, op)
    _reduction(reduction, op)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    C = input.shape[0] if input.ndim == 1 else input.shape[1]
    w = _weight_array(weight, C, input.dtype, op)
    x2 = _class_last(input, op)
    tdtype = target.dtype if isinstance(target, Tensor) else np.asarray(target).dtype
    if tdtype.kind == "f":
        if tuple(target.shape) != tuple(input.shape):
            raise ValueError(
                f"{op}: probability target of shape {tuple(target.shape)} received, expected the "
                f"input's shape {tuple(input.shape)}"
            )
        if not isinstance(target, Tensor):
            target = Tensor._wrap(np.asarray(target))
        y2 = _class_last(target.type(input.dtype), op)
        loss = fused.SoftCrossEntropyOp.apply(x2, y2, weight=w, label_smoothing=label_smoothing,
                                              reduction=reduction)
        return _restore(loss, input, reduction)
    if tdtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold class indices (integer) or probabilities "
                        f"(float), got dtype {tdtype}")
    t = _check_targets(input, target, op)
    _check_range(t, C, ignore_index, op)
    loss = fused.CrossEntropyOp.apply(x2, t.reshape(-1), weight=w, ignore_index=ignore_index,
                                      label_smoothing=label_smoothing, reduction=reduction)
    return _restore(loss, input, reduction)


__all__ = [
    "linear", "relu", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "softplus", "softmax",
    "log_softmax", "pad", "dropout", "embedding", "layer_norm", "rms_norm",
    "scaled_dot_product_attention", "cross_entropy",
]
