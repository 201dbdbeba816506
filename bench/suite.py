"""The broad CPU benchmark: training steps of common models, chainrule against PyTorch eager.

    python bench/suite.py [--threads 2] [--repeats 3] [--steps N] [--warmup 3]
                          [--only mlp,gpt,...] [--tree PATH] [--json PATH]

Each model is written once, as a function of a module namespace (``t`` = ``torch`` or
``chainrule``, with its ``nn`` and ``nn.functional``), the way a PyTorch user writes it, and the
same code runs on both engines:

  mlp               MLP 784-512-512-10 (ReLU), batch 128, cross-entropy, AdamW
  cnn               conv3x3(16)-relu-maxpool2-conv3x3(32)-relu-maxpool2-linear(1568, 10),
                    batch 64 on 1x28x28, AdamW
  gpt               GPT: 4 pre-norm blocks, 128 wide, 4 heads, block 64, vocab 65, tanh GELU
                    MLP (4x), causal scaled_dot_product_attention, batch 12, AdamW
  llama             2 Llama blocks, 128 wide, 4 heads, RMSNorm, SiLU-gated MLP (hidden 344),
                    rotary embeddings from cos/sin tables, causal attention, block 64,
                    batch 12, AdamW
  deep_cnn          [conv3x3(32)-relu x2, avgpool2], [conv3x3(64)-relu x2, avgpool2], mean over
                    H and W, linear(64, 10); batch 32 on 3x32x32, SGD with momentum 0.9
  mlp_sigmoid_tanh  MLP 784-256 (sigmoid)-256 (tanh)-10, batch 128, SGD
  encoder           nn.TransformerEncoder of 2 nn.TransformerEncoderLayer (d_model 128, 4 heads,
                    feed-forward 512, batch_first), sequence 64, batch 16, mean-pooled,
                    linear to 10 classes, AdamW
  gpt_infer         the gpt model's forward alone, in eval mode under no_grad, batch 12
  resnet_bn         a small ResNet (three basic blocks with BatchNorm2d, 16-32-64 channels),
                    batch 32 on 3x32x32, SGD with momentum 0.9 and weight decay

A training step is zero_grad, forward, loss, backward and the optimizer's step. Both engines
start from the same weights (drawn with NumPy from each entry's name and shape, so neither
engine's initializer is involved) and see the same batches (NumPy, fixed seed), so their losses
agree: the losses of the first three steps (before any update, after one and after two) are
compared, and a difference over 1e-3 relative is flagged in the table, so that a model that
computes something else (or a gradient that is wrong) cannot look fast.

Measurement: every engine runs each workload in its own subprocess (imports, allocator and
thread pools apart), with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS (and
``torch.set_num_threads``) set to ``--threads`` before NumPy or PyTorch is imported. The engines
alternate over ``--repeats`` rounds (the order reversed every other round), so that load from
elsewhere on the machine falls on all of them. A subprocess runs the three checked steps and
``--warmup`` more, then times ``--steps`` steps (by default a count per workload that takes
about a second or two) and reports the median ms per step and the rise of its peak RSS over the
RSS after the imports, the model, the optimizer and the batches (the kernel's high-water mark,
``ru_maxrss``, reset through /proc/self/clear_refs where the kernel allows it): gradients,
optimizer state and the step's working memory. The table gives, per workload, the median over
rounds of those medians, the ratio chainrule / PyTorch and the peak memory of each.

``--tree PATH`` runs a third column, "before", with chainrule imported from another source tree
(``PYTHONPATH=PATH/src``, e.g. a ``git worktree`` of an older commit, built with
``pip install -e`` or ``python setup.py build_ext --inplace`` for its C kernels), and adds the
ratio chainrule / before. Without PyTorch installed the PyTorch columns are left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
ENGINES = ("chainrule", "torch", "before")  # "before": chainrule from --tree
LOSS_RTOL = 1e-3  # relative, on the losses before any update and after one and two updates


# -- the models, each written once for either engine -------------------------------------------
def mlp(t, nn, F):
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 10))


def cnn(t, nn, F):
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def mlp_sigmoid_tanh(t, nn, F):
    return nn.Sequential(nn.Linear(784, 256), nn.Sigmoid(), nn.Linear(256, 256), nn.Tanh(),
                         nn.Linear(256, 10))


def deep_cnn(t, nn, F):
    class DeepCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2))
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(self.features(x).mean(dim=(2, 3)))  # (B, 64, 8, 8) -> (B, 64)

    return DeepCNN()


def resnet_bn(t, nn, F):
    class BasicBlock(nn.Module):
        def __init__(self, c_in, c_out, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut = nn.Sequential()
            if stride != 1 or c_in != c_out:
                self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                              nn.BatchNorm2d(c_out))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return F.relu(out + self.shortcut(x))

    class ResNet(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.layer1 = BasicBlock(16, 16)
            self.layer2 = BasicBlock(16, 32, stride=2)
            self.layer3 = BasicBlock(32, 64, stride=2)
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x):
            x = F.relu(self.bn1(self.conv1(x)))  # (B, 16, 32, 32)
            x = self.layer3(self.layer2(self.layer1(x)))  # (B, 64, 8, 8)
            return self.fc(x.mean(dim=(2, 3)))

    return ResNet()


def gpt(t, nn, F, vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128):
    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(n_embd, dim=2)
            q = q.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, nh, T, hs)
            k = k.view(B, T, n_head, C // n_head).transpose(1, 2)
            v = v.view(B, T, n_head, C // n_head).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(n_embd, 4 * n_embd)
            self.c_proj = nn.Linear(4 * n_embd, n_embd)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(n_embd)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab_size, n_embd)
            self.wpe = nn.Embedding(block_size, n_embd)
            self.h = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

        def forward(self, idx):
            B, T = idx.size()
            pos = t.arange(0, T, dtype=t.long)  # (T,)
            x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x))  # (B, T, vocab_size)

    return GPT()


def llama(t, nn, F, vocab_size=65, block_size=64, n_layer=2, n_head=4, dim=128, hidden=344):
    head_dim = dim // n_head

    def rotate_half(x):
        x1, x2 = x[..., : head_dim // 2], x[..., head_dim // 2:]
        return t.cat((-x2, x1), dim=-1)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.wq = nn.Linear(dim, dim, bias=False)
            self.wk = nn.Linear(dim, dim, bias=False)
            self.wv = nn.Linear(dim, dim, bias=False)
            self.wo = nn.Linear(dim, dim, bias=False)

        def forward(self, x, cos, sin):
            B, T, C = x.shape
            q = self.wq(x).view(B, T, n_head, head_dim).transpose(1, 2)  # (B, nh, T, hd)
            k = self.wk(x).view(B, T, n_head, head_dim).transpose(1, 2)
            v = self.wv(x).view(B, T, n_head, head_dim).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin  # cos, sin: (T, hd)
            k = k * cos + rotate_half(k) * sin
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.wo(y.transpose(1, 2).reshape(B, T, C))

    class FeedForward(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Linear(dim, hidden, bias=False)
            self.w2 = nn.Linear(hidden, dim, bias=False)
            self.w3 = nn.Linear(dim, hidden, bias=False)

        def forward(self, x):
            return self.w2(F.silu(self.w1(x)) * self.w3(x))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention_norm = nn.RMSNorm(dim, eps=1e-5)
            self.attention = Attention()
            self.ffn_norm = nn.RMSNorm(dim, eps=1e-5)
            self.feed_forward = FeedForward()

        def forward(self, x, cos, sin):
            x = x + self.attention(self.attention_norm(x), cos, sin)
            return x + self.feed_forward(self.ffn_norm(x))

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_embeddings = nn.Embedding(vocab_size, dim)
            self.layers = nn.ModuleList([Block() for _ in range(n_layer)])
            self.norm = nn.RMSNorm(dim, eps=1e-5)
            self.output = nn.Linear(dim, vocab_size, bias=False)
            inv_freq = 1.0 / (10000.0 ** (t.arange(0, head_dim, 2).float() / head_dim))
            freqs = t.outer(t.arange(block_size).float(), inv_freq)  # (block_size, hd/2)
            emb = t.cat((freqs, freqs), dim=-1)  # (block_size, hd)
            self.register_buffer("cos", emb.cos(), persistent=False)
            self.register_buffer("sin", emb.sin(), persistent=False)

        def forward(self, idx):
            B, T = idx.shape
            x = self.tok_embeddings(idx)  # (B, T, dim)
            cos, sin = self.cos[:T], self.sin[:T]
            for layer in self.layers:
                x = layer(x, cos, sin)
            return self.output(self.norm(x))  # (B, T, vocab_size)

    return Llama()


def encoder(t, nn, F):
    class EncoderClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512,
                                               dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=2)
            self.head = nn.Linear(128, 10)

        def forward(self, x):
            return self.head(self.encoder(x).mean(dim=1))  # (B, T, 128) -> (B, 10)

    return EncoderClassifier()


# -- the workloads --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    build: object  # (t, nn, F) -> Module
    inputs: tuple  # ("normal", shape) float32 features or ("tokens", (B, T), vocab)
    targets: tuple  # (shape, number of classes)
    optimizer: str  # "adamw" or "sgd"
    opt_kwargs: dict
    steps: int  # default timed steps (about a second or two of work)
    infer: bool = False

    def make_optimizer(self, optim, params):
        cls = {"adamw": optim.AdamW, "sgd": optim.SGD}[self.optimizer]
        return cls(params, **self.opt_kwargs)


_ADAMW = {"lr": 1e-3, "weight_decay": 0.01}
WORKLOADS = {
    "mlp": Workload(mlp, ("normal", (128, 784)), ((128,), 10), "adamw", _ADAMW, 500),
    "cnn": Workload(cnn, ("normal", (64, 1, 28, 28)), ((64,), 10), "adamw", _ADAMW, 150),
    "gpt": Workload(gpt, ("tokens", (12, 64), 65), ((12, 64), 65), "adamw", _ADAMW, 40),
    "llama": Workload(llama, ("tokens", (12, 64), 65), ((12, 64), 65), "adamw", _ADAMW, 60),
    "deep_cnn": Workload(deep_cnn, ("normal", (32, 3, 32, 32)), ((32,), 10), "sgd",
                         {"lr": 0.01, "momentum": 0.9}, 20),
    "mlp_sigmoid_tanh": Workload(mlp_sigmoid_tanh, ("normal", (128, 784)), ((128,), 10), "sgd",
                                 {"lr": 0.1}, 1000),
    "encoder": Workload(encoder, ("normal", (16, 64, 128)), ((16,), 10), "adamw", _ADAMW, 50),
    "gpt_infer": Workload(gpt, ("tokens", (12, 64), 65), ((12, 64), 65), "adamw", _ADAMW, 150,
                          infer=True),
    "resnet_bn": Workload(resnet_bn, ("normal", (32, 3, 32, 32)), ((32,), 10), "sgd",
                          {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}, 25),
}
N_BATCHES = 4  # distinct batches, cycled
CHECK_STEPS = 3  # steps whose losses are compared across engines


def batches(name: str) -> list:
    """N_BATCHES (inputs, targets) NumPy pairs, the same for every engine and run."""
    import numpy as np

    w = WORKLOADS[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    out = []
    for _ in range(N_BATCHES):
        if w.inputs[0] == "normal":
            x = rng.standard_normal(w.inputs[1], dtype=np.float32)
        else:
            x = rng.integers(0, w.inputs[2], w.inputs[1], dtype=np.int64)
        out.append((x, rng.integers(0, w.targets[1], w.targets[0], dtype=np.int64)))
    return out


def initial_weights(state: dict) -> dict:
    """Engine-independent weights for a state dict, as NumPy arrays drawn from each entry's
    name and shape: matrices and kernels U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases U(-0.1, 0.1),
    1-D weights (norm scales) ones, BatchNorm's running statistics their initial values."""
    import numpy as np

    out = {}
    for key, value in state.items():
        shape = tuple(value.shape)
        dtype = np.dtype(str(value.dtype).replace("torch.", "").replace("chainrule.", ""))
        leaf = key.rsplit(".", 1)[-1]
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        if leaf == "num_batches_tracked":
            arr = np.zeros(shape, dtype)
        elif leaf == "running_mean":
            arr = np.zeros(shape, dtype)
        elif leaf == "running_var" or (len(shape) == 1 and leaf.endswith("weight")):
            arr = np.ones(shape, dtype)
        elif len(shape) == 1:
            arr = rng.uniform(-0.1, 0.1, shape)
        else:
            bound = 1.0 / np.sqrt(int(np.prod(shape[1:])))
            arr = rng.uniform(-bound, bound, shape)
        out[key] = np.array(arr, dtype=dtype, order="C")  # (ascontiguousarray makes 0-d 1-d)
    return out


