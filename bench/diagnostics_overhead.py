"""What the training doctor and NaN/Inf provenance cost, on the GPT baby configuration.

    python bench/diagnostics_overhead.py [--steps 40] [--interval 50]

GPT (n_layer 4, n_head 4, n_embd 128, block 64, batch 12, vocab 65) on tinyshakespeare (a
random stand-in text when the file is missing), AdamW. Three measurements:

1. the watcher's own work, timed directly around each of its parts (arming: a copy of the
   parameters and the hooks; the hooks themselves during forward; reading the gradients;
   the record), over ``--steps`` steps that all gather (interval 1); the overhead at the
   chosen interval is (one gathering step's extra + (interval - 1) x one plain step's extra)
   / (interval x plain step time);
2. the same as an A/B of median step times (plain vs gathering every step; noisy on a shared
   machine, a cross-check of 1);
3. detect_anomaly(): median step time with every forward output and gradient checked.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import chainrule as cr
from chainrule.diagnostics import detect_anomaly, watch
from chainrule.models.gpt import GPT, GPTConfig

DATA = "/work/shared/data/tinyshakespeare.txt"


def batches(seed=0, B=12, T=64):
    if os.path.exists(DATA):
        text = open(DATA, encoding="utf-8").read()
    else:
        text = "".join(np.random.default_rng(0).choice(list("abcdefgh \n"), 200_000))
    vocab = sorted(set(text))
    ids = np.frombuffer(text.encode("latin-1", "replace"), np.uint8)
    lut = np.zeros(256, np.int64)
    for i, c in enumerate(vocab):
        lut[ord(c) if ord(c) < 256 else 63] = i
    ids = lut[ids]
    rng = np.random.default_rng(seed)
    while True:
        ix = rng.integers(0, len(ids) - T - 1, B)
        yield (cr.tensor(np.stack([ids[i:i + T] for i in ix])),
               cr.tensor(np.stack([ids[i + 1:i + T + 1] for i in ix])))


def make():
    cr.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128))
    return model, model.configure_optimizers(0.1, 1e-3)


def train_step(model, opt, x, y):
    _, loss = model(x, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def timed(watcher):
    """Wrap the watcher's parts to add their wall time into ``spent``."""
    spent = {"arm": 0.0, "forward hooks": 0.0, "gradient hooks": 0.0, "backward gains": 0.0,
             "read_grads": 0.0, "update": 0.0, "record": 0.0}

    def wrap(name, key):
        fn = getattr(watcher, name)

        def inner(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t
        setattr(watcher, name, inner)

    wrap("_arm", "arm")
    wrap("_push", "forward hooks")
    wrap("_on_forward", "forward hooks")
    wrap("_on_root_input", "forward hooks")
    wrap("_on_root_output", "forward hooks")
    wrap("_on_mode", "forward hooks")
    wrap("_on_op", "forward hooks")
    wrap("_on_grad", "gradient hooks")
    wrap("_on_ce_grad", "gradient hooks")
    wrap("_on_gain", "backward gains")
    wrap("_read_grads", "read_grads")
    wrap("_measure_update", "update")
    # the record includes the causal probe of a next-token model (two forwards of one
    # example, once per run): it is timed apart, not as a per-step cost
    wrap("_causal_probe", "probe (once)")
    spent["probe (once)"] = 0.0
    record = watcher._record

    def timed_record(*a, **k):
        t = time.perf_counter()
        before = spent["probe (once)"]
        try:
            return record(*a, **k)
        finally:
            spent["record"] += time.perf_counter() - t - (spent["probe (once)"] - before)
    watcher._record = timed_record
    return spent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--interval", type=int, default=50)
    ap.add_argument("--anomaly-steps", type=int, default=8)
    args = ap.parse_args()
    data = batches()

    # 1 + 2: plain and gathering-every-step, interleaved in blocks of 5 against drift
    model, opt = make()
    for _ in range(3):
        train_step(model, opt, *next(data))  # warm-up
    plain, gathering = [], []
    w = watch(model, opt, interval=1)
    # the hooks were bound at arming: re-arm after wrapping so the timed versions run
    w._disarm()
    spent = timed(w)
    w._arm()
    spent["arm"] = 0.0
    armed_steps = 0
    step = 0
    while len(plain) < args.steps or len(gathering) < args.steps:
        for _ in range(5):
            x, y = next(data)
            t = time.perf_counter()
            train_step(model, opt, x, y)
            w.step(step, 0.0)
            gathering.append(time.perf_counter() - t)
            armed_steps += 1
            step += 1
        w._disarm()
        w.interval = 10**9  # no gathering: the watcher stays, its per-step cost is measured too
        for _ in range(5):
            x, y = next(data)
            t = time.perf_counter()
            train_step(model, opt, x, y)
            plain.append(time.perf_counter() - t)
        w.interval = 1
        w._arm()
    w.close()
    T = statistics.median(plain)
    probe = spent.pop("probe (once)")
    per_gather = sum(spent.values()) / armed_steps
    # a non-gathering step costs the list appends of watcher.step and the wrapped optimizer
    # step's one check: measure them alone
    model2, opt2 = make()
    w2 = watch(model2, opt2, interval=10**9)
    w2._disarm()
    for p in model2.parameters():
        p.grad = None
    t = time.perf_counter()
    n = 20000
    for i in range(n):
        w2.step(i + 1, 1.0)
        opt2.step()
    per_plain = (time.perf_counter() - t) / n
    w2.close()
    t = time.perf_counter()
    for _ in range(n):
        opt2.step()
    per_plain -= (time.perf_counter() - t) / n
    k = args.interval
    overhead = (per_gather + (k - 1) * max(per_plain, 0.0)) / (k * T)
    print(f"GPT baby step (median of {len(plain)}): {T * 1e3:.1f} ms")
    print("watcher work per gathering step: " + ", ".join(
        f"{key} {v / armed_steps * 1e3:.2f} ms" for key, v in spent.items())
        + f"; total {per_gather * 1e3:.2f} ms ({per_gather / T:.1%} of a step)")
    print(f"causal probe (once per run): {probe * 1e3:.1f} ms")
    print(f"watcher work per non-gathering step: {per_plain * 1e6:.2f} us")
    print(f"overhead at interval {k}: {overhead:.3%} of step time (direct timing)")
    G = statistics.median(gathering)
    print(f"A/B: median step gathering every step {G * 1e3:.1f} ms vs plain {T * 1e3:.1f} ms "
          f"-> {(G - T) / T:+.1%} per gathering step, {(G - T) / T / k:+.3%} at interval {k}")

    # 3: detect_anomaly
    model, opt = make()
    for _ in range(2):
        train_step(model, opt, *next(data))
    off, on = [], []
    for _ in range(args.anomaly_steps):
        x, y = next(data)
        t = time.perf_counter()
        train_step(model, opt, x, y)
        off.append(time.perf_counter() - t)
        t = time.perf_counter()
        with detect_anomaly():
            train_step(model, opt, x, y)
        on.append(time.perf_counter() - t)
    a, b = statistics.median(off), statistics.median(on)
    print(f"detect_anomaly: median step {b * 1e3:.1f} ms vs {a * 1e3:.1f} ms off "
          f"-> {b / a:.2f}x")


if __name__ == "__main__":
    main()
