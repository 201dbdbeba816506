"""Gradient, update and activation statistics against NumPy references."""

import math

import numpy as np
import pytest

from chainrule.diagnostics import stats as S


def test_grad_stats_match_numpy():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((30, 7)).astype(np.float32)
    g[g < -1] = 0.0
    s = S.grad_stats(g)
    g64 = g.astype(np.float64)
    assert s["norm"] == pytest.approx(np.linalg.norm(g64), rel=1e-6)
    assert s["rms"] == pytest.approx(np.sqrt(np.mean(g64 ** 2)), rel=1e-6)
    assert s["max_abs"] == pytest.approx(np.abs(g64).max())
    assert s["zero_frac"] == pytest.approx(np.mean(g == 0))
    assert s["nonfinite"] == 0


def test_grad_stats_count_nan_and_inf_and_describe_the_finite_rest():
    g = np.array([1.0, np.nan, -np.inf, 0.0, -3.0], np.float32)
    s = S.grad_stats(g)
    assert s["nonfinite"] == 2 and s["norm"] == math.inf
    assert s["max_abs"] == 3.0
    assert s["rms"] == pytest.approx(math.sqrt(10.0 / 5))
    assert s["zero_frac"] == pytest.approx(1 / 5)


def test_merged_grad_stats_equal_stats_of_the_concatenation():
    rng = np.random.default_rng(1)
    parts = [rng.standard_normal(n) * k for n, k in ((5, 1.0), (40, 0.1), (3, 7.0))]
    parts[1][:10] = 0
    merged = S.merge_grad_stats([S.grad_stats(p) for p in parts], [p.size for p in parts])
    whole = S.grad_stats(np.concatenate(parts))
    for k in ("norm", "rms", "max_abs", "zero_frac", "nonfinite"):
        assert merged[k] == pytest.approx(whole[k], rel=1e-12)


def test_update_ratio_is_relative_step_size():
    p = np.array([[3.0, 4.0]])
    assert S.update_ratio(p, p + np.array([[0.03, 0.04]])) == pytest.approx(0.05 / 5.0)
    assert S.update_ratio(p, p) == 0.0
    assert math.isnan(S.update_ratio(np.zeros(3), np.ones(3)))


def test_relu_dead_fraction_counts_units_silent_for_every_example():
    rng = np.random.default_rng(2)
    y = np.maximum(rng.standard_normal((64, 10)), 0)
    y[:, [1, 4, 7]] = 0.0  # three units never fire
    y[:63, 2] = 0.0  # unit 2 fires once: alive
    s = S.activation_stats(y, "relu", "ReLU")
    expected = 1 - np.mean((y > 0).any(axis=0))
    assert s["dead_frac"] == pytest.approx(expected) == pytest.approx(0.3)
    assert s["mean"] == pytest.approx(y.mean()) and s["std"] == pytest.approx(y.std())
    assert s["zero_frac"] == pytest.approx(np.mean(y == 0))
    assert sum(s["hist"]["counts"]) == y.size


def test_saturation_fraction_of_tanh_and_sigmoid():
    x = np.linspace(-8, 8, 1001)
    t = S.activation_stats(np.tanh(x), "saturating", "Tanh")
    assert t["sat_frac"] == pytest.approx(np.mean(np.abs(np.tanh(x)) >= 1 - 0.02))
    sig = 1 / (1 + np.exp(-x))
    s = S.activation_stats(sig, "saturating", "Sigmoid")
    assert s["sat_frac"] == pytest.approx(np.mean((sig <= 0.01) | (sig >= 0.99)))


def test_accumulating_two_forwards_equals_one_forward_of_both():
    rng = np.random.default_rng(3)
    a = np.maximum(rng.standard_normal((8, 6)), 0)
    b = np.maximum(rng.standard_normal((8, 6)) - 1.5, 0)
    acc = S.ActivationAccumulator("relu", "ReLU")
    acc.add(a)
    acc.add(b)
    whole = S.activation_stats(np.concatenate([a, b]), "relu", "ReLU")
    got = acc.result()
    for k in ("mean", "std", "dead_frac", "zero_frac"):
        assert got[k] == pytest.approx(whole[k], rel=1e-9)
