"""The training doctor stays silent on healthy runs of many kinds, and the harness the other
doctor tests train their broken runs and fixed twins with.

Healthy set (31 runs, each over three seeds): MLPs for classification (4 and 10 classes,
binary with nine in ten examples of one class) and regression (MSE, Huber on integer counts,
a sigmoid output for targets in (0, 1)), two CNNs (standardised and [0, 1] pixels), two small
causal transformers (attention written out with ``masked_fill(-inf)`` then softmax, and
nn.MultiheadAttention with a boolean mask), an RNN-like loop written with Linear + tanh, a
bag-of-tokens classifier on integer inputs; SGD (plain, momentum, Nesterov, a hand-written
update without an optimizer), Adam, AdamW, RMSprop (plain, centred with momentum), Adagrad;
step (per epoch), cosine (to zero), warmup, lambda and one-cycle schedules, gradient
clipping, dropout with evaluation passes in between, gradient accumulation (SGD and Adam),
a frozen body under a trained head (inside and outside the optimizer), a zero-initialised
output layer, label smoothing, zero_grad before, after or with set_to_none=False, batches in
a fixed order, the default interval of 50 over 400 steps. Each run must learn (checked from
its losses) and the doctor must give no warning and no error.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import chainrule as cr
from blas_threads import one_blas_thread_limits
from chainrule import nn
from chainrule.diagnostics import watch
from chainrule.nn import functional as F
from chainrule.optim import SGD, Adagrad, Adam, AdamW, RMSprop, lr_scheduler

SEEDS = (0, 1, 2)

# These matrices are small: BLAS threads only add contention (on a busy machine, a lot).
one_blas_thread = pytest.fixture(scope="module", autouse=True)(one_blas_thread_limits)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# ----------------------------------------------------------------------------- data


def blobs(seed, n=384, d=8, k=4, spread=1.0):
    """k Gaussian classes in d dimensions, standardised features; labels int64."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 2.0
    y = rng.integers(0, k, n)
    x = centers[y] + spread * rng.standard_normal((n, d))
    x = (x - x.mean(0)) / x.std(0)
    return x.astype(np.float32), y.astype(np.int64)


def regression(seed, n=256, d=8):
    """y = tanh(x w) + 0.1 sin(3 x_0), a learnable regression."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal((d, 1)).astype(np.float32) / math.sqrt(d) * 2
    y = np.tanh(x @ w) + 0.1 * np.sin(3 * x[:, :1])
    return x, y.astype(np.float32)


def bars(seed, n=256, size=8):
    """1 x size x size images: class 0 a horizontal bar, 1 a vertical bar, 2 a diagonal, plus
    noise; standardised."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = 0.3 * rng.standard_normal((n, 1, size, size))
    pos = rng.integers(1, size - 1, n)
    for i in range(n):
        if y[i] == 0:
            x[i, 0, pos[i], :] += 1.0
        elif y[i] == 1:
            x[i, 0, :, pos[i]] += 1.0
        else:
            x[i, 0, np.arange(size), np.arange(size)] += 1.0
    x = (x - x.mean()) / x.std()
    return x.astype(np.float32), y.astype(np.int64)


def sequences(seed, n=256, T=8, d=2):
    """(n, T, d) sequences; the label says whether the sum of feature 0 is positive."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, T, d)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int64)
    return x, y


def counting(seed, n=256, T=12, V=16):
    """Token sequences x_t = (s + t k) mod V with s and k in {1, 2, 3} drawn per sequence:
    next-token prediction that needs the first two tokens (attention)."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, V, n)
    k = rng.integers(1, 4, n)
    seq = (s[:, None] + k[:, None] * np.arange(T + 1)[None]) % V
    return seq[:, :-1].astype(np.int64), seq[:, 1:].astype(np.int64)


# ----------------------------------------------------------------------------- models


def mlp(*sizes, act=nn.ReLU, dropout=0.0):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def cnn(classes=3):
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, classes))


