"""Training end to end: MLP and CNN on scikit-learn's 8x8 digits reach the promised test
accuracy, and a linear model trained by SGD converges to the least-squares solution."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from blas_threads import one_blas_thread_limits
from chainrule import nn, optim
from chainrule.models import CNN, MLP

# These matrices are small: BLAS threads only add contention (on a busy machine, a lot).
one_blas_thread = pytest.fixture(scope="module", autouse=True)(one_blas_thread_limits)


def _load_example():
    """examples/digits.py as a module: the tests run the example's own data split, training
    loop and accuracy."""
    path = Path(__file__).resolve().parents[1] / "examples" / "digits.py"
    spec = importlib.util.spec_from_file_location("digits_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()
fit, accuracy = example.train, example.accuracy


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn.datasets")
    return example.load_data(seed=0)


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
    got = np.concatenate([model.weight._data.ravel(), model.bias._data])
    assert np.abs(got - solution).max() < 1e-4