def setup(engine_module, name: str):
    """The model (with the shared initial weights), its optimizer, the batches as the engine's
    tensors, and the step function of workload ``name`` on one engine (torch or chainrule)."""
    t = engine_module
    nn, F = t.nn, t.nn.functional
    w = WORKLOADS[name]
    model = w.build(t, nn, F)
    model.load_state_dict({k: t.from_numpy(a) for k, a in
                           initial_weights(model.state_dict()).items()})
    data = [(t.from_numpy(x), t.from_numpy(y)) for x, y in batches(name)]

    def loss_of(logits, y):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    if w.infer:
        model.eval()
        opt = None

        def step(i):
            with t.no_grad():
                return model(data[i % N_BATCHES][0])

        def check_loss(i):
            with t.no_grad():
                return loss_of(model(data[i % N_BATCHES][0]), data[i % N_BATCHES][1]).item()
    else:
        opt = w.make_optimizer(t.optim, model.parameters())

        def step(i):
            x, y = data[i % N_BATCHES]
            opt.zero_grad()
            loss = loss_of(model(x), y)
            loss.backward()
            opt.step()
            return loss

        def check_loss(i):
            return step(i).item()

    return model, opt, step, check_loss


# -- the worker (one engine, one workload, its own process) --------------------------------------
def _rss_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_kib() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the high-water mark that ru_maxrss reads
        return True
    except OSError:
        return False


