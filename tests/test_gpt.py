"""GPT: loss at init, overfitting, equality with independent implementations, KV cache."""

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule.models.gpt import GPT, GPTConfig, sample_next


def _model(seed=0, **kw):
    cr.manual_seed(seed)
    cfg = dict(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16, dropout=0.0)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg))


def _tokens(shape, vocab, seed):
    return np.random.default_rng(seed).integers(0, vocab, size=shape)


def test_loss_at_init_is_within_0_1_of_ln_vocab():
    model = _model(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    x, y = _tokens((12, 64), 65, 1), _tokens((12, 64), 65, 2)
    _, loss = model(cr.tensor(x), cr.tensor(y))
    assert abs(loss.item() - math.log(65)) < 0.1


def test_overfits_one_batch_below_0_1():
    model = _model(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=32)
    opt = model.configure_optimizers(weight_decay=0.0, learning_rate=3e-3, betas=(0.9, 0.99))
    x, y = cr.tensor(_tokens((4, 16), 20, 3)), cr.tensor(_tokens((4, 16), 20, 4))
    for _ in range(300):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.1:
            break
    assert loss.item() < 0.1


# ----------------------------------------------------------------------------- references


def _reference_primitives(P, idx, targets, cfg):
    """The same GPT from chainrule's primitive ops only (indexing, matmul, softmax, mean...)."""
    B, T = idx.shape
    C, nh = cfg.n_embd, cfg.n_head
    hs = C // nh

    def ln(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) * (x - mu)).mean(-1, keepdim=True)
        y = (x - mu) / (var + 1e-5).sqrt() * w
        return y + b if b is not None else y

    def lin(x, w, b):
        y = x @ w.transpose(0, 1)
        return y + b if b is not None else y

    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    x = P["wte.weight"][idx] + P["wpe.weight"][np.arange(T)]
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        h = ln(x, P[p + "ln_1.weight"], P.get(p + "ln_1.bias"))
        qkv = lin(h, P[p + "attn.c_attn.weight"], P.get(p + "attn.c_attn.bias"))
        q, k, v = [qkv[:, :, j * C:(j + 1) * C].reshape(B, T, nh, hs).permute(0, 2, 1, 3)
                   for j in range(3)]
        att = (q @ k.transpose(2, 3)) * (1.0 / math.sqrt(hs))
        att = cr.masked_fill(att, mask, float("-inf")).softmax(-1)
        y = (att @ v).permute(0, 2, 1, 3).reshape(B, T, C)
        x = x + lin(y, P[p + "attn.c_proj.weight"], P.get(p + "attn.c_proj.bias"))
        h = ln(x, P[p + "ln_2.weight"], P.get(p + "ln_2.bias"))
        h = cr.gelu(lin(h, P[p + "mlp.c_fc.weight"], P.get(p + "mlp.c_fc.bias")))
        x = x + lin(h, P[p + "mlp.c_proj.weight"], P.get(p + "mlp.c_proj.bias"))
    x = ln(x, P["ln_f.weight"], P.get("ln_f.bias"))
    logits = x @ P["wte.weight"].transpose(0, 1)
    logp = logits.log_softmax(-1)
    nll = -cr.gather(logp, 2, targets[:, :, None]).mean()
    return logits, nll


@pytest.mark.parametrize("bias", [False, True])
def test_logits_and_gradients_equal_a_primitive_op_implementation(bias):
    model = _model(bias=bias).double()
    with cr.no_grad():  # nonzero biases and gains, so their gradients are tested too
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_(np.random.default_rng(len(name)).normal(0.5, 0.3, p.shape))
    x, y = _tokens((3, 12), 23, 5), _tokens((3, 12), 23, 6)
    logits, loss = model(cr.tensor(x), cr.tensor(y))
    loss.backward()
    P = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    ref_logits, ref_loss = _reference_primitives(P, x, y, model.config)
    ref_loss.backward()
    np.testing.assert_allclose(logits.detach().numpy(), ref_logits.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-12)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), P[name].grad.numpy(), rtol=1e-8, atol=1e-12,
                                   err_msg=name)


