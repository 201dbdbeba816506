"""PyTorch-style training scripts (tests/torch_scripts/) run as written under
``import chainrule as torch``, and, where PyTorch is installed, give its losses when the same
file runs with ``import torch``."""

import os
import re

import numpy as np
import pytest

SCRIPTS = os.path.join(os.path.dirname(__file__), "torch_scripts")
NAMES = sorted(f[:-3] for f in os.listdir(SCRIPTS) if f.endswith(".py"))


def _run(name, lib):
    src = open(os.path.join(SCRIPTS, name + ".py"), encoding="utf-8").read()
    if lib == "torch":
        src = re.sub(r"\bchainrule\b", "torch", src)
    ns = {"__name__": "__main__"}
    exec(compile(src, f"{name}.py[{lib}]", "exec"), ns)  # noqa: S102
    return ns


@pytest.mark.parametrize("name", NAMES)
def test_script_runs_under_chainrule(name):
    ns = _run(name, "chainrule")
    losses = ns["losses"]
    assert len(losses) >= 6 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]  # each script trains


@pytest.mark.parametrize("name", NAMES)
def test_script_losses_equal_pytorch(name):
    pytest.importorskip("torch")
    ours, theirs = _run(name, "chainrule"), _run(name, "torch")
    np.testing.assert_allclose(ours["losses"], theirs["losses"], rtol=2e-4, atol=1e-6)
    for key in ("line", "correct", "n_out", "resumed"):
        if key in ours:
            if key == "line":
                assert ours[key] == theirs[key] or _close_numbers(ours[key], theirs[key])
            elif key == "resumed":
                np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-4)
            else:
                assert ours[key] == theirs[key]


def _close_numbers(a, b):
    na = [float(x) for x in re.findall(r"-?\d+\.\d+", a)]
    nb = [float(x) for x in re.findall(r"-?\d+\.\d+", b)]
    return len(na) == len(nb) and np.allclose(na, nb, rtol=1e-3, atol=1e-3)


def test_resumed_run_equals_the_uninterrupted_one():
    ns = _run("checkpoint_resume", "chainrule")
    np.testing.assert_allclose(ns["resumed"], ns["losses"], rtol=1e-6)