def worker(engine: str, name: str, steps: int, warmup: int, threads: int) -> dict:
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    import numpy as np

    if engine == "torch":
        import torch as t

        t.set_num_threads(threads)
    else:
        import chainrule as t
    t.manual_seed(0)
    model, opt, step, check_loss = setup(t, name)
    # the baseline: imports, model, optimizer and batches are in; gradients, optimizer state
    # and the step's working memory come with the steps
    reset = _reset_peak()
    rss = _rss_kib()
    base = rss if reset and rss is not None else _maxrss_kib()
    losses = [check_loss(i) for i in range(1 if WORKLOADS[name].infer else CHECK_STEPS)]
    i = len(losses)
    for _ in range(warmup):
        step(i)
        i += 1
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t0)
        i += 1
    out = {"engine": engine, "workload": name, "ms": statistics.median(times) * 1e3,
           "times_ms": [x * 1e3 for x in times], "losses": losses,
           "peak_mib": max(0.0, _maxrss_kib() - base) / 1024, "peak_reset": reset,
           "version": t.__version__, "numpy": np.__version__, "file": t.__file__}
    if engine != "torch":
        out["native"] = (importlib.util.find_spec("chainrule._native") is not None
                         and os.environ.get("CHAINRULE_NATIVE", "1") != "0")
    return out


