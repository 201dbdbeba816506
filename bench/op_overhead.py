"""What recording an op costs: chainrule and PyTorch against the bare NumPy call, tiny arrays.

    python bench/op_overhead.py [--threads N] [--size 4] [--repeat 15]

For each op on float32 arrays of ``--size`` elements it times the bare NumPy call, the chainrule
op while recording a graph (inputs require grad) and under ``no_grad``, and the same two for
PyTorch when it is importable, all in one run, interleaved, taking the best of ``--repeat``
rounds of CPU time (the least disturbed by other processes). The figures that matter are the
differences over NumPy: what the framework adds to each op. Goals for chainrule: at most 2 us
recorded, 1 us under no_grad.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys


def set_threads(n: int) -> None:
    """Limit BLAS/OpenMP threads to ``n`` (before NumPy or PyTorch load their libraries)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def describe_machine(threads: int) -> str:
    """CPU model, threads used, library versions: one paragraph for the report."""
    import numpy as np

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    torch = import_torch(threads)
    lines = [
        f"CPU: {cpu} ({os.cpu_count()} logical cores visible), threads used: {threads}",
        f"Python {platform.python_version()}, NumPy {np.__version__}"
        + (f", PyTorch {torch.__version__}" if torch else ", PyTorch not installed"),
    ]
    try:
        from threadpoolctl import threadpool_info

        blas = [f"{i['internal_api']} {i.get('version', '')} ({i['num_threads']} threads)"
                for i in threadpool_info() if i["user_api"] == "blas"]
        if blas:
            lines.append("NumPy BLAS: " + ", ".join(blas))
    except ImportError:
        pass
    return "\n".join(lines)


def import_torch(threads: int):
    """PyTorch set to ``threads`` threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def best_us(cases: list, number: int, repeat: int) -> list:
    """Best per-call CPU time in microseconds of each case ``(stmt, env, grad_mode)``.

    The cases are timed round-robin, one batch of ``number`` calls each per round, so that a
    burst of load from other processes hits all of them alike; the best round is kept.
    """
    import time
    import timeit

    timers = [(timeit.Timer(stmt, globals=env, timer=time.process_time), mode)
              for stmt, env, mode in cases]
    best = [float("inf")] * len(cases)
    for r in range(repeat + 1):
        for k, (timer, mode) in enumerate(timers):
            with mode():
                t = timer.timeit(number) / number * 1e6
            if r:  # the first round warms up
                best[k] = min(best[k], t)
    return best


# name: (NumPy statement, framework statement); ``a``, ``b`` are operands, ``w`` a square matrix
OPS = {
    "a * b": ("a * b", "a * b"),
    "a + b": ("a + b", "a + b"),
    "a * 2.0": ("a * 2.0", "a * 2.0"),
    "exp(a)": ("np.exp(a)", "a.exp()"),
    "relu(a)": ("np.maximum(a, 0)", "a.relu()"),
    "sum(a)": ("a.sum()", "a.sum()"),
    "w @ w": ("w @ w", "w @ w"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--number", type=int, default=2000)
    args = ap.parse_args(argv)
    set_threads(args.threads)

    import numpy as np

    import chainrule as cr

    torch = import_torch(args.threads)
    print(describe_machine(args.threads))
    print(f"float32 operands of {args.size} elements (w: 2x2); best of {args.repeat} rounds of "
          f"{args.number} calls, CPU time\n")

    rng = np.random.default_rng(0)
    an, bn = (rng.standard_normal(args.size).astype(np.float32) for _ in range(2))
    wn = rng.standard_normal((2, 2)).astype(np.float32)
    envs = {"numpy": {"np": np, "a": an, "b": bn, "w": wn}}
    envs["chainrule"] = {"a": cr.tensor(an, requires_grad=True),
                         "b": cr.tensor(bn, requires_grad=True),
                         "w": cr.tensor(wn, requires_grad=True)}
    if torch is not None:
        envs["torch"] = {"a": torch.tensor(an, requires_grad=True),
                         "b": torch.tensor(bn, requires_grad=True),
                         "w": torch.tensor(wn, requires_grad=True)}

    import contextlib

    modes = {"numpy": {True: contextlib.nullcontext, False: contextlib.nullcontext},
             "chainrule": {True: cr.enable_grad, False: cr.no_grad}}
    if torch is not None:
        modes["torch"] = {True: torch.enable_grad, False: torch.no_grad}

    head = f"{'op':<10}{'numpy':>8} | {'chainrule +rec':>15}{'+no_grad':>10}"
    if torch is not None:
        head += f" | {'torch +rec':>11}{'+no_grad':>10} | {'ratio rec':>10}{'no_grad':>9}"
    print(head)
    print("-" * len(head))
    rows = []
    for name, (np_stmt, stmt) in OPS.items():
        cases = [(np_stmt, envs["numpy"], modes["numpy"][False])]
        for engine in [e for e in ("chainrule", "torch") if e in envs]:
            cases += [(stmt, envs[engine], modes[engine][True]),
                      (stmt, envs[engine], modes[engine][False])]
        times = best_us(cases, args.number, args.repeat)
        base = times[0]
        row = [base] + [t - base for t in times[1:]]
        line = f"{name:<10}{base:>8.2f} | {row[1]:>15.2f}{row[2]:>10.2f}"
        if torch is not None:
            line += (f" | {row[3]:>11.2f}{row[4]:>10.2f} | {row[1] / row[3]:>10.2f}"
                     f"{row[2] / row[4]:>9.2f}")
        rows.append(row)
        print(line)
    print("\nnumpy: us per bare NumPy call; +rec / +no_grad: us added over it by each engine;")
    print("ratio: chainrule's added time over PyTorch's (below 1: chainrule adds less).")
    mean = [sum(r[i] for r in rows) / len(rows) for i in range(len(rows[0]))]
    print(f"\nmean over ops: chainrule +{mean[1]:.2f} us recorded (goal <= 2), "
          f"+{mean[2]:.2f} us no_grad (goal <= 1)"
          + (f"; PyTorch +{mean[3]:.2f} / +{mean[4]:.2f} us" if torch is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
