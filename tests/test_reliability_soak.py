"""Kill-and-resume soak: a small run killed with SIGKILL at a dozen moments (some inside
checkpoint writes), resumed (or restarted) each time, ends bit-identical to an uninterrupted
run: the metrics, the weights, the optimizer state and the random streams."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import chainrule as cr
from chainrule.data import default_corpus_text
from chainrule.train import make_config, read_metrics, train

pytest.importorskip("safetensors")

TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=40,
            eval_interval=10, eval_iters=2, log_interval=1, sample_tokens=0, warmup_iters=3,
            dropout=0.1, diagnose_interval=0, progress=False, checkpoint_interval=3)

_CHILD = textwrap.dedent("""
    import json, os, sys, time
    import safetensors.numpy
    from chainrule.train import make_config, train

    real = safetensors.numpy.save_file

    def slow_save(tensors, filename, metadata=None):  # a window to be killed in
        print("IN_SAVE", flush=True)
        real(tensors, filename, metadata=metadata)
        time.sleep(0.05)

    safetensors.numpy.save_file = slow_save
    values, run = json.loads(sys.argv[1]), sys.argv[2]

    def on_step(step, loss):
        print(f"STEP {step}", flush=True)

    if os.path.exists(os.path.join(run, "checkpoint.safetensors")):
        train(resume=run, on_step=on_step)
    else:
        train(make_config(None, values), on_step=on_step)
    print("DONE", flush=True)
""")


def _kill_at(values, run, rng):
    """Start the run (or its resume), SIGKILL it at a random moment; True once it finished."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(values), run],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    how = rng.choice(["save", "save", "step", "time"])
    target = rng.randint(1, 6)
    deadline = time.time() + (rng.uniform(0.2, 1.2) if how == "time" else 60)
    seen = 0
    try:
        while True:
            if how == "time" and time.time() > deadline:
                break
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("DONE"):
                return True
            if how == "save" and line.startswith("IN_SAVE"):
                seen += 1
                if seen >= max(1, target // 2):
                    time.sleep(rng.uniform(0.0, 0.04))  # inside the write or its rename
                    break
            if how == "step" and line.startswith("STEP"):
                seen += 1
                if seen >= target:
                    break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode in (0, -signal.SIGKILL), err[-3000:]
    return proc.returncode == 0


def _metrics(run):
    keys = ("loss", "lr", "grad_norm", "train_loss", "val_loss")
    return [(r["step"], tuple(r.get(k) for k in keys))
            for r in read_metrics(os.path.join(run, "metrics.jsonl"))]


def _flat(x, prefix=""):
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            out.update(_flat(v, f"{prefix}/{k}"))
        return out
    if isinstance(x, (list, tuple)):
        out = {}
        for i, v in enumerate(x):
            out.update(_flat(v, f"{prefix}/{i}"))
        return out
    if isinstance(x, cr.Tensor):
        return {prefix: x.detach().numpy()}
    return {prefix: x}


def test_sigkill_at_random_moments_resumes_bit_identically(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(default_corpus_text()[:12000], encoding="utf-8")
    values = dict(TINY, data=str(text), out_dir=str(tmp_path))
    full = train(make_config(None, dict(values, name="full")))
    run = os.path.join(tmp_path, "soak")
    rng = random.Random(1234)
    kills = finished = 0
    for _ in range(11):
        if _kill_at(dict(values, name="soak"), run, rng):
            finished = True
            break
        kills += 1
    if not finished:
        train(resume=run)
    assert kills >= 10, kills
    assert _metrics(run) == _metrics(full.run_dir)
    a = _flat(cr.load(os.path.join(run, "checkpoint.safetensors")))
    b = _flat(cr.load(os.path.join(full.run_dir, "checkpoint.safetensors")))
    a.pop("/elapsed")
    b.pop("/elapsed")
    assert set(a) == set(b)
    for k in b:
        if isinstance(b[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        elif k.startswith("/config/") and k.split("/")[-1] in ("name",):
            continue
        else:
            assert a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]), k
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


_FT_CHILD = textwrap.dedent("""
    import json, os, sys, time
    import safetensors.numpy
    from chainrule.finetune.trainer import FinetuneSpec, finetune, resume
    from chainrule.train.config import TrainConfig

    real = safetensors.numpy.save_file

    def slow_save(tensors, filename, metadata=None):
        print("IN_SAVE", flush=True)
        real(tensors, filename, metadata=metadata)
        time.sleep(0.05)

    safetensors.numpy.save_file = slow_save
    values, run = json.loads(sys.argv[1]), sys.argv[2]
    spec = values.pop("spec")

    def on_step(step, loss):
        print(f"STEP {step}", flush=True)

    if os.path.exists(os.path.join(run, "checkpoint.safetensors")):
        resume(run, on_step=on_step)
    else:
        finetune(FinetuneSpec(**spec), TrainConfig(**values), on_step=on_step)
    print("DONE", flush=True)
""")


def test_sigkill_during_finetune_resumes_bit_identically(tmp_path, monkeypatch):
    pytest.importorskip("tokenizers")
    from chainrule.finetune.trainer import FinetuneSpec, finetune
    from test_reliability_finetune import write_tiny_hf

    write_tiny_hf(tmp_path / "base")
    data = tmp_path / "d.txt"
    data.write_text("the cat sat on the mat; " * 200, encoding="utf-8")
    spec = dict(model=str(tmp_path / "base"), method="lora", lora_rank=2)
    values = dict(data=str(data), block_size=16, batch_size=2, max_iters=16,
                  learning_rate=1e-2, warmup_iters=1, eval_interval=4, eval_iters=1,
                  log_interval=1, checkpoint_interval=2, sample_tokens=0,
                  diagnose_interval=0, out_dir=str(tmp_path), progress=False)
    from chainrule.train.config import TrainConfig

    full = finetune(FinetuneSpec(**spec), TrainConfig(**dict(values, name="full")))
    run = os.path.join(tmp_path, "soak")
    monkeypatch.setattr(sys.modules[__name__], "_CHILD", _FT_CHILD)
    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        if _kill_at(dict(values, name="soak", spec=spec), run, rng):
            break
        kills += 1
    else:
        from chainrule.finetune.trainer import resume

        resume(run)
    assert kills >= 3
    assert _metrics(run) == _metrics(full.run_dir)
    a = _flat(cr.load(os.path.join(run, "checkpoint.safetensors")))
    b = _flat(cr.load(os.path.join(full.run_dir, "checkpoint.safetensors")))
    for k in b:
        if isinstance(b[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        elif k not in ("/elapsed", "/config/name"):
            assert a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]), k
