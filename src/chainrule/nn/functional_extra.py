"""More of chainrule.nn.functional: batch, instance and group normalization, ``normalize``,
and the activations beyond the common ones. Re-exported by :mod:`chainrule.nn.functional`."""

from __future__ import annotations

from .. import ops as P
from ..autograd import no_grad
from ..ops import activation as _act
from ..tensor import Tensor
from .fused.batchnorm import BatchNormOp


def _float(x, op, name="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
    if x._data.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating tensor, got dtype {x.dtype}; "
                        "convert with .float()")
    return x


def _channel_param(t, C, op, name):
    if t is None:
        return None
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor or None, got {type(t).__name__}")
    if tuple(t.shape) != (C,):
        raise ValueError(f"{op}: {name} of shape {tuple(t.shape)} received, expected ({C},) "
                         "(one per channel)")
    return t


def _channels(x, op):
    _float(x, op)
    if x.ndim < 2:
        raise ValueError(f"{op}: input of shape {tuple(x.shape)} received, expected (N, C, *)")
    return x.shape[0], x.shape[1]


def _apply(op, x, w, b, **kw):
    if b is not None:
        return op.apply(x, w, b, **kw) if w is not None else \
            op.apply(x, Tensor._wrap(x.xp.ones(b.shape, dtype=x._data.dtype)), b, **kw)
    return op.apply(x, w, **kw) if w is not None else op.apply(x, **kw)


def _update(running, stat, momentum):
    """running <- (1 - momentum) running + momentum stat, in place (no gradient)."""
    a = running._data
    a *= 1.0 - momentum
    a += momentum * stat.astype(a.dtype, copy=False)
    running._bump()


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalization of (N, C, *) per channel. ``training``: the batch's statistics
    normalize, and the running ones (if given) move by ``momentum`` towards them (the unbiased
    variance); otherwise the running statistics normalize."""
    op = "batch_norm"
    N, C = _channels(input, op)
    _channel_param(weight, C, op, "weight")
    _channel_param(bias, C, op, "bias")
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        _channel_param(t, C, op, name)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError(f"{op}: running_mean and running_var are needed when "
                             "training=False")
        shape = (1, C) + (1,) * (input.ndim - 2)
        rm = running_mean._data.astype(input._data.dtype, copy=False).reshape(shape)
        rv = running_var._data.astype(input._data.dtype, copy=False).reshape(shape)
        y = (input - Tensor._wrap(rm)) * Tensor._wrap(1.0 / input.xp.sqrt(rv + eps))
        if weight is not None:
            y = y * weight.reshape(shape)
        if bias is not None:
            y = y + bias.reshape(shape)
        return y
    x3 = input._data.reshape(N, C, -1)
    m = x3.shape[0] * x3.shape[2]
    if m <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got "
                         f"input of shape {tuple(input.shape)}")
    mean = x3.mean(axis=(0, 2))
    xc = x3 - mean[:, None]
    var = input.xp.einsum("ncm,ncm->c", xc, xc) / m
    if momentum is None:
        momentum = 0.0
    if running_mean is not None:
        _update(running_mean, mean, momentum)
    if running_var is not None:
        _update(running_var, var * (m / (m - 1)), momentum)
    return _apply(BatchNormOp, input, weight, bias, mean=mean, var=var, eps=float(eps))


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalization of each (sample, channel) over its spatial dims; the running statistics
    (if given) move towards the batch's mean over samples."""
    op = "instance_norm"
    N, C = _channels(input, op)
    if input.ndim < 3:
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} received, expected "
                         "(N, C, L...) with spatial dims")
    _channel_param(weight, C, op, "weight")
    _channel_param(bias, C, op, "bias")
    if not use_input_stats:
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    x = input.reshape((1, N * C) + tuple(input.shape[2:]))
    x3 = x._data.reshape(N * C, -1)
    m = x3.shape[1]
    if m <= 1:
        raise ValueError(f"{op}: expected more than 1 spatial element, got input of shape "
                         f"{tuple(input.shape)}")
    mean = x3.mean(axis=1)
    xc = x3 - mean[:, None]
    var = input.xp.einsum("nm,nm->n", xc, xc) / m
    if momentum is None:
        momentum = 0.0
    if running_mean is not None:
        _update(running_mean, mean.reshape(N, C).mean(axis=0), momentum)
    if running_var is not None:
        _update(running_var, (var * (m / (m - 1))).reshape(N, C).mean(axis=0), momentum)
    w = weight.repeat(N) if weight is not None else None
    b = bias.repeat(N) if bias is not None else None
    y = _apply(BatchNormOp, x, w, b, mean=mean, var=var, eps=float(eps))
    return y.reshape(input.shape)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalization over each group of C / num_groups channels (and the spatial dims) of each
    sample, then a per-channel affine."""
    op = "group_norm"
    N, C = _channels(input, op)
    if num_groups < 1 or C % num_groups:
        raise ValueError(f"{op}: {C} channels received, expected a number divisible by "
                         f"num_groups ({num_groups})")
    _channel_param(weight, C, op, "weight")
    _channel_param(bias, C, op, "bias")
    x = input.reshape(1, N * num_groups, -1)
    x3 = x._data.reshape(N * num_groups, -1)
    mean = x3.mean(axis=1)
    xc = x3 - mean[:, None]
    var = input.xp.einsum("nm,nm->n", xc, xc) / x3.shape[1]
    y = BatchNormOp.apply(x, mean=mean, var=var, eps=float(eps)).reshape(N, C, -1)
    if weight is not None:
        y = y * weight.reshape(1, C, 1)
    if bias is not None:
        y = y + bias.reshape(1, C, 1)
    return y.reshape(input.shape)


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """x / max(||x||_p, eps) along ``dim``."""
    _float(input, "normalize")
    if out is not None:
        raise ValueError("normalize: out= is not supported; use the returned tensor")
    n = P.norm(input, p, dim, keepdim=True)
    return input / P.clamp_min(n, eps)


# ----------------------------------------------------------------------------- activations


def elu(input, alpha=1.0, inplace=False):
    """x for x > 0, alpha (exp(x) - 1) otherwise."""
    return _act.elu(input, alpha)


def selu(input, inplace=False):
    """scale elu(x, alpha), with SELU's constants."""
    return _act.selu(input)


