"""nanoGPT's CPU "baby GPT" on tinyshakespeare: chainrule against PyTorch eager.

Configuration (nanoGPT's README command for CPU): n_layer 4, n_head 4, n_embd 128, block 64,
batch 12, dropout 0, no biases, AdamW lr 1e-3 betas (0.9, 0.99) weight decay 0.1, warmup 100,
cosine decay to 1e-4 over 2000 iterations, gradient clipping 1.0, character tokenizer, 90/10
split, evaluation every 250 iterations on 20 batches per split.

    python bench/nanogpt_baby.py [DATA] [--iters 2000] [--torch-iters 50] [--profile]

Each engine runs in a subprocess of its own so that its peak memory (RSS) is its own. Reports:
validation loss against wall time for chainrule, the median ms per training iteration of both
engines on the same model, and peak RSS of both; then both engines in one process, in
alternating blocks of steps, for a time ratio that a busy machine's load affects alike.
``--profile N`` instead profiles N chainrule steps (cProfile), listing each function's own time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                            "tinyshakespeare.txt")
CFG = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0,
           lr=1e-3, min_lr=1e-4, warmup=100, decay_iters=2000, betas=(0.9, 0.99),
           weight_decay=0.1, grad_clip=1.0, eval_interval=250, eval_iters=20)


def get_lr(it: int) -> float:
    """nanoGPT's schedule: linear warmup, cosine decay to min_lr, then constant."""
    if it < CFG["warmup"]:
        return CFG["lr"] * (it + 1) / (CFG["warmup"] + 1)
    if it > CFG["decay_iters"]:
        return CFG["min_lr"]
    r = (it - CFG["warmup"]) / (CFG["decay_iters"] - CFG["warmup"])
    return CFG["min_lr"] + 0.5 * (1 + math.cos(math.pi * r)) * (CFG["lr"] - CFG["min_lr"])


def load_data(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.int64)
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:], len(chars)


def batch(data, rng):
    B, T = CFG["batch_size"], CFG["block_size"]
    ix = rng.integers(0, len(data) - T, size=B)
    idx = ix[:, None] + np.arange(T + 1)
    w = data[idx]
    return w[:, :-1], w[:, 1:]


def eval_batches(train, val, full):
    """nanoGPT's estimate (eval_iters random batches of each split, the same batches every
    time) or, with ``full``, every non-overlapping window of the validation split (an estimate
    without sampling noise)."""
    if full:
        T = CFG["block_size"]
        n = (len(val) - 1) // T
        x = val[:n * T].reshape(n, T)
        y = val[1:n * T + 1].reshape(n, T)
        B = CFG["batch_size"]
        return [("val_full", [(x[i:i + B], y[i:i + B]) for i in range(0, n, B)])]
    erng = np.random.default_rng(0)
    return [(name, [batch(data, erng) for _ in range(CFG["eval_iters"])])
            for name, data in (("train", train), ("val", val))]


class Run:
    """One engine's training run with nanoGPT's evaluation schedule, advanced a block of steps
    at a time (so that two engines can take turns in one process). ``train_s`` counts its own
    training steps, ``own_s`` its steps and evaluations."""

    def __init__(self, name, step, evaluate, iters):
        self.name, self.step, self.evaluate, self.iters = name, step, evaluate, iters
        self.it, self.train_s, self.own_s, self.evals, self.step_ms = 0, 0.0, 0.0, [], []
        self.t_start = time.perf_counter()
        self.done = False

    def advance(self, n):
        """Up to n training steps, evaluating whenever one is due."""
        for _ in range(n):
            if self.it % CFG["eval_interval"] == 0 or self.it == self.iters:
                t0 = time.perf_counter()
                ev = self.evaluate()
                self.own_s += time.perf_counter() - t0
                wall = time.perf_counter() - self.t_start
                self.evals.append({"iter": self.it, "train_loss": ev["train"],
                                   "val_loss": ev["val"], "wall_s": wall,
                                   "train_s": self.train_s, "own_s": self.own_s})
                print(f"  {self.name} iter {self.it}: train {ev['train']:.4f} val "
                      f"{ev['val']:.4f} ({wall:.1f} s)", file=sys.stderr, flush=True)
            if self.it == self.iters:
                self.done = True
                return
            t0 = time.perf_counter()
            self.step(self.it).item()
            dt = time.perf_counter() - t0
            self.train_s += dt
            self.own_s += dt
            self.step_ms.append(dt * 1000)
            self.it += 1

    def result(self) -> dict:
        return {"evals": self.evals, "ms_per_iter": float(np.median(self.step_ms)),
                "mean_ms_per_iter": float(np.mean(self.step_ms)),
                "wall_s": time.perf_counter() - self.t_start,
                "val_full": self.evaluate(full=True)["val_full"]}


