"""Train chainrule's MLP and CNN on the 8x8 handwritten digits that ship with scikit-learn.

    python examples/digits.py                 # both models
    python examples/digits.py --model cnn --epochs 15

Needs scikit-learn (``pip install 'chainrule[data]'``); the data set is part of the package,
nothing is downloaded. Prints the test accuracy of each model on a held-out quarter of the
1797 images.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import chainrule as cr
from chainrule import nn, optim
from chainrule.models import CNN, MLP
from chainrule.train.memory import retain_freed_memory


def load_data(seed: int = 0):
    """Standardized (N, 64) features and labels, split 1347 train / 450 test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise SystemExit("this example needs scikit-learn: pip install 'chainrule[data]'") from e
    d = load_digits()
    X, y = d.data.astype(np.float32) / 16.0, d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(X))
    test, train = perm[:450], perm[450:]
    mu, sd = X[train].mean(0), X[train].std(0) + 0.1  # statistics of the training set only
    X = (X - mu) / sd
    return X[train], y[train], X[test], y[test]


def train(model, X, y, epochs: int, lr: float, batch: int = 32, seed: int = 0):
    """AdamW on shuffled mini-batches, cosine-annealed over the epochs; returns the last
    epoch's mean loss."""
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    rng = np.random.default_rng(seed)
    model.train()
    for epoch in range(epochs):
        order = rng.permutation(len(X))
        total = 0.0
        for i in range(0, len(X), batch):
            b = order[i:i + batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(cr.tensor(X[b])), cr.tensor(y[b]))
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        sched.step()
        print(f"  epoch {epoch + 1:2d}  loss {total / len(X):.4f}")
    return total / len(X)


def accuracy(model, X, y) -> float:
    model.eval()
    with cr.no_grad():
        return float((model(cr.tensor(X)).numpy().argmax(axis=1) == y).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "cnn", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=None, help="default: 20 (MLP), 12 (CNN)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # keep freed arrays in the process: each step reuses the last step's memory instead of
    # faulting fresh pages in (a third of a CNN step on a busy machine)
    retain_freed_memory()
    Xtr, ytr, Xte, yte = load_data()
    runs = {
        "mlp": (lambda: MLP(64, (256,), 10, dropout=0.2), (-1, 64), 20),
        "cnn": (lambda: CNN(in_channels=1, num_classes=10, image_size=8), (-1, 1, 8, 8), 12),
    }
    for name in (["mlp", "cnn"] if args.model == "both" else [args.model]):
        make, shape, epochs = runs[name]
        cr.manual_seed(args.seed)
        model = make()
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{name.upper()}: {n_params} parameters")
        t0 = time.perf_counter()
        train(model, Xtr.reshape(shape), ytr, args.epochs or epochs, args.lr, seed=args.seed)
        seconds = time.perf_counter() - t0
        acc = accuracy(model, Xte.reshape(shape), yte)
        print(f"{name.upper()} test accuracy: {acc:.2%} ({len(yte)} images, trained in "
              f"{seconds:.1f} s)")


if __name__ == "__main__":
    main()
