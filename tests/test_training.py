"""Training end to end: MLP and CNN on scikit-learn's 8x8 digits reach the promised test
accuracy, and a linear model trained by SGD converges to the least-squares solution."""

import numpy as np
import pytest

import chainrule as cr
from blas_threads import one_blas_thread_limits
from chainrule import nn, optim
from chainrule.models import CNN, MLP

# These matrices are small: BLAS threads only add contention (on a busy machine, a lot).
one_blas_thread = pytest.fixture(scope="module", autouse=True)(one_blas_thread_limits)


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    X, y = d.data.astype(np.float32) / 16.0, d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(X))
    test, train = perm[:450], perm[450:]
    mu, sd = X[train].mean(0), X[train].std(0) + 0.1  # standardize with training statistics
    X = (X - mu) / sd
    return X[train], y[train], X[test], y[test]


def fit(model, X, y, epochs, lr, batch=32, seed=0):
    """AdamW on shuffled mini-batches with a cosine schedule; returns the last epoch's loss."""
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
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
    return total / len(X)


def accuracy(model, X, y):
    model.eval()
    with cr.no_grad():
        return float((model(cr.tensor(X)).numpy().argmax(axis=1) == y).mean())


def test_mlp_reaches_97_percent_test_accuracy_on_digits(digits):
    Xtr, ytr, Xte, yte = digits
    cr.manual_seed(0)
    model = MLP(64, (256,), 10, dropout=0.2)
    final_loss = fit(model, Xtr, ytr, epochs=20, lr=3e-3)
    assert final_loss < 0.1
    assert accuracy(model, Xte, yte) >= 0.97


def test_cnn_reaches_98_percent_test_accuracy_on_digits(digits):
    Xtr, ytr, Xte, yte = digits
    cr.manual_seed(0)
    model = CNN(in_channels=1, num_classes=10, image_size=8)
    final_loss = fit(model, Xtr.reshape(-1, 1, 8, 8), ytr, epochs=12, lr=3e-3)
    assert final_loss < 0.05
    assert accuracy(model, Xte.reshape(-1, 1, 8, 8), yte) >= 0.98


def test_cnn_layout_for_28x28_inputs_matches_the_classic_network():
    model = CNN(1, 10, image_size=28)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {"features.0.weight": (32, 1, 3, 3), "features.0.bias": (32,),
                      "features.3.weight": (64, 32, 3, 3), "features.3.bias": (64,),
                      "classifier.weight": (10, 3136), "classifier.bias": (10,)}
    assert model(cr.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="divisible by 4"):
        CNN(1, 10, image_size=30)


def test_sgd_linear_model_converges_to_least_squares_solution():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((200, 5))
    y = X @ rng.standard_normal(5) + 0.5 + 0.3 * rng.standard_normal(200)
    A = np.hstack([X, np.ones((200, 1))])
    solution = np.linalg.lstsq(A, y, rcond=None)[0]

    cr.manual_seed(0)
    model = nn.Linear(5, 1, dtype=cr.float64)
    opt = optim.SGD(model.parameters(), lr=0.2, momentum=0.5)
    Xt, yt = cr.tensor(X), cr.tensor(y[:, None])
    for _ in range(300):
        opt.zero_grad()
        nn.functional.mse_loss(model(Xt), yt).backward()
        opt.step()
    got = np.concatenate([model.weight.data.ravel(), model.bias.data])
    assert np.abs(got - solution).max() < 1e-4