def train_with_evals(name, step, evaluate, iters) -> dict:
    """Train ``iters`` steps, evaluating every eval_interval: the loss curve against time."""
    run = Run(name, step, evaluate, iters)
    run.advance(iters + 1)
    return run.result()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------- chainrule


def chainrule_setup(args, train, val, vocab):
    """(step(it) -> loss tensor, evaluate() -> {'train', 'val'}) for chainrule's baby GPT."""
    import chainrule as cr
    from chainrule.models.gpt import GPT, GPTConfig
    from chainrule.nn.utils import clip_grad_norm_
    from chainrule.train.memory import retain_freed_memory

    if not args.default_malloc:
        retain_freed_memory()  # as chainrule train does
    cr.manual_seed(args.seed)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=CFG["block_size"], n_layer=CFG["n_layer"],
                          n_head=CFG["n_head"], n_embd=CFG["n_embd"], dropout=0.0, bias=False))
    opt = model.configure_optimizers(CFG["weight_decay"], CFG["lr"], CFG["betas"])
    params = list(model.parameters())
    rng = np.random.default_rng(args.seed)

    @cr.no_grad()
    def evaluate(full=False):
        model.eval()
        out = {name: float(np.mean([model(cr.tensor(x), cr.tensor(y))[1].item()
                                    for x, y in batches])) for name, batches in
               eval_batches(train, val, full)}
        model.train()
        return out

    def step(it):
        for g in opt.param_groups:
            g["lr"] = get_lr(it)
        x, y = batch(train, rng)
        _, loss = model(cr.tensor(x), cr.tensor(y))
        loss.backward()
        clip_grad_norm_(params, CFG["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    step.model = model
    return step, evaluate


def inference_figures(model, data) -> dict:
    """One training forward (graph recorded) of a batch against sampling: ms and the peak of
    memory allocated (tracemalloc, which sees NumPy's buffers) of each."""
    import tracemalloc

    import chainrule as cr

    x, y = batch(data, np.random.default_rng(5))
    out = {}

    def measure(name, fn, repeat=5):
        fn()
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1000)
        tracemalloc.start()
        fn()
        out[name + "_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        out[name + "_ms"] = float(np.median(ts))

    def train_forward():
        _, loss = model(cr.tensor(x), cr.tensor(y))
        return loss

    n_new = CFG["block_size"] - 1
    measure("train_forward", train_forward)
    measure("generate", lambda: model.generate(cr.tensor(x[:1, :1]), n_new, temperature=1.0,
                                               generator=np.random.default_rng(0)))
    out["generate_ms_per_token"] = out.pop("generate_ms") / n_new
    out["generated_tokens"] = n_new
    return out


def run_chainrule(args) -> dict:
    train, val, vocab = load_data(args.data)
    step, evaluate = chainrule_setup(args, train, val, vocab)
    if args.profile:
        import cProfile
        import pstats

        for it in range(3):
            step(it)
        prof = cProfile.Profile()
        prof.enable()
        for it in range(args.profile):
            step(it).item()
        prof.disable()
        return {"profile": _profile_table(pstats.Stats(prof), args.profile)}

    res = train_with_evals("chainrule", step, evaluate, args.iters)
    res.update(peak_rss_mib=peak_rss_mib(), inference=inference_figures(step.model, val))
    return res


def _profile_table(stats, n_steps) -> list:
    """Own time per function, top 25, in ms per step (op forward/backward names by class)."""
    rows = []
    for (file, line, fn), (_, ncalls, tottime, _cum, _) in stats.stats.items():
        rows.append((tottime / n_steps * 1000, ncalls / n_steps,
                     f"{os.path.relpath(file) if file.startswith('/') else file}:{line}({fn})"))
    rows.sort(reverse=True)
    return rows[:25]


# ----------------------------------------------------------------------------- PyTorch


def torch_setup(args, train, vocab, val=None):
    """step(it) -> loss tensor for the same model in PyTorch eager; step.evaluate(full)."""
    import torch
    import torch.nn as tnn
    from torch.nn import functional as tF

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    C, nh, T = CFG["n_embd"], CFG["n_head"], CFG["block_size"]

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = tnn.LayerNorm(C, bias=False)
            self.c_attn = tnn.Linear(C, 3 * C, bias=False)
            self.c_proj = tnn.Linear(C, C, bias=False)
            self.ln_2 = tnn.LayerNorm(C, bias=False)
            self.c_fc = tnn.Linear(C, 4 * C, bias=False)
            self.m_proj = tnn.Linear(4 * C, C, bias=False)

        def forward(self, x):
            B = x.shape[0]
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = [t.view(B, T, nh, C // nh).transpose(1, 2) for t in (q, k, v)]
            y = tF.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
            return x + self.m_proj(tF.gelu(self.c_fc(self.ln_2(x))))

    class TorchGPT(tnn.Module):
        def __init__(self):
            super().__init__()
            self.wte = tnn.Embedding(vocab, C)
            self.wpe = tnn.Embedding(T, C)
            self.h = tnn.ModuleList([Block() for _ in range(CFG["n_layer"])])
            self.ln_f = tnn.LayerNorm(C, bias=False)
            for n, p in self.named_parameters():
                if p.dim() >= 2:
                    std = 0.02 / math.sqrt(2 * CFG["n_layer"]) if n.endswith("proj.weight") \
                        else 0.02
                    tnn.init.normal_(p, 0.0, std)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for b in self.h:
                x = b(x)
            logits = self.ln_f(x) @ self.wte.weight.T
            return tF.cross_entropy(logits.view(-1, vocab), targets.reshape(-1))

    model = TorchGPT()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": CFG["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=CFG["lr"], betas=CFG["betas"])
    rng = np.random.default_rng(args.seed)

    @torch.no_grad()
    def evaluate(full=False):
        model.eval()
        out = {name: float(np.mean([model(torch.from_numpy(x), torch.from_numpy(y)).item()
                                    for x, y in batches])) for name, batches in
               eval_batches(train, val, full)}
        model.train()
        return out

    def step(it):
        for g in opt.param_groups:
            g["lr"] = get_lr(it)
        x, y = batch(train, rng)
        loss = model(torch.from_numpy(x), torch.from_numpy(y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CFG["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    step.evaluate = evaluate
    return step


def run_torch(args) -> dict:
    train, val, vocab = load_data(args.data)
    step = torch_setup(args, train, vocab, val)
    step_ms = []
    for it in range(args.torch_iters + 5):
        t0 = time.perf_counter()
        loss = step(it).item()
        if it >= 5:  # the first steps warm up allocators and thread pools
            step_ms.append((time.perf_counter() - t0) * 1000)
    return {"ms_per_iter": float(np.median(step_ms)), "loss": loss,
            "peak_rss_mib": peak_rss_mib()}


def run_speed(args) -> dict:
    """Both engines in one process, in alternating blocks of 10 steps, so that a shared
    machine's changing load falls on both alike: median ms per step of each. (Blocks rather
    than single steps: after a step of one engine, the other's thread pool has to wake up, and
    OpenBLAS's threads keep spinning for a while after NumPy's last GEMM, slowing PyTorch's
    threads; the first two steps of each block are not counted.)"""
    train, val, vocab = load_data(args.data)
    cr_step, _ = chainrule_setup(args, train, val, vocab)
    th_step = torch_setup(args, train, vocab)
    times = {"chainrule": [], "torch": []}
    it = 0
    while len(times["torch"]) < args.torch_iters:
        for name, step in (("chainrule", cr_step), ("torch", th_step)):
            for k in range(10):
                t0 = time.perf_counter()
                step(it + k).item()
                if k >= 2:
                    times[name].append((time.perf_counter() - t0) * 1000)
        it += 10
    cr_ms, th_ms = float(np.median(times["chainrule"])), float(np.median(times["torch"]))
    return {"chainrule_ms": cr_ms, "torch_ms": th_ms, "ratio": cr_ms / th_ms}


def run_both(args) -> dict:
    """Both engines trained for --iters iterations in one process, taking turns in blocks of 10
    steps, so that a shared machine's changing speed falls on both alike: each one's loss curve
    against its own time."""
    train, val, vocab = load_data(args.data)
    cr_step, cr_eval = chainrule_setup(args, train, val, vocab)
    th_step = torch_setup(args, train, vocab, val)
    runs = [Run("chainrule", cr_step, cr_eval, args.iters),
            Run("PyTorch", th_step, th_step.evaluate, args.iters)]
    while not all(r.done for r in runs):
        for r in runs:
            r.advance(10)
    return {r.name: r.result() for r in runs}


# ----------------------------------------------------------------------------- driver


def _child(engine, args) -> dict:
    cmd = [sys.executable, __file__, args.data, "--engine", engine, "--iters", str(args.iters),
           "--torch-iters", str(args.torch_iters), "--threads", str(args.threads),
           "--seed", str(args.seed)]
    if args.profile:
        cmd += ["--profile", str(args.profile)]
    if args.default_malloc:
        cmd += ["--default-malloc"]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{engine} run failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_curve(name, res):
    print(f"\n{name} (seed {res.get('seed', '')}): validation loss against time")
    print(f"{'iter':>6} {'train loss':>11} {'val loss':>9} {'wall s':>8} {'train s':>8}")
    for e in res["evals"]:
        print(f"{e['iter']:6d} {e['train_loss']:11.4f} {e['val_loss']:9.4f} "
              f"{e['wall_s']:8.1f} {e['train_s']:8.1f}")
    print(f"final loss on the whole validation split (every window of {CFG['block_size']}): "
          f"{res['val_full']:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="?", default=DEFAULT_DATA)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--torch-iters", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads (default 2)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="profile N chainrule steps instead of training")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--speed-only", action="store_true",
                    help="only the interleaved ms/iter comparison (no training run)")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc settings alone in the chainrule run")
    ap.add_argument("--seed", type=int, default=1337,
                    help="seed of the initialization and of the batch sampling (default 1337)")
    ap.add_argument("--torch-train", action="store_true",
                    help="also train both engines for --iters iterations in one process, "
                         "taking turns, and print both loss curves against each one's time")
    ap.add_argument("--engine", choices=["chainrule", "torch", "speed", "both"],
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not os.path.exists(args.data):
        raise SystemExit(f"data file {args.data!r} not found (pass its path as the argument)")
    if args.engine == "chainrule":
        print(json.dumps(dict(run_chainrule(args), seed=args.seed)))
        return
    if args.engine == "torch":
        print(json.dumps(dict(run_torch(args), seed=args.seed)))
        return
    if args.engine == "speed":
        print(json.dumps(run_speed(args)))
        return
    if args.engine == "both":
        print(json.dumps(run_both(args)))
        return

    if args.profile:
        res = _child("chainrule", args)
        print(f"chainrule, {args.profile} baby-GPT steps profiled: own time per function")
        print(f"{'ms/step':>9} {'calls/step':>10}  function")
        for ms, calls, name in res["profile"]:
            print(f"{ms:9.2f} {calls:10.1f}  {name}")
        return
    if args.speed_only:
        sp = _child("speed", args)
        print(f"interleaved in blocks of 10 ({args.torch_iters} steps each): chainrule "
              f"{sp['chainrule_ms']:.1f} "
              f"ms/iter, PyTorch {sp['torch_ms']:.1f} ms/iter, ratio {sp['ratio']:.2f}x")
        return
    print(f"baby GPT on {os.path.basename(args.data)}, {args.iters} iterations", flush=True)
    cr_res = _child("chainrule", args)
    print_curve("chainrule", cr_res)
    print(f"\nchainrule: {cr_res['ms_per_iter']:.1f} ms/iter (median; mean "
          f"{cr_res['mean_ms_per_iter']:.1f}), {cr_res['wall_s']:.1f} s total, peak RSS "
          f"{cr_res['peak_rss_mib']:.0f} MiB")
    inf = cr_res["inference"]
    print(f"inference: a training forward of {CFG['batch_size']}x{CFG['block_size']} tokens "
          f"(graph recorded) {inf['train_forward_ms']:.1f} ms, peak "
          f"{inf['train_forward_peak_mib']:.1f} MiB allocated; sampling "
          f"{inf['generated_tokens']} tokens (no_grad, KV cache) "
          f"{inf['generate_ms_per_token']:.2f} ms/token, peak {inf['generate_peak_mib']:.2f} MiB")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: no side-by-side figure")
        return
    if args.skip_torch:
        return
    th = _child("torch", args)
    print(f"PyTorch eager ({args.threads} threads): {th['ms_per_iter']:.1f} ms/iter (median of "
          f"{args.torch_iters}), peak RSS {th['peak_rss_mib']:.0f} MiB")
    print(f"peak memory chainrule / PyTorch: {cr_res['peak_rss_mib'] / th['peak_rss_mib']:.2f}x")
    sp = _child("speed", args)
    print(f"interleaved in one process ({args.torch_iters} steps each, blocks of 10): chainrule "
          f"{sp['chainrule_ms']:.1f} ms/iter, PyTorch {sp['torch_ms']:.1f} ms/iter, "
          f"ratio {sp['ratio']:.2f}x time")
    if args.torch_train:
        both = _child("both", args)
        print(f"\nboth engines trained in one process, taking turns in blocks of 10 steps "
              f"(seed {args.seed}): validation loss against each engine's own time")
        print(f"{'iter':>6} {'chainrule val':>14} {'own s':>7} {'PyTorch val':>12} {'own s':>7}")
        for a, b in zip(both["chainrule"]["evals"], both["PyTorch"]["evals"]):
            print(f"{a['iter']:6d} {a['val_loss']:14.4f} {a['own_s']:7.1f} {b['val_loss']:12.4f} "
                  f"{b['own_s']:7.1f}")
        a, b = both["chainrule"], both["PyTorch"]
        print(f"whole validation split at the end: chainrule {a['val_full']:.4f}, PyTorch "
              f"{b['val_full']:.4f}; training steps: chainrule {a['evals'][-1]['train_s']:.1f} s "
              f"({a['ms_per_iter']:.1f} ms/iter median), PyTorch "
              f"{b['evals'][-1]['train_s']:.1f} s ({b['ms_per_iter']:.1f} ms/iter), ratio "
              f"{a['evals'][-1]['train_s'] / b['evals'][-1]['train_s']:.2f}x time")


if __name__ == "__main__":
    main()