def test_logits_and_gradients_equal_pytorch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    model = _model(bias=True).double()
    cfg = model.config
    x, y = _tokens((2, 12), 23, 7), _tokens((2, 12), 23, 8)
    logits, loss = model(cr.tensor(x), cr.tensor(y))
    loss.backward()
    P = {n: torch.tensor(p.detach().numpy(), requires_grad=True)
         for n, p in model.named_parameters()}
    B, T, C, nh = 2, 12, cfg.n_embd, cfg.n_head
    X = P["wte.weight"][torch.tensor(x)] + P["wpe.weight"][:T]
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        h = tF.layer_norm(X, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"])
        q, k, v = tF.linear(h, P[p + "attn.c_attn.weight"], P[p + "attn.c_attn.bias"]).split(C, 2)
        q, k, v = [t.view(B, T, nh, C // nh).transpose(1, 2) for t in (q, k, v)]
        a = tF.scaled_dot_product_attention(q, k, v, is_causal=True)
        X = X + tF.linear(a.transpose(1, 2).reshape(B, T, C), P[p + "attn.c_proj.weight"],
                          P[p + "attn.c_proj.bias"])
        h = tF.layer_norm(X, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"])
        h = tF.gelu(tF.linear(h, P[p + "mlp.c_fc.weight"], P[p + "mlp.c_fc.bias"]))
        X = X + tF.linear(h, P[p + "mlp.c_proj.weight"], P[p + "mlp.c_proj.bias"])
    X = tF.layer_norm(X, (C,), P["ln_f.weight"], P["ln_f.bias"])
    t_logits = X @ P["wte.weight"].T
    t_loss = tF.cross_entropy(t_logits.reshape(-1, cfg.vocab_size), torch.tensor(y).reshape(-1))
    t_loss.backward()
    np.testing.assert_allclose(logits.detach().numpy(), t_logits.detach().numpy(), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(loss.item(), t_loss.item(), rtol=1e-12)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), P[name].grad.numpy(), rtol=1e-8, atol=1e-12,
                                   err_msg=name)


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.0, None, None), (1.0, 5, None),
                                                     (0.9, None, 0.8)])
def test_cached_generation_gives_exactly_the_uncached_tokens(temperature, top_k, top_p):
    model = _model(block_size=8)
    prompt = cr.tensor(_tokens((2, 3), 23, 9))
    n = 20  # past block_size, so the window also slides
    kw = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    a = model.generate(prompt, n, generator=np.random.default_rng(1), **kw)
    b = model.generate(prompt, n, generator=np.random.default_rng(1), use_cache=False, **kw)
    assert a.shape == (2, 3 + n)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(a.numpy()[:, :3], prompt.numpy())


def test_cached_generation_runs_one_position_per_new_token_within_the_block():
    model = _model(block_size=16)
    seen = []
    model.wte.register_forward_hook(lambda m, inp, out: seen.append(out.shape[1]))
    model.generate(cr.tensor(_tokens((1, 5), 23, 10)), 6, temperature=0.0)
    assert seen == [5, 1, 1, 1, 1, 1]


def test_generate_records_no_graph_and_restores_training_mode():
    model = _model()
    model.train()
    out = model.generate(cr.tensor(_tokens((1, 4), 23, 11)), 3)
    assert out.grad_fn is None and not out.requires_grad
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_sample_next_top_k_and_top_p_draw_from_the_renormalised_distribution():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    many = np.repeat(logits, 20000, axis=0)  # 20000 independent rows, one draw each
    draws = sample_next(many, 1.0, 2, None, rng)
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, [0.625, 0.375, 0, 0], atol=0.015)
    draws = sample_next(many, 1.0, None, 0.85, rng)
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, np.array([0.5, 0.3, 0.15, 0]) / 0.95, atol=0.015)
    np.testing.assert_array_equal(sample_next(np.array([[0.1, 2.0, -1.0]]), 0.0), [1])


# ----------------------------------------------------------------------------- structure


def test_param_groups_decay_matrices_only():
    model = _model(bias=True)
    decay, no_decay = model.param_groups(0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {names[id(p)] for p in decay["params"]} == {
        n for n, p in model.named_parameters() if p.ndim == 2}
    assert all(names[id(p)].endswith(("bias", "ln_1.weight", "ln_2.weight", "ln_f.weight"))
               for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_init_is_gpt2s_with_scaled_residual_projections():
    model = _model(vocab_size=500, block_size=64, n_layer=4, n_head=4, n_embd=128)
    std = {n: p.detach().numpy().std() for n, p in model.named_parameters() if p.ndim == 2}
    for n, s in std.items():
        want = 0.02 / math.sqrt(2 * 4) if n.endswith("c_proj.weight") else 0.02
        assert abs(s - want) < 0.05 * want, (n, s, want)


def test_sequence_longer_than_block_size_is_a_clear_error():
    model = _model(block_size=8)
    with pytest.raises(ValueError, match="block_size 8"):
        model(cr.tensor(_tokens((1, 9), 23, 13)))