class CausalSelfAttention(nn.Module):
    """Attention written out, with the standard ``masked_fill(mask, -inf)`` then softmax."""

    def __init__(self, d, heads, T, causal=True):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.heads, self.causal = heads, causal
        self.mask = cr.tensor(np.triu(np.ones((T, T), bool), k=1))

    def forward(self, x):
        B, T, C = x.shape
        h = self.heads
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.reshape(B, T, h, C // h).transpose(1, 2)
        k = k.reshape(B, T, h, C // h).transpose(1, 2)
        v = v.reshape(B, T, h, C // h).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // h))
        if self.causal:
            att = att.masked_fill(self.mask[:T, :T], float("-inf"))
        att = att.softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.proj(y)


class TinyTransformer(nn.Module):
    def __init__(self, V=16, T=12, d=32, heads=2, dropout=0.0, causal=True):
        super().__init__()
        self.tok = nn.Embedding(V, d)
        self.pos = nn.Embedding(T, d)
        self.ln1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads, T, causal)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.out = nn.Linear(4 * d, d)
        self.drop = nn.Dropout(dropout)
        self.lnf = nn.LayerNorm(d)
        self.head = nn.Linear(d, V)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(cr.arange(T))
        x = x + self.drop(self.attn(self.ln1(x)))
        x = x + self.drop(self.out(self.act(self.fc(self.ln2(x)))))
        return self.head(self.lnf(x))


class LoopRNN(nn.Module):
    """h_t = tanh(W_x x_t + W_h h_{t-1}), the class from the last h."""

    def __init__(self, d_in=2, hidden=16, classes=2, gain=1.0, act="tanh"):
        super().__init__()
        self.wx = nn.Linear(d_in, hidden)
        self.wh = nn.Linear(hidden, hidden, bias=False)
        self.head = nn.Linear(hidden, classes)
        self.act = act
        if gain != 1.0:
            with cr.no_grad():
                q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((hidden, hidden)))
                self.wh.weight.data[...] = (gain * q).astype(np.float32)

    def forward(self, x):
        B, T, _ = x.shape
        h = cr.zeros(B, self.wh.weight.shape[0])
        for t in range(T):
            z = self.wx(x[:, t]) + self.wh(h)
            h = z.tanh() if self.act == "tanh" else z.relu()
        return self.head(h)


# ----------------------------------------------------------------------------- the loop


def _batches(data, batch, shuffle, seed, x_fn=None):
    """An endless stream of minibatches (x, y) as arrays: a fresh permutation every epoch (or
    the data's own order when ``shuffle`` is off); ``x_fn(x)`` rewrites each input batch."""
    X, Y = data
    n = len(X)
    rng = np.random.default_rng(1000 + seed)
    perm = rng.permutation(n) if shuffle else np.arange(n)
    pos = 0
    while True:
        if pos + batch > n:
            perm = rng.permutation(n) if shuffle else perm
            pos = 0
        ix = perm[pos:pos + batch]
        pos += batch
        x = X[ix]
        yield (x_fn(x) if x_fn is not None else x), Y[ix]


def fit(model, opt, data, *, loss="ce", steps=120, interval=10, batch=32, sched=None,
        sched_every=1, clip=None, accum=1, zero="before", order="normal", eval_every=0,
        eval_no_grad=True, eval_at_start=False, shuffle=True, seed=0, activations=True,
        step_fn=None, label_smoothing=0.0, loss_fn=None, x_fn=None, watch_it=True,
        watch_optimizer=True):
    """Train ``model`` on ``data`` = (x, y) arrays and return the watcher (its ``losses`` are
    every step's loss).

    ``zero``: 'before' (zero_grad before the forward), 'after' (after the step), 'none'
    (never: the missing-zero_grad bug), 'between' (after backward, before the step: a bug),
    'keep' (zero_grad(set_to_none=False) before the forward). ``order='step_first'`` steps
    the optimizer before the forward and backward (a bug). ``step_fn(opt)`` replaces
    ``opt.step()`` (``watch_optimizer=False`` hands the watcher no optimizer, as for a loop
    that updates the weights itself); ``sched`` steps every ``sched_every`` iterations;
    ``eval_at_start`` calls model.eval() before the loop and never model.train() (a bug);
    ``eval_every`` evaluates (under no_grad unless ``eval_no_grad`` is off) and goes back to
    train mode."""
    stream = _batches(data, batch, shuffle, seed, x_fn)
    w = None
    if watch_it:
        w = watch(model, opt if watch_optimizer else None, interval=interval,
                  activations=activations)
    params = [p for g in opt.param_groups for p in g["params"]] if opt is not None else []
    losses = []

    def criterion(out, y):
        if loss_fn is not None:
            return loss_fn(out, y)
        if loss == "ce":
            if out.ndim == 3:
                return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                       label_smoothing=label_smoothing)
            return F.cross_entropy(out, y, label_smoothing=label_smoothing)
        if loss == "mse":
            return F.mse_loss(out, y)
        if loss == "bce":
            return F.binary_cross_entropy_with_logits(out, y)
        raise ValueError(loss)

    def do_step():
        if step_fn is not None:
            step_fn(opt)
        else:
            opt.step()

    if eval_at_start:
        model.eval()
    for s in range(steps):
        if zero == "before":
            opt.zero_grad()
        elif zero == "keep":
            opt.zero_grad(set_to_none=False)
        if order == "step_first":
            do_step()
        total = 0.0
        for _ in range(accum):
            xb, yb = next(stream)
            l_ = criterion(model(cr.tensor(xb)), cr.tensor(yb))
            (l_ / accum if accum > 1 else l_).backward()
            total += l_.item() / accum
        if zero == "between":
            opt.zero_grad()
        if clip:
            nn.utils.clip_grad_norm_(params, clip)
        if order != "step_first":
            do_step()
        if zero == "after":
            opt.zero_grad()
        if sched is not None and (s + 1) % sched_every == 0:
            sched.step()
        losses.append(total)
        if w is not None:
            w.step(s, total)
        if eval_every and (s + 1) % eval_every == 0:
            model.eval()
            if eval_no_grad:
                with cr.no_grad():
                    model(cr.tensor(data[0][:64]))
            else:
                model(cr.tensor(data[0][:64]))
            model.train()
    if w is None:
        return losses
    return w


