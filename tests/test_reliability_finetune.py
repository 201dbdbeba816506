"""Fine-tuning resumes as training does: to the run's own max_iters, from the checkpoint of
the last evaluation, refused when the text or the base model changed or another process holds
the run; its files are written atomically."""

import json
import os

import pytest

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")

from chainrule.train.config import TrainConfig  # noqa: E402
from chainrule.train.loop import StopTraining  # noqa: E402
from chainrule.train.run import RunError  # noqa: E402
from test_finetune import CFG, CHATML, tiny  # noqa: E402


def write_tiny_hf(folder):
    """A tiny random Llama checkpoint folder with a byte-level tokenizer."""
    import tokenizers
    from safetensors.numpy import save_file

    from chainrule.pretrained.tokenizer import PretrainedTokenizer, byte_level_bpe

    model = tiny(seed=3)
    hf = {"model.embed_tokens.weight": model.embed.weight.detach().numpy(),
          "model.norm.weight": model.norm.weight.detach().numpy()}
    names = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"}
    for n, p in model.named_parameters():
        if n.startswith("blocks."):
            _, i, rest = n.split(".", 2)
            part = rest.rsplit(".", 1)[0]
            part = names.get(part, part.replace("attn.", "self_attn."))
            hf[f"model.layers.{i}.{part}.weight"] = p.detach().numpy()
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


def _cfg(tmp_path, data, name, **kw):
    values = dict(data=str(data), block_size=16, batch_size=2, max_iters=8,
                  learning_rate=1e-2, warmup_iters=1, eval_interval=3, eval_iters=1,
                  log_interval=1, checkpoint_interval=0, sample_tokens=0,
                  diagnose_interval=0, out_dir=str(tmp_path), name=name, progress=False)
    values.update(kw)
    return TrainConfig(**values)


@pytest.fixture()
def setup(tmp_path):
    from chainrule.finetune.trainer import FinetuneSpec

    write_tiny_hf(tmp_path / "base")
    data = tmp_path / "d.txt"
    data.write_text("the cat sat on the mat; " * 200, encoding="utf-8")
    return tmp_path, data, FinetuneSpec(model=str(tmp_path / "base"), method="lora",
                                        lora_rank=2)


def _losses(run):
    rows = open(os.path.join(run, "metrics.jsonl")).read().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, rows) if "loss" in r]


def _crash_at(n):
    def crash(step, loss):
        if step == n:
            raise StopTraining
    return crash


def test_resume_continues_to_the_original_max_iters_from_the_last_evaluation(setup, capsys):
    from chainrule.cli import main
    from chainrule.finetune.trainer import FinetuneSpec, finetune

    tmp_path, data, spec = setup
    finetune(spec, _cfg(tmp_path, data, "whole"))
    killed = finetune(FinetuneSpec(**vars(spec)), _cfg(tmp_path, data, "killed"),
                      on_step=_crash_at(8))
    import chainrule as cr

    assert cr.load(os.path.join(killed.run_dir, "checkpoint.safetensors"))["step"] == 6
    capsys.readouterr()
    assert main(["finetune", "--resume", killed.run_dir, "--no-progress"]) == 0
    assert "done: 8 steps" in capsys.readouterr().out
    assert _losses(killed.run_dir) == _losses(os.path.join(tmp_path, "whole"))


def test_checkpoint_interval_between_evaluations(setup):
    from chainrule.finetune.trainer import finetune, resume

    tmp_path, data, spec = setup
    run = finetune(spec, _cfg(tmp_path, data, "ci", checkpoint_interval=2, eval_interval=8),
                   on_step=_crash_at(5)).run_dir
    import chainrule as cr

    assert cr.load(os.path.join(run, "checkpoint.safetensors"))["step"] == 4
    assert resume(run).step == 8


def test_resume_refuses_a_changed_text_or_base_model(setup):
    from chainrule.finetune.trainer import FinetuneSpec, finetune, resume

    tmp_path, data, spec = setup
    run = finetune(spec, _cfg(tmp_path, data, "fp"), on_step=_crash_at(4)).run_dir
    original = data.read_bytes()
    data.write_text("a different text entirely; " * 200, encoding="utf-8")
    with pytest.raises(RunError, match="training text .* changed"):
        resume(run)
    data.write_bytes(original)
    cfg_path = tmp_path / "base" / "config.json"
    base_cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps(dict(base_cfg, rms_norm_eps=1e-3)))
    with pytest.raises(RunError, match="base model .* changed"):
        resume(run)
    cfg_path.write_text(json.dumps(base_cfg))
    assert resume(run).step == 8
    del FinetuneSpec


def test_finetune_run_files_are_never_written_through_links(setup):
    from chainrule.finetune.trainer import finetune, resume

    tmp_path, data, spec = setup
    run = finetune(spec, _cfg(tmp_path, data, "links", sample_tokens=4),
                   on_step=_crash_at(4)).run_dir
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep")
    for name in ("config.toml", "samples.txt", "metrics.jsonl", "report.html"):
        os.remove(os.path.join(run, name)) if os.path.lexists(os.path.join(run, name)) else None
        os.symlink(victim, os.path.join(run, name))
    assert resume(run).step == 8
    assert victim.read_bytes() == b"keep"
