"""Checkpoints: chainrule.save/load round-trips nested state, resuming training is
bit-identical, writes are atomic, and damaged or foreign files raise clear errors without
running anything."""

import os
import pickle
import struct

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim
from chainrule.optim import lr_scheduler

pytest.importorskip("safetensors")


def test_round_trip_keeps_values_types_and_nesting(tmp_path):
    rng_state = cr.get_rng_state()
    obj = {
        "model": {"fc.weight": cr.tensor(np.arange(6.0).reshape(2, 3), dtype=cr.float64),
                  "fc.bias": cr.tensor([1.5, -2.0])},
        "optimizer": {"state": {0: {"step": 7, "exp_avg": cr.ones(2, 3)}},
                      "param_groups": [{"lr": 0.1, "betas": (0.9, 0.95), "params": [0]}]},
        "step": 1200, "loss": float("nan"), "best": float("-inf"), "name": "run-1",
        "flags": [True, None, 3, 2**80], "rng": rng_state,
        "arrays": [np.arange(5, dtype=np.int64), np.float32(0.25), np.zeros((), np.float16),
                   np.ones((3, 0), np.uint8), np.arange(12.0).reshape(3, 4).T],
        "tricky": {"__tensor__": "not a tensor"}, "dtype": np.dtype("float32"),
    }
    path = tmp_path / "ckpt.safetensors"
    cr.save(obj, path)
    got = cr.load(path)
    assert set(got) == set(obj)
    assert isinstance(got["model"]["fc.weight"], cr.Tensor)
    assert got["model"]["fc.weight"].dtype == cr.float64
    np.testing.assert_array_equal(got["model"]["fc.weight"].numpy(), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(got["model"]["fc.bias"].numpy(), np.array([1.5, -2.0], "f4"))
    assert list(got["optimizer"]["state"]) == [0]  # int keys stay ints
    assert got["optimizer"]["state"][0]["step"] == 7
    assert got["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert got["step"] == 1200 and np.isnan(got["loss"]) and got["best"] == -np.inf
    assert got["flags"] == [True, None, 3, 2**80] and got["name"] == "run-1"
    assert got["rng"] == rng_state
    a = got["arrays"]
    assert a[0].dtype == np.int64 and a[0].tolist() == [0, 1, 2, 3, 4]
    assert type(a[1]) is np.float32 and a[1] == 0.25
    assert a[2].shape == () and a[2].dtype == np.float16
    assert a[3].shape == (3, 0)
    np.testing.assert_array_equal(a[4], np.arange(12.0).reshape(3, 4).T)
    assert got["tricky"] == {"__tensor__": "not a tensor"}
    assert got["dtype"] == np.float32


def test_file_is_plain_safetensors_named_by_path(tmp_path):
    from safetensors.numpy import load_file

    path = tmp_path / "c.safetensors"
    cr.save({"model": {"w": cr.ones(2)}, "optimizer": {"state": {0: {"m": np.zeros(3)}}}}, path)
    tensors = load_file(path)
    assert set(tensors) == {"model/w", "optimizer/state/0/m"}
    np.testing.assert_array_equal(tensors["model/w"], np.ones(2, np.float32))


def _make_run(seed=0):
    cr.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    opt = optim.AdamW(model.parameters(), lr=0.01)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=1e-4)
    return model, opt, sched


def _train(model, opt, sched, steps, start):
    data = np.random.default_rng(42)
    X = data.standard_normal((30, 32, 8)).astype(np.float32)
    Y = data.integers(0, 3, (30, 32))
    for step in range(start, start + steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(cr.tensor(X[step])), cr.tensor(Y[step]))
        loss.backward()
        opt.step()
        sched.step()


def test_save_load_continue_is_bit_identical_to_uninterrupted_run(tmp_path):
    model, opt, sched = _make_run()
    _train(model, opt, sched, 20, 0)
    want = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    model, opt, sched = _make_run()
    _train(model, opt, sched, 8, 0)
    path = tmp_path / "ckpt.safetensors"
    cr.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "step": 8, "rng": cr.get_rng_state()}, path)
    del model, opt, sched
    cr.manual_seed(999)  # a fresh process would start from some other RNG state

    model, opt, sched = _make_run(seed=123)
    ckpt = cr.load(path)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    cr.set_rng_state(ckpt["rng"])
    _train(model, opt, sched, 20 - ckpt["step"], ckpt["step"])
    got = {k: v.numpy() for k, v in model.state_dict().items()}
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_crash_mid_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    import safetensors.numpy

    path = tmp_path / "ckpt.safetensors"
    cr.save({"step": 1, "w": cr.ones(3)}, path)
    before = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(safetensors.numpy, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        cr.save({"step": 2, "w": cr.zeros(3)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]  # no temporary file left behind
    assert cr.load(path)["step"] == 1


def test_save_into_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        cr.save({"step": 1}, tmp_path / "nowhere" / "ckpt.safetensors")


def test_overwrite_replaces_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    cr.save({"step": 1}, path)
    cr.save({"step": 2, "w": cr.ones(2)}, str(path))
    assert cr.load(str(path))["step"] == 2


def _saved(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    cr.save({"w": cr.tensor(np.linspace(0, 1, 64)), "step": 5}, path)
    return path, path.read_bytes()


@pytest.mark.parametrize("cut", [0, 5, 12, -1, -100])
def test_truncated_file_raises_clear_error_naming_it(tmp_path, cut):
    path, data = _saved(tmp_path)
    path.write_bytes(data[:cut] if cut else b"")
    with pytest.raises(ValueError, match=r"ckpt\.safetensors.*(truncated|too short)"):
        cr.load(path)


def test_flipped_byte_in_tensor_data_is_detected(tmp_path):
    path, data = _saved(tmp_path)
    bad = bytearray(data)
    bad[-10] ^= 0x40
    path.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"ckpt\.safetensors.*tensor 'w' fails its checksum"):
        cr.load(path)


def test_corrupted_header_or_metadata_is_detected(tmp_path):
    path, data = _saved(tmp_path)
    (n,) = struct.unpack("<Q", data[:8])
    header = data[8:8 + n]
    bad = data[:8] + header.replace(b'\\"step\\":5', b'\\"step\\":6') + data[8 + n:]
    assert bad != data
    path.write_bytes(bad)
    with pytest.raises(ValueError, match="fails its checksum: corrupted"):
        cr.load(path)
    path.write_bytes(data[:8] + b"\xff" * n + data[8 + n:])
    with pytest.raises(ValueError, match="not valid JSON"):
        cr.load(path)
    path.write_bytes(data + b"junk")
    with pytest.raises(ValueError, match="unexpected bytes"):
        cr.load(path)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_payload_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"w": _Boom()}))
    with pytest.raises(ValueError, match=r"model\.safetensors: this is a pickle file.*never "
                                         r"unpickles"):
        cr.load(path)
    assert not (tmp_path / "PWNED").exists()


def test_pytorch_zip_checkpoint_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(ValueError, match="zip archive"):
        cr.load(path)


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "raw.safetensors"
    save_file({"w": np.ones(2, np.float32)}, path)
    with pytest.raises(ValueError, match="not written by chainrule.save"):
        cr.load(path)


def test_well_formed_file_with_inconsistent_metadata_raises_clear_error(tmp_path):
    import json
    import zlib

    from safetensors.numpy import save_file

    from chainrule.serialization import FORMAT, CheckpointError

    path = tmp_path / "odd.safetensors"
    for doc, match in [
        ({"format": FORMAT, "version": 1, "arrays": {}, "tree": {"__tensor__": "gone"}},
         "structure cannot be read"),
        ({"format": FORMAT, "version": 1, "arrays": {"w": ["<f4", [2], 0]}, "tree": None},
         "differ from those its metadata lists"),
        ({"format": "something-else", "version": 1}, "unknown checkpoint format"),
        ({"format": FORMAT, "version": 99, "arrays": {}, "tree": None}, "newer chainrule"),
    ]:
        text = json.dumps(doc)
        save_file({}, path, metadata={FORMAT: text, f"{FORMAT}-crc32": str(zlib.crc32(
            text.encode()))})
        with pytest.raises(CheckpointError, match=rf"odd\.safetensors: .*{match}"):
            cr.load(path)


def test_unstorable_values_raise_type_error_with_their_path(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store a function at 'scheduler/fn'"):
        cr.save({"scheduler": {"fn": lambda t: t}}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match=r"cannot store a _Boom at 'a/0'"):
        cr.save({"a": [_Boom()]}, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