def import_torch():
    """PyTorch, with one intra-op thread (these tensors are small: threads only contend), or
    the test is skipped."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def torch_fit(model, opt, data, *, loss="ce", steps=120, batch=32, sched=None, sched_every=1,
              clip=None, zero="before", order="normal", eval_at_start=False, shuffle=True,
              seed=0, x_fn=None):
    """The same loop in PyTorch (for the runs' twins there); returns every step's loss."""
    torch = import_torch()

    stream = _batches(data, batch, shuffle, seed, x_fn)
    params = [p for g in opt.param_groups for p in g["params"]]
    lossf = {"ce": torch.nn.functional.cross_entropy, "mse": torch.nn.functional.mse_loss,
             "bce": torch.nn.functional.binary_cross_entropy_with_logits}[loss]
    losses = []
    if eval_at_start:
        model.eval()
    for s in range(steps):
        if zero == "before":
            opt.zero_grad()
        if order == "step_first":
            opt.step()
        xb, yb = next(stream)
        l_ = lossf(model(torch.from_numpy(xb)), torch.from_numpy(yb))
        l_.backward()
        if zero == "between":
            opt.zero_grad()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        if order != "step_first":
            opt.step()
        if sched is not None and (s + 1) % sched_every == 0:
            sched.step()
        losses.append(l_.item())
    return losses


def torch_mlp(*sizes, act="relu", dropout=0.0, seed=0):
    torch = import_torch()

    torch.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append({"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh,
                           "sigmoid": torch.nn.Sigmoid}[act]())
            if dropout:
                layers.append(torch.nn.Dropout(dropout))
    return torch.nn.Sequential(*layers)


def tail_mean(losses, share=0.1):
    v = [x for x in losses if math.isfinite(x)]
    k = max(3, int(len(v) * share))
    return float(np.mean(v[-k:])) if v else math.inf


def head_mean(losses, share=0.1):
    v = [x for x in losses if math.isfinite(x)]
    k = max(3, int(len(v) * share))
    return float(np.mean(v[:k])) if v else math.inf


def learned(w, factor=0.7):
    """The run learned: the mean loss of its last tenth is below ``factor`` x its first's."""
    losses = w.losses if hasattr(w, "losses") else w
    return tail_mean(losses) < factor * head_mean(losses)


def loud(findings):
    """The findings a healthy run must not have: warnings and errors."""
    return [f for f in findings if f.severity in ("error", "warning")]


# ----------------------------------------------------------------------------- the healthy set


def _mlp_sgd(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 32, 4)
    return fit(m, SGD(m.parameters(), lr=0.1), blobs(seed), seed=seed)


def _mlp_momentum_wd_steplr(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 1)
    opt = SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return fit(m, opt, regression(seed), loss="mse", seed=seed,
               sched=lr_scheduler.StepLR(opt, step_size=40, gamma=0.5))


def _mlp_adam_dropout_eval(seed):
    cr.manual_seed(seed)
    m = mlp(8, 64, 64, 4, dropout=0.2)
    return fit(m, Adam(m.parameters(), lr=3e-3), blobs(seed), seed=seed, eval_every=15)


def _mlp_adamw_cosine_warmup(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 32, 4, act=nn.GELU)
    opt = AdamW(m.parameters(), lr=5e-3, weight_decay=0.1)
    warm = lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=10)
    cos = lr_scheduler.CosineAnnealingLR(opt, T_max=110)
    sched = lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[10])
    return fit(m, opt, blobs(seed), seed=seed, sched=sched, clip=1.0)


