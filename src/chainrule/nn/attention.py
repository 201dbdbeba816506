"""MultiheadAttention with PyTorch's interface, parameter names and initialization."""

from __future__ import annotations

import math

from .. import ops as P
from ..backend import numpy_ns as _host  # Python data (lists) as host arrays
from ..dtypes import bool_
from ..tensor import Tensor
from . import functional as F
from . import fused, init
from .layers import Linear, _empty, check_input
from .module import Module, module_error
from .parameter import Parameter


class MultiheadAttention(Module):
    """softmax(Q K^T / sqrt(d) + mask) V over num_heads heads of size d = embed_dim / num_heads,
    with Q, K, V = the inputs times the rows of ``in_proj_weight`` (3E, E) plus
    ``in_proj_bias``, and ``out_proj`` (a Linear) after the heads are joined.

    Inputs are (L, N, E) or, with ``batch_first``, (N, L, E); unbatched (L, E) also works.
    ``attn_mask`` (L, S) or (N * num_heads, L, S) and ``key_padding_mask`` (N, S) are boolean
    (True = may NOT attend, as PyTorch) or additive float. Returns ``(output, weights)``,
    the weights (N, L, S) averaged over heads when ``need_weights`` (else None).
    Init (PyTorch's): xavier_uniform_ in_proj_weight, zero biases, out_proj.weight as Linear.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False, device=None,
                 dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} is not divisible by "
                             f"num_heads {num_heads}")
        if add_bias_kv or add_zero_attn or (kdim not in (None, embed_dim)) or (
                vdim not in (None, embed_dim)):
            raise NotImplementedError(
                "MultiheadAttention: add_bias_kv, add_zero_attn and kdim/vdim different from "
                "embed_dim are not supported"
            )
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout, self.batch_first = float(dropout), batch_first
        E = self.embed_dim
        self.in_proj_weight = Parameter(_empty((3 * E, E), dtype))
        if bias:
            self.in_proj_bias = Parameter(_empty((3 * E,), dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(E, E, bias=bias, dtype=dtype)
        self._reset_parameters()
        if device is not None:
            self.to(device=device)

    def _reset_parameters(self):
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")

    def _check(self, name, t, batched):
        E = self.embed_dim
        want = 3 if batched else 2
        if (not isinstance(t, Tensor) or t._data.ndim != want or t._data.shape[-1] != E
                or t._data.dtype != self.in_proj_weight._data.dtype):
            layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
            check_input(self, t, ndims=(want,), last=(E,), dtype=self.in_proj_weight._data.dtype,
                        expected=f"{layout} or (L, E) with E = embed_dim = {E} for {name}")

    def _mask(self, mask, N, L, S, dtype, what):
        """An additive float mask broadcastable to (N, h, L, S), or None."""
        if mask is None:
            return None
        xp = mask.xp if isinstance(mask, Tensor) else _host
        m = mask._data if isinstance(mask, Tensor) else xp.asarray(mask)
        h = self.num_heads
        if what == "key_padding_mask":
            if m.shape != (N, S):
                raise module_error(self, ValueError, f"key_padding_mask of shape {m.shape} "
                                                     f"received, expected {(N, S)}")
            shape = (N, 1, 1, S)
        elif m.shape == (L, S):
            shape = (L, S)
        elif m.shape == (N * h, L, S):
            shape = (N, h, L, S)
        else:
            raise module_error(self, ValueError, f"attn_mask of shape {m.shape} received, "
                                                 f"expected {(L, S)} or {(N * h, L, S)}")
        if m.dtype == bool_:
            return Tensor._wrap(xp.where(m, -math.inf, 0.0).astype(dtype).reshape(shape))
        if isinstance(mask, Tensor):
            return mask.type(dtype).reshape(shape)
        return Tensor._wrap(m.astype(dtype).reshape(shape))

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        batched = isinstance(query, Tensor) and query.ndim == 3
        for name, t in (("query", query), ("key", key), ("value", value)):
            self._check(name, t, batched)
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = Tensor._wrap(
                    key_padding_mask._data[None] if isinstance(key_padding_mask, Tensor)
                    else _host.asarray(key_padding_mask)[None])
        elif not self.batch_first:
            query, key, value = (query.transpose(0, 1), key.transpose(0, 1),
                                 value.transpose(0, 1))
        N, L, E = query.shape
        S = key.shape[1]
        if key.shape[0] != N or value.shape[:2] != key.shape[:2]:
            raise module_error(self, ValueError, f"key {tuple(key.shape)} and value "
                               f"{tuple(value.shape)} do not match query {tuple(query.shape)} "
                               "in batch and source length")
        h, d = self.num_heads, self.head_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        if query is key and key is value:  # self-attention: one GEMM for q, k and v
            q, k, v = fused.apply_present(fused.LinearOp, query, w, b).split(E, dim=-1)
        else:
            ws = w.split(E, dim=0)
            bs = b.split(E, dim=0) if b is not None else (None, None, None)
            q, k, v = (fused.apply_present(fused.LinearOp, x, wi, bi)
                       for x, wi, bi in zip((query, key, value), ws, bs))
        q = q.reshape(N, L, h, d).transpose(1, 2)  # (N, h, L, d)
        k = k.reshape(N, S, h, d).transpose(1, 2)  # (N, h, S, d)
        v = v.reshape(N, S, h, d).transpose(1, 2)
        dtype = q.dtype
        mask = self._mask(attn_mask, N, L, S, dtype, "attn_mask")
        causal = is_causal and mask is None
        kpm = self._mask(key_padding_mask, N, L, S, dtype, "key_padding_mask")
        if kpm is not None:
            mask = kpm if mask is None else mask + kpm
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            s = (q * (1.0 / math.sqrt(d))) @ k.transpose(-2, -1)
            if mask is not None:
                s = s + mask
            if causal:
                s = P.masked_fill(s, fused.causal_upper(L, S), -math.inf)
            a = P.softmax(s, dim=-1)
            a = F.dropout(a, p) if p > 0 else a
            o = a @ v
            weights = a.mean(dim=1) if average_attn_weights else a
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                               is_causal=causal)
        o = o.transpose(1, 2).reshape(N, L, E)
        out = self.out_proj(o)
        if not batched:
            out = out.squeeze(0)
            weights = weights.squeeze(0) if weights is not None else None
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights
