"""The CPU stand-in for the CUDA device (``chainrule.backend.strict_ns``, switched on by
``backend.fake_cuda()`` or ``CHAINRULE_FAKE_CUDA=1``): its arrays refuse what CuPy's refuse
(implicit conversion to NumPy, mixing with host arrays, implicit pickling), so every op, the
training step, the optimizers and checkpoints run here as they will on a GPU, and their values
must equal the CPU's."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import chainrule as cr
from chainrule import backend
from device_checks import (
    check_case_matches_cpu,
    check_training_matches_cpu,
    device_case_params,
)


@pytest.fixture
def fake():
    with backend.fake_cuda():
        yield "cuda"


# ----------------------------------------------------------------------------- the stand-in


def test_the_stand_in_refuses_implicit_host_conversion_as_cupy_does(fake):
    a = cr.ones(3, device="cuda")._data
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(a)
    with pytest.raises(TypeError, match="numpy.concatenate was called on a device array"):
        np.concatenate([a, a])
    with pytest.raises(TypeError):
        np.exp(a)
    with pytest.raises(TypeError, match="host"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(a)
    xp = backend.array_module(a)
    with pytest.raises(TypeError, match="xp.concatenate: got a NumPy"):
        xp.concatenate([a, np.ones(3)])


def test_the_stand_in_allows_what_torch_allows_on_a_cuda_tensor(fake):
    t = cr.tensor([1.0, 2.0, 3.0], device="cuda")
    xp = t.xp
    s = xp.sum(t._data)
    assert backend.is_device_array(s) and s.ndim == 0  # reductions stay on the device
    assert float(s) == 6.0 and t.sum().item() == 6.0 and t.tolist() == [1.0, 2.0, 3.0]
    assert "device='cuda'" in repr(t)
    assert xp.asarray(t._data) is t._data and t._data[1:].base is t._data
    np.testing.assert_array_equal(backend.to_numpy(t._data), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(t.cpu().numpy(), [1.0, 2.0, 3.0])


def test_the_stand_in_namespace_provides_the_whole_interface(fake):
    from chainrule.backend import strict_ns

    missing = [n for n in backend.API if not hasattr(strict_ns, n)]
    assert not missing


def test_cuda_module_answers_for_the_stand_in(fake):
    assert cr.cuda.is_available() and cr.cuda.device_count() == 1
    assert "stand-in" in cr.cuda.get_device_name()
    before = cr.cuda.memory_allocated()
    x = cr.zeros(1000, device="cuda", dtype=cr.float64)
    assert cr.cuda.memory_allocated() >= before + 8000
    assert cr.cuda.max_memory_allocated() >= cr.cuda.memory_allocated()
    del x
    cr.cuda.synchronize()
    cr.cuda.empty_cache()
    cr.cuda.manual_seed_all(3)


def test_the_stand_in_is_off_outside_its_block():
    with backend.fake_cuda():
        assert cr.cuda.is_available()
    assert backend._cupy is None or not backend.cuda_is_stand_in()


# ----------------------------------------------------------------------------- devices


def test_inputs_on_two_devices_name_the_op_and_both_devices(fake):
    a = cr.ones(3, device="cuda")
    b = cr.ones(3)
    with pytest.raises(RuntimeError, match=r"Add: expected all tensors on one device.*cuda.*cpu"):
        a + b
    with pytest.raises(RuntimeError, match=r"Matmul.*one device"):
        cr.ones(2, 3, requires_grad=True) @ cr.ones(3, 2, device="cuda")


def test_to_cuda_cpu_move_values_and_gradients_back(fake):
    x = cr.tensor([[1.0, -2.0], [3.0, 4.0]], requires_grad=True)
    y = x.cuda()
    assert y.device == "cuda" and y.is_cuda and y.cpu().device == "cpu"
    assert x.to("cuda:0").device == "cuda" and x.to(cr.device("cuda")).device == "cuda"
    (y * y).sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy())
    assert cr.tensor(y).device == "cuda"  # a copy stays on its device, as torch.tensor(t)


def test_module_to_moves_parameters_and_buffers_and_optimizer_state_follows(fake):
    m = cr.nn.Sequential(cr.nn.Linear(3, 4), cr.nn.BatchNorm1d(4)).to("cuda")
    assert all(p.device == "cuda" for p in m.parameters())
    assert all(b.device == "cuda" for b in m.buffers())
    opt = cr.optim.Adam(m.parameters(), lr=0.1)
    m(cr.randn(5, 3, device="cuda")).sum().backward()
    opt.step()
    for state in opt.state.values():
        for v in state.values():
            if isinstance(v, cr.Tensor) and v.ndim:
                assert v.device == "cuda"
    assert all(p.device == "cuda" for p in m.parameters())
    m.cpu()
    assert all(p.device == "cpu" for p in m.parameters())


def test_checkpoint_saved_from_the_device_loads_on_the_cpu_and_back(fake, tmp_path):
    m = cr.nn.Linear(3, 2).cuda()
    opt = cr.optim.AdamW(m.parameters())
    m(cr.randn(4, 3, device="cuda")).sum().backward()
    opt.step()
    path = tmp_path / "ck.pt"
    cr.save({"model": m.state_dict(), "opt": opt.state_dict()}, path)
    on_cpu = cr.load(path)
    assert all(t.device == "cpu" for t in on_cpu["model"].values())
    for k, t in m.state_dict().items():
        np.testing.assert_array_equal(on_cpu["model"][k].numpy(), t.cpu().numpy())
    back = cr.load(path, map_location="cuda")
    assert all(t.device == "cuda" for t in back["model"].values())
    m2 = cr.nn.Linear(3, 2).cuda()
    m2.load_state_dict(on_cpu["model"])  # host tensors into device parameters
    assert all(p.device == "cuda" for p in m2.parameters())
    np.testing.assert_array_equal(m2.weight.detach().cpu().numpy(),
                                  m.weight.detach().cpu().numpy())
    opt2 = cr.optim.AdamW(m2.parameters())
    opt2.load_state_dict(back["opt"])
    m2(cr.randn(4, 3, device="cuda")).sum().backward()
    opt2.step()


def test_dropout_masks_on_the_device_follow_the_chainrule_seed(fake):
    x = cr.ones(64, 64, device="cuda")
    cr.manual_seed(5)
    a = cr.nn.functional.dropout(x, 0.5, training=True)
    cr.manual_seed(5)
    b = cr.nn.functional.dropout(x, 0.5, training=True)
    assert a.device == "cuda"
    np.testing.assert_array_equal(a.cpu().numpy(), b.cpu().numpy())
    kept = (a.cpu().numpy() != 0).mean()
    assert 0.45 < kept < 0.55


# ----------------------------------------------------------------------------- every op


@pytest.mark.parametrize("s, c", device_case_params())
def test_every_op_on_the_stand_in_equals_the_cpu_in_value_and_gradient(fake, s, c):
    check_case_matches_cpu(s, c, fake)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", ["mlp", "cnn", "gpt"])
def test_training_on_the_stand_in_equals_the_cpu(fake, name):
    check_training_matches_cpu(name, fake, rtol=1e-6, atol=1e-7)


def test_chainrule_train_on_the_stand_in_end_to_end_and_resumes(fake, tmp_path):
    from chainrule import cli

    args = ["train", "--device=cuda", f"--out_dir={tmp_path}", "--name=r", "--n_layer=1",
            "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=4", "--max_iters=4",
            "--eval_interval=2", "--eval_iters=1", "--log_interval=1", "--sample_tokens=10",
            "--diagnose_interval=2", "--progress=false", "--dropout=0.1"]
    assert cli.main(args) == 0
    assert cli.main(["train", "--resume", str(tmp_path / "r"), "--max_iters=6"]) == 0


# ----------------------------------------------------------------------------- models


def test_llama_forward_cache_and_generate_on_the_stand_in_equal_the_cpu(fake):
    from chainrule.models.llama import KVCache, Llama, LlamaConfig, rope_tables

    cfg = LlamaConfig(vocab_size=50, n_layer=2, n_embd=24, n_head=6, n_kv_head=2, n_hidden=40,
                      rope_theta=1000.0, norm_eps=1e-5, block_size=32)
    cr.manual_seed(0)
    cpu = Llama(cfg)
    dev = Llama(cfg)
    dev.load_state_dict(cpu.state_dict())
    dev.to("cuda")
    ids = np.array([[1, 2, 3, 4, 5, 6, 7], [9, 8, 7, 6, 5, 4, 3]])
    cos, sin = rope_tables(5, 6, 1000.0, start=2, device="cuda")
    assert backend.is_device_array(cos) and backend.is_device_array(sin)
    np.testing.assert_array_equal(backend.to_numpy(cos), rope_tables(5, 6, 1000.0, start=2)[0])
    with cr.no_grad():
        full_ref, loss_ref = cpu(cr.tensor(ids), cr.tensor(ids))
        full, loss = dev(cr.tensor(ids, device="cuda"), cr.tensor(ids, device="cuda"))
        assert full.device == "cuda"
        np.testing.assert_allclose(full.cpu().numpy(), full_ref.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(loss.item(), loss_ref.item(), rtol=1e-6)
        cache = KVCache(cfg, 2, 7, device="cuda")  # a chunked prefill through the cache
        a, _ = dev(cr.tensor(ids[:, :4], device="cuda"), cache=cache)
        b, _ = dev(cr.tensor(ids[:, 4:], device="cuda"), cache=cache)
        assert all(backend.is_device_array(k) for k in cache.k + cache.v)
    np.testing.assert_allclose(np.concatenate([a.cpu().numpy(), b.cpu().numpy()], 1),
                               full_ref.numpy(), atol=1e-5)
    for kw in ({"temperature": 0}, {"temperature": 0.8, "top_k": 5, "top_p": 0.9}):
        ref = cpu.generate(ids[:, :3], 6, generator=np.random.default_rng(3), **kw)
        out = dev.generate(cr.tensor(ids[:, :3], device="cuda"), 6,
                           generator=np.random.default_rng(3), **kw)
        assert out.device == "cuda"
        np.testing.assert_array_equal(out.cpu().numpy(), ref.numpy())


def test_a_parameter_made_from_a_device_array_stays_on_the_device(fake):
    a = cr.randn(3, 2).to("cuda")._data
    p = cr.nn.Parameter(a)
    assert p.device == "cuda" and p._data is a and p.requires_grad
    (p * 2.0).sum().backward()
    np.testing.assert_array_equal(p.grad.cpu().numpy(), np.full((3, 2), 2.0))
