"""The program that tests/test_distributed.py runs on every rank of ``mpiexec``:
``python distributed_worker.py MODE [ARGS]``. Each mode checks its numbers on every rank
against a reference computed in the same process (a single model on the whole batch) and
exits non-zero on a mismatch."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import chainrule as cr
import chainrule.distributed as dist
from chainrule import nn


class WithUnused(nn.Module):
    """An MLP and a layer its forward never uses."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        return self.net(x)


def mlp(seed=0, extra=False):
    cr.manual_seed(seed)
    m = WithUnused() if extra else nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    return m.double()


def close(a, b, tol, what):
    err = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    if not err <= tol:
        raise AssertionError(f"rank {dist.get_rank()}: {what} differs by {err:g} (> {tol:g})")


def mode_collectives():
    r, n = dist.get_rank(), dist.get_world_size()
    for dtype in (np.float32, np.float64, np.int64):
        t = cr.tensor(np.arange(6, dtype=dtype).reshape(2, 3) + r)
        dist.all_reduce(t)
        close(t.numpy(), sum(np.arange(6).reshape(2, 3) + k for k in range(n)), 0, "SUM")
    t = cr.tensor(np.arange(4.0) * (r + 1), dtype=cr.float64)
    dist.all_reduce(t, dist.ReduceOp.AVG)
    close(t.numpy(), np.arange(4.0) * (n + 1) / 2, 1e-15, "AVG")
    t = cr.tensor([float(r), -float(r)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    close(t.numpy(), [n - 1, 0], 0, "MAX")
    w = dist.all_reduce(cr.tensor([1.0]), async_op=True)
    w.wait()
    base = np.arange(12.0).reshape(3, 4)
    view = cr.tensor(base * (r + 1)).t()  # not C-contiguous
    dist.broadcast(view, src=n - 1)
    close(view.numpy(), (base * n).T, 0, "broadcast of a transposed view")
    out = [cr.zeros(3, dtype=cr.int64) for _ in range(n)]
    dist.all_gather(out, cr.tensor([r, r * 10, r * 100]))
    for k, o in enumerate(out):
        close(o.numpy(), [k, k * 10, k * 100], 0, "all_gather")
    dist.barrier()


def shard(x, r, n):
    b = len(x) // n
    return x[r * b:(r + 1) * b]


def mode_ddp():
    """DDP gradients equal one process's; K steps of Adam equal; no_sync accumulation equals
    one big batch; unused parameters."""
    r, n = dist.get_rank(), dist.get_world_size()
    rng = np.random.default_rng(7)
    B = 6 * n
    model = mlp(seed=100 + r)  # different on each rank: DDP takes rank 0's
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=300 / 2**20)  # several buckets
    assert ddp.stats["buckets"] > 1, ddp.stats
    ref = mlp(seed=100)
    opt = cr.optim.Adam(model.parameters(), lr=1e-2)
    ropt = cr.optim.Adam(ref.parameters(), lr=1e-2)
    for _step in range(4):
        x, y = rng.standard_normal((B, 5)), rng.standard_normal((B, 3))
        loss = ((ddp(cr.tensor(shard(x, r, n))) - cr.tensor(shard(y, r, n))) ** 2).mean()
        loss.backward()
        rloss = ((ref(cr.tensor(x)) - cr.tensor(y)) ** 2).mean()
        rloss.backward()
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            close(p.grad.numpy(), q.grad.numpy(), 1e-12, f"gradient of {name}")
        opt.step()
        ropt.step()
        opt.zero_grad()
        ropt.zero_grad()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        close(p.detach().numpy(), q.detach().numpy(), 1e-12, f"parameter {name} after 4 Adam steps")
    # no_sync: two micro-batches accumulated, reduced once, equal one big batch
    x, y = rng.standard_normal((2 * B, 5)), rng.standard_normal((2 * B, 3))
    halves = [(x[:B], y[:B]), (x[B:], y[B:])]
    for i, (xb, yb) in enumerate(halves):
        ctx = ddp.no_sync() if i == 0 else _null()
        with ctx:
            loss = ((ddp(cr.tensor(shard(xb, r, n))) - cr.tensor(shard(yb, r, n))) ** 2).mean()
            (loss / 2).backward()
        if i == 0:  # not reduced yet: this rank's own gradient
            assert ddp.stats["steps"] == 4, ddp.stats
    assert ddp.stats["steps"] == 5, ddp.stats
    ((ref(cr.tensor(x)) - cr.tensor(y)) ** 2).mean().backward()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        close(p.grad.numpy(), q.grad.numpy(), 1e-12, f"no_sync gradient of {name}")
    # unused parameters: found and reduced (zeros); a parameter no rank uses keeps grad None
    m2 = mlp(seed=5, extra=True)
    d2 = dist.DistributedDataParallel(m2, find_unused_parameters=True)
    xb = cr.tensor(rng.standard_normal((n * 2, 5)))
    d2(xb[r * 2:(r + 1) * 2]).sum().backward()
    d2.wait_for_gradients()
    assert m2.unused.weight.grad is None
    assert m2.net[0].weight.grad is not None
    # without find_unused_parameters: a clear error at the next forward
    m3 = mlp(seed=5, extra=True)
    d3 = dist.DistributedDataParallel(m3)
    d3(xb).sum().backward()
    try:
        d3(xb)
    except RuntimeError as e:
        assert "unused.weight" in str(e) and "find_unused_parameters" in str(e), str(e)
    else:
        raise AssertionError("an unused parameter went unnoticed")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def mode_raise():
    """Rank 1 fails in the middle of training; the others are inside a collective."""
    r = dist.get_rank()
    ddp = dist.DistributedDataParallel(mlp())
    for step in range(1000):
        if r == 1 and step == 3:
            raise ValueError("a failure on rank 1")
        ddp(cr.tensor(np.ones((2, 5)))).sum().backward()


def mode_mismatch():
    """Rank 1 builds a different model: refused at construction, reported once."""
    model = mlp()
    if dist.get_rank() == 1:
        model[2] = nn.Linear(7, 4).double()
    dist.DistributedDataParallel(model)
    print("constructed a DDP over different models", flush=True)


def mode_train(cfg_json, kill_at="0"):
    """The distributed GPT trainer; rank 1 SIGKILLs itself after step ``kill_at``. On
    ranks other than 0, any file opened for writing under out_dir is an error."""
    import builtins
    import signal

    from chainrule.train import make_config
    from chainrule.train.distributed import train

    values = json.loads(cfg_json)
    resume = values.pop("resume", None)
    dist.init()
    out_dir = os.path.realpath(values["out_dir"])
    if dist.get_rank() != 0:
        real_open, real_os_open = builtins.open, os.open

        def check(path, writing):
            p = os.path.realpath(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else ""
            if writing and p.startswith(out_dir):
                raise AssertionError(f"rank {dist.get_rank()} wrote {p}")

        def guarded_open(file, mode="r", *a, **k):
            check(file, any(c in mode for c in "wax+"))
            return real_open(file, mode, *a, **k)

        def guarded_os_open(path, flags, *a, **k):
            check(path, bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
            return real_os_open(path, flags, *a, **k)

        builtins.open, os.open = guarded_open, guarded_os_open
    kill = int(kill_at)

    def on_step(step, loss):
        if kill and step == kill and dist.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    if resume:
        train(resume=resume, explicit={}, on_step=on_step)
    else:
        train(make_config(None, values), on_step=on_step)


if __name__ == "__main__":
    dist.init()
    globals()["mode_" + sys.argv[1]](*sys.argv[2:])
    sys.exit(0)