def celu(input, alpha=1.0, inplace=False):
    """max(0, x) + min(0, alpha (exp(x / alpha) - 1))."""
    return _act.celu(input, alpha)


def glu(input, dim=-1):
    """a sigmoid(b), a and b the halves of the input along ``dim``."""
    _float(input, "glu")
    if input.ndim == 0 or input.shape[dim] % 2:
        raise ValueError(f"glu: input of shape {tuple(input.shape)} received, expected an even "
                         f"size along dim {dim}")
    a, b = P.chunk(input, 2, dim)
    return a * P.sigmoid(b)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """x clamped to [min_val, max_val]."""
    return _act.hardtanh(input, min_val, max_val)


def relu6(input, inplace=False):
    """min(max(x, 0), 6)."""
    return _act.relu6(input)


def hardsigmoid(input, inplace=False):
    """clamp(x / 6 + 1/2, 0, 1)."""
    return _act.hardsigmoid(input)


def hardswish(input, inplace=False):
    """x clamp(x + 3, 0, 6) / 6."""
    return _act.hardswish(input)


def mish(input, inplace=False):
    """x tanh(softplus(x))."""
    return _act.mish(input)


def logsigmoid(input):
    """log sigmoid(x) = -softplus(-x)."""
    return _act.logsigmoid(input)


def softsign(input):
    """x / (1 + |x|)."""
    return _act.softsign(input)


def tanhshrink(input):
    """x - tanh(x)."""
    return _act.tanhshrink(input)


def hardshrink(input, lambd=0.5):
    """x where |x| > lambd, else 0."""
    _float(input, "hardshrink")
    return P.where(P.abs(input) > lambd, input, 0.0)


