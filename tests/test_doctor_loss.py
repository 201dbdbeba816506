"""The training doctor names problems of the loss and the output layer: probabilities fed to
cross_entropy, a regression loss on class indices, an output activation that cannot reach the
targets, a loss stuck at the chance level (labels that do not match the inputs), data in
sorted order. Each broken run is diagnosed, its fixed twin is silent, the pathology is
confirmed independently and, where PyTorch is installed, in PyTorch."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import chainrule as cr
from blas_threads import one_blas_thread_limits
from chainrule import nn
from chainrule.optim import SGD, Adam
from test_doctor_healthy import (
    blobs,
    fit,
    import_torch,
    loud,
    mlp,
    regression,
    tail_mean,
    torch_fit,
    torch_mlp,
)
from test_doctor_loop import finding

one_blas_thread = pytest.fixture(scope="module", autouse=True)(one_blas_thread_limits)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def accuracy(model, x, y):
    with cr.no_grad():
        return float((model(cr.tensor(x)).numpy().argmax(1) == y).mean())


# ----------------------------------------------------------------------------- softmax + CE


def test_probabilities_fed_to_cross_entropy_are_named_at_the_softmax():
    cr.manual_seed(0)
    m = nn.Sequential(mlp(8, 32, 4), nn.Softmax(dim=1))
    w = fit(m, Adam(m.parameters(), lr=1e-2), blobs(0))
    f = finding(w, "probabilities_to_cross_entropy")
    assert (f.module, f.severity, f.step) == ("1", "error", 0)
    floor = math.log1p(3 / math.e)
    assert f"cannot fall below {floor:.3g}" in f.message
    # independently: the loss is held above that floor; without the softmax it falls far below
    assert min(w.losses) > floor
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    fixed = fit(m, Adam(m.parameters(), lr=1e-2), blobs(0))
    assert loud(fixed.findings()) == [] and tail_mean(fixed.losses) < 0.3 * floor


def test_a_functional_softmax_in_forward_is_named_by_the_layer_it_follows():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp(8, 32, 32)
            self.head = nn.Linear(32, 4)

        def forward(self, x):
            return self.head(self.body(x).relu()).softmax(dim=-1)

    cr.manual_seed(0)
    m = Net()
    w = fit(m, Adam(m.parameters(), lr=1e-2), blobs(0))
    assert finding(w, "probabilities_to_cross_entropy").module == "head"


def test_probabilities_fed_to_cross_entropy_are_held_above_the_floor_in_pytorch_too():
    torch = import_torch()
    m = torch.nn.Sequential(torch_mlp(8, 32, 4), torch.nn.Softmax(dim=1))
    losses = torch_fit(m, torch.optim.Adam(m.parameters(), lr=1e-2), blobs(0))
    assert min(losses) > math.log1p(3 / math.e)


# ----------------------------------------------------------------------------- MSE on labels


def sectors(seed=0, n=384, k=6):
    """Points on a ring; the class is the angular sector, numbered in a scrambled order (so
    neighbouring sectors do not get neighbouring numbers)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 2 * np.pi, n)
    r = 1 + 0.2 * rng.standard_normal(n)
    x = np.stack([r * np.cos(a), r * np.sin(a)], 1).astype(np.float32)
    y = np.floor(a / (2 * np.pi / k)).astype(np.int64) % k
    return x, np.random.default_rng(7).permutation(k)[y]


def test_mse_on_class_indices_is_named_regression_on_class_labels():
    x, y = sectors()
    cr.manual_seed(0)
    m = mlp(2, 32, 32, 1)
    w = fit(m, Adam(m.parameters(), lr=1e-2), (x, y[:, None].astype(np.float32)), loss="mse",
            steps=150)
    f = finding(w, "regression_on_class_labels")
    assert (f.module, f.severity) == ("4", "warning")
    assert "integers 0..5 (6 distinct values)" in f.message
    # independently: rounding the regression classifies worse than cross_entropy does
    with cr.no_grad():
        pred = np.clip(np.round(m(cr.tensor(x)).numpy()[:, 0]), 0, 5)
    reg_acc = float((pred == y).mean())
    cr.manual_seed(0)
    c = mlp(2, 32, 32, 6)
    fixed = fit(c, Adam(c.parameters(), lr=1e-2), (x, y), steps=150)
    assert loud(fixed.findings()) == []
    assert accuracy(c, x, y) > reg_acc + 0.1


