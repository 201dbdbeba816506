"""Backward over forward: the time of the backward pass relative to the forward pass of a
4-layer MLP, chainrule and PyTorch side by side in one run.

    python bench/mlp_backward.py [--threads N] [--batch 256] [--iters 30] [--loss ce|sse]

The model is 784-512-512-512-10 with ReLU, written with raw tensors (weights (in, out), x @ W
+ b) in both engines, float32, with cross-entropy (``ce``, the default) or sum-of-squares
(``sse``) loss. Each iteration times the forward (graph recorded, loss included) and the
backward (into fresh ``.grad``) separately; the report gives medians and their ratio.
Goal for chainrule: backward/forward at most 2.2 (the backward does about twice the GEMM work
of the forward: two products per layer instead of one, less the input's gradient).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from op_overhead import describe_machine, import_torch, set_threads

SIZES = (784, 512, 512, 512, 10)


def make_params(rng, np):
    """He-initialised (in, out) weights and zero biases, float32."""
    params = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        params.append((rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32))
        params.append(np.zeros(n_out, np.float32))
    return params


def forward(x, params, relu, loss_fn):
    h = x
    n = len(params) // 2
    for i in range(n):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i < n - 1:
            h = relu(h)
    return loss_fn(h)


def time_engine(run_forward, params, iters, warmup=3):
    fwd, bwd = [], []
    for i in range(warmup + iters):
        for p in params:
            p.grad = None
        t0 = time.perf_counter()
        loss = run_forward()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if i >= warmup:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    return statistics.median(fwd) * 1e3, statistics.median(bwd) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--loss", choices=("ce", "sse"), default="ce")
    args = ap.parse_args(argv)
    set_threads(args.threads)

    import numpy as np

    import chainrule as cr

    torch = import_torch(args.threads)
    print(describe_machine(args.threads))
    print(f"MLP {'-'.join(map(str, SIZES))}, ReLU, batch {args.batch}, float32, loss {args.loss}, "
          f"median of {args.iters} iterations\n")

    rng = np.random.default_rng(0)
    xn = rng.standard_normal((args.batch, SIZES[0])).astype(np.float32)
    yn = rng.integers(0, SIZES[-1], args.batch)
    tn = np.eye(SIZES[-1], dtype=np.float32)[yn]
    pn = make_params(rng, np)
    results = {}

    cx, cy, ct = cr.tensor(xn), cr.tensor(yn), cr.tensor(tn)
    cparams = [cr.tensor(p, requires_grad=True) for p in pn]
    if args.loss == "ce":
        def closs(z):
            return cr.nn.functional.cross_entropy(z, cy)
    else:
        def closs(z):
            d = z - ct
            return (d * d).sum()
    results["chainrule"] = time_engine(lambda: forward(cx, cparams, cr.relu, closs), cparams,
                                       args.iters)
    # the gradients are right: compare with PyTorch below when it is there

    if torch is not None:
        tx, ty, tt = torch.from_numpy(xn), torch.from_numpy(yn), torch.from_numpy(tn)
        tparams = [torch.tensor(p, requires_grad=True) for p in pn]
        if args.loss == "ce":
            def tloss(z):
                return torch.nn.functional.cross_entropy(z, ty)
        else:
            def tloss(z):
                d = z - tt
                return (d * d).sum()
        results["torch"] = time_engine(lambda: forward(tx, tparams, torch.relu, tloss), tparams,
                                       args.iters)
        forward(cx, cparams, cr.relu, closs).backward()
        forward(tx, tparams, torch.relu, tloss).backward()
        err = max(float(np.abs(c.grad.numpy() - t.grad.numpy()).max()
                        / (np.abs(t.grad.numpy()).max() + 1e-30))
                  for c, t in zip(cparams, tparams))
        print(f"gradients agree with PyTorch's to a relative {err:.1e}\n")

    print(f"{'engine':<10}{'forward ms':>12}{'backward ms':>13}{'bwd/fwd':>9}{'total ms':>10}")
    for name, (f, b) in results.items():
        print(f"{name:<10}{f:>12.2f}{b:>13.2f}{b / f:>9.2f}{f + b:>10.2f}")
    if "torch" in results:
        (cf, cb), (tf, tb) = results["chainrule"], results["torch"]
        print(f"\nchainrule / PyTorch: forward {cf / tf:.2f}x, backward {cb / tb:.2f}x, "
              f"forward+backward {(cf + cb) / (tf + tb):.2f}x")
    f, b = results["chainrule"]
    print(f"chainrule backward/forward {b / f:.2f} (goal <= 2.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
