"""Activation checkpointing on nanoGPT's CPU "baby GPT": peak memory and time of a training
step with every block checkpointed (``chainrule train --activation_checkpointing=True``)
against the same step without.

Model: n_layer 4, n_head 4, n_embd 128, block 64, batch 12 (nanoGPT's README command for CPU),
dropout 0.1 so that the recomputation must repeat the masks; random tokens over a 65-symbol
vocabulary (the step's cost does not depend on the text).

    python bench/checkpointing.py [--steps 20] [--rounds 3] [--batch 12] [--layers 4]

Memory is the peak of NumPy's allocations during one forward and backward (tracemalloc sees
every array NumPy allocates), above what was allocated before the step: the activations kept
for backward and the backward's temporaries. Time is the median ms of a step (forward,
backward, AdamW update), the two modes run in alternating blocks of ``--steps`` steps for
``--rounds`` rounds, so that the machine's load affects both alike. The losses of the two
modes are printed side by side: they must agree.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np

import chainrule as cr
from chainrule.models.gpt import GPT, GPTConfig
from chainrule.random import Generator, use_generator
from chainrule.train.loop import checkpoint_blocks

VOCAB = 65


def make(args, checkpointed):
    cr.manual_seed(1337)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=64, n_layer=args.layers, n_head=4,
                          n_embd=128, dropout=0.1, bias=False))
    if checkpointed:
        checkpoint_blocks(model)
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    return model, opt


def step(model, opt, x, y, gen):
    with use_generator(gen):
        _, loss = model(cr.tensor(x), cr.tensor(y))
        loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def peak_bytes(model, opt, x, y, gen):
    """The peak of NumPy's allocations during one step, above the level before it."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step(model, opt, x, y, gen)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="steps per block")
    ap.add_argument("--rounds", type=int, default=3, help="alternating blocks per mode")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, VOCAB, (2, args.batch, 64)) for _ in range(args.steps)]
    modes = {"plain": make(args, False), "checkpointed": make(args, True)}
    gens = {name: Generator().manual_seed(7) for name in modes}
    losses = {name: [] for name in modes}
    times = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, (model, opt) in modes.items():
            for xy in batches:
                t0 = time.perf_counter()
                losses[name].append(step(model, opt, xy[0], xy[1], gens[name]))
                times[name].append(1e3 * (time.perf_counter() - t0))
    x, y = batches[0]
    peaks = {name: peak_bytes(model, opt, x, y, Generator().manual_seed(3))
             for name, (model, opt) in modes.items()}
    print(f"baby GPT, n_layer {args.layers}, batch {args.batch} x 64 tokens, dropout 0.1; "
          f"{args.rounds} rounds of {args.steps} steps per mode")
    print(f"{'mode':>14} {'median ms/step':>15} {'peak MiB/step':>14}")
    for name in modes:
        print(f"{name:>14} {statistics.median(times[name]):>15.1f} "
              f"{peaks[name] / 2**20:>14.1f}")
    p, c = "plain", "checkpointed"
    ratio = statistics.median(times[c]) / statistics.median(times[p])
    print(f"checkpointed / plain: time {ratio:.2f}x, peak memory {peaks[c] / peaks[p]:.2f}x")
    diff = max(abs(a - b) for a, b in zip(losses[p], losses[c]))
    print(f"largest loss difference between the modes: {diff:.2e} (first losses "
          f"{losses[p][0]:.4f} and {losses[c][0]:.4f})")


if __name__ == "__main__":
    main()
