"""The CUDA device on a real GPU (CuPy): every op-spec row in float64 against the CPU (values
and gradients), gradcheck on the device, MLP/CNN/GPT training equal to the CPU within float32
tolerance, ``chainrule train --device=cuda`` end to end and a checkpoint round trip to the
CPU. Skipped without an NVIDIA GPU and CuPy; the same checks run on the CPU stand-in in
``test_strict_device.py``."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import backend
from device_checks import (
    CASE_IDS,
    CASES,
    check_case_matches_cpu,
    check_training_matches_cpu,
    device_case_params,
)

pytestmark = pytest.mark.skipif(
    backend._stand_in_wanted() or not cr.cuda.is_available(),
    reason="needs an NVIDIA GPU and CuPy")


@pytest.mark.parametrize("s, c", device_case_params())
def test_every_op_on_the_gpu_equals_the_cpu_in_float64(s, c):
    check_case_matches_cpu(s, c, "cuda", rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("s, c", [pytest.param(s, c, id=i) for (s, c), i in zip(CASES, CASE_IDS)
                                  if s.op in ("Mul", "Exp", "MatMul", "Matmul", "GELU", "Gelu",
                                              "LayerNormOp", "AttentionOp", "SoftmaxOp",
                                              "CrossEntropyOp", "Conv2dOp", "EmbeddingOp")])
def test_gradcheck_on_the_gpu_in_float64(s, c):
    from chainrule.autograd import gradcheck

    xs = [cr.tensor(a, dtype=a.dtype, requires_grad=g, device="cuda") if g is not None else
          (cr.tensor(a, device="cuda") if isinstance(a, np.ndarray) else a)
          for a, g in s.arrays(c)]
    assert gradcheck(lambda *t: s.call(t, c), xs, atol=s.atol, rtol=s.rtol)


@pytest.mark.parametrize("name", ["mlp", "cnn", "gpt"])
def test_training_on_the_gpu_equals_the_cpu_within_float32_tolerance(name):
    check_training_matches_cpu(name, "cuda", rtol=2e-4, atol=2e-5)


def test_fused_kernels_on_the_gpu_equal_the_cpu():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 96)).astype(np.float32)
    xp = backend.xp_for_device("cuda")
    from chainrule.backend import elementwise, numpy_ns

    g = rng.standard_normal(x.shape).astype(np.float32)
    for row in elementwise.TABLE:  # every row's generated CUDA kernels against the CPU's
        params = {"pow": (3.0,), "hardtanh": (-1.0, 1.0), "softplus": (1.0, 20.0)}.get(
            row.name, (0.5,) * len(row.params))
        xr = np.abs(x) + 0.1 if row.name in ("log", "sqrt", "rsqrt", "log1p") else x
        y, kept = xp.pointwise_forward(row.name, backend.to_device(xr, "cuda"), params)
        y0, kept0 = numpy_ns.pointwise_forward(row.name, xr, params)
        np.testing.assert_allclose(backend.to_numpy(y), y0, rtol=2e-5, atol=1e-6,
                                   err_msg=row.name)
        s, s0 = (y, y0) if row.reads == "y" else (backend.to_device(xr, "cuda"), xr)
        d = xp.pointwise_backward(row.name, s, backend.to_device(g, "cuda"), params, kept)
        d0 = numpy_ns.pointwise_backward(row.name, s0, g, params, kept0)
        np.testing.assert_allclose(backend.to_numpy(d), d0, rtol=2e-5, atol=1e-5,
                                   err_msg=row.name)
    u = xp.random_uniform(np.random.default_rng(3), (1000, 100), np.float32)
    h = backend.to_numpy(u)
    assert 0 <= h.min() and h.max() < 1 and abs(h.mean() - 0.5) < 0.01


def test_two_devices_name_the_op():
    with pytest.raises(RuntimeError, match="Add: expected all tensors on one device"):
        cr.ones(3, device="cuda") + cr.ones(3)


def test_memory_questions_read_the_pool():
    cr.cuda.synchronize()
    before = cr.cuda.memory_allocated()
    x = cr.zeros(1 << 20, device="cuda")
    assert cr.cuda.memory_allocated() >= before + 4 * (1 << 20)
    assert cr.cuda.max_memory_allocated() >= cr.cuda.memory_allocated()
    del x
    cr.cuda.empty_cache()


def test_checkpoint_from_the_gpu_loads_on_the_cpu(tmp_path):
    m = cr.nn.Linear(3, 2).cuda()
    cr.save(m.state_dict(), tmp_path / "m.pt")
    sd = cr.load(tmp_path / "m.pt")
    assert all(t.device == "cpu" for t in sd.values())
    np.testing.assert_array_equal(sd["weight"].numpy(), m.weight.detach().cpu().numpy())
    assert cr.load(tmp_path / "m.pt", map_location="cuda")["weight"].device == "cuda"


def test_chainrule_train_on_the_gpu_end_to_end(tmp_path):
    from chainrule import cli

    args = ["train", "--device=cuda", f"--out_dir={tmp_path}", "--name=r", "--n_layer=1",
            "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=4", "--max_iters=4",
            "--eval_interval=2", "--eval_iters=1", "--log_interval=1", "--sample_tokens=10",
            "--diagnose_interval=2", "--progress=false", "--dropout=0.1"]
    assert cli.main(args) == 0
    assert (tmp_path / "r").is_dir()
