"""A run folder is a unit of trust: no write through a planted link, one process at a time,
atomic replacement of every file, stale temporaries cleaned, a run without a checkpoint
restartable, one-line errors for bad hyperparameters and a full disk."""

import errno
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import chainrule as cr
from chainrule import cli
from chainrule.data import default_corpus_text
from chainrule.train import RunError, make_config, read_metrics, train

pytest.importorskip("safetensors")

TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=3,
            eval_interval=3, eval_iters=1, log_interval=1, sample_tokens=8, warmup_iters=1,
            diagnose_interval=0, progress=False)
VICTIM = b"precious data that no run may touch\n"


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("text") / "text.txt"
    p.write_text(default_corpus_text()[:6000], encoding="utf-8")
    return str(p)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, text_file):
    out = tmp_path_factory.mktemp("runs")
    return train(make_config(None, dict(TINY, data=text_file, out_dir=str(out),
                                        name="base"))).run_dir


def _copy(base_run, tmp_path, name="r"):
    dst = tmp_path / name
    shutil.copytree(base_run, dst)
    os.remove(dst / ".lock")
    return str(dst)


def _victim(tmp_path):
    v = tmp_path / "outside" / "victim.txt"
    v.parent.mkdir()
    v.write_bytes(VICTIM)
    return v


PLANTED = ["config.toml", "tokenizer.json", "metrics.jsonl", "samples.txt", "report.png",
           "report.html", "checkpoint.safetensors", "data/tokens.bin", "data/tokens.json",
           "data/tokens.bin.tmp", "metrics.jsonl.tmp", "report.html.tmp", "report.png.tmp.png",
           ".lock"]


@pytest.mark.parametrize("name", PLANTED)
def test_resume_never_writes_through_a_link_planted_in_the_run(base_run, tmp_path, name):
    run = _copy(base_run, tmp_path)
    victim = _victim(tmp_path)
    target = os.path.join(run, name)
    if os.path.lexists(target):
        os.remove(target)
    os.symlink(victim, target)
    try:
        result = train(resume=run, explicit={"max_iters": 5})
    except RunError:
        pass  # refusing is fine (a link where the config or checkpoint belongs)
    else:
        assert result.step == 5
        assert not os.path.islink(target) or name == ".lock"
    assert victim.read_bytes() == VICTIM


@pytest.mark.parametrize("name", ["data", "tensorboard"])
def test_a_linked_subfolder_is_refused(base_run, tmp_path, name):
    run = _copy(base_run, tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    if os.path.isdir(os.path.join(run, name)):
        shutil.copytree(os.path.join(run, name), outside, dirs_exist_ok=True)
        shutil.rmtree(os.path.join(run, name))
    os.symlink(outside, os.path.join(run, name))
    before = sorted(os.listdir(outside))
    with pytest.raises(RunError, match="symbolic link"):
        train(resume=run, explicit={"max_iters": 5})
    assert sorted(os.listdir(outside)) == before


def test_appends_refuse_links_and_hard_links(tmp_path):
    from chainrule.train.run import append_text

    victim = _victim(tmp_path)
    os.symlink(victim, tmp_path / "samples.txt")
    with pytest.raises(OSError, match="link"):
        append_text(str(tmp_path / "samples.txt"), "x")
    os.link(victim, tmp_path / "hard.txt")
    with pytest.raises(OSError, match="hard link"):
        append_text(str(tmp_path / "hard.txt"), "x")
    assert victim.read_bytes() == VICTIM


_HOLD = textwrap.dedent("""
    import sys, time
    from chainrule.train.run import RunDir
    RunDir(sys.argv[1]).lock()
    print("locked", flush=True)
    time.sleep(60)
""")


def test_a_second_process_resuming_the_same_run_is_refused(base_run, tmp_path):
    run = _copy(base_run, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, run], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        metrics_before = open(os.path.join(run, "metrics.jsonl"), "rb").read()
        with pytest.raises(RunError, match="in use by another chainrule process"):
            train(resume=run, explicit={"max_iters": 5})
        assert open(os.path.join(run, "metrics.jsonl"), "rb").read() == metrics_before
    finally:
        holder.kill()
        holder.wait()
    assert train(resume=run, explicit={"max_iters": 5}).step == 5
    steps = [r["step"] for r in read_metrics(os.path.join(run, "metrics.jsonl")) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5]  # no record twice


def test_a_kill_during_the_config_rewrite_leaves_the_run_resumable(base_run, tmp_path,
                                                                     monkeypatch):
    import chainrule.serialization as ser

    run = _copy(base_run, tmp_path)
    config = os.path.join(run, "config.toml")
    before = open(config, "rb").read()
    real = ser._replace

    def killed(tmp, fd, path):
        if path.endswith("config.toml"):
            raise KeyboardInterrupt("killed")
        return real(tmp, fd, path)

    monkeypatch.setattr(ser, "_replace", killed)
    with pytest.raises(KeyboardInterrupt):
        train(resume=run, explicit={"max_iters": 5})
    assert open(config, "rb").read() == before
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]
    monkeypatch.setattr(ser, "_replace", real)
    assert train(resume=run, explicit={"max_iters": 5}).step == 5


