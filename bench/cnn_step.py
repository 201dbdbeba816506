"""The CNN training step and its parts, chainrule against PyTorch eager on the CPU.

    python bench/cnn_step.py [--threads 2] [--model small|deep|deep-bn] [--mode parts|step|both]
                             [--reps 9] [--rounds 3] [--steps 20]

Models, written as a PyTorch user writes them (float32, random data, AdamW, cross-entropy):
  small    conv(1->16, 3x3, pad 1)-relu-maxpool2 -> conv(16->32, 3x3, pad 1)-relu-maxpool2 ->
           flatten -> linear(32*7*7 -> 10), batch 64, 1x28x28;
  deep     3x3 convs 3->32->32 (relu), avgpool2, 32->64->64 (relu), avgpool2, global mean,
           linear(64 -> 10), batch 32, 3x32x32;
  deep-bn  the same with BatchNorm2d after every convolution.

``--mode parts`` times each layer's forward and backward (medians of ``--reps``), ``--mode
step`` whole training steps; either way each framework runs in its own subprocess (the two
thread pools, OpenBLAS's and OpenMP's, would otherwise spin against each other), alternating
for ``--rounds`` rounds. Both set the BLAS and OpenMP thread pools (and
``torch.set_num_threads``) to ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MODELS = {
    "small": ((64, 1, 28, 28), [("conv", 1, 16), ("relu",), ("maxpool",), ("conv", 16, 32),
                                ("relu",), ("maxpool",), ("flatten",), ("linear", 32 * 7 * 7, 10)]),
    "deep": ((32, 3, 32, 32), [("conv", 3, 32), ("relu",), ("conv", 32, 32), ("relu",),
                               ("avgpool",), ("conv", 32, 64), ("relu",), ("conv", 64, 64),
                               ("relu",), ("avgpool",), ("mean",), ("linear", 64, 10)]),
}
MODELS["deep-bn"] = (MODELS["deep"][0], [
    item for layer in MODELS["deep"][1]
    for item in ((layer, ("bn", layer[2])) if layer[0] == "conv" else (layer,))])


def _set_threads(threads):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def _layers(nn, spec, mean):
    """The modules of ``spec`` in the namespace ``nn`` (torch.nn or chainrule.nn); ``mean``
    makes the global-mean module."""
    out = []
    for item in spec:
        kind = item[0]
        if kind == "conv":
            out.append(nn.Conv2d(item[1], item[2], 3, padding=1))
        elif kind == "relu":
            out.append(nn.ReLU())
        elif kind == "maxpool":
            out.append(nn.MaxPool2d(2))
        elif kind == "avgpool":
            out.append(nn.AvgPool2d(2))
        elif kind == "bn":
            out.append(nn.BatchNorm2d(item[1]))
        elif kind == "flatten":
            out.append(nn.Flatten())
        elif kind == "mean":
            out.append(mean())
        elif kind == "linear":
            out.append(nn.Linear(item[1], item[2]))
    return out


def _frameworks(model, threads):
    """{name: (model, tensor-from-numpy, loss, optimizer factory, sync)} for both."""
    import numpy as np
    import threadpoolctl
    import torch

    import chainrule as cr
    from chainrule import nn as cnn
    from chainrule import optim

    threadpoolctl.threadpool_limits(threads, user_api="blas")
    torch.set_num_threads(threads)
    shape, spec = MODELS[model]

    class CMean(cnn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    class TMean(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    cr.manual_seed(0)
    cm = cnn.Sequential(*_layers(cnn, spec, CMean))
    tm = torch.nn.Sequential(*_layers(torch.nn, spec, TMean))
    tm.load_state_dict({k: torch.from_numpy(np.array(v.numpy()))
                        for k, v in cm.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = rng.integers(0, 10, shape[0])
    return {
        "chainrule": (cm, cr.tensor, cr.nn.functional.cross_entropy,
                      lambda ps: optim.AdamW(ps, lr=1e-3), x, y),
        "torch": (tm, torch.from_numpy, torch.nn.functional.cross_entropy,
                  lambda ps: torch.optim.AdamW(ps, lr=1e-3), x, y),
    }


def _median_ms(fn, inner):
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner * 1e3


def parts_worker(framework, model, threads, reps):
    """Per layer of one framework: medians over ``reps`` of the forward and of forward +
    backward (the backward is the difference), each the mean of a few calls."""
    import numpy as np

    fws = _frameworks(model, threads)
    cm, ct, *_, x, _ = fws["chainrule"]
    net, mk = fws[framework][:2]
    # the input each layer sees, computed once in chainrule (the same in torch)
    inputs, h = [], x
    for layer in cm:
        inputs.append(h)
        h = layer(ct(h)).detach().numpy()
    out = []
    for i, layer in enumerate(net):
        xin = inputs[i]
        t = mk(xin.copy())
        if i:  # the network's input needs no gradient
            t.requires_grad_(True)
        g = mk(np.random.default_rng(i).standard_normal(tuple(layer(t).shape),
                                                        dtype=np.float32))

        def fwd(layer=layer, t=t):
            return layer(t)

        def both(layer=layer, t=t, g=g):
            layer(t).backward(g)

        f, b = [], []
        for _ in range(reps):
            fwd(), both()
            f.append(_median_ms(fwd, 5))
            b.append(_median_ms(both, 5))
        out.append((f"{i:2d} {type(layer).__name__:12s} {str(tuple(xin.shape)):18s}",
                    statistics.median(f), statistics.median(b) - statistics.median(f)))
    return out


def parts(model, threads, reps, rounds):
    """Each framework's layers timed in its own subprocess, alternating for ``rounds``."""
    res = {"chainrule": [], "torch": []}
    for _ in range(rounds):
        for fw in res:
            res[fw].append(_run(fw, model, threads, ["--reps", str(reps), "--mode", "parts"]))
    print(f"{model}, {threads} thread(s); median over {rounds} rounds x {reps} (ms): "
          "forward, backward; ratio")
    tot = {"chainrule": [0, 0], "torch": [0, 0]}
    for i, row in enumerate(res["chainrule"][0]):
        med = {}
        for fw in res:
            med[fw] = (statistics.median(r[i][1] for r in res[fw]),
                       statistics.median(r[i][2] for r in res[fw]))
            tot[fw][0] += med[fw][0]
            tot[fw][1] += med[fw][1]
        (cf, cb), (tf, tb) = med["chainrule"], med["torch"]
        print(f"  {row[0]}  cr {cf:6.2f} {cb:6.2f}   torch {tf:6.2f} {tb:6.2f}   "
              f"ratio {cf / max(tf, 1e-3):5.2f} {cb / max(tb, 1e-3):5.2f}")
    c, t = tot["chainrule"], tot["torch"]
    print(f"  sum of layers          cr {c[0]:6.2f} {c[1]:6.2f}   torch {t[0]:6.2f} {t[1]:6.2f}"
          f"   ratio {c[0] / t[0]:5.2f} {c[1] / t[1]:5.2f}   total {sum(c) / sum(t):.2f}")