def softshrink(input, lambd=0.5):
    """x - lambd above lambd, x + lambd below -lambd, 0 between."""
    _float(input, "softshrink")
    return P.where(input > lambd, input - lambd, P.where(input < -lambd, input + lambd, 0.0))


def threshold(input, threshold, value, inplace=False):
    """x where x > threshold, else value."""
    _float(input, "threshold")
    return P.where(input > threshold, input, float(value))


def prelu(input, weight):
    """max(0, x) + weight min(0, x), weight one value or one per channel (dim 1)."""
    _float(input, "prelu")
    _float(weight, "prelu", "weight")
    n = weight.numel()
    if n != 1:
        C = input.shape[1] if input.ndim >= 2 else input.shape[0] if input.ndim == 1 else 1
        if n != C:
            raise ValueError(f"prelu: weight of {n} values received, expected 1 or the number "
                             f"of channels ({C}, dim 1) of input of shape {tuple(input.shape)}")
        if input.ndim >= 2:
            weight = weight.reshape((C,) + (1,) * (input.ndim - 2))
    else:
        weight = weight.reshape(())
    return P.relu(input) + weight * P.clamp_max(input, 0.0)


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):
    """Leaky ReLU with a random slope in [lower, upper] (training) or their mean (eval)."""
    _float(input, "rrelu")
    if not training:
        return P.leaky_relu(input, (lower + upper) / 2)
    from .. import creation

    with no_grad():
        a = creation.empty(tuple(input.shape), dtype=input.dtype).uniform_(lower, upper)
    return P.where(input >= 0, input, input * a)


__all__ = [
    "batch_norm", "instance_norm", "group_norm", "normalize", "elu", "selu", "celu", "glu",
    "hardtanh", "relu6", "hardsigmoid", "hardswish", "mish", "logsigmoid", "softsign",
    "tanhshrink", "hardshrink", "softshrink", "threshold", "prelu", "rrelu",
]


# ----------------------------------------------------------------------------- distances, losses


def _red(loss, reduction, op):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """x1 . x2 / max(||x1|| ||x2||, eps) along ``dim`` (PyTorch's clamp of the product)."""
    _float(x1, "cosine_similarity", "x1")
    _float(x2, "cosine_similarity", "x2")
    w12 = (x1 * x2).sum(dim)
    n = P.sqrt(P.clamp_min((x1 * x1).sum(dim) * (x2 * x2).sum(dim), eps * eps))
    return w12 / n


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """||x1 - x2 + eps||_p over the last dim."""
    _float(x1, "pairwise_distance", "x1")
    return P.norm(x1 - x2 + eps, p, -1, keepdim=keepdim)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False,
                        size_average=None, reduce=None, reduction="mean"):
    """max(d(a, p) - d(a, n) + margin, 0) with d the pairwise p-distance."""
    dp = pairwise_distance(anchor, positive, p, eps)
    dn = pairwise_distance(anchor, negative, p, eps)
    if swap:
        dn = P.minimum(dn, pairwise_distance(positive, negative, p, eps))
    return _red(P.clamp_min(dp - dn + margin, 0.0), reduction, "triplet_margin_loss")


def margin_ranking_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None,
                        reduction="mean"):
    """max(0, -y (x1 - x2) + margin)."""
    return _red(P.clamp_min(-target * (input1 - input2) + margin, 0.0), reduction,
                "margin_ranking_loss")


def cosine_embedding_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None,
                          reduction="mean"):
    """1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where y = -1."""
    eps = 1e-12
    prod = (input1 * input2).sum(-1)
    m = P.sqrt(((input1 * input1).sum(-1) + eps) * ((input2 * input2).sum(-1) + eps))
    cos = prod / m
    t = target._data if isinstance(target, Tensor) else input1.xp.asarray(target)
    pos = Tensor._wrap(t == 1)
    loss = P.where(pos, 1 - cos, P.clamp_min(cos - margin, 0.0))
    loss = P.where(Tensor._wrap((t == 1) | (t == -1)), loss, 0.0)
    return _red(loss, reduction, "cosine_embedding_loss")


