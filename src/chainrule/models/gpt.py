"""GPT: a decoder-only transformer language model (GPT-2's architecture, nanoGPT's shape).

    x = wte[idx] + wpe[0..T-1]                          token + learned position embeddings
    x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))        n_layer pre-norm blocks
    logits = ln_f(x) @ wte.T                            output projection tied to wte

``attn`` is multi-head causal self-attention, softmax(q k^T / sqrt(hs) + causal mask) v, and
``mlp`` is Linear(C, 4C) -> GELU -> Linear(4C, C). Weights start as in GPT-2: normal(0, 0.02),
biases zero, and the two projections that write into the residual stream (``attn.c_proj`` and
``mlp.c_proj``) normal(0, 0.02 / sqrt(2 n_layer)), so the stream's variance does not grow with
depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import chainrule as cr
from chainrule import nn
from chainrule.nn import functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64  # the longest context (number of learned positions)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm (GPT-2 has them; a little worse, slower)

    def __post_init__(self):
        for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, k)
            if not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"GPTConfig: {k} must be a positive integer, got {v!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd ({self.n_embd}) must be divisible by n_head "
                             f"({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")


class KVCache:
    """Keys and values of every layer for the positions seen so far, preallocated to
    ``block_size`` so that appending a token writes one position instead of copying all."""

    def __init__(self, config: GPTConfig, batch: int, dtype, device=None):
        hs = config.n_embd // config.n_head
        shape = (batch, config.n_head, config.block_size, hs)
        self.k = [cr.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.v = [cr.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.length = 0  # positions filled (in every layer, after a full forward)

    def append(self, layer: int, k, v):
        """Store ``k, v`` (B, nh, T, hs) after the cached positions; return all of them."""
        t0, T = self.length, k.shape[2]
        self.k[layer][:, :, t0:t0 + T] = k
        self.v[layer][:, :, t0:t0 + T] = v
        return self.k[layer][:, :, :t0 + T], self.v[layer][:, :, :t0 + T]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        C = config.n_embd
        self.n_head = config.n_head
        self.c_attn = nn.Linear(C, 3 * C, bias=config.bias)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(C, C, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0):
        B, T, C = x.shape
        nh = self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        causal = True
        if cache is not None:
            causal = cache.length == 0  # new queries see every cached key (all are earlier)
            k, v = cache.append(layer, k, v)  # (B, nh, t0 + T, hs)
            if not causal and T > 1:
                raise ValueError("CausalSelfAttention: with a filled cache, feed one token at "
                                 f"a time (got {T})")
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=causal)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = _layer_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = _layer_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0):
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


def _layer_norm(config: GPTConfig):
    return nn.LayerNorm(config.n_embd, bias=config.bias)


class GPT(nn.Module):
    """A GPT language model. ``model(idx, targets)`` returns ``(logits, loss)``: logits
    (B, T, vocab_size) for every position, and the mean cross-entropy of the next-token
    ``targets`` (B, T) (``None`` without targets; targets equal to -1 are ignored)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = _layer_norm(config)
        self._init_weights()

    def _init_weights(self):
        resid_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        with cr.no_grad():
            for name, p in self.named_parameters():
                if p.ndim >= 2:
                    p.normal_(0.0, resid_std if name.endswith("c_proj.weight") else 0.02)
                elif name.endswith("bias"):
                    p.zero_()
                # LayerNorm weights stay at 1

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; position embeddings excluded by default (as GPT-2 reports it; the
        token embeddings count once, as the tied output layer)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def forward(self, idx, targets=None):
        logits = self._logits(self._hidden(idx))
        if targets is None:
            return logits, None
        V = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, V), _as_index(targets).reshape(-1),
                               ignore_index=-1)
        return logits, loss

    def _hidden(self, idx, cache: KVCache | None = None):
        idx = _as_index(idx)
        B, T = idx.shape
        t0 = cache.length if cache is not None else 0
        if t0 + T > self.config.block_size:
            raise ValueError(f"GPT: a sequence of {t0 + T} tokens is longer than block_size "
                             f"{self.config.block_size}")
        pos = cr.arange(t0, t0 + T, dtype=cr.int64, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for i, block in enumerate(self.h):
            x = block(x, cache, i)
        if cache is not None:
            cache.length += T
        return self.ln_f(x)

    def _logits(self, x):
        return F.linear(x, self.wte.weight)  # tied: the output layer is the embedding, transposed

    # -- optimisation ------------------------------------------------------------------------
    def param_groups(self, weight_decay: float) -> list[dict]:
        """Two groups: matrices (dim >= 2: linear weights, embeddings) decay; vectors (biases,
        LayerNorm gains) do not."""
        decay = [p for p in self.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.ndim < 2]
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self, weight_decay: float, learning_rate: float,
                             betas=(0.9, 0.95), eps: float = 1e-8):
        """AdamW over :meth:`param_groups`."""
        from chainrule.optim import AdamW

        return AdamW(self.param_groups(weight_decay), lr=learning_rate, betas=tuple(betas),
                     eps=eps)

    # -- inference ---------------------------------------------------------------------------
    @cr.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, generator=None, use_cache: bool = True):
        """Continue ``idx`` (B, T) by ``max_new_tokens`` sampled tokens; returns (B, T + new).

        Each step samples from softmax(logits / temperature) of the last position, keeping only
        the ``top_k`` most likely tokens and/or the smallest set whose probability reaches
        ``top_p``; ``temperature=0`` picks the most likely token. Random draws come from
        ``generator`` (a numpy Generator; default chainrule's global one).

        With ``use_cache`` the keys and values of earlier positions are kept, so each new token
        runs the network on one position. The context is the last ``block_size`` tokens; once
        the sequence is longer than that, every position shifts by one each step, so the window
        is re-encoded (exactly what uncached generation computes).
        """
        if generator is None:
            from chainrule.random import _rng

            generator = _rng()
        out = np.array(_as_index(idx).numpy(), dtype=np.int64)
        if out.ndim != 2 or out.shape[1] == 0:
            raise ValueError(f"GPT.generate: idx must be (batch, T) with T >= 1, got shape "
                             f"{out.shape}")
        was_training = self.training
        self.eval()
        bs = self.config.block_size
        dev = self.wte.weight.device  # the tokens so far stay on the host; each window moves
        cache = None
        try:
            for _ in range(max_new_tokens):
                if not use_cache:
                    x = self._hidden(cr.tensor(out[:, -bs:], device=dev))
                elif cache is None or cache.length >= bs:
                    cache = KVCache(self.config, out.shape[0], self.wte.weight.dtype, dev)
                    x = self._hidden(cr.tensor(out[:, -bs:], device=dev), cache)
                else:
                    x = self._hidden(cr.tensor(out[:, -1:], device=dev), cache)
                logits = self._logits(x[:, -1, :]).cpu().numpy()  # (B, V): the last position
                nxt = sample_next(logits, temperature, top_k, top_p, generator)
                out = np.concatenate([out, nxt[:, None]], axis=1)
        finally:
            self.train(was_training)
        return cr.tensor(out)