def test_a_regression_on_integer_counts_is_not_class_labels():
    x, y = regression(0)
    y = np.round(3 * y + 3).astype(np.float32)  # values 0..6, bunched in the middle
    cr.manual_seed(0)
    m = mlp(8, 32, 1)
    w = fit(m, Adam(m.parameters(), lr=1e-2), (x, y), loss="mse", steps=150)
    assert loud(w.findings()) == []


def test_mse_on_class_indices_classifies_worse_in_pytorch_too():
    torch = import_torch()
    x, y = sectors()
    m = torch_mlp(2, 32, 32, 1)
    torch_fit(m, torch.optim.Adam(m.parameters(), lr=1e-2), (x, y[:, None].astype(np.float32)),
              loss="mse", steps=150)
    c = torch_mlp(2, 32, 32, 6)
    torch_fit(c, torch.optim.Adam(c.parameters(), lr=1e-2), (x, y), steps=150)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        reg = np.clip(np.round(m(xt).numpy()[:, 0]), 0, 5)
        ce = c(xt).numpy().argmax(1)
    assert float((ce == y).mean()) > float((reg == y).mean()) + 0.1


# ----------------------------------------------------------------------------- output range


def test_a_sigmoid_output_for_targets_beyond_one_is_named_output_range_mismatch():
    x, y = regression(0)
    cr.manual_seed(0)
    m = nn.Sequential(mlp(8, 32, 1), nn.Sigmoid())
    w = fit(m, Adam(m.parameters(), lr=1e-2), (x, 5 + 3 * y), loss="mse")
    f = finding(w, "output_range_mismatch")
    assert (f.module, f.severity) == ("1", "error")
    assert "lie in (0, 1)" in f.message and "100% of the regression targets" in f.message
    assert [k.kind for k in loud(w.findings())] == ["output_range_mismatch"]
    # independently: the loss stays above the squared distance from 1 to the smallest target
    assert min(w.losses) > float(((5 + 3 * y) - 1).min()) ** 2 * 0.5
    cr.manual_seed(0)
    m = mlp(8, 32, 1)
    fixed = fit(m, Adam(m.parameters(), lr=1e-2), (x, 5 + 3 * y), loss="mse")
    assert loud(fixed.findings()) == [] and 10 * tail_mean(fixed.losses) < min(w.losses)


def test_a_sigmoid_output_cannot_reach_the_targets_in_pytorch_too():
    torch = import_torch()
    x, y = regression(0)
    m = torch.nn.Sequential(torch_mlp(8, 32, 1), torch.nn.Sigmoid())
    losses = torch_fit(m, torch.optim.Adam(m.parameters(), lr=1e-2), (x, 5 + 3 * y),
                       loss="mse")
    assert min(losses) > float(((5 + 3 * y) - 1).min()) ** 2 * 0.5


# ----------------------------------------------------------------------------- chance level


def _labels(shuffled):
    x, y = blobs(0)
    if shuffled:
        y = np.random.default_rng(99).permutation(y)  # labels no longer match the inputs
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    return fit(m, Adam(m.parameters(), lr=1e-2), (x, y))


def test_labels_that_do_not_match_the_inputs_are_named_loss_at_chance():
    w = _labels(shuffled=True)
    f = finding(w, "loss_at_chance")
    assert (f.module, f.severity) == ("", "warning")
    assert "ln(4) = 1.39" in f.message and "commonest class" in f.message
    assert [k.kind for k in loud(w.findings())] == ["loss_at_chance"]
    assert tail_mean(w.losses) > 0.85 * math.log(4)
    fixed = _labels(shuffled=False)
    assert loud(fixed.findings()) == [] and tail_mean(fixed.losses) < 0.3