def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None,
                         reduction="mean"):
    """x where y = 1, max(0, margin - x) where y = -1."""
    t = target._data if isinstance(target, Tensor) else input.xp.asarray(target)
    loss = P.where(Tensor._wrap(t == 1), input, 0.0) + P.where(
        Tensor._wrap(t == -1), P.clamp_min(margin - input, 0.0), 0.0)
    return _red(loss, reduction, "hinge_embedding_loss")


def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """log(1 + exp(-y x))."""
    return _red(P.softplus(-target * input), reduction, "soft_margin_loss")


def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8,
                     reduce=None, reduction="mean"):
    """exp(x) - y x (log_input), or x - y log(x + eps); with ``full`` Stirling's term
    y log y - y + log(2 pi y) / 2 where y > 1."""
    _float(input, "poisson_nll_loss")
    if log_input:
        loss = P.exp(input) - target * input
    else:
        loss = input - target * P.log(input + eps)
    if full:
        import math as _m

        y = target if isinstance(target, Tensor) else Tensor._wrap(input.xp.asarray(target))
        safe = P.where(y > 1, y, 1.0)
        st = safe * P.log(safe) - safe + 0.5 * P.log(safe * (2 * _m.pi))
        loss = loss + P.where(y > 1, st, 0.0)
    return _red(loss, reduction, "poisson_nll_loss")


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """(log max(var, eps) + (input - target)^2 / max(var, eps)) / 2 (+ log(2 pi) / 2 with
    ``full``); ``var`` shaped like the input or with one dim fewer / of size 1."""
    _float(input, "gaussian_nll_loss")
    if not isinstance(var, Tensor):
        var = Tensor._wrap(input.xp.asarray(var, dtype=input._data.dtype))
    if var.ndim == input.ndim - 1 and tuple(var.shape) == tuple(input.shape[:-1]):
        var = var.unsqueeze(-1)
    if (var._data < 0).any():
        raise ValueError("gaussian_nll_loss: var has negative entries")
    with no_grad():
        clamped = P.clamp_min(var, eps)
    v = var + Tensor._wrap((clamped - var)._data)  # clamp, with the gradient of var (torch)
    d = input - target
    loss = 0.5 * (P.log(v) + d * d / v)
    if full:
        import math as _m

        loss = loss + 0.5 * _m.log(2 * _m.pi)
    return _red(loss, reduction, "gaussian_nll_loss")


