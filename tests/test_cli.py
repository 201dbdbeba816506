"""The ``chainrule`` command: train and sample end to end, and a clear message with a non-zero
exit status (never a traceback) for each kind of bad input."""

import os
import subprocess
import sys

import pytest

from chainrule import cli
from chainrule.data import default_corpus_text

TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=4",
        "--max_iters=4", "--eval_interval=2", "--eval_iters=1", "--log_interval=1",
        "--sample_tokens=10", "--diagnose_interval=0", "--progress=false"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("text") / "text.txt"
    p.write_text(default_corpus_text()[:8000], encoding="utf-8")
    return str(p)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, text_file):
    out = tmp_path_factory.mktemp("runs")
    assert cli.main(["train", f"--data={text_file}", f"--out_dir={out}", "--name=r"] + TINY) == 0
    return str(out / "r")


def _cmd(*args):
    return subprocess.run([sys.executable, "-m", "chainrule.cli", *args], capture_output=True,
                          text=True, timeout=120)


def _fails(capsys, argv, status, *phrases):
    assert cli.main(argv) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for p in phrases:
        assert p in err, (p, err)
    return err


def test_train_and_sample_from_the_command_line_write_every_promised_file(tmp_path, text_file):
    res = _cmd("train", f"--data={text_file}", f"--out_dir={tmp_path}", "--name=e2e", *TINY)
    assert res.returncode == 0, res.stderr
    assert "--- sample ---" in res.stdout and "report:" in res.stdout
    run = tmp_path / "e2e"
    for f in ("config.toml", "tokenizer.json", "metrics.jsonl", "checkpoint.safetensors",
              "samples.txt", "report.png", "report.html", "data/tokens.bin"):
        assert (run / f).is_file() and (run / f).stat().st_size > 0, f
    res = _cmd("sample", str(run), "--prompt", "The ", "--max-new-tokens", "25",
               "--temperature", "0.8", "--top-k", "5")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("The ") and len(res.stdout.rstrip("\n")) >= 4 + 25 - 2


def test_sample_is_reproducible_with_a_seed_and_greedy_at_temperature_0(run_dir, capsys):
    outs = []
    for seed in ("1", "1", "2"):
        assert cli.main(["sample", run_dir, "--prompt", "def", "--max-new-tokens", "30",
                         "--seed", seed]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and outs[0].startswith("def")
    assert cli.main(["sample", run_dir, "--prompt", "a", "--temperature", "0",
                     "--max-new-tokens", "10", "--num-samples", "2"]) == 0
    greedy = capsys.readouterr().out.split("\n---------------\n")
    assert len(greedy) == 2 and greedy[0].strip() == greedy[1].strip()


def test_missing_data_file_is_a_message_not_a_traceback(tmp_path):
    res = _cmd("train", f"--data={tmp_path / 'nope.txt'}", f"--out_dir={tmp_path}")
    assert res.returncode == 1
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_bad_data_files_give_clear_errors(tmp_path, capsys):
    out = f"--out_dir={tmp_path / 'runs'}"
    (tmp_path / "empty.txt").write_text("")
    _fails(capsys, ["train", f"--data={tmp_path / 'empty.txt'}", out], 1, "is empty")
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 au lait".encode("latin-1"))
    _fails(capsys, ["train", f"--data={tmp_path / 'latin1.txt'}", out], 1,
           "not valid UTF-8", "byte 3")
    (tmp_path / "short.txt").write_text("just a few words of text")
    _fails(capsys, ["train", f"--data={tmp_path / 'short.txt'}", out, "--block_size=64"], 1,
           "too short for block_size 64")
    assert not os.path.exists(tmp_path / "runs") or not os.listdir(tmp_path / "runs")


def test_config_mistakes_exit_2_with_the_key_named(tmp_path, capsys):
    _fails(capsys, ["train", "--n_layr=2"], 2, "unknown config key 'n_layr'", "n_layer")
    _fails(capsys, ["train", "--n_layer=two"], 2, "--n_layer must be an integer, got 'two'")
    _fails(capsys, ["train", "--learning_rate=fast"], 2, "learning_rate must be a number")
    p = tmp_path / "c.toml"
    p.write_text("block_size = 3.5\n")
    _fails(capsys, ["train", "--config", str(p)], 2, "block_size must be an integer, got 3.5")
    _fails(capsys, ["train", "--config", str(tmp_path / "missing.toml")], 2, "does not exist")


def test_resume_with_a_different_config_is_refused(run_dir, capsys):
    _fails(capsys, ["train", "--resume", run_dir, "--n_layer=3"], 1,
           "does not match", "n_layer: the run has 1, now 3")
    _fails(capsys, ["train", "--resume", os.path.dirname(run_dir)], 1, "not a run folder")


def test_prompt_outside_the_vocabulary_is_refused(run_dir, capsys):
    _fails(capsys, ["sample", run_dir, "--prompt", "日本"], 1, "outside the tokenizer's vocabulary",
           "'日'")
    _fails(capsys, ["sample", "/nonexistent/run"], 1, "is not a folder")
    _fails(capsys, ["sample", run_dir, "--top-p", "1.5"], 2, "--top-p")


def test_a_missing_subcommand_module_is_reported_clearly(monkeypatch, capsys):
    monkeypatch.setitem(cli._EXTERNAL, "diagnose", ("chainrule.no_such_module", "diagnose"))
    _fails(capsys, ["diagnose", "x"], 1, "'chainrule diagnose' is not available")