def _mlp_rmsprop_tanh(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 32, 4, act=nn.Tanh)
    return fit(m, RMSprop(m.parameters(), lr=1e-3), blobs(seed), seed=seed)


def _mlp_adagrad(seed):
    cr.manual_seed(seed)
    m = mlp(8, 64, 4)
    return fit(m, Adagrad(m.parameters(), lr=0.05), blobs(seed), seed=seed)


def _mlp_accumulation_zero_after(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 4)
    opt = SGD(m.parameters(), lr=0.05, momentum=0.9)
    return fit(m, opt, blobs(seed), seed=seed, accum=3, batch=16, zero="after", steps=80)


def _mlp_fixed_order_label_smoothing(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 4)
    return fit(m, Adam(m.parameters(), lr=1e-2), blobs(seed), seed=seed, shuffle=False,
               label_smoothing=0.1, batch=64)


def _mlp_bce_onecycle(seed):
    cr.manual_seed(seed)
    x, y = blobs(seed, k=2)
    m = mlp(8, 16, 1)
    opt = SGD(m.parameters(), lr=0.1, momentum=0.9)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=120)
    return fit(m, opt, (x, y[:, None].astype(np.float32)), loss="bce", seed=seed, sched=sched)


def _mlp_converges_to_zero_loss(seed):
    # separable classes, trained long: a loss near zero with minibatch noise on top
    cr.manual_seed(seed)
    m = mlp(8, 32, 4)
    return fit(m, Adam(m.parameters(), lr=1e-2), blobs(seed, spread=0.3), seed=seed,
               steps=200, batch=16)


def _frozen_body(seed):
    cr.manual_seed(seed)
    body = mlp(8, 64, 64)
    m = nn.Sequential(body, nn.ReLU(), nn.Linear(64, 4))
    body.requires_grad_(False)
    opt = Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    return fit(m, opt, blobs(seed), seed=seed)


def _frozen_body_in_optimizer(seed):
    # PyTorch style: the frozen parameters are still handed to the optimizer
    cr.manual_seed(seed)
    m = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))
    m[0].requires_grad_(False)
    return fit(m, SGD(m.parameters(), lr=0.1, momentum=0.9), blobs(seed), seed=seed)


def _cnn_adam(seed):
    cr.manual_seed(seed)
    m = cnn()
    return fit(m, Adam(m.parameters(), lr=1e-2), bars(seed), seed=seed, steps=60, interval=6)


def _cnn_sgd_momentum(seed):
    cr.manual_seed(seed)
    m = cnn()
    return fit(m, SGD(m.parameters(), lr=0.05, momentum=0.9), bars(seed), seed=seed,
               steps=60, interval=6)


def _transformer_adamw(seed):
    cr.manual_seed(seed)
    m = TinyTransformer(dropout=0.1)
    opt = AdamW(m.parameters(), lr=3e-3, weight_decay=0.01)
    sched = lr_scheduler.LambdaLR(
        opt, lambda s: lr_scheduler.warmup_cosine(s, warmup=8, total=80, lr_max=1.0,
                                                  lr_min=0.1))
    return fit(m, opt, counting(seed), seed=seed, steps=80, interval=8, clip=1.0,
               sched=sched, batch=16)


def _rnn_loop_adam_clip(seed):
    cr.manual_seed(seed)
    m = LoopRNN()
    return fit(m, Adam(m.parameters(), lr=1e-2), sequences(seed), seed=seed, clip=1.0,
               steps=100)


def _rnn_loop_rmsprop(seed):
    cr.manual_seed(seed)
    m = LoopRNN()
    return fit(m, RMSprop(m.parameters(), lr=3e-3), sequences(seed), seed=seed, steps=100)


def _mlp_keep_grads_momentum(seed):
    # zero_grad(set_to_none=False): .grad is zeros before each backward, not stale
    cr.manual_seed(seed)
    m = mlp(8, 32, 4)
    opt = SGD(m.parameters(), lr=0.05, momentum=0.9)
    return fit(m, opt, blobs(seed), seed=seed, zero="keep")