def _run(fw, model, threads, extra):
    out = subprocess.run([sys.executable, __file__, "--worker", fw, "--model", model,
                          "--threads", str(threads)] + extra, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.splitlines()[-1])


def worker(framework, model, threads, steps):
    fws = _frameworks(model, threads)
    net, mk, loss_fn, make_opt, x, y = fws[framework]
    opt = make_opt(net.parameters())
    xt, yt = mk(x), mk(y)

    def step():
        opt.zero_grad()
        loss = loss_fn(net(xt), yt)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def step_compare(model, threads, rounds, steps):
    res = {"chainrule": [], "torch": []}
    for _ in range(rounds):
        for fw in res:
            res[fw].append(statistics.median(_run(fw, model, threads, ["--steps", str(steps)])))
    c, t = statistics.median(res["chainrule"]) * 1e3, statistics.median(res["torch"]) * 1e3
    print(f"{model} step, {threads} thread(s): chainrule {c:.2f} ms, torch {t:.2f} ms, "
          f"ratio {c / t:.2f}  (round medians cr "
          + ", ".join(f"{v * 1e3:.1f}" for v in res["chainrule"]) + "; torch "
          + ", ".join(f"{v * 1e3:.1f}" for v in res["torch"]) + ")")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", choices=sorted(MODELS), default="small")
    ap.add_argument("--mode", choices=["parts", "step", "both"], default="both")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--worker", choices=["chainrule", "torch"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    _set_threads(a.threads)
    if a.worker:
        if a.mode == "parts":
            print(json.dumps(parts_worker(a.worker, a.model, a.threads, a.reps)))
        else:
            print(json.dumps(worker(a.worker, a.model, a.threads, a.steps)))
        return
    if a.mode in ("step", "both"):
        step_compare(a.model, a.threads, a.rounds, a.steps)
    if a.mode in ("parts", "both"):
        parts(a.model, a.threads, a.reps, a.rounds)


if __name__ == "__main__":
    main()