def test_stale_temporaries_are_removed_on_start(base_run, tmp_path):
    run = _copy(base_run, tmp_path)
    stale = [os.path.join(run, ".checkpoint.safetensors.0123456789ab.tmp"),
             os.path.join(run, ".metrics.jsonl.a1b2c3d4e5f6.tmp"),
             os.path.join(run, "data", ".tokens.bin.00aa11bb22cc.tmp"),
             os.path.join(run, "data", "tokens.bin.tmp")]
    for p in stale:
        with open(p, "wb") as f:
            f.write(b"half")
    keep = os.path.join(run, "notes.tmp")  # not a name chainrule makes: left alone
    open(keep, "w").close()
    train(resume=run, explicit={"max_iters": 4})
    assert not any(os.path.exists(p) for p in stale)
    assert os.path.exists(keep)


def test_a_run_killed_before_its_first_checkpoint_can_be_restarted(tmp_path, text_file):
    cfg = dict(TINY, data=text_file, out_dir=str(tmp_path), name="early")
    first = train(make_config(None, cfg))
    os.remove(os.path.join(first.run_dir, "checkpoint.safetensors"))  # as if killed before it
    with pytest.raises(RunError, match="no checkpoint"):
        train(resume=first.run_dir)
    again = train(make_config(None, cfg))
    assert again.step == 3 and os.path.exists(os.path.join(again.run_dir,
                                                           "checkpoint.safetensors"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("not a run")
    with pytest.raises(RunError, match="already exists"):
        train(make_config(None, dict(cfg, name="foreign")))
    assert (foreign / "mine.txt").read_text() == "not a run"


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(
        tmp_path, text_file, monkeypatch, capsys):
    import safetensors.numpy

    argv = ["train", f"--data={text_file}", f"--out_dir={tmp_path}", "--name=full"] + [
        f"--{k}={v}" for k, v in dict(TINY, max_iters=6, checkpoint_interval=2).items()]
    assert cli.main(argv) == 0
    run = os.path.join(tmp_path, "full")
    real, calls = safetensors.numpy.save_file, []

    def full_disk(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) >= 2:
            from safetensors import SafetensorError

            with open(filename, "wb") as f:
                f.write(b"partial")
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: "
                                  "StorageFull, message: \"No space left on device\" }) "
                                  "(os error 28)")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    capsys.readouterr()
    rc = cli.main(["train", "--resume", run, "--max_iters=12"])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err.count("\n") == 0 and "No space left on device" in err and "--resume" in err
    ckpt = cr.load(os.path.join(run, "checkpoint.safetensors"))
    assert ckpt["step"] in (6, 8)  # the one before the failed write, whole
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


def test_disk_full_in_a_plain_write_keeps_the_old_file(tmp_path, monkeypatch):
    from chainrule.train.run import write_text

    path = tmp_path / "config.toml"
    path.write_text("old = 1\n")

    def enospc(fd, *a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(OSError) as e:
        write_text(str(path), "new = 2\n")
    assert e.value.errno == errno.ENOSPC
    assert path.read_text() == "old = 1\n" and os.listdir(tmp_path) == ["config.toml"]


BAD = [("--min_lr=nan", "min_lr"), ("--grad_clip=nan", "grad_clip"),
       ("--temperature=nan", "temperature"), ("--weight_decay=inf", "weight_decay"),
       ("--learning_rate=inf", "learning_rate"), ("--seed=-1", "seed"),
       ("--n_embd=10000000", "n_embd"), ("--dropout=nan", "dropout"),
       ("--beta2=nan", "beta2"), ("--n_layer=100000", "n_layer")]


@pytest.mark.parametrize("arg,key", BAD)
def test_unusable_hyperparameters_are_refused_at_start_naming_the_key(tmp_path, capsys, arg,
                                                                      key):
    rc = cli.main(["train", f"--out_dir={tmp_path}", "--name=x", "--progress=false", arg])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and key in err, err
    assert not os.path.exists(tmp_path / "x")


def test_config_that_is_a_folder_or_not_utf8_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"n_layer = 2\n# \xff\xfe\n")
    for path, what in ((tmp_path, "folder"), (bad, "UTF-8")):
        rc = cli.main(["train", f"--config={path}", f"--out_dir={tmp_path}"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.count("\n") == 0 and what in err, err


def test_sample_on_a_checkpoint_without_its_entries_is_one_line(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    cr.save({"model": {}, "step": 1}, run / "checkpoint.safetensors")
    rc = cli.main(["sample", str(run), "--max-new-tokens=2"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0 and "'config'" in err, err


def test_a_small_checkpoint_claiming_a_large_model_is_refused_before_building_it(
        base_run, tmp_path):
    import tracemalloc

    from chainrule.train import load_run

    run = _copy(base_run, tmp_path)
    path = os.path.join(run, "checkpoint.safetensors")
    ckpt = cr.load(path)
    ckpt["config"] = dict(ckpt["config"], n_embd=1024, n_layer=8, n_head=8)
    cr.save(ckpt, path)
    tracemalloc.start()
    try:
        with pytest.raises(RunError, match="do not fit|shape"):
            load_run(run)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, peak
    from chainrule.train.config import config_from_dict, to_toml

    with open(os.path.join(run, "config.toml"), "w") as f:  # the config agrees: still refused
        f.write(to_toml(config_from_dict(dict(ckpt["config"]), "test")))
    with pytest.raises(RunError, match="do not fit|shape"):
        train(resume=run, explicit={"max_iters": 5})


@pytest.mark.parametrize("arg", ["--temperature=nan", "--temperature=inf", "--top-p=nan",
                                 "--seed=-1", "--top-k=-2"])
def test_sample_refuses_unusable_values_in_one_line(base_run, capsys, arg):
    rc = cli.main(["sample", base_run, "--max-new-tokens=2", arg])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and arg.split("=")[0].lstrip("-") in err, err


# ----------------------------------------------------------------------------- two processes

_CLI = "import sys; from chainrule import cli; sys.exit(cli.main(sys.argv[1:]))"


def test_two_chainrule_train_processes_on_one_run_folder_cannot_both_write(tmp_path,
                                                                           text_file):
    """A real `chainrule train` holds the run; a second `train` of the same name and a
    `--resume` of it (real processes too) are refused with the holder's pid, and write
    nothing; once the first is killed (SIGKILL: the kernel drops its lock) a resume works."""
    import signal
    import time

    args = [f"--{k}={v}" for k, v in dict(TINY, max_iters=100000, eval_interval=100000,
                                          checkpoint_interval=2).items()]
    argv = ["train", f"--data={text_file}", f"--out_dir={tmp_path}", "--name=r"] + args
    first = subprocess.Popen([sys.executable, "-c", _CLI, *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    run = tmp_path / "r"
    try:
        deadline = time.time() + 120
        while not (run / "checkpoint.safetensors").exists():
            assert first.poll() is None, first.stderr.read()[-2000:]
            assert time.time() < deadline
            time.sleep(0.2)
        held = f"in use by another chainrule process (pid {first.pid})"
        for second, why in ((argv, "already exists"),
                            (["train", "--resume", str(run), "--max_iters=5"], held)):
            proc = subprocess.run([sys.executable, "-c", _CLI, *second], capture_output=True,
                                  text=True, timeout=120)
            err = proc.stderr.strip()
            assert proc.returncode != 0 and err.count("\n") == 0, err
            assert why in err, err
        assert first.poll() is None  # the first never noticed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    done = train(resume=str(run), explicit={"max_iters": int(cr.load(
        str(run / "checkpoint.safetensors"))["step"]) + 2})
    steps = [r["step"] for r in read_metrics(str(run / "metrics.jsonl")) if "loss" in r]
    assert steps == list(range(1, done.step + 1))  # one writer at a time: no step twice


# ----------------------------------------------------------------------------- the doctor's files


def test_the_doctors_files_are_never_written_through_a_planted_link(tmp_path):
    from chainrule import diagnostics, nn, optim

    pytest.importorskip("matplotlib")
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    w = diagnostics.watch(model, opt, interval=1)
    for _ in range(3):
        opt.zero_grad()
        model(cr.randn(4, 3)).pow(2).mean().backward()
        opt.step()
    run = tmp_path / "run"
    run.mkdir()
    victim = _victim(tmp_path)
    from chainrule.diagnostics import plots

    names = ["diagnostics.jsonl", *plots.PLOTS]
    for name in names:
        os.symlink(victim, run / name)
    written = w.save(str(run))
    w.close()
    assert victim.read_bytes() == VICTIM
    assert sorted(os.path.basename(p) for p in written) == sorted(names)
    for name in names:
        assert not os.path.islink(run / name) and os.path.getsize(run / name) > 0
    assert open(run / "diagnostics.jsonl").readline().startswith("{")
    assert open(run / "gradient_flow.png", "rb").read(4) == b"\x89PNG"
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


# ----------------------------------------------------------------------------- kills and full disks

_SAVER = textwrap.dedent("""
    import sys, numpy as np, chainrule as cr
    path, i = sys.argv[1], 0
    while True:
        i += 1
        cr.save({"step": i, "w": np.full((512, 1024), float(i), np.float32),
                 "b": np.full(1000, float(i))}, path)
        print(i, flush=True)
""")


def test_sigkill_during_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    """A process saving 2 MB checkpoints in a loop is killed by SIGKILL at varied moments
    (most land inside a write); each time the file loads whole, holding one save's values,
    and the temporaries left behind are recognised and removed."""
    import signal
    import time

    from chainrule.serialization import remove_temporaries

    path = tmp_path / "c.safetensors"
    for k in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)],
                                stdout=subprocess.PIPE, text=True)
        first = int(proc.stdout.readline())  # one whole save exists
        time.sleep(0.013 * k)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = cr.load(path)
        i = ckpt["step"]
        assert i >= first
        assert (np.asarray(ckpt["w"]) == i).all() and (ckpt["b"] == i).all()
        remove_temporaries(tmp_path)
        assert os.listdir(tmp_path) == ["c.safetensors"]


def test_disk_full_in_save_is_an_os_error_and_keeps_the_old_checkpoint(tmp_path,
                                                                       monkeypatch):
    import safetensors.numpy
    from safetensors import SafetensorError

    path = tmp_path / "c.safetensors"
    cr.save({"step": 1, "w": np.ones(4)}, path)

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: "
                              "StorageFull, message: \"No space left on device\" }) "
                              "(os error 28)")

    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    with pytest.raises(OSError) as e:
        cr.save({"step": 2, "w": np.zeros(4)}, path)
    assert e.value.errno == errno.ENOSPC and str(path) in str(e.value)
    assert cr.load(path)["step"] == 1 and os.listdir(tmp_path) == ["c.safetensors"]

    def enospc(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.undo()
    monkeypatch.setattr(os, "fsync", enospc)  # the data written, the flush to disk fails
    with pytest.raises(OSError) as e:
        cr.save({"step": 3, "w": np.zeros(4)}, path)
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert cr.load(path)["step"] == 1 and os.listdir(tmp_path) == ["c.safetensors"]