def _mlp_adam_accumulation(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 32, 4)
    return fit(m, Adam(m.parameters(), lr=3e-3), blobs(seed), seed=seed, accum=4, batch=8,
               steps=60)


def _mlp_default_interval_long(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 4)
    return fit(m, SGD(m.parameters(), lr=0.05, momentum=0.9), blobs(seed), seed=seed,
               steps=400, interval=50)


def _mlp_cosine_to_zero(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 4)
    opt = SGD(m.parameters(), lr=0.1, momentum=0.9)
    return fit(m, opt, blobs(seed), seed=seed, sched=lr_scheduler.CosineAnnealingLR(opt, 120),
               interval=5)


def _mlp_steplr_per_epoch(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 4)
    opt = SGD(m.parameters(), lr=0.1, momentum=0.9)
    return fit(m, opt, blobs(seed), seed=seed, steps=160, sched_every=12,
               sched=lr_scheduler.StepLR(opt, step_size=4, gamma=0.3))


def _mlp_imbalanced_binary(seed):
    # nine in ten examples of one class, batches shuffled: batches are not 'sorted'
    rng = np.random.default_rng(seed)
    y = (rng.random(512) < 0.1).astype(np.int64)
    x = (rng.standard_normal((512, 8)) + 1.5 * y[:, None]).astype(np.float32)
    cr.manual_seed(seed)
    m = mlp(8, 16, 2)
    return fit(m, Adam(m.parameters(), lr=1e-2), (x, y), seed=seed)


def _mlp_ten_classes_smoothing(seed):
    cr.manual_seed(seed)
    m = mlp(16, 64, 10)
    return fit(m, AdamW(m.parameters(), lr=3e-3), blobs(seed, d=16, k=10, spread=0.7),
               seed=seed, label_smoothing=0.1, batch=64)


def _regression_sigmoid_unit_targets(seed):
    # a sigmoid output for targets inside (0, 1): it can reach them
    cr.manual_seed(seed)
    x, y = regression(seed)
    m = nn.Sequential(mlp(8, 32, 1), nn.Sigmoid())
    return fit(m, Adam(m.parameters(), lr=1e-2), (x, (y + 1.2) / 2.4), loss="mse", seed=seed)


def _regression_counts_huber(seed):
    cr.manual_seed(seed)
    x, y = regression(seed)
    m = mlp(8, 32, 1)
    return fit(m, Adam(m.parameters(), lr=1e-2), (x, np.round(3 * y + 3)), seed=seed,
               loss_fn=F.huber_loss, steps=150)


def _mlp_hand_written_sgd(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 4)

    class Plain:
        param_groups = [{"params": list(m.parameters())}]

        def zero_grad(self):
            for p in m.parameters():
                p.grad = None

    def step(opt):
        with cr.no_grad():
            for p in m.parameters():
                p.data[...] -= 0.05 * p.grad.data

    return fit(m, Plain(), blobs(seed), seed=seed, step_fn=step, watch_optimizer=False)


def _zero_init_head(seed):
    cr.manual_seed(seed)
    m = mlp(8, 32, 4)
    with cr.no_grad():
        m[2].weight.data[...] = 0.0
        m[2].bias.data[...] = 0.0
    return fit(m, Adam(m.parameters(), lr=1e-2), blobs(seed), seed=seed)


def _cnn_unit_pixels_rmsprop(seed):
    cr.manual_seed(seed)
    x, y = bars(seed)
    x = (x - x.min()) / (x.max() - x.min())  # pixels in [0, 1]
    m = cnn()
    opt = RMSprop(m.parameters(), lr=3e-3, momentum=0.5, centered=True)
    return fit(m, opt, (x, y), seed=seed, steps=60, interval=6)


class _BagOfTokens(nn.Module):
    def __init__(self, V=16, d=16, k=3):
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.head = nn.Linear(d, k)

    def forward(self, idx):
        return self.head(self.emb(idx).mean(dim=1))


def _bag_of_tokens(seed):
    # integer inputs: the class is which third of the vocabulary most tokens come from
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 384)
    x = np.where(rng.random((384, 10)) < 0.7, 5 * y[:, None] + rng.integers(0, 5, (384, 10)),
                 rng.integers(0, 16, (384, 10))).clip(0, 15)
    cr.manual_seed(seed)
    m = _BagOfTokens()
    return fit(m, Adam(m.parameters(), lr=1e-2), (x.astype(np.int64), y), seed=seed)


