"""Training: the config, the schedule, exact resume after a kill or Ctrl-C, the run folder."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from chainrule.data import default_corpus_text
from chainrule.train import (
    ConfigError,
    RunError,
    TrainConfig,
    get_lr,
    make_config,
    parse_overrides,
    read_metrics,
    train,
)

TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=12,
            eval_interval=6, eval_iters=2, log_interval=1, sample_tokens=20, warmup_iters=3,
            dropout=0.1, diagnose_interval=0, progress=False, checkpoint_interval=5)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("text") / "text.txt"
    p.write_text(default_corpus_text()[:20000], encoding="utf-8")
    return str(p)


def _cfg(tmp_path, text_file, name, **kw):
    values = dict(TINY, data=text_file, out_dir=str(tmp_path), name=name)
    values.update(kw)
    return make_config(None, values)


def _losses(run_dir):
    recs = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    steps = [(r["step"], r["loss"]) for r in recs if "loss" in r]
    evals = [(r["step"], r["train_loss"], r["val_loss"]) for r in recs if "val_loss" in r]
    return steps, evals


# ----------------------------------------------------------------------------- config


def test_get_lr_is_linear_warmup_then_cosine_to_min_lr():
    cfg = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=10, max_iters=110)
    assert get_lr(0, cfg) == pytest.approx(1e-3 * 1 / 11)
    assert get_lr(9, cfg) == pytest.approx(1e-3 * 10 / 11)
    assert get_lr(10, cfg) == pytest.approx(1e-3)
    assert get_lr(60, cfg) == pytest.approx(1e-4 + 0.5 * 9e-4)  # half way: cos(pi/2) = 0
    r = 0.25
    assert get_lr(35, cfg) == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi * r)) * 9e-4)
    assert get_lr(110, cfg) == pytest.approx(1e-4) and get_lr(500, cfg) == pytest.approx(1e-4)


def test_toml_then_overrides_set_the_config(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('n_layer = 3\nlearning_rate = 2e-3\n[model]\nn_embd = 64\ndata = "x.txt"\n')
    cfg = make_config(str(p), parse_overrides(["--n_layer=5", "--bias", "--dropout", "0.2"]))
    assert (cfg.n_layer, cfg.learning_rate, cfg.n_embd, cfg.data) == (5, 2e-3, 64, "x.txt")
    assert cfg.bias is True and cfg.dropout == 0.2
    assert cfg.batch_size == TrainConfig().batch_size


def test_unknown_keys_and_wrong_types_are_config_errors_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'n_layers'.*did you mean n_layer"):
        parse_overrides(["--n_layers=2"])
    with pytest.raises(ConfigError, match="--batch_size must be an integer, got '1.5'"):
        parse_overrides(["--batch_size=1.5"])
    p = tmp_path / "c.toml"
    p.write_text('n_layer = "four"\n')
    with pytest.raises(ConfigError, match="n_layer must be an integer, got 'four'"):
        make_config(str(p))
    p.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'colour'"):
        make_config(str(p))
    with pytest.raises(ConfigError, match="divisible by n_head"):
        make_config(None, {"n_embd": 30, "n_head": 4})


# ----------------------------------------------------------------------------- resume


_KILL_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from chainrule.train import make_config, train
    cfg = make_config(None, json.loads(sys.argv[1]))
    def on_step(step, loss):
        if step == 8:  # after the checkpoint at step 5, mid-way to the next one
            os.kill(os.getpid(), signal.SIGKILL)
    train(cfg, on_step=on_step)
""")


