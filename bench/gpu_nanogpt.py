"""nanoGPT's shakespeare_char model on one GPU: chainrule (CuPy) against PyTorch eager and
torch.compile, in the same process, timed in alternation.

The model is nanoGPT's config/train_shakespeare_char.py: 6 layers, 6 heads, 384 wide, block
256, batch 64, with dropout 0 (every library runs the same arithmetic; dropout 0.2 draws a
different mask in each one), AdamW (lr 1e-3, betas (0.9, 0.99), weight decay 0.1), float32.
Each library is warmed up, then ``--rounds`` rounds alternate: ``--iters`` timed training steps
of each, with the device synchronized around every round. Reported per library: the median
ms/iter, the peak GPU memory of a step, and for chainrule the number of namespace calls per
step (each is one or a few kernel launches: CuPy has no launch counter, so this is a proxy,
said so in the output). Then GPT-2 124M-shaped blocks (12 layers, 12 heads, 768 wide, block
1024, vocab 50304) give tokens/s for chainrule and PyTorch eager (one small batch).

Mixed precision: chainrule's autocast runs blocks unchanged (no autocasting), so there is no
mixed-precision line; PyTorch's is reported as ``torch_amp_bf16`` for reference.

Usage: python bench/gpu_nanogpt.py [--data PATH] [--iters N] [--rounds R] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "tinyshakespeare.txt")


def load_tokens(path):
    if path and os.path.isfile(path):
        text, source = open(path, encoding="utf-8").read(), path
    else:
        from chainrule.data import default_corpus_text

        text, source = default_corpus_text(), "the package's bundled sample text"
    chars = sorted(set(text))
    ids = {c: i for i, c in enumerate(chars)}
    return np.array([ids[c] for c in text], dtype=np.int64), len(chars), source


def batches(tokens, B, T, seed):
    rng = np.random.default_rng(seed)
    while True:
        ix = rng.integers(0, len(tokens) - T - 1, B)
        x = np.stack([tokens[i:i + T] for i in ix])
        y = np.stack([tokens[i + 1:i + T + 1] for i in ix])
        yield x, y


# ----------------------------------------------------------------------------- chainrule


class CallCounter:
    """Counts calls of the CUDA namespace's functions (a proxy for kernel launches)."""

    def __init__(self, ns):
        self.ns, self.n, self.saved = ns, 0, {}

    def __enter__(self):
        for name in dir(self.ns):
            f = getattr(self.ns, name)
            if name.startswith("_") or isinstance(f, type) or not callable(f):
                continue
            self.saved[name] = f

            def wrapped(*a, _f=f, **k):
                self.n += 1
                return _f(*a, **k)

            setattr(self.ns, name, wrapped)
        return self

    def __exit__(self, *exc):
        for name, f in self.saved.items():
            setattr(self.ns, name, f)


