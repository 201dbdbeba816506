"""One training step (forward, cross-entropy, backward, AdamW), chainrule against PyTorch eager.

    python bench/train_step.py [--threads 2] [--steps 30] [--rounds 3] [--only mlp|cnn]
                               [--profile] [--torch-optimizer default|foreach|fused]
                               [--keep-freed-memory]

Workloads (float32, random inputs, the same initial weights in both frameworks):
  (a) MLP 784-512-512-10 (ReLU), batch 128;
  (b) CNN conv3x3(32, pad 1)-relu-pool2-conv3x3(64, pad 1)-relu-pool2-linear(3136, 10), batch 64
      on 1x28x28.

Each framework runs in its own subprocess with the same thread count (``torch.set_num_threads``
and the BLAS thread pool of NumPy), alternating for ``--rounds`` rounds so that load from
elsewhere on the machine falls on both. Reported: the median step time over all rounds (and the
median CPU time of a step, summed over threads: steadier than wall time on a busy machine), the
ratio chainrule / PyTorch, minor page faults per step, and memory: peak RSS during the steps
(the kernel's high-water mark, reset with /proc/self/clear_refs), the same above the RSS right
after the imports (model, optimizer state, data and the step's working memory), the step's
peak above the RSS just before it, and for
chainrule also the peak of traced Python allocations during one step (tracemalloc sees NumPy's
arrays). ``--profile`` prints
where chainrule's step spends its time (cProfile, by internal time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

WORKLOADS = {"mlp": "MLP 784-512-512-10, batch 128",
             "cnn": "CNN conv32-pool-conv64-pool-linear(3136,10), batch 64, 1x28x28"}


# -- measurement helpers (run inside the worker processes) -------------------------------------
def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _data(workload: str):
    import numpy as np

    rng = np.random.default_rng(0)
    if workload == "mlp":
        x = rng.standard_normal((128, 784), dtype=np.float32)
        y = rng.integers(0, 10, 128)
    else:
        x = rng.standard_normal((64, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, 64)
    return x, y


def _chainrule_model(workload: str):
    import chainrule as cr
    from chainrule.models import CNN, MLP

    cr.manual_seed(0)
    return MLP(784, (512, 512), 10) if workload == "mlp" else CNN(1, 10, image_size=28)


def _time_steps(step, steps: int, warmup: int = 5) -> dict:
    """Wall and CPU time (all threads) of each step, page faults per step, and RSS figures."""
    import resource

    for _ in range(warmup):
        step()
    base = _rss_kib("VmRSS")
    peak_ok = _reset_peak_rss()
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / steps
    return {"times": times, "cpu": cpu, "faults": faults, "rss_base_kib": base,
            "rss_peak_kib": _rss_kib("VmHWM") if peak_ok else None}


def worker_chainrule(workload: str, steps: int, threads: int, profile: bool) -> dict:
    import threadpoolctl

    import chainrule as cr
    from chainrule import optim
    from chainrule.nn import functional as F

    threadpoolctl.threadpool_limits(threads, user_api="blas")
    imported = _rss_kib("VmRSS")
    model = _chainrule_model(workload)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    xn, yn = _data(workload)
    x, y = cr.tensor(xn), cr.tensor(yn)
    losses = []

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    losses.append(step().item())
    out = _time_steps(step, steps)
    import tracemalloc

    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    step()
    traced = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    out.update(traced_peak=traced, first_loss=losses[0], rss_imported_kib=imported)
    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20):
            step()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
        out["profile"] = buf.getvalue()
    return out


def worker_torch(workload: str, steps: int, threads: int, optimizer: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    import threadpoolctl

    threadpoolctl.threadpool_limits(threads, user_api="blas")
    import chainrule  # noqa: F401  (loaded before the baseline: it provides the weights)

    imported = _rss_kib("VmRSS")
    if workload == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                    torch.nn.Linear(512, 512), torch.nn.ReLU(),
                                    torch.nn.Linear(512, 10))
    else:
        class TorchCNN(torch.nn.Module):
            def __init__(self):
                super().__init__()
                nn = torch.nn
                self.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                                              nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1),
                                              nn.ReLU(), nn.MaxPool2d(2))
                self.classifier = nn.Linear(3136, 10)

            def forward(self, x):
                return self.classifier(self.features(x).flatten(1))

        model = TorchCNN()
    weights = {k: torch.from_numpy(np.array(v.numpy()))
               for k, v in _chainrule_model(workload).state_dict().items()}
    model.load_state_dict(weights)
    kwargs = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[optimizer]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, **kwargs)
    xn, yn = _data(workload)
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    first = step().item()
    return {**_time_steps(step, steps), "first_loss": first, "rss_imported_kib": imported}


# -- the driver ---------------------------------------------------------------------------------
def _run_worker(framework, workload, args) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    if args.keep_freed_memory:
        env["MALLOC_MMAP_THRESHOLD_"] = env["MALLOC_TRIM_THRESHOLD_"] = str(2**30)
    cmd = [sys.executable, __file__, "--worker", framework, "--only", workload,
           "--threads", str(args.threads), "--steps", str(args.steps),
           "--torch-optimizer", args.torch_optimizer]
    if args.profile:
        cmd.append("--profile")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{framework} worker failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def main():
    parser = argparse.ArgumentParser(description="chainrule vs PyTorch: one training step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["mlp", "cnn"], default=None)
    parser.add_argument("--profile", action="store_true", help="cProfile chainrule's step")
    parser.add_argument("--torch-optimizer", choices=["default", "foreach", "fused"],
                        default="default", help="PyTorch AdamW implementation (default: what "
                                                "torch.optim.AdamW picks on CPU)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="run both frameworks with glibc's MALLOC_MMAP_THRESHOLD_ and "
                             "MALLOC_TRIM_THRESHOLD_ raised, so freed arrays are reused "
                             "instead of being returned to the kernel and faulted in again")
    parser.add_argument("--worker", choices=["chainrule", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "chainrule":
            out = worker_chainrule(args.only, args.steps, args.threads, args.profile)
        else:
            out = worker_torch(args.only, args.steps, args.threads, args.torch_optimizer)
        print(json.dumps(out))
        return

    import numpy as np

    try:
        import torch

        have_torch = True
        torch_version = torch.__version__
    except ImportError:
        have_torch, torch_version = False, "not installed"
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads; numpy {np.__version__}, torch {torch_version}; "
          f"{args.rounds} rounds x {args.steps} steps; PyTorch AdamW: {args.torch_optimizer}"
          + ("; malloc keeps freed memory" if args.keep_freed_memory else ""))
    for workload in ([args.only] if args.only else list(WORKLOADS)):
        results = {"chainrule": [], "torch": []}
        for _ in range(args.rounds):
            results["chainrule"].append(_run_worker("chainrule", workload, args))
            if have_torch:
                results["torch"].append(_run_worker("torch", workload, args))
        print(f"\n{workload.upper()}: {WORKLOADS[workload]}")
        med = {}
        for fw, runs in results.items():
            if not runs:
                continue
            times = [t for r in runs for t in r["times"]]
            med[fw] = statistics.median(times) * 1e3
            step_mem = [r["rss_peak_kib"] - r["rss_base_kib"] for r in runs
                        if r["rss_peak_kib"] is not None]
            work_mem = [r["rss_peak_kib"] - r["rss_imported_kib"] for r in runs
                        if r["rss_peak_kib"] is not None]
            cpu = statistics.median([t for r in runs for t in r["cpu"]]) * 1e3
            line = (f"  {fw:9s} median {med[fw]:7.2f} ms  (round medians "
                    + ", ".join(f"{statistics.median(r['times']) * 1e3:.2f}" for r in runs)
                    + f"; CPU {cpu:.2f} ms)  peak RSS "
                    f"{_mib(max(r['rss_peak_kib'] or 0 for r in runs))} ("
                    f"{_mib(max(work_mem) if work_mem else None)} above the imported libraries), "
                    "step adds "
                    f"{_mib(max(step_mem) if step_mem else None)}, "
                    f"{statistics.median(r['faults'] for r in runs):.0f} page faults")
            if fw == "chainrule":
                line += f", traced peak per step {runs[0]['traced_peak'] / 2**20:.1f} MiB"
            line += f"; first loss {runs[0]['first_loss']:.6f}"
            print(line)
        if "torch" in med:
            print(f"  ratio chainrule / PyTorch: {med['chainrule'] / med['torch']:.2f}x")
        if args.profile:
            print(results["chainrule"][0]["profile"])


if __name__ == "__main__":
    main()
