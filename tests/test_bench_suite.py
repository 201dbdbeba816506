"""bench/suite.py: every workload builds on both engines and computes the same losses (the
benchmark compares speed only of models that agree); the driver's report. No timing here."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import chainrule
from blas_threads import one_blas_thread_limits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE_PATH = os.path.join(ROOT, "bench", "suite.py")
_spec = importlib.util.spec_from_file_location("bench_suite", SUITE_PATH)
suite = importlib.util.module_from_spec(_spec)
sys.modules["bench_suite"] = suite  # dataclasses look their module up while the file runs
_spec.loader.exec_module(suite)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_blas_thread_limits()


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def _losses(engine, name):
    _, _, _, check_loss = suite.setup(engine, name)
    return [check_loss(i) for i in range(1 if suite.WORKLOADS[name].infer else suite.CHECK_STEPS)]


@pytest.mark.parametrize("name", list(suite.WORKLOADS))
def test_workload_losses_match_torch_before_and_after_updates(name, torch):
    ours, theirs = _losses(chainrule, name), _losses(torch, name)
    assert len(ours) == len(theirs) >= 1
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    # the weights are not a trivial point: the first loss is near chance over the classes
    classes = suite.WORKLOADS[name].targets[1]
    assert abs(ours[0] - np.log(classes)) < 0.5 * np.log(classes)
    assert suite.loss_check(ours, theirs) is None


def test_initial_weights_follow_names_and_shapes_not_the_engine():
    state = chainrule.nn.BatchNorm2d(3).state_dict()
    state["fc.weight"] = chainrule.zeros(4, 9)
    state["fc.bias"] = chainrule.zeros(4)
    w = suite.initial_weights(state)
    np.testing.assert_array_equal(w["weight"], np.ones(3, np.float32))
    np.testing.assert_array_equal(w["running_var"], np.ones(3, np.float32))
    np.testing.assert_array_equal(w["running_mean"], np.zeros(3, np.float32))
    assert w["num_batches_tracked"].shape == () and w["num_batches_tracked"].dtype == np.int64
    assert w["fc.weight"].dtype == np.float32 and np.abs(w["fc.weight"]).max() <= 1 / 3
    assert np.abs(w["fc.weight"]).std() > 0.05 and np.abs(w["fc.bias"]).max() <= 0.1
    np.testing.assert_array_equal(suite.initial_weights(state)["fc.weight"], w["fc.weight"])


def test_loss_check_flags_a_relative_difference_over_the_tolerance_and_nan():
    assert suite.loss_check([2.0, 1.5], [2.0005, 1.5]) is None
    assert "step 1" in suite.loss_check([2.0, 1.6], [2.0, 1.5])
    assert "step 0" in suite.loss_check([float("nan")], [2.0])


def test_driver_reports_every_engine_with_agreeing_losses(tmp_path, torch):
    out = tmp_path / "suite.json"
    env = dict(os.environ, PYTHONPATH="")
    res = subprocess.run([sys.executable, SUITE_PATH, "--only", "mlp_sigmoid_tanh", "--steps",
                          "1", "--warmup", "0", "--repeats", "1", "--threads", "1", "--tree",
                          ROOT, "--json", str(out)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert report["engines"] == ["chainrule", "torch", "before"]
    (row,) = report["rows"]
    assert row["loss_diff"] == {}
    for engine in report["engines"]:
        assert len(row[engine]["losses"]) == suite.CHECK_STEPS and row[engine]["ms"] > 0
    before = report["runs"]["mlp_sigmoid_tanh"]["before"][0]
    assert before["file"].startswith(os.path.join(ROOT, "src"))
    assert "| mlp_sigmoid_tanh |" in res.stdout and "chainrule/before" in res.stdout


def test_driver_rejects_an_unknown_workload_by_name():
    res = subprocess.run([sys.executable, SUITE_PATH, "--only", "mlp,vgg"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "unknown workload(s) vgg" in res.stderr


def test_driver_without_torch_leaves_its_columns_out_and_says_so(monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(suite.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else find_spec(name, *a))
    rc = suite.main(["--only", "mlp", "--steps", "1", "--warmup", "0", "--repeats", "1",
                     "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "PyTorch is not installed" in out
    assert "torch ms" not in out and "| mlp |" in out
