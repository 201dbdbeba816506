"""Two training steps that real programs are made of, chainrule against PyTorch eager in one
process, alternating:

  (a) lstm:   the word-language-model example's LSTM: Embedding(10000, 200), a 2-layer
              nn.LSTM(200, 200, dropout 0.2), Linear(200, 10000); bptt 35, batch 20, the
              hidden state carried (detached) from step to step, cross-entropy, gradient
              clipping 0.25, SGD lr 20;
  (b) resnet: a ResNet-18-shaped CNN for 32x32 inputs: conv3x3(64)-BN-ReLU, four stages of two
              BasicBlocks (3x3 conv-BN-ReLU-3x3 conv-BN plus the shortcut, a 1x1 conv-BN
              where the shape changes) at 64, 128, 256, 512 channels (stride 2 from the second
              stage), global average pooling, Linear(512, 10); batch 8, BatchNorm2d in training
              mode, cross-entropy, SGD momentum 0.9 weight decay 5e-4.

    python bench/lstm_resnet.py [--only lstm|resnet] [--steps 10] [--rounds 3] [--threads 2]

One definition of each model serves both frameworks (chainrule's nn has PyTorch's names); the
PyTorch model's initial weights are loaded into chainrule's, and the two losses of the first
batch (the LSTM's without dropout) are printed side by side: they must agree. Each round runs
``--steps`` steps of chainrule, then of PyTorch, on the same batches, so that load from
elsewhere falls on both; reported: the median ms per step of each and the ratio chainrule /
PyTorch (the goal: at or below 1.0).
``--threads`` sets the BLAS and intra-op thread counts of both (before NumPy is imported).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def lstm_model(nn, ntoken=10000, ninp=200, nhid=200, nlayers=2, dropout=0.2):
    class RNNModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(ntoken, ninp)
            self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
            self.decoder = nn.Linear(nhid, ntoken)

        def forward(self, x, hidden):  # x (T, B)
            emb = self.drop(self.encoder(x))
            out, hidden = self.rnn(emb, hidden)
            return self.decoder(self.drop(out)), hidden

    return RNNModel()


def resnet18_model(nn, num_classes=10):
    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                              nn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + self.shortcut(x))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU()
            layers, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
                cin = cout
            self.layers = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            x = self.layers(self.relu(self.bn1(self.conv1(x))))
            return self.fc(self.pool(x).flatten(1))

    return ResNet18()


def copy_weights(theirs, ours, cr):
    ours.load_state_dict({k: cr.tensor(v.detach().numpy().copy())
                          for k, v in theirs.state_dict().items()})


def lstm_workload(lib, cr, torch, steps, seed):
    """(step, check) for one framework ``lib`` ('chainrule' or 'torch'): a function running
    one training step, and the first batch's loss from the shared initial weights."""
    import numpy as np

    T, B, V = 35, 20, 10000
    rng = np.random.default_rng(seed)
    data = [rng.integers(0, V, (T + 1, B)) for _ in range(steps)]
    torch.manual_seed(0)
    ref = lstm_model(torch.nn)
    if lib == "torch":
        model, F, tensor, mod = ref, torch.nn.functional, torch.tensor, torch
        hidden = tuple(torch.zeros(2, B, 200) for _ in range(2))
    else:
        model = lstm_model(cr.nn)
        copy_weights(ref, model, cr)
        F, tensor, mod = cr.nn.functional, cr.tensor, cr
        hidden = tuple(cr.zeros(2, B, 200) for _ in range(2))
    model.eval()  # the agreement check: the first batch's loss without dropout
    with mod.no_grad():
        out, _ = model(tensor(data[0][:-1]), hidden)
        check = F.cross_entropy(out.reshape(-1, V), tensor(data[0][1:]).reshape(-1)).item()
    model.train()
    opt = mod.optim.SGD(model.parameters(), lr=20.0)
    mod.manual_seed(1)
    state = {"hidden": hidden, "i": 0}

    def step():
        seq = data[state["i"] % steps]
        state["i"] += 1
        x, y = tensor(seq[:-1]), tensor(seq[1:])
        h = tuple(t.detach() for t in state["hidden"])
        out, state["hidden"] = model(x, h)
        loss = F.cross_entropy(out.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        mod.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        return loss.item()

    return step, check


def resnet_workload(lib, cr, torch, steps, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    data = [(rng.standard_normal((8, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 8))
            for _ in range(steps)]
    torch.manual_seed(0)
    ref = resnet18_model(torch.nn)
    if lib == "torch":
        model, F, tensor, mod = ref, torch.nn.functional, torch.tensor, torch
    else:
        model = resnet18_model(cr.nn)
        copy_weights(ref, model, cr)
        F, tensor, mod = cr.nn.functional, cr.tensor, cr
    model.train()
    with mod.no_grad():  # the agreement check: the first batch's loss (batch statistics)
        check = F.cross_entropy(model(tensor(data[0][0])), tensor(data[0][1])).item()
    opt = mod.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    state = {"i": 0}

    def step():
        x, y = data[state["i"] % steps]
        state["i"] += 1
        loss = F.cross_entropy(model(tensor(x)), tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step, check


WORKLOADS = {
    "lstm": (lstm_workload, "LSTM LM 2x200, vocab 10000, bptt 35, batch 20"),
    "resnet": (resnet_workload, "ResNet-18 (BasicBlocks, BatchNorm2d), batch 8 at 3x32x32"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(WORKLOADS))
    ap.add_argument("--steps", type=int, default=10, help="steps per block")
    ap.add_argument("--rounds", type=int, default=3, help="alternating blocks per framework")
    ap.add_argument("--threads", type=int, default=0, help="0 = the libraries' defaults")
    args = ap.parse_args()
    if args.steps < 1 or args.rounds < 1:
        sys.exit("lstm_resnet: --steps and --rounds must be at least 1")
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    import torch

    import chainrule as cr

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [args.only] if args.only else list(WORKLOADS)
    for name in names:
        make, what = WORKLOADS[name]
        made = {lib: make(lib, cr, torch, args.steps, seed=0) for lib in ("chainrule", "torch")}
        steps = {lib: m[0] for lib, m in made.items()}
        first = {lib: m[1] for lib, m in made.items()}
        times = {lib: [] for lib in steps}
        for _ in range(args.rounds):
            for lib, step in steps.items():
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    step()
                    times[lib].append(1e3 * (time.perf_counter() - t0))
        med = {lib: statistics.median(t) for lib, t in times.items()}
        print(f"{name}: {what}; {args.rounds} rounds of {args.steps} steps each")
        print(f"  first-batch loss: chainrule {first['chainrule']:.5f}, "
              f"PyTorch {first['torch']:.5f}")
        print(f"  median ms/step: chainrule {med['chainrule']:.1f}, PyTorch {med['torch']:.1f}, "
              f"ratio {med['chainrule'] / med['torch']:.2f}x")


if __name__ == "__main__":
    main()