__all__ += [
    "cosine_similarity", "pairwise_distance", "triplet_margin_loss", "margin_ranking_loss",
    "cosine_embedding_loss", "hinge_embedding_loss", "soft_margin_loss", "poisson_nll_loss",
    "gaussian_nll_loss",
]


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """x / (k + alpha mean of x^2 over ``size`` neighbouring channels)^beta (PyTorch's
    window: size // 2 channels before, (size - 1) // 2 after, zero-padded)."""
    _float(input, "local_response_norm")
    if input.ndim < 3:
        raise ValueError(f"local_response_norm: input of shape {tuple(input.shape)} received, "
                         "expected (N, C, *) with at least one spatial dim")
    N, C = input.shape[0], input.shape[1]
    sq = (input * input).reshape(N, C, -1)
    widths = (0, 0, size // 2, (size - 1) // 2)
    padded = P.pad(sq, widths)
    acc = padded[:, 0:C]
    for j in range(1, size):
        acc = acc + padded[:, j:j + C]
    div = P.pow(acc * (alpha / size) + k, beta).reshape(input.shape)
    return input / div


__all__ += ["local_response_norm"]


# ----------------------------------------------------------------------------- attention


def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads,
                                 in_proj_weight, in_proj_bias, bias_k, bias_v, add_zero_attn,
                                 dropout_p, out_proj_weight, out_proj_bias, training=True,
                                 key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None,
                                 k_proj_weight=None, v_proj_weight=None, static_k=None,
                                 static_v=None, average_attn_weights=True, is_causal=False):
    """MultiheadAttention's forward as a function (PyTorch's signature; inputs (L, N, E) or
    (L, E)). Returns (output, weights or None). ``bias_k``/``bias_v``, ``add_zero_attn`` and
    ``static_k``/``static_v`` are not supported."""
    import math

    from . import fused

    op = "multi_head_attention_forward"
    if bias_k is not None or bias_v is not None or add_zero_attn or static_k is not None \
            or static_v is not None:
        raise NotImplementedError(f"{op}: bias_k/bias_v, add_zero_attn and static_k/static_v "
                                  "are not supported")
    E, h = int(embed_dim_to_check), int(num_heads)
    if query.shape[-1] != E:
        raise ValueError(f"{op}: query of shape {tuple(query.shape)} received, expected a "
                         f"last dim of embed_dim_to_check = {E}")
    if E % h:
        raise ValueError(f"{op}: embed_dim {E} is not divisible by num_heads {h}")
    if use_separate_proj_weight:
        in_proj_weight = P.cat([q_proj_weight, k_proj_weight, v_proj_weight], 0)
    batched = query.ndim == 3
    if batched:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    else:
        query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
    N, L, _ = query.shape
    S = key.shape[1]
    d = E // h
    ws = in_proj_weight.split(E, dim=0)
    bs = in_proj_bias.split(E, dim=0) if in_proj_bias is not None else (None, None, None)
    q, k, v = (fused.apply_present(fused.LinearOp, x, wi, bi)
               for x, wi, bi in zip((query, key, value), ws, bs))
    q = q.reshape(N, L, h, d).transpose(1, 2)
    k = k.reshape(N, S, h, d).transpose(1, 2)
    v = v.reshape(N, S, h, d).transpose(1, 2)
    xp, dtype = q.xp, q._data.dtype

    def additive(m, what):
        if m is None:
            return None
        a = m._data if isinstance(m, Tensor) else xp.asarray(m)
        if what == "key_padding_mask":
            if not batched:
                a = a[None]
            if a.shape != (N, S):
                raise ValueError(f"{op}: key_padding_mask of shape {a.shape} received, "
                                 f"expected {(N, S)}")
            shape = (N, 1, 1, S)
        elif a.shape == (L, S):
            shape = (L, S)
        elif a.shape == (N * h, L, S):
            shape = (N, h, L, S)
        else:
            raise ValueError(f"{op}: attn_mask of shape {a.shape} received, expected "
                             f"{(L, S)} or {(N * h, L, S)}")
        if a.dtype == xp.bool_:
            return Tensor._wrap(xp.where(a, -math.inf, 0.0).astype(dtype).reshape(shape))
        if isinstance(m, Tensor):
            return m.type(q.dtype).reshape(shape)
        return Tensor._wrap(a.astype(dtype).reshape(shape))

    mask = additive(attn_mask, "attn_mask")
    causal = is_causal and mask is None
    kpm = additive(key_padding_mask, "key_padding_mask")
    if kpm is not None:
        mask = kpm if mask is None else mask + kpm
    p = float(dropout_p) if training else 0.0
    weights = None
    if need_weights:
        sc = (q * (1.0 / math.sqrt(d))) @ k.transpose(-2, -1)
        if mask is not None:
            sc = sc + mask
        if causal:
            sc = P.masked_fill(sc, fused.causal_upper(L, S), -math.inf)
        a = P.softmax(sc, dim=-1)
        a = fused.DropoutOp.apply(a, p=p) if p > 0 else a
        o = a @ v
        weights = a.mean(dim=1) if average_attn_weights else a
    else:
        o = fused.apply_present(fused.AttentionOp, q, k, v, mask, scale=1.0 / math.sqrt(d),
                                causal=bool(causal), dropout_p=p)
    o = o.transpose(1, 2).reshape(N, L, E)
    out = fused.apply_present(fused.LinearOp, o, out_proj_weight, out_proj_bias)
    if not batched:
        return out.squeeze(0), (weights.squeeze(0) if weights is not None else None)
    return out.transpose(0, 1), weights


__all__ += ["multi_head_attention_forward"]