def chainrule_runner(cfg, vocab, data):
    import chainrule as cr
    from chainrule.models import GPT, GPTConfig

    cr.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=cfg["block"], n_layer=cfg["layers"],
                          n_head=cfg["heads"], n_embd=cfg["width"], dropout=0.0)).cuda()
    opt = cr.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

    def step():
        x, y = next(data)
        _, loss = model(cr.tensor(x, device="cuda"), cr.tensor(y, device="cuda"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        cr.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    return step, cr.cuda.synchronize


def chainrule_peak_and_calls(step):
    import chainrule as cr
    from chainrule import backend

    step()
    cr.cuda.synchronize()
    cr.cuda.reset_peak_memory_stats()
    step()
    cr.cuda.synchronize()
    peak = cr.cuda.max_memory_allocated()
    with CallCounter(backend.xp_for_device("cuda")) as c:
        step()
    cr.cuda.synchronize()
    return peak, c.n


# ----------------------------------------------------------------------------- PyTorch


def torch_runner(cfg, vocab, data, compile_=False, amp=False):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    C, H, T = cfg["width"], cfg["heads"], cfg["block"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)
            self.attn, self.proj = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
            self.fc, self.out = nn.Linear(C, 4 * C, bias=False), nn.Linear(4 * C, C, bias=False)

        def forward(self, x):
            B, L, _ = x.shape
            q, k, v = self.attn(self.ln1(x)).split(C, dim=2)
            q, k, v = (t.view(B, L, H, C // H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(B, L, C))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, C), nn.Embedding(T, C)
            self.h = nn.ModuleList(Block() for _ in range(cfg["layers"]))
            self.ln_f = nn.LayerNorm(C, bias=False)

        def forward(self, idx, targets):
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for b in self.h:
                x = b(x)
            logits = self.ln_f(x) @ self.wte.weight.T
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    model = GPT().cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    fwd = torch.compile(model) if compile_ else model

    def step():
        x, y = next(data)
        x, y = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = fwd(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    return step, torch.cuda.synchronize


def torch_peak(step):
    import torch

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated())


# ----------------------------------------------------------------------------- timing


def time_round(step, sync, iters):
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    return (time.perf_counter() - t0) * 1000 / iters


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--gpt2-iters", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    import chainrule as cr

    out = {"config": {"layers": 6, "heads": 6, "width": 384, "block": 256, "batch": 64,
                      "dropout": 0.0, "dtype": "float32"}, "iters": args.iters,
           "rounds": args.rounds, "kernel_launches": "not counted (CuPy has no launch "
           "counter); chainrule_namespace_calls_per_step is the number of array-namespace "
           "calls, each one or a few launches"}
    if not cr.cuda.is_available():
        out["error"] = "no CUDA GPU (CuPy with an NVIDIA GPU is needed)"
        print(json.dumps(out))
        return 2
    out["gpu"] = cr.cuda.get_device_name()
    tokens, vocab, source = load_tokens(args.data)
    out["data"], out["vocab"] = source, vocab
    cfg = {"layers": 6, "heads": 6, "width": 384, "block": 256, "batch": 64}

    runners = {"chainrule": chainrule_runner(cfg, vocab, batches(tokens, 64, 256, 1))}
    try:
        import torch  # noqa: F401

        runners["torch_eager"] = torch_runner(cfg, vocab, batches(tokens, 64, 256, 1))
        runners["torch_amp_bf16"] = torch_runner(cfg, vocab, batches(tokens, 64, 256, 1),
                                                 amp=True)
        if not args.no_compile:
            runners["torch_compile"] = torch_runner(cfg, vocab, batches(tokens, 64, 256, 1),
                                                    compile_=True)
    except Exception as e:  # noqa: BLE001 - report what is missing and time the rest
        out["torch_error"] = f"{type(e).__name__}: {e}"

    for name, (step, sync) in list(runners.items()):
        try:
            for _ in range(args.warmup):
                step()
            sync()
        except Exception as e:  # noqa: BLE001
            out[f"{name}_error"] = f"{type(e).__name__}: {e}"
            del runners[name]
    times = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, (step, sync) in runners.items():
            times[name].append(time_round(step, sync, args.iters))
    for name, ts in times.items():
        out[f"{name}_ms_per_iter"] = round(statistics.median(ts), 2)
        out[f"{name}_rounds_ms"] = [round(t, 2) for t in ts]
    if "chainrule" in runners:
        peak, calls = chainrule_peak_and_calls(runners["chainrule"][0])
        out["chainrule_peak_bytes"], out["chainrule_namespace_calls_per_step"] = peak, calls
        out["chainrule_final_loss"] = float(runners["chainrule"][0]().item())
    if "torch_eager" in runners:
        out["torch_eager_peak_bytes"] = torch_peak(runners["torch_eager"][0])
    runners.clear()
    cr.cuda.empty_cache()

    # GPT-2 124M-shaped: tokens per second of a training step
    g2 = {"layers": 12, "heads": 12, "width": 768, "block": 1024, "batch": 4}
    vocab2 = 50304
    rng_tokens = np.random.default_rng(0).integers(0, vocab2, 200_000)
    for name, make in (("chainrule", chainrule_runner), ("torch_eager", torch_runner)):
        if name == "torch_eager" and "torch_error" in out:
            continue
        try:
            step, sync = make(g2, vocab2, batches(rng_tokens, g2["batch"], g2["block"], 2))
            step()
            ms = time_round(step, sync, args.gpt2_iters)
            out[f"gpt2_124m_{name}_tokens_per_s"] = round(g2["batch"] * g2["block"] * 1000 / ms)
        except Exception as e:  # noqa: BLE001
            out[f"gpt2_124m_{name}_error"] = f"{type(e).__name__}: {e}"
        del step
        cr.cuda.empty_cache()

    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    print(json.dumps(out))
    cm, te = out.get("chainrule_ms_per_iter"), out.get("torch_eager_ms_per_iter")
    print(f"\nGPU: {out['gpu']}; data: {source}")
    for k in ("chainrule", "torch_eager", "torch_compile", "torch_amp_bf16"):
        if f"{k}_ms_per_iter" in out:
            print(f"  {k:16s} {out[f'{k}_ms_per_iter']:9.2f} ms/iter")
    if cm and te:
        print(f"  ratio chainrule / torch eager: {cm / te:.2f}")
    print(f"  peak memory: chainrule {out.get('chainrule_peak_bytes', 0) / 2**20:.0f} MiB, "
          f"torch eager {out.get('torch_eager_peak_bytes', 0) / 2**20:.0f} MiB")
    print(f"  chainrule namespace calls per step: "
          f"{out.get('chainrule_namespace_calls_per_step', 'n/a')} (kernel launches not counted)")
    for k in ("chainrule", "torch_eager"):
        if f"gpt2_124m_{k}_tokens_per_s" in out:
            print(f"  GPT-2 124M shape, {k}: {out[f'gpt2_124m_{k}_tokens_per_s']} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
