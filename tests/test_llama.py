"""chainrule.models.Llama on small random configurations: rotary, attention, cache, gradients."""

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import gradcheck
from chainrule.models.llama import KVCache, Llama, LlamaConfig, Rotary, apply_rotary, rope_tables

CFG = dict(vocab_size=50, n_layer=2, n_embd=24, n_head=6, n_kv_head=2, n_hidden=40,
           rope_theta=1000.0, norm_eps=1e-5, block_size=32)


def small(tied=True, seed=0):
    cr.manual_seed(seed)
    return Llama(LlamaConfig(**CFG, tie_embeddings=tied))


def test_rotary_rotates_each_half_split_pair_by_position_times_frequency():
    T, d, theta = 5, 8, 100.0
    x = np.random.default_rng(0).standard_normal((2, 3, T, d))
    cos, sin = rope_tables(T, d, theta, dtype=np.float64)
    y = apply_rotary(cr.tensor(x), cos, sin)._data
    for t in range(T):
        for i in range(d // 2):
            a = t * theta ** (-2 * i / d)
            x1, x2 = x[..., t, i], x[..., t, i + d // 2]
            np.testing.assert_allclose(y[..., t, i], x1 * math.cos(a) - x2 * math.sin(a))
            np.testing.assert_allclose(y[..., t, i + d // 2], x1 * math.sin(a) + x2 * math.cos(a))


def test_rotary_gradient_matches_finite_differences_and_second_order():
    cos, sin = rope_tables(4, 6, 50.0, start=3, dtype=np.float64)
    x = cr.tensor(np.random.default_rng(1).standard_normal((2, 4, 6)), requires_grad=True)
    assert gradcheck(lambda t: Rotary.apply(t, cos, sin), (x,))
    assert cr.autograd.gradgradcheck(lambda t: Rotary.apply(t, cos, sin) ** 2, (x,))


def test_rotary_keeps_relative_position_dot_products():
    # q.k after rotation depends only on the offset between positions: the point of RoPE
    d = 8
    rng = np.random.default_rng(2)
    q, k = rng.standard_normal(d), rng.standard_normal(d)

    def rot(v, pos):
        c, s = rope_tables(1, d, 10000.0, start=pos, dtype=np.float64)
        return apply_rotary(cr.tensor(v[None]), c, s)._data[0]

    assert np.isclose(rot(q, 7) @ rot(k, 3), rot(q, 14) @ rot(k, 10))


def numpy_llama(model, ids):
    """Forward of ``model``'s weights in float64 NumPy: half-split rotary, repeated KV heads."""
    c = model.config
    P = {n: p._data.astype(np.float64) for n, p in model.named_parameters()}
    T, H, KV, hd = len(ids), c.n_head, c.n_kv_head, c.head_dim

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + c.norm_eps) * w

    ang = np.arange(T)[:, None] * c.rope_theta ** (-np.arange(0, hd, 2) / hd)
    cos, sin = np.cos(ang)[:, None], np.sin(ang)[:, None]  # (T, 1, hd/2)

    def rope(x):  # (T, h, hd)
        a, b = x[..., : hd // 2], x[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], -1)

    x = P["embed.weight"][ids]
    for i in range(c.n_layer):
        p = f"blocks.{i}."
        h = rms(x, P[p + "attn_norm.weight"])
        q = rope((h @ P[p + "attn.q_proj.weight"].T).reshape(T, H, hd))
        k = rope((h @ P[p + "attn.k_proj.weight"].T).reshape(T, KV, hd))
        v = (h @ P[p + "attn.v_proj.weight"].T).reshape(T, KV, hd)
        k, v = np.repeat(k, H // KV, 1), np.repeat(v, H // KV, 1)
        s = np.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + np.triu(np.full((T, T), -np.inf), 1)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", a, v).reshape(T, -1) @ P[p + "attn.o_proj.weight"].T
        h = rms(x, P[p + "mlp_norm.weight"])
        g = h @ P[p + "mlp.gate_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * (h @ P[p + "mlp.up_proj.weight"].T)) @ P[
            p + "mlp.down_proj.weight"].T
    head = P["embed.weight"] if c.tie_embeddings else P["lm_head.weight"]
    return rms(x, P["norm.weight"]) @ head.T


@pytest.mark.parametrize("tied", [True, False])
def test_llama_logits_equal_numpy_reference(tied):
    model = small(tied)
    with cr.no_grad():
        for p in model.parameters():  # norms away from one so their weights matter
            p._data[...] += np.float32(0.1) * np.float32(p.ndim == 1)
    ids = np.array([4, 9, 49, 0, 17, 17, 3])
    logits, _ = model(cr.tensor(ids[None]))
    np.testing.assert_allclose(logits._data[0], numpy_llama(model, ids), rtol=1e-4, atol=1e-5)
    n_params = sum(p._data.size for p in model.parameters())
    assert model.num_params() == n_params
    assert ("lm_head.weight" in dict(model.named_parameters())) is not tied


def test_llama_loss_and_parameter_gradients_equal_pytorch():
    torch = pytest.importorskip("torch")
    model = small(tied=False)
    ids = np.random.default_rng(3).integers(0, CFG["vocab_size"], (2, 9))
    _, loss = model(cr.tensor(ids[:, :-1]), cr.tensor(ids[:, 1:]))
    loss.backward()

    P = {n: torch.tensor(p._data, dtype=torch.float64, requires_grad=True)
         for n, p in model.named_parameters()}
    c = model.config
    B, T = 2, 8
    H, KV, hd = c.n_head, c.n_kv_head, c.head_dim

    def rms(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + c.norm_eps) * w

    inv = c.rope_theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    x = P["embed.weight"][torch.tensor(ids[:, :-1])]
    for i in range(c.n_layer):
        p = f"blocks.{i}."
        h = rms(x, P[p + "attn_norm.weight"])
        q = rope((h @ P[p + "attn.q_proj.weight"].T).view(B, T, H, hd).transpose(1, 2))
        k = rope((h @ P[p + "attn.k_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2))
        v = (h @ P[p + "attn.v_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
        y = torch.nn.functional.scaled_dot_product_attention(
            q, k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1), is_causal=True)
        x = x + y.transpose(1, 2).reshape(B, T, -1) @ P[p + "attn.o_proj.weight"].T
        h = rms(x, P[p + "mlp_norm.weight"])
        g = torch.nn.functional.silu(h @ P[p + "mlp.gate_proj.weight"].T)
        x = x + (g * (h @ P[p + "mlp.up_proj.weight"].T)) @ P[p + "mlp.down_proj.weight"].T
    logits = rms(x, P["norm.weight"]) @ P["lm_head.weight"].T
    ref = torch.nn.functional.cross_entropy(logits.reshape(B * T, -1),
                                            torch.tensor(ids[:, 1:]).reshape(-1))
    ref.backward()
    assert abs(float(loss) - ref.item()) < 1e-5
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad._data, P[n].grad.numpy(), rtol=1e-3, atol=2e-6,
                                   err_msg=n)


def test_kv_cache_generation_gives_the_tokens_of_uncached_greedy_decoding():
    model = small()
    model.eval()
    prompt = [[5, 11, 2], [7, 7, 30]]
    out = model.generate(prompt, 8, temperature=0)._data
    seq = np.array(prompt)
    for _ in range(8):
        with cr.no_grad():
            logits, _ = model(cr.tensor(seq))
        seq = np.concatenate([seq, logits._data[:, -1].argmax(-1)[:, None]], 1)
    np.testing.assert_array_equal(out, seq)


def test_kv_cache_chunked_prefill_matches_full_forward():
    model = small()
    ids = np.array([[1, 2, 3, 4, 5, 6, 7]])
    with cr.no_grad():
        full, _ = model(cr.tensor(ids))
        cache = KVCache(model.config, 1, 7)
        a, _ = model(cr.tensor(ids[:, :4]), cache=cache)
        b, _ = model(cr.tensor(ids[:, 4:]), cache=cache)
    np.testing.assert_allclose(np.concatenate([a._data, b._data], 1), full._data, atol=1e-5)


def test_generate_stops_at_eos_and_samples_only_top_k_tokens():
    model = small()
    first = int(model.generate([[3]], 1, temperature=0)._data[0, -1])
    out = model.generate([[3]], 10, temperature=0, eos_id=first)._data
    assert out.shape == (1, 2)
    gen = np.random.default_rng(0)
    with cr.no_grad():
        logits, _ = model(cr.tensor([[3]]))
    top2 = set(np.argsort(logits._data[0, -1])[-2:].tolist())
    seen = {int(model.generate([[3]], 1, temperature=5.0, top_k=2, generator=gen)._data[0, -1])
            for _ in range(30)}
    assert seen <= top2 and len(seen) == 2


def test_llama_rejects_sequences_longer_than_block_size():
    model = small()
    with pytest.raises(ValueError, match="longer than block_size 32"):
        model(cr.tensor(np.zeros((1, 33), dtype=np.int64)))
