"""Data-parallel training on MPI: what communication costs and how much of it backward hides.

    python bench/distributed.py [--steps 15] [--only gpt|mlp]

For the baby GPT (4 layers, 4 heads, 128 wide, block 64, batch 12) and an MLP 784-512-512-10
at batch 128, with the global batch fixed, it times one training step (forward, backward,
gradient all-reduce, AdamW) in three set-ups: 1 rank with one thread, 2 ranks
(``mpiexec -n 2``) with one thread each, and 1 process with two threads. For the 2 ranks it
reports the gradient bytes all-reduced per step, the time one blocking all-reduce of all the
gradients takes, the time a step still waits for the bucketed all-reduces after backward (the
communication not hidden), and so the fraction hidden; and the scaling efficiency
(1-rank time / (2 x 2-rank time)). Beside the measured all-reduce it prints the ring cost
model's figure, 2(N-1)/N x bytes / bandwidth, for the bandwidth measured on the same buffer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")


def _worker(model_name: str, steps: int, bucket_mb: float) -> None:
    import numpy as np

    import chainrule as cr
    import chainrule.distributed as dist
    from chainrule import nn

    dist.init()
    r, n = dist.get_rank(), dist.get_world_size()
    cr.manual_seed(0)
    rng = np.random.default_rng(0)
    if model_name == "gpt":
        from chainrule.models.gpt import GPT, GPTConfig

        model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128,
                              dropout=0.0))
        opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
        B = 12

        def batch():
            x = rng.integers(0, 65, (B, 65))
            return x[:, :-1], x[:, 1:]

        def loss_of(m, x, y):
            return m(cr.tensor(x), cr.tensor(y))[1]
    else:
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                              nn.Linear(512, 10))
        opt = cr.optim.AdamW(model.parameters(), lr=1e-3)
        B = 128
        loss_fn = nn.CrossEntropyLoss()

        def batch():
            return (rng.standard_normal((B, 784)).astype(np.float32),
                    rng.integers(0, 10, B))

        def loss_of(m, x, y):
            return loss_fn(m(cr.tensor(x)), cr.tensor(y))

    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=bucket_mb) if n > 1 else model
    b = B // n
    times = []
    for i in range(steps + 3):
        x, y = batch()
        t0 = time.perf_counter()
        loss_of(ddp, x[r * b:(r + 1) * b], y[r * b:(r + 1) * b]).backward()
        if n > 1:
            ddp.wait_for_gradients()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    out = {"step_ms": 1e3 * float(np.median(times))}
    if n > 1:
        s = ddp.stats
        out["bytes"] = s["bytes"] / s["steps"]
        out["buckets"] = s["buckets"]
        out["exposed_ms"] = 1e3 * s["wait_s"] / s["steps"]
        flat = np.ones(int(out["bytes"] // 4), dtype=np.float32)
        ts = []
        for _ in range(10):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(flat)
            ts.append(time.perf_counter() - t0)
        out["allreduce_ms"] = 1e3 * float(np.median(ts))
    if r == 0:
        print("RESULT " + json.dumps(out), flush=True)


def _run(cmd, threads):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([SRC, env.get("PYTHONPATH", "")]))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--only", choices=["gpt", "mlp"])
    ap.add_argument("--bucket-mb", type=float, default=1.0,
                    help="DDP bucket size (default 1 MB: these models' gradients are 3 MB, "
                         "so PyTorch's 25 MB would make one bucket and leave nothing to overlap)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker, args.steps, args.bucket_mb)
        return
    import numpy as np

    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    me = [sys.executable, os.path.abspath(__file__), "--steps", str(args.steps),
          "--bucket-mb", str(args.bucket_mb), "--worker"]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, NumPy {np.__version__}")
    for name in (["gpt", "mlp"] if args.only is None else [args.only]):
        one = _run(me + [name], 1)
        two_threads = _run(me + [name], 2)
        two = _run([mpiexec, "-n", "2"] + me + [name], 1)
        mb = two["bytes"] / 2**20
        moved = 2 * (2 - 1) / 2 * two["bytes"]  # a ring all-reduce: 2(N-1)/N x bytes per rank
        gbps = 8 * moved / (two["allreduce_ms"] / 1e3) / 1e9
        hidden = max(0.0, 1 - two["exposed_ms"] / two["allreduce_ms"])
        eff = one["step_ms"] / (2 * two["step_ms"])
        print(f"\n{name}: gradients {mb:.2f} MiB in {two['buckets']} bucket(s) of "
              f"{args.bucket_mb:g} MB")
        print(f"  step, 1 rank x 1 thread      {one['step_ms']:8.1f} ms")
        print(f"  step, 1 process x 2 threads  {two_threads['step_ms']:8.1f} ms")
        print(f"  step, 2 ranks x 1 thread     {two['step_ms']:8.1f} ms   scaling efficiency "
              f"{100 * eff:.0f}% (speed-up {one['step_ms'] / two['step_ms']:.2f}x)")
        print(f"  blocking all-reduce of all gradients {two['allreduce_ms']:.2f} ms: the ring "
              f"model's 2(N-1)/N x bytes = {moved / 2**20:.2f} MiB per rank at "
              f"{gbps:.1f} Gb/s")
        print(f"  waited after backward        {two['exposed_ms']:.2f} ms per step (with the "
              f"wait for the slower rank): {100 * hidden:.0f}% of the all-reduce hidden")


if __name__ == "__main__":
    main()