class _MHAModel(nn.Module):
    def __init__(self, V=16, T=12, d=32):
        super().__init__()
        self.tok = nn.Embedding(V, d)
        self.pos = nn.Embedding(T, d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, V)
        self.mask = cr.tensor(np.triu(np.ones((T, T), bool), k=1))

    def forward(self, idx):
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(cr.arange(T))
        a, _ = self.attn(x, x, x, attn_mask=self.mask[:T, :T], need_weights=False)
        return self.head(self.ln(x + a))


def _transformer_mha_adam(seed):
    cr.manual_seed(seed)
    m = _MHAModel()
    return fit(m, Adam(m.parameters(), lr=3e-3), counting(seed), seed=seed, steps=80,
               interval=8, batch=16)


HEALTHY = {
    "mlp_keep_grads_momentum": _mlp_keep_grads_momentum,
    "mlp_adam_accumulation": _mlp_adam_accumulation,
    "mlp_default_interval_long": _mlp_default_interval_long,
    "mlp_cosine_to_zero": _mlp_cosine_to_zero,
    "mlp_steplr_per_epoch": _mlp_steplr_per_epoch,
    "mlp_imbalanced_binary": _mlp_imbalanced_binary,
    "mlp_ten_classes_smoothing": _mlp_ten_classes_smoothing,
    "regression_sigmoid_unit_targets": _regression_sigmoid_unit_targets,
    "regression_counts_huber": _regression_counts_huber,
    "mlp_hand_written_sgd": _mlp_hand_written_sgd,
    "zero_init_head": _zero_init_head,
    "cnn_unit_pixels_rmsprop": _cnn_unit_pixels_rmsprop,
    "bag_of_tokens": _bag_of_tokens,
    "transformer_mha_adam": _transformer_mha_adam,
    "mlp_sgd": _mlp_sgd,
    "mlp_momentum_wd_steplr": _mlp_momentum_wd_steplr,
    "mlp_adam_dropout_eval": _mlp_adam_dropout_eval,
    "mlp_adamw_cosine_warmup_clip": _mlp_adamw_cosine_warmup,
    "mlp_rmsprop_tanh": _mlp_rmsprop_tanh,
    "mlp_adagrad": _mlp_adagrad,
    "mlp_accumulation_zero_after": _mlp_accumulation_zero_after,
    "mlp_fixed_order_label_smoothing": _mlp_fixed_order_label_smoothing,
    "mlp_bce_onecycle": _mlp_bce_onecycle,
    "mlp_converges_to_zero_loss": _mlp_converges_to_zero_loss,
    "frozen_body": _frozen_body,
    "frozen_body_in_optimizer": _frozen_body_in_optimizer,
    "cnn_adam": _cnn_adam,
    "cnn_sgd_momentum": _cnn_sgd_momentum,
    "transformer_adamw_warmup_cosine": _transformer_adamw,
    "rnn_loop_adam_clip": _rnn_loop_adam_clip,
    "rnn_loop_rmsprop": _rnn_loop_rmsprop,
}


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_run_learns_and_the_doctor_is_silent(name):
    for seed in SEEDS:
        w = HEALTHY[name](seed)
        assert learned(w), f"{name} seed {seed}: the healthy run did not learn"
        bad = loud(w.findings())
        assert not bad, f"{name} seed {seed}: " + "; ".join(str(f) for f in bad)


def test_the_healthy_runs_gather_what_the_rules_read():
    # silence must come from healthy statistics, not from statistics never gathered
    w = _mlp_sgd(0)
    r = w.records[1]
    assert r["optimizer"]["groups"][0]["lr"] == 0.1 and r["optimizer"]["stepped_before"]
    assert r["optimizer"]["backward_before_step"] == r["optimizer"]["backward_passes"] == 6
    s = r["params"]["0.weight"]
    assert s["step_norm"] == pytest.approx(s["norm"]) and s["update_dot_grad"] < 0
    assert r["cross_entropy"]["classes"] == 4 and r["cross_entropy"]["target_rows"] == 32
    assert r["input"]["rms"] == pytest.approx(1.0, rel=0.3)
    rnn = _rnn_loop_adam_clip(0).records[0]["modules"]
    assert rnn["wh"]["gain"]["calls"] == 7 and rnn["head"]["gain"]["calls"] == 1
    modes = _mlp_adam_dropout_eval(0).records[-1]["modes"]
    assert all(c["train"] >= 1 and c["eval"] == 0 for c in modes.values())
