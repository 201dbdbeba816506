"""The Llama-family decoder (Llama 2/3, SmolLM, TinyLlama...), for pre-trained weights.

    x = embed(idx)                                        # (B, T, C)
    for each block:
        x = x + o_proj(attention(rope(q(n(x))), rope(k(n(x))), v(n(x))))   n = RMSNorm
        x = x + down_proj(silu(gate_proj(n(x))) * up_proj(n(x)))           # SwiGLU
    logits = lm_head(norm(x))        # lm_head shares embed.weight when tie_embeddings

Grouped-query attention: ``n_kv_head`` key/value heads, each shared by ``n_head / n_kv_head``
query heads. Rotary embeddings use the half-split convention (``rotate_half``, as Hugging Face):
for a head vector x of size d, the pair ``(x[i], x[i + d/2])`` is rotated by the angle
``pos * theta**(-2i/d)``. GGUF files store Q and K for the adjacent-pair convention; the GGUF
loader (``chainrule.pretrained.load_llama_gguf``) converts them.

Parameter names: ``embed.weight``, ``blocks.{i}.attn_norm.weight``,
``blocks.{i}.attn.{q,k,v,o}_proj.weight``, ``blocks.{i}.mlp_norm.weight``,
``blocks.{i}.mlp.{gate,up,down}_proj.weight``, ``norm.weight`` and, untied, ``lm_head.weight``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .. import backend, nn
from ..autograd import Op, no_grad
from ..nn import functional as F
from ..random import _rng
from ..tensor import Tensor
from .gpt import sample_next


@dataclass
class LlamaConfig:
    vocab_size: int = 49152
    n_layer: int = 30
    n_embd: int = 576
    n_head: int = 9
    n_kv_head: int = 3
    n_hidden: int = 1536  # SwiGLU inner size
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    block_size: int = 2048  # the longest sequence the model was trained on
    tie_embeddings: bool = True

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def validate(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"LlamaConfig: n_embd {self.n_embd} is not a multiple of "
                             f"n_head {self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"LlamaConfig: n_head {self.n_head} is not a multiple of "
                             f"n_kv_head {self.n_kv_head}")
        if self.head_dim % 2:
            raise ValueError(f"LlamaConfig: head size {self.head_dim} must be even for rotary")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def rope_tables(T: int, d: int, theta: float, start: int = 0, dtype=np.float32,
                device="cpu"):
    """cos and sin of ``pos * theta**(-2i/d)`` for positions ``start..start+T``, each ``(T, d)``
    with the ``d/2`` frequencies repeated over both halves (the half-split layout); arrays of
    ``device``, computed there in float64."""
    xp = backend.xp_for_device(backend.normalize_device(device))
    inv = theta ** (-xp.arange(0, d, 2, dtype=xp.float64) / d)
    ang = xp.arange(start, start + T, dtype=xp.float64)[:, None] * inv[None, :]
    ang = xp.concatenate([ang, ang], axis=1)
    return xp.cos(ang).astype(dtype), xp.sin(ang).astype(dtype)


class Rotary(Op):
    """y = x * cos + rot(x) * sin with rot([x1, x2]) = [-x2, x1] over the last dim (halves);
    dx = g * cos - rot(g * sin)  (rot is a rotation by 90 degrees, so rot^T = -rot)."""

    def forward(self, x, cos, sin):
        self.save(cos, sin)
        h = x.shape[-1] // 2
        y = x * cos
        y[..., :h] -= x[..., h:] * sin[..., :h]
        y[..., h:] += x[..., :h] * sin[..., h:]
        return y

    def backward(self, g):
        cos, sin = self.saved
        u = g * sin
        h = u.shape[-1] // 2
        rot = self.xp.concatenate([-u[..., h:], u[..., :h]], axis=-1)
        return g * cos - rot, None, None


def apply_rotary(x: Tensor, cos, sin) -> Tensor:
    """Rotate ``x`` (..., T, d) by the tables from :func:`rope_tables` (half-split pairs)."""
    dev = backend.device_of(x._data)  # (tables made elsewhere are moved to x's device)
    cos, sin = (backend.to_device(t, dev).astype(x._data.dtype, copy=False) for t in (cos, sin))
    return Rotary.apply(x, cos, sin)


class KVCache:
    """Keys and values of every layer for generation: preallocated ``(B, n_kv_head, L, d)``
    arrays filled position by position, so each new token attends without recomputing the
    prefix. The arrays live on ``device``."""

    def __init__(self, config: LlamaConfig, batch: int, max_len: int, dtype=np.float32,
                 device="cpu"):
        shape = (batch, config.n_kv_head, max_len, config.head_dim)
        xp = backend.xp_for_device(backend.normalize_device(device))
        self.k = [xp.zeros(shape, dtype) for _ in range(config.n_layer)]
        self.v = [xp.zeros(shape, dtype) for _ in range(config.n_layer)]
        self.length = 0
        self.max_len = max_len

    def update(self, layer: int, k, v):
        """Write ``k, v`` (B, KV, T, d) at the current position; returns all keys and values."""
        T = k.shape[2]
        s = self.length
        self.k[layer][:, :, s:s + T] = k
        self.v[layer][:, :, s:s + T] = v
        return self.k[layer][:, :, :s + T], self.v[layer][:, :, :s + T]


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        C, hd = cfg.n_embd, cfg.head_dim
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, hd
        self.q_proj = nn.Linear(C, cfg.n_head * hd, bias=False)
        self.k_proj = nn.Linear(C, cfg.n_kv_head * hd, bias=False)
        self.v_proj = nn.Linear(C, cfg.n_kv_head * hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_head * hd, C, bias=False)

    def forward(self, x, cos, sin, cache=None, layer=0):
        B, T, C = x.shape
        H, KV, hd = self.n_head, self.n_kv_head, self.head_dim
        q = self.q_proj(x).reshape(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(x).reshape(B, T, KV, hd).transpose(1, 2)  # (B, KV, T, hd)
        v = self.v_proj(x).reshape(B, T, KV, hd).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        # grouped-query attention without copying keys: query heads h = g * rep + r share key
        # head g, so (B, KV, rep, T, hd) queries broadcast against (B, KV, 1, S, hd) keys
        q = q.reshape(B, KV, H // KV, T, hd)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k.unsqueeze(2), v.unsqueeze(2), is_causal=True)
        else:
            ks, vs = cache.update(layer, k._data, v._data)
            S = ks.shape[2]
            # query t sits at position S - T + t and sees keys 0..S - T + t
            xp = backend.array_module(ks)
            mask = xp.arange(S)[None, :] <= xp.arange(S - T, S)[:, None]
            y = F.scaled_dot_product_attention(q, Tensor(ks[:, :, None]), Tensor(vs[:, :, None]),
                                               attn_mask=Tensor(mask))
        y = y.reshape(B, H, T, hd).transpose(1, 2).reshape(B, T, H * hd)  # (B, T, C)
        return self.o_proj(y)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.n_embd, cfg.n_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.n_embd, cfg.n_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.n_hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, cache=None, layer=0):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer)
        return x + self.mlp(self.mlp_norm(x))


class Llama(nn.Module):
    """Llama-family decoder-only transformer; ``forward(idx, targets=None)`` as chainrule's GPT:
    returns ``(logits, loss)`` where loss is the mean cross-entropy when targets are given."""

    def __init__(self, config: LlamaConfig, init_weights: bool = True):
        super().__init__()
        self.config = config.validate()
        self.eos_id = None  # when set, generate() stops at this token unless told otherwise
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.norm = nn.RMSNorm(config.n_embd, eps=config.norm_eps)
        if not config.tie_embeddings:
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if init_weights:
            self._init_weights()

    def _init_weights(self):
        # normal(0, 0.02) as GPT-2 and Llama's reference init; norms start at one
        rng = _rng()
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p._data[...] = 1.0
            else:
                p._data[...] = rng.normal(0.0, 0.02, p.shape).astype(p._data.dtype)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (a tied head counts once; ``non_embedding`` leaves out the table)."""
        n = sum(p._data.size for p in self.parameters())
        return n - self.embed.weight._data.size if non_embedding else n

    def head_weight(self):
        return self.embed.weight if self.config.tie_embeddings else self.lm_head.weight

    def forward(self, idx, targets=None, cache: KVCache | None = None):
        idx = idx if isinstance(idx, Tensor) else Tensor(np.asarray(idx, dtype=np.int64))
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > max(self.config.block_size, getattr(cache, "max_len", 0)):
            raise ValueError(f"Llama: sequence of {start + T} tokens is longer than block_size "
                             f"{self.config.block_size}")
        x = self.embed(idx)  # (B, T, C)
        cos, sin = rope_tables(T, self.config.head_dim, self.config.rope_theta, start,
                               device=x.device)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, i)
        if cache is not None:
            cache.length += T
        x = self.norm(x)
        logits = F.linear(x, self.head_weight())  # (B, T, vocab)
        loss = None
        if targets is not None:
            targets = targets if isinstance(targets, Tensor) else Tensor(
                np.asarray(targets, dtype=np.int64))
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        return logits, loss

    # -- generation ---------------------------------------------------------------------
    @no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k=None,
                 top_p=None, generator=None, eos_id=None):
        """Continue ``idx`` (B, T) by ``max_new_tokens`` tokens with a key-value cache: the
        prompt is read once, then each step runs one position. Sampling as
        :meth:`chainrule.models.gpt.GPT.generate` (``temperature=0`` is greedy; draws from
        ``generator``, default chainrule's global one). Stops early once every row has produced
        ``eos_id`` (default ``self.eos_id``)."""
        # the tokens so far on the host (the sampler draws there from a NumPy generator); the
        # network, its cache and each step's input on the model's device
        idx = np.asarray(idx.detach().cpu().numpy() if isinstance(idx, Tensor) else idx,
                         dtype=np.int64)
        if idx.ndim == 1:
            idx = idx[None]
        if idx.ndim != 2 or idx.shape[1] == 0:
            raise ValueError(f"Llama.generate: idx must be (batch, T) with T >= 1, got shape "
                             f"{idx.shape}")
        generator = _rng() if generator is None else generator
        eos_id = self.eos_id if eos_id is None else eos_id
        B, T = idx.shape
        dev = self.embed.weight.device
        cache = KVCache(self.config, B, T + max_new_tokens, device=dev)
        was_training = self.training
        self.eval()
        out = [idx]
        logits, _ = self(Tensor(idx, device=dev), cache=cache)
        done = np.zeros(B, dtype=bool)
        for _ in range(max_new_tokens):
            last = backend.to_numpy(logits._data[:, -1, :])  # (B, V), explicitly to the host
            nxt = sample_next(last, temperature, top_k, top_p, generator)
            if eos_id is not None:
                nxt = np.where(done, eos_id, nxt)
                done |= nxt == eos_id
            out.append(nxt[:, None])
            if done.all():
                break
            logits, _ = self(Tensor(nxt[:, None], device=dev), cache=cache)
        self.train(was_training)
        return Tensor(np.concatenate(out, axis=1), device=dev)


__all__ = ["Llama", "LlamaConfig", "KVCache", "rope_tables", "apply_rotary"]