def sample_next(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator=None) -> np.ndarray:
    """One token id per row of ``logits`` (B, V), drawn as :meth:`GPT.generate` describes."""
    z = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return z.argmax(axis=-1)
    z = z / temperature
    V = z.shape[-1]
    if top_k is not None and 0 < top_k < V:
        kth = np.partition(z, V - top_k, axis=-1)[:, V - top_k:V - top_k + 1]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    if top_p is not None and 0 < top_p < 1:
        order = np.argsort(-p, axis=-1, kind="stable")
        ps = np.take_along_axis(p, order, axis=-1)
        # drop a token when the more likely ones already reach top_p (the first always stays)
        drop = (np.cumsum(ps, axis=-1) - ps) >= top_p
        ps[drop] = 0.0
        p = np.zeros_like(p)
        np.put_along_axis(p, order, ps, axis=-1)
        p /= p.sum(axis=-1, keepdims=True)
    u = generator.random(p.shape[0])[:, None]
    c = np.cumsum(p, axis=-1)
    return np.minimum((c < u * c[:, -1:]).sum(axis=-1), V - 1)


def _as_index(idx):
    if isinstance(idx, cr.Tensor):
        if idx.dtype.kind not in "iu":
            raise TypeError(f"GPT: token ids must be integers, got dtype {idx.dtype}")
        return idx
    arr = np.asarray(idx)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"GPT: token ids must be integers, got dtype {arr.dtype}")
    return cr.tensor(arr.astype(np.int64))