def test_a_killed_and_resumed_run_reproduces_the_uninterrupted_losses(tmp_path, text_file):
    full = train(_cfg(tmp_path, text_file, "full"))
    assert full.step == 12 and not full.interrupted
    values = dict(TINY, data=text_file, out_dir=str(tmp_path), name="killed")
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, json.dumps(values)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    killed_dir = os.path.join(tmp_path, "killed")
    assert max(s for s, _ in _losses(killed_dir)[0]) == 8  # steps 6..8 were lost with the kill
    resumed = train(resume=killed_dir)
    assert resumed.step == 12
    full_steps, full_evals = _losses(full.run_dir)
    res_steps, res_evals = _losses(killed_dir)
    assert [s for s, _ in res_steps] == list(range(1, 13))
    assert res_steps == full_steps  # bit-identical losses, dropout included
    assert res_evals == full_evals


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_exactly(tmp_path, text_file):
    full = train(_cfg(tmp_path, text_file, "full", checkpoint_interval=0))

    def press_ctrl_c(step, loss):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = train(_cfg(tmp_path, text_file, "ctrlc", checkpoint_interval=0),
                    on_step=press_ctrl_c)
    assert stopped.interrupted and stopped.step == 4
    import chainrule as cr

    assert cr.load(os.path.join(stopped.run_dir, "checkpoint.safetensors"))["step"] == 4
    resumed = train(resume=stopped.run_dir)
    assert resumed.step == 12
    assert _losses(stopped.run_dir) == _losses(full.run_dir)


def test_resume_refuses_a_changed_model_config_or_tokenizer(tmp_path, text_file):
    run = train(_cfg(tmp_path, text_file, "r", max_iters=2, eval_interval=2, sample_tokens=0))
    with pytest.raises(RunError, match="n_embd: the run has 16, now 32"):
        train(resume=run.run_dir, explicit={"n_embd": 32})
    with pytest.raises(RunError, match="tokenizer: the run has 'char', now 'bpe'"):
        train(resume=run.run_dir, explicit={"tokenizer": "bpe"})
    tok_path = os.path.join(run.run_dir, "tokenizer.json")
    with open(tok_path, "w") as f:
        json.dump({"type": "char", "chars": "abc"}, f)
    with pytest.raises(RunError, match="tokenizer.json does not match"):
        train(resume=run.run_dir, explicit={"max_iters": 4})


def test_resume_may_extend_max_iters(tmp_path, text_file):
    run = train(_cfg(tmp_path, text_file, "ext", max_iters=3, eval_interval=3, sample_tokens=0))
    more = train(resume=run.run_dir, explicit={"max_iters": 5})
    assert more.step == 5
    steps, _ = _losses(run.run_dir)
    assert [s for s, _ in steps] == [1, 2, 3, 4, 5]


def test_run_folder_holds_every_promised_file(tmp_path, text_file):
    run = train(_cfg(tmp_path, text_file, "files", max_iters=6, eval_interval=3))
    names = set(os.listdir(run.run_dir))
    for f in ("config.toml", "tokenizer.json", "metrics.jsonl", "checkpoint.safetensors",
              "samples.txt", "report.png", "report.html", "data"):
        assert f in names, f
    with open(os.path.join(run.run_dir, "report.html"), encoding="utf-8") as f:
        page = f.read()
    assert "data:image/png;base64," in page and "<h2>Diagnosis</h2>" in page
    _, evals = _losses(run.run_dir)
    assert [e[0] for e in evals] == [0, 3, 6]
    for step, _, val in evals:
        assert f"<td>{step}</td>" in page and f"{val:.4f}" in page
    with open(os.path.join(run.run_dir, "config.toml"), "rb") as f:
        import tomllib

        saved = tomllib.load(f)
    assert saved["n_embd"] == 16 and saved["data"] == text_file
    with open(os.path.join(run.run_dir, "report.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert run.sample and len(run.sample) >= 20


def test_a_bpe_run_saves_its_tokenizer_and_samples_through_it(tmp_path, text_file):
    pytest.importorskip("tokenizers")
    from chainrule.train import load_run

    run = train(_cfg(tmp_path, text_file, "bpe", tokenizer="bpe", bpe_vocab_size=300,
                     max_iters=2, eval_interval=2))
    with open(os.path.join(run.run_dir, "tokenizer.json"), encoding="utf-8") as f:
        assert json.load(f)["type"] == "bpe"
    model, tokenizer, cfg = load_run(run.run_dir)
    assert tokenizer.vocab_size == 300 == model.config.vocab_size
    text = "def f(x): return x  # ünïcode"
    assert tokenizer.decode(tokenizer.encode(text)) == text
