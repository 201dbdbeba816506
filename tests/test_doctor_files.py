"""The new findings come back the same from a saved run: every statistic the rules read goes
through diagnostics.jsonl (JSON numbers, booleans and lists) and the doctor gives the same
findings on the file as on the live watcher."""

from __future__ import annotations

import json
import warnings

import pytest

import chainrule as cr
from blas_threads import one_blas_thread_limits
from chainrule import nn
from chainrule.diagnostics import diagnose_run
from chainrule.optim import SGD, Adam, lr_scheduler
from test_doctor_healthy import blobs, fit, mlp

one_blas_thread = pytest.fixture(scope="module", autouse=True)(one_blas_thread_limits)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _zero_grad_missing():
    cr.manual_seed(0)
    m = mlp(8, 32, 4)
    return fit(m, SGD(m.parameters(), lr=0.05), blobs(0), zero="none", steps=40)


def _softmax_and_schedule():
    cr.manual_seed(0)
    m = nn.Sequential(mlp(8, 32, 4), nn.Softmax(dim=1))
    opt = Adam(m.parameters(), lr=1e-2)
    return fit(m, opt, blobs(0), sched=lr_scheduler.StepLR(opt, 5, 0.1), steps=60)


def _constant_init_eval_mode():
    cr.manual_seed(0)
    m = mlp(8, 32, 32, 4, dropout=0.3)
    with cr.no_grad():
        for p in m.parameters():
            p.data[...] = 0.5
    return fit(m, SGD(m.parameters(), lr=0.05), blobs(0), eval_at_start=True, steps=40)


@pytest.mark.parametrize("run", [_zero_grad_missing, _softmax_and_schedule,
                                 _constant_init_eval_mode])
def test_a_saved_run_gives_the_same_findings(run, tmp_path):
    w = run()
    live = [f.to_dict() for f in w.findings()]
    assert live  # each of these runs has something to find
    w.save(tmp_path)
    assert [f.to_dict() for f in diagnose_run(tmp_path)] == live
    # the file is plain JSON: no NumPy scalars leak into it
    for line in (tmp_path / "diagnostics.jsonl").read_text().splitlines():
        json.loads(line)


def test_a_first_version_file_without_the_new_statistics_is_still_read(tmp_path):
    w = _zero_grad_missing()
    w.save(tmp_path)
    path = tmp_path / "diagnostics.jsonl"
    lines = [json.loads(s) for s in path.read_text().splitlines()]
    new = {"optimizer", "modes", "input", "output", "cross_entropy", "regression",
           "causal_probe"}
    for obj in lines:
        if obj["type"] == "step":
            for k in new:
                obj.pop(k, None)
            for s in obj["params"].values():
                for k in ("step_norm", "prior_norm", "n_backward", "update_dot_grad",
                          "update_dot_param", "param_norm_before"):
                    s.pop(k, None)
    path.write_text("\n".join(json.dumps(o) for o in lines) + "\n")
    found = diagnose_run(tmp_path)  # reads, and runs every rule on what is there
    assert "grad_accumulates" not in {f.kind for f in found}  # its statistics are not there
    assert all(f.step in range(40) for f in found)