def test_labels_that_do_not_match_the_inputs_stay_at_chance_in_pytorch_too():
    torch = import_torch()
    x, y = blobs(0)
    y = np.random.default_rng(99).permutation(y)
    m = torch_mlp(8, 32, 4)
    losses = torch_fit(m, torch.optim.Adam(m.parameters(), lr=1e-2), (x, y))
    assert tail_mean(losses) > 0.85 * math.log(4)


# ----------------------------------------------------------------------------- data order


def class_accuracy(pred, y, c):
    return float((pred[y == c] == c).mean())


def _sorted_classes(shuffle):
    x, y = blobs(0, spread=2.0)
    o = np.argsort(y, kind="stable")  # class 0's batches first, then 1, 2, 3, every epoch
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    w = fit(m, SGD(m.parameters(), lr=0.5), (x[o], y[o]), shuffle=shuffle)
    with cr.no_grad():
        pred = m(cr.tensor(x)).numpy().argmax(1)
    return w, pred, y


def test_batches_of_one_class_are_named_unshuffled_data():
    w, pred, y = _sorted_classes(shuffle=False)
    f = finding(w, "unshuffled_data")
    assert (f.module, f.severity) == ("", "warning")
    assert "each batch holds mostly one class" in f.message
    assert [k.kind for k in loud(w.findings())] == ["unshuffled_data"]
    fixed, pred2, _ = _sorted_classes(shuffle=True)
    assert loud(fixed.findings()) == []
    # independently: at the end of each epoch the class seen first is half forgotten
    assert class_accuracy(pred, y, 0) < class_accuracy(pred2, y, 0) - 0.15
    assert float((pred == y).mean()) < float((pred2 == y).mean())


def test_a_loss_that_cycles_with_sorted_data_is_named_unshuffled_data():
    x, y = regression(0)
    o = np.argsort(y[:, 0])
    cr.manual_seed(0)
    m = mlp(8, 32, 1)
    w = fit(m, SGD(m.parameters(), lr=0.1), (x[o], y[o]), loss="mse", shuffle=False,
            steps=160)
    f = finding(w, "unshuffled_data")
    assert "repeats a cycle of 8 steps" in f.message  # 256 examples / 32 a batch
    assert [k.kind for k in loud(w.findings())] == ["unshuffled_data"]
    # independently: the loss at the same point of each epoch repeats, and swings 3x
    tail = np.array(w.losses[-80:]).reshape(10, 8)
    prof = tail.mean(0)
    assert prof.max() > 3 * prof.min() and np.all(tail.std(0) < 0.3 * prof)


def test_sorted_batches_forget_the_first_class_in_pytorch_too():
    torch = import_torch()
    x, y = blobs(0, spread=2.0)
    o = np.argsort(y, kind="stable")
    acc = {}
    for shuffle in (False, True):
        m = torch_mlp(8, 32, 4)
        torch_fit(m, torch.optim.SGD(m.parameters(), lr=0.5), (x[o], y[o]), shuffle=shuffle)
        with torch.no_grad():
            acc[shuffle] = class_accuracy(m(torch.from_numpy(x)).numpy().argmax(1), y, 0)
    assert acc[False] < acc[True] - 0.15


# ----------------------------------------------------------------------------- leaks


def noisy_counting(seed=0, n=256, T=12, V=16, p=0.5):
    """Next-token data: x_{t+1} = x_t + 1 (mod V) half the time, a random token otherwise, so
    a causal model can get to about 1.6 nats and no lower; seeing the next token gets to 0."""
    rng = np.random.default_rng(seed)
    seq = np.zeros((n, T + 1), np.int64)
    seq[:, 0] = rng.integers(0, V, n)
    for t in range(T):
        seq[:, t + 1] = np.where(rng.random(n) < p, (seq[:, t] + 1) % V, rng.integers(0, V, n))
    return seq[:, :-1], seq[:, 1:]


def _language_model(causal):
    from test_doctor_healthy import TinyTransformer

    cr.manual_seed(0)
    m = TinyTransformer(causal=causal)
    return fit(m, Adam(m.parameters(), lr=3e-3), noisy_counting(), steps=80, interval=8,
               batch=16)