# -- the driver -----------------------------------------------------------------------------------
def run_worker(engine: str, name: str, args) -> dict:
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(args.threads)
    if engine == "before":
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.join(os.path.abspath(args.tree), "src")]
            + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    steps = args.steps if args.steps is not None else WORKLOADS[name].steps
    cmd = [sys.executable, os.path.abspath(__file__), "--worker",
           "torch" if engine == "torch" else "chainrule", "--only", name, "--steps", str(steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        err = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return {"engine": engine, "workload": name, "error": err, "stderr": res.stderr}
    out = json.loads(lines[-1])
    out["engine"] = engine
    return out


def loss_check(reference: list, other: list) -> str | None:
    """None when the losses agree, otherwise what differs (step and relative difference)."""
    for k, (a, b) in enumerate(zip(reference, other)):
        rel = abs(a - b) / max(abs(b), 1e-12)
        if not rel <= LOSS_RTOL:  # also flags NaN
            return f"step {k}: {a:.6g} vs {b:.6g} (rel {rel:.1e})"
    return None


def summarize(name: str, runs: dict) -> dict:
    row = {"workload": name}
    for engine, results in runs.items():
        good = [r for r in results if "error" not in r]
        if not good:
            if results:
                row[engine] = {"error": results[0]["error"]}
            continue
        row[engine] = {"ms": statistics.median(r["ms"] for r in good),
                       "round_ms": [r["ms"] for r in good],
                       "peak_mib": statistics.median(r["peak_mib"] for r in good),
                       "losses": good[0]["losses"]}
    cr = row.get("chainrule", {})
    row["loss_diff"] = {}
    for other in ("torch", "before"):
        ref = row.get(other, {})
        if "ms" in cr and "ms" in ref:
            row[f"chainrule/{other}"] = cr["ms"] / ref["ms"]
            diff = loss_check(cr["losses"], ref["losses"])
            if diff:
                row["loss_diff"][other] = diff
    return row


def _cell(entry: dict | None, key: str, fmt: str) -> str:
    if not entry:
        return "-"
    if "error" in entry:
        return "failed"
    return format(entry[key], fmt)


def table(rows: list, engines: list) -> str:
    head = ["workload", "chainrule ms"]
    if "torch" in engines:
        head += ["torch ms", "chainrule/torch"]
    if "before" in engines:
        head += ["before ms", "chainrule/before"]
    head += [f"{e} peak MiB" for e in engines] + ["loss check"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["workload"], _cell(row.get("chainrule"), "ms", ".2f")]
        for other in ("torch", "before"):
            if other in engines:
                ratio = row.get(f"chainrule/{other}")
                cells += [_cell(row.get(other), "ms", ".2f"),
                          "-" if ratio is None else f"{ratio:.2f}x"]
        cells += [_cell(row.get(e), "peak_mib", ".1f") for e in engines]
        diffs = row["loss_diff"]
        cells.append("; ".join(f"WARNING: differs from {o} at {d}" for o, d in diffs.items())
                     or ("ok" if any(f"chainrule/{o}" in row for o in ("torch", "before"))
                         else "-"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="chainrule against PyTorch eager: training "
                                                 "steps of common models on the CPU")
    parser.add_argument("--threads", type=int, default=2,
                        help="BLAS/OpenMP threads of each engine (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of all engines")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per run (default: a count per workload)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps after the three checked ones")
    parser.add_argument("--only", default=None, help="comma-separated workloads: "
                        + ",".join(WORKLOADS))
    parser.add_argument("--tree", default=None,
                        help="another chainrule source tree, run as the 'before' column")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--worker", choices=("chainrule", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    names = list(WORKLOADS) if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"--only: unknown workload(s) {', '.join(unknown)}; expected names "
                     f"from {', '.join(WORKLOADS)}")
    for flag, value, least in (("--threads", args.threads, 1), ("--repeats", args.repeats, 1),
                               ("--steps", args.steps, 1), ("--warmup", args.warmup, 0)):
        if value is not None and value < least:
            parser.error(f"{flag}: got {value}, expected an integer >= {least}")
    if args.worker:
        print(json.dumps(worker(args.worker, names[0], args.steps, args.warmup, args.threads)))
        return 0
    if args.tree is not None and not os.path.isdir(os.path.join(args.tree, "src", "chainrule")):
        parser.error(f"--tree: {args.tree!r} has no src/chainrule; expected the root of a "
                     "chainrule source tree")

    engines = ["chainrule"]
    if importlib.util.find_spec("torch") is not None:
        engines.append("torch")
    else:
        print("PyTorch is not installed: the torch columns are left out "
              "(pip install torch, the CPU wheel is enough)")
    if args.tree is not None:
        engines.append("before")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads, {args.repeats} rounds; python {platform.python_version()}")

    rows, raw = [], {}
    for name in names:
        runs = {e: [] for e in engines}
        for r in range(args.repeats):
            for engine in engines if r % 2 == 0 else engines[::-1]:
                runs[engine].append(run_worker(engine, name, args))
        for engine, results in runs.items():
            for res in results:
                if "error" in res:
                    print(f"{name}: {engine} failed: {res['error']}")
        raw[name] = runs
        rows.append(summarize(name, runs))
        print(f"{name}: done", flush=True)

    first = {e: next((r for n in names for r in raw[n][e] if "error" not in r), None)
             for e in engines}
    for engine, res in first.items():
        if res is not None:
            extra = ("" if "native" not in res
                     else f", native kernels {'on' if res['native'] else 'off'}")
            print(f"{engine}: {res['version']} from {os.path.dirname(res['file'])}, "
                  f"numpy {res['numpy']}{extra}")
    print()
    print(table(rows, engines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "repeats": args.repeats, "steps": args.steps,
                       "warmup": args.warmup, "tree": args.tree, "engines": engines,
                       "machine": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count(), "rows": rows, "runs": raw}, f, indent=1)
    failed = any("error" in row.get(e, {}) for row in rows for e in ("chainrule", "torch"))
    failed = failed or any("torch" in row["loss_diff"] for row in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
