"""chainrule.distributed: the one-process fallback, the post-accumulate-grad hook DDP rests on,
and real ranks under ``mpiexec`` (tests/distributed_worker.py) for the collectives, DDP against
one process, failures, and the data-parallel trainer against one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import chainrule as cr
import chainrule.distributed as dist
from chainrule import nn

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")


def _mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


def _mpi_missing():
    if not dist.is_available():
        return "mpi4py is not installed (pip install 'chainrule[mpi]')"
    if _mpiexec() is None:
        return "no mpiexec beside the Python executable or on PATH"
    return None


needs_mpi = pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))


def _env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "PMIX_", "HYDRA_", "MPI_LOCAL"))}
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(os.path.dirname(HERE), "src"),
                                         env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_ranks(n, *args, timeout=60):
    """``mpiexec -n n python distributed_worker.py *args``: (returncode, output, seconds)."""
    cmd = [_mpiexec(), "-n", str(n), sys.executable, WORKER, *map(str, args)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(),
                       cwd=HERE)
    return p.returncode, p.stdout + p.stderr, time.perf_counter() - t0


# ----------------------------------------------------------------------------- one process


def test_one_process_needs_no_mpi():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import numpy as np, chainrule as cr, chainrule.distributed as d\n"
            "d.init(); assert (d.get_rank(), d.get_world_size()) == (0, 1)\n"
            "t = cr.tensor([1.0, 2.0]); d.all_reduce(t, d.ReduceOp.AVG); d.broadcast(t, 0)\n"
            "out = [cr.zeros(2)]; d.all_gather(out, t); d.barrier()\n"
            "assert out[0].tolist() == [1.0, 2.0] and t.tolist() == [1.0, 2.0]\n"
            "m = cr.nn.Linear(2, 1); ddp = d.DistributedDataParallel(m)\n"
            "ddp(cr.ones(3, 2)).sum().backward(); assert m.weight.grad.tolist() == [[3.0, 3.0]]\n"
            "print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr
    # launched by mpiexec with several processes but no mpi4py: a clear error
    p = subprocess.run([sys.executable, "-c", "import sys; sys.modules['mpi4py'] = None\n"
                        "import chainrule.distributed as d; d.init()"],
                       capture_output=True, text=True, env=dict(_env(), PMI_SIZE="2"), timeout=60)
    assert p.returncode != 0 and "chainrule[mpi]" in p.stderr and "2 processes" in p.stderr


def test_one_process_collectives_and_errors():
    dist.init()
    assert dist.is_initialized() and dist.get_world_size() >= 1
    if dist.get_world_size() != 1:
        pytest.skip("this test runs in a single process")
    t = cr.tensor([[1.0, 2.0], [3.0, 4.0]])
    dist.all_reduce(t, op="sum")
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert dist.all_reduce(t, async_op=True).wait()
    with pytest.raises(TypeError, match="ReduceOp"):
        dist.all_reduce(t, op="mean")
    with pytest.raises(TypeError, match="expected a Tensor"):
        dist.all_reduce([1.0, 2.0])
    with pytest.raises(ValueError, match="src must be a rank"):
        dist.broadcast(t, src=1)
    with pytest.raises(ValueError, match="list of 1 tensors"):
        dist.all_gather([cr.zeros(2, 2), cr.zeros(2, 2)], t)
    with pytest.raises(TypeError, match="expected a Module"):
        dist.DistributedDataParallel(lambda x: x)
    with pytest.raises(ValueError, match="bucket_cap_mb"):
        dist.DistributedDataParallel(nn.Linear(2, 2), bucket_cap_mb=0)


def test_ddp_one_process_equals_the_model_and_no_sync_accumulates():
    dist.init()
    if dist.get_world_size() != 1:
        pytest.skip("this test runs in a single process")
    cr.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    ref = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    ref.load_state_dict(m.state_dict())
    ddp = dist.DistributedDataParallel(m, bucket_cap_mb=1e-4)
    assert ddp.stats["buckets"] >= 2
    assert list(ddp.state_dict()) == ["module." + k for k in m.state_dict()]
    x = cr.tensor(np.random.default_rng(0).standard_normal((8, 4)))
    with ddp.no_sync():
        ddp(x[:4]).pow(2).sum().backward()
    assert ddp.stats["steps"] == 0
    ddp(x[4:]).pow(2).sum().backward()
    assert ddp.stats["steps"] == 1
    ref(x).pow(2).sum().backward()
    for p, q in zip(m.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=0, atol=1e-13)
    with cr.no_grad():  # a forward without grad does not wait for a backward
        ddp(x)
    ddp(x).sum()  # a forward that no backward follows leaves nothing pending
    ddp(x).sum().backward()
    assert ddp.stats["steps"] == 2

    class Half(nn.Module):  # uses one of its two layers
        def __init__(self):
            super().__init__()
            self.used, self.idle = nn.Linear(4, 1), nn.Linear(4, 1)

        def forward(self, x):
            return self.used(x)

    h = dist.DistributedDataParallel(Half().double())
    h(x).sum().backward()
    with pytest.raises(RuntimeError, match=r"were not reduced: 2 parameter\(s\) got no "
                       r"gradient in backward \(idle.weight, idle.bias\).*find_unused"):
        h.wait_for_gradients()
    h = dist.DistributedDataParallel(Half().double(), find_unused_parameters=True)
    h(x).sum().backward()
    h.wait_for_gradients()
    assert h.module.idle.weight.grad is None and h.module.used.weight.grad is not None


# ----------------------------------------------------------------------------- the hook


def test_post_accumulate_grad_hook_sees_the_total_gradient_once():
    p = nn.Parameter(cr.ones(3))
    q = cr.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    h = p.register_post_accumulate_grad_hook(lambda t: seen.append(("p", t.grad.tolist())))
    q.register_post_accumulate_grad_hook(lambda t: seen.append(("q", t.grad.tolist())))
    ((p * 2).sum() + (p * 3).sum() + q.sum()).backward()
    assert sorted(seen) == [("p", [5.0, 5.0, 5.0]), ("q", [1.0, 1.0])]
    p.sum().backward()  # accumulated: the hook sees .grad after the addition
    assert seen[-1] == ("p", [6.0, 6.0, 6.0])
    h.remove()
    n = len(seen)
    p.sum().backward()
    assert len(seen) == n
    # a hook may change .grad in place; the change stays
    r = cr.tensor([1.0, 1.0], requires_grad=True)

    def scale(t):
        t.grad._data *= 10

    r.register_post_accumulate_grad_hook(scale)
    (r * 3).sum().backward()
    assert r.grad.tolist() == [30.0, 30.0]
    # grad() accumulates nothing, so the hook does not run
    cr.autograd.grad((p * 1).sum(), [p])
    assert len(seen) == n


def test_post_accumulate_grad_hook_errors():
    with pytest.raises(RuntimeError, match="does not require grad"):
        cr.ones(2).register_post_accumulate_grad_hook(lambda t: None)
    x = cr.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (x * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(TypeError, match="callable"):
        x.register_post_accumulate_grad_hook(3)
    x.register_post_accumulate_grad_hook(lambda t: t)
    with pytest.raises(RuntimeError, match="must return None"):
        x.sum().backward()


# ----------------------------------------------------------------------------- real ranks


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_collectives_and_ddp_on_real_ranks(n):
    """all_reduce/broadcast/all_gather on n ranks; DDP's gradients, 4 Adam steps, no_sync
    accumulation and unused parameters equal one process on the whole batch (float64 to
    1e-12)."""
    for mode in ("collectives", "ddp"):
        rc, out, _ = run_ranks(n, mode)
        assert rc == 0, out


@needs_mpi
def test_an_exception_on_rank_1_ends_every_rank():
    rc, out, secs = run_ranks(2, "raise", timeout=30)
    assert rc != 0 and secs < 10, (rc, secs, out)
    assert out.count("ValueError: a failure on rank 1") == 1, out
    assert "[rank 1 of 2]" in out


@needs_mpi
def test_different_models_are_refused_once():
    rc, out, secs = run_ranks(2, "mismatch", timeout=30)
    assert rc != 0 and secs < 15, (rc, secs, out)
    assert "constructed" not in out
    msg = ("rank 1's model differs from rank 0's at parameter 2: rank 0 has 2.weight (3, 7) "
           "float64, rank 1 has 2.weight (4, 7) float64")
    assert out.count(msg) == 1, out


@needs_mpi
def test_ranks_with_different_configs_are_refused_before_any_file(tmp_path, text_file):
    """``mpiexec -n 1 chainrule train A : -n 1 chainrule train B``: one message, from rank 0,
    and no run folder; a batch that does not split over the ranks likewise."""
    chainrule = os.path.join(os.path.dirname(sys.executable), "chainrule")
    args = ["train", "--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16",
            "--max_iters=2", "--progress=false", f"--data={text_file}",
            f"--out_dir={tmp_path}", "--name=r"]
    cmd = [_mpiexec(), "-n", "1", chainrule, *args, ":", "-n", "1", chainrule, *args,
           "--learning_rate=0.1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env())
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    msg = "learning_rate: rank 0 has 0.001, rank 1 has 0.1"
    assert out.count(msg) == 1 and "[rank 0 of 2]" in out, out
    p = subprocess.run([_mpiexec(), "-n", "2", chainrule, *args, "--batch_size=3"],
                       capture_output=True, text=True, timeout=60, env=_env())
    out = p.stdout + p.stderr
    assert p.returncode != 0 and out.count("batch_size 3 (the global batch) cannot be split "
                                           "over 2 ranks") == 1, out
    assert not os.path.exists(os.path.join(tmp_path, "r"))


TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, grad_accum=2,
            max_iters=8, eval_interval=4, eval_iters=2, log_interval=1, sample_tokens=8,
            warmup_iters=2, dropout=0.0, diagnose_interval=0, progress=False,
            checkpoint_interval=4)


def _losses(run_dir):
    from chainrule.train import read_metrics

    return [r["loss"] for r in read_metrics(os.path.join(run_dir, "metrics.jsonl"))
            if "loss" in r]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    from chainrule.data import default_corpus_text

    p = tmp_path_factory.mktemp("text") / "text.txt"
    p.write_text(default_corpus_text()[:20000], encoding="utf-8")
    return str(p)


@needs_mpi
def test_data_parallel_trainer_equals_one_process_and_resumes_after_sigkill(tmp_path,
                                                                           text_file):
    """2 ranks with global batch B train as one process with batch B (float32 losses);
    only rank 0 writes; a rank killed by SIGKILL ends the run, and --resume on 2 ranks then
    gives the uninterrupted losses."""
    from chainrule.train import make_config, train

    values = dict(TINY, data=text_file, out_dir=str(tmp_path))
    one = train(make_config(None, dict(values, name="one")))
    rc, out, _ = run_ranks(2, "train", json.dumps(dict(values, name="two")))
    assert rc == 0, out
    assert "data parallel: 2 ranks" in out and "2 x 4 x 16 tokens" in out, out
    assert out.count("step 4: train loss") == 1, out  # rank 0 alone reports
    ref = _losses(one.run_dir)
    two = _losses(os.path.join(tmp_path, "two"))
    assert len(ref) == len(two) == TINY["max_iters"]
    np.testing.assert_allclose(two, ref, rtol=2e-6)
    # with dropout (each rank's masks its own): rank 1 is killed after step 6 (checkpoint
    # at 4), every rank stops; resumed, the run has the uninterrupted losses exactly
    drop = dict(values, dropout=0.2)
    rc, out, _ = run_ranks(2, "train", json.dumps(dict(drop, name="whole")))
    assert rc == 0, out
    t0 = time.perf_counter()
    rc, out, _ = run_ranks(2, "train", json.dumps(dict(drop, name="killed")), 6)
    assert rc != 0 and time.perf_counter() - t0 < 20, out
    killed = os.path.join(tmp_path, "killed")
    assert len(_losses(killed)) < TINY["max_iters"]
    rc, out, _ = run_ranks(2, "train", json.dumps(dict(drop, resume=killed)))
    assert rc == 0, out
    whole = _losses(os.path.join(tmp_path, "whole"))
    assert whole != two
    np.testing.assert_allclose(_losses(killed), whole, rtol=0, atol=0)


@needs_mpi
def test_data_parallel_finetune_equals_one_process(tmp_path):
    """``mpiexec -n 2 chainrule finetune`` (LoRA) gives one process's losses; rank 0 alone
    reports."""
    from chainrule.cli import main
    from test_finetune import write_tiny_hf

    write_tiny_hf(tmp_path / "base")
    data = tmp_path / "domain.txt"
    data.write_text("abcabcabd " * 300, encoding="utf-8")
    argv = ["finetune", "--model", str(tmp_path / "base"), "--data", str(data),
            "--lora-rank", "4", "--max-iters", "4", "--warmup-iters", "1", "--block-size", "16",
            "--batch-size", "4", "--eval-interval", "4", "--eval-iters", "1", "--lr", "5e-2",
            "--sample-tokens", "0", "--out-dir", str(tmp_path / "runs"), "--no-progress"]
    assert main(argv + ["--name", "one"]) == 0
    chainrule = os.path.join(os.path.dirname(sys.executable), "chainrule")
    p = subprocess.run([_mpiexec(), "-n", "2", chainrule, *argv, "--name", "two"],
                       capture_output=True, text=True, timeout=120, env=_env())
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "data parallel: 2 ranks" in out and out.count("done: 4 steps") == 1, out
    one, two = (_losses(os.path.join(tmp_path, "runs", n)) for n in ("one", "two"))
    assert len(one) == len(two) == 4
    np.testing.assert_allclose(two, one, rtol=2e-6)