def test_a_missing_causal_mask_is_named_causal_leak_at_the_attention():
    w = _language_model(causal=False)
    f = finding(w, "causal_leak")
    assert (f.module, f.severity, f.step) == ("attn", "error", 0)
    assert "changed by up to" in f.message and "when only the last input token" in f.message
    fixed = _language_model(causal=True)
    assert loud(fixed.findings()) == []
    assert fixed.records[0]["causal_probe"]["changed"] == 0.0
    # independently: the leaky model's loss goes far below what the data allows a causal one
    assert tail_mean(w.losses) < 0.6 * tail_mean(fixed.losses)


def test_a_missing_causal_mask_lets_the_loss_fall_below_the_data_in_pytorch_too():
    torch = import_torch()

    class LM(torch.nn.Module):
        def __init__(self, causal, V=16, T=12, d=32):
            super().__init__()
            self.tok, self.pos = torch.nn.Embedding(V, d), torch.nn.Embedding(T, d)
            self.attn = torch.nn.MultiheadAttention(d, 2, batch_first=True)
            self.ln, self.head = torch.nn.LayerNorm(d), torch.nn.Linear(d, V)
            self.mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None

        def forward(self, idx):
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
            a, _ = self.attn(x, x, x, attn_mask=self.mask, need_weights=False)
            return self.head(self.ln(x + a))

    x, y = noisy_counting()
    end = {}
    for causal in (True, False):
        torch.manual_seed(0)
        m = LM(causal)
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        rng = np.random.default_rng(0)
        losses = []
        for _ in range(80):
            ix = rng.integers(0, len(x), 16)
            logits = m(torch.from_numpy(x[ix]))
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 16),
                                                     torch.from_numpy(y[ix]).reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        end[causal] = tail_mean(losses)
    assert end[False] < 0.6 * end[True]


# ----------------------------------------------------------------------------- more of the same


def test_a_sigmoid_before_cross_entropy_is_named_with_the_softmax_case():
    cr.manual_seed(0)
    m = nn.Sequential(mlp(8, 32, 4), nn.Sigmoid())
    w = fit(m, Adam(m.parameters(), lr=1e-2), blobs(0))
    f = finding(w, "probabilities_to_cross_entropy")
    assert f.module == "1" and "squashed into [0, 1]" in f.message
    assert [k.kind for k in loud(w.findings())] == ["probabilities_to_cross_entropy"]
    assert min(w.losses) > math.log1p(3 / math.e)  # independently: held above the floor


def _raw_targets(opt_cls, lr, scale=True):
    x, y = regression(0)
    target = (300 * y + 2000).astype(np.float32) if scale else y
    cr.manual_seed(0)
    m = mlp(8, 32, 1)
    return fit(m, opt_cls(m.parameters(), lr=lr), (x, target), loss="mse")


def test_regression_targets_in_raw_units_are_named_target_not_normalized():
    w = _raw_targets(SGD, 0.01)
    f = finding(w, "target_not_normalized")
    assert (f.module, f.severity) == ("", "error")  # the run diverged
    assert "mean 2.03e+03" in f.message and "the run diverged" in f.message
    assert w.findings()[0].kind == "target_not_normalized"  # the cause comes first
    assert not all(math.isfinite(v) for v in w.losses)
    slow = _raw_targets(Adam, 1e-2)  # Adam does not diverge, but gets nowhere
    assert finding(slow, "target_not_normalized").severity == "warning"
    assert tail_mean(slow.losses) > 0.5 * 300 ** 2 * float(regression(0)[1].var())
    fixed = _raw_targets(SGD, 0.01, scale=False)
    assert loud(fixed.findings()) == []


def test_regression_targets_in_raw_units_diverge_in_pytorch_too():
    torch = import_torch()
    x, y = regression(0)
    m = torch_mlp(8, 32, 1)
    losses = torch_fit(m, torch.optim.SGD(m.parameters(), lr=0.01),
                       (x, (300 * y + 2000).astype(np.float32)), loss="mse")
    assert not all(math.isfinite(v) for v in losses)
