"""The names PyTorch scripts touch first (devices, cuda/backends/accelerator/amp, inference
mode, nn.parallel, onnx, dtype aliases, typed constructors, f-strings of tensors, seeding and
helpful misses), against PyTorch where it is installed and written-out values otherwise."""

import pickle

import numpy as np
import pytest

import chainrule as cr

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


# ----------------------------------------------------------------------------- device

@pytest.mark.parametrize("args, s, typ, idx", [
    (("cpu",), "cpu", "cpu", None), (("cuda",), "cuda", "cuda", None),
    (("cuda:1",), "cuda:1", "cuda", 1), (("cuda", 0), "cuda:0", "cuda", 0), ((2,), "cuda:2",
                                                                               "cuda", 2),
])
def test_device_fields(args, s, typ, idx):
    d = cr.device(*args)
    assert (str(d), d.type, d.index) == (s, typ, idx)
    assert d == s and d == cr.device(s) and hash(d) == hash(cr.device(s))
    assert pickle.loads(pickle.dumps(d)) == d
    if torch is not None and not isinstance(args[0], int):  # torch.device(2) needs a GPU
        t = torch.device(*args)
        assert (str(t), t.type, t.index, repr(t)) == (str(d), d.type, d.index, repr(d))


def test_device_keyword_and_errors():
    assert cr.device(type="cpu") == "cpu"
    assert repr(cr.device("cpu")) == "device(type='cpu')"
    with pytest.raises(RuntimeError, match="device"):
        cr.device("tpu")
    with pytest.raises(RuntimeError, match="index"):
        cr.device("cuda:0", 1)


def test_device_object_accepted_everywhere():
    cpu = cr.device("cpu")
    x = cr.zeros(2, 3, device=cpu)
    assert x.device == cpu and x.device.type == "cpu" and isinstance(x.device, cr.device)
    assert cr.ones_like(x, device=cpu).device == "cpu"
    assert cr.tensor([1.0], device=cpu).device == "cpu"
    assert x.to(cpu) is x and x.to(device=cpu) is x
    y = x.to(cpu, cr.float64)
    assert y.dtype == cr.float64
    assert x.to(cpu, non_blocking=True) is x
    assert x.to(cpu, copy=True) is not x
    m = cr.nn.Linear(2, 2).to(cpu)
    assert m.weight.device == "cpu"
    assert x.new_zeros(2).device == "cpu"


# ----------------------------------------------------------------------------- cuda & co

def test_cuda_namespace_without_gpu():
    avail = cr.backend.cuda_is_available()
    assert cr.cuda.is_available() is avail
    assert cr.accelerator.is_available() is avail
    if not avail:
        assert cr.cuda.device_count() == 0
        assert cr.accelerator.current_accelerator() is None
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            cr.cuda.current_device()
    assert cr.cuda.is_bf16_supported() is False
    cr.cuda.synchronize()
    cr.cuda.empty_cache()
    cr.cuda.manual_seed_all(5)
    a = cr.rand(3).numpy()
    cr.manual_seed(5)
    np.testing.assert_array_equal(cr.rand(3).numpy(), a)
    cr.cuda.manual_seed(5)
    np.testing.assert_array_equal(cr.rand(3).numpy(), a)


def test_backends_flags_settable():
    cr.backends.cudnn.benchmark = True
    cr.backends.cudnn.deterministic = True
    cr.backends.cuda.matmul.allow_tf32 = True
    cr.backends.cudnn.allow_tf32 = True
    assert cr.backends.cudnn.benchmark and cr.backends.cuda.matmul.allow_tf32
    assert cr.backends.mps.is_available() is False and cr.backends.mps.is_built() is False
    assert cr.backends.cudnn.is_available() is False
    cr.backends.cudnn.benchmark = False
    cr.backends.cudnn.deterministic = False


def test_amp_runs_the_loop_unchanged():
    from chainrule.cuda.amp import GradScaler, autocast

    cr.manual_seed(0)
    m = cr.nn.Linear(3, 1)
    opt = cr.optim.SGD(m.parameters(), lr=0.1)
    scaler = GradScaler(enabled=True)
    x = cr.ones(4, 3)
    w0 = m.weight.detach().clone()
    with autocast():
        loss = m(x).pow(2).mean()
    with cr.amp.autocast(device_type="cpu", dtype=cr.bfloat16):
        assert m(x).dtype == cr.float32  # no autocasting: ops keep their dtype
    with cr.autocast("cuda", enabled=False):
        pass
    scaler.scale(loss).backward()
    g = m.weight.grad.numpy().copy()
    scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    np.testing.assert_allclose(m.weight.detach().numpy(), w0.numpy() - 0.1 * g, rtol=1e-6)
    assert scaler.get_scale() == 1.0 and not scaler.is_enabled() and scaler.state_dict() == {}

    @cr.amp.autocast("cuda")
    def f():
        return 3

    assert f() == 3


def test_inference_mode_context_and_decorators():
    with cr.inference_mode():
        assert not cr.is_grad_enabled() and cr.is_inference_mode_enabled()
        y = cr.ones(2, requires_grad=True) * 2
        assert y.grad_fn is None
    assert cr.is_grad_enabled() and not cr.is_inference_mode_enabled()
    with cr.inference_mode(False):
        assert cr.is_grad_enabled()

    @cr.inference_mode()
    def f():
        return cr.is_grad_enabled()

    @cr.inference_mode
    def g():
        return cr.is_grad_enabled()

    assert f() is False and g() is False and cr.is_grad_enabled()


def test_nn_parallel_and_onnx_import():
    import chainrule.nn.parallel as par
    import chainrule.onnx

    cr.manual_seed(0)
    inner = cr.nn.Linear(3, 2)
    dp = par.DataParallel(inner)
    assert cr.nn.DataParallel is par.DataParallel
    assert list(dp.state_dict()) == ["module.weight", "module.bias"]
    x = cr.ones(4, 3)
    np.testing.assert_array_equal(dp(x).detach().numpy(), inner(x).detach().numpy())
    with pytest.raises(RuntimeError, match="chainrule.distributed.DistributedDataParallel"):
        par.DistributedDataParallel(inner)
    with pytest.raises(RuntimeError, match="ONNX export is not supported"):
        chainrule.onnx.export(inner, (x,), "m.onnx")
    assert chainrule.onnx.is_in_onnx_export() is False


# ----------------------------------------------------------------------------- dtypes

@pytest.mark.parametrize("name, expected", [
    ("float", "float32"), ("double", "float64"), ("half", "float16"), ("long", "int64"),
    ("int", "int32"), ("short", "int16"), ("int8", "int8"), ("uint8", "uint8"),
    ("int16", "int16"), ("bool", "bool"), ("complex64", "complex64"), ("cfloat", "complex64"),
    ("float32", "float32"), ("float64", "float64"), ("int32", "int32"), ("int64", "int64"),
])
def test_dtype_aliases(name, expected):
    dt = getattr(cr, name)
    assert dt == np.dtype(expected)
    assert cr.zeros(2, dtype=dt).dtype == np.dtype(expected)
    if torch is not None:
        assert str(getattr(torch, name)) == f"torch.{expected}"


def test_bfloat16_name_exists_and_errors_clearly():
    table = {"float32": cr.float32, "bfloat16": cr.bfloat16}  # builds, as nanoGPT's does
    assert repr(table["bfloat16"]) == "chainrule.bfloat16"
    with pytest.raises(TypeError, match="NumPy has no bfloat16"):
        cr.zeros(2, dtype=cr.bfloat16)
    with pytest.raises(TypeError, match="NumPy has no bfloat16"):
        cr.ones(2).to(cr.bfloat16)


@pytest.mark.parametrize("ctor, dtype", [
    ("FloatTensor", "float32"), ("DoubleTensor", "float64"), ("LongTensor", "int64"),
    ("IntTensor", "int32"), ("BoolTensor", "bool"), ("ByteTensor", "uint8"),
])
def test_typed_constructors(ctor, dtype):
    c = getattr(cr, ctor)
    t = c([1, 0, 2])
    assert t.dtype == np.dtype(dtype) and t.tolist() == np.array([1, 0, 2], dtype).tolist()
    assert c(2, 3).shape == (2, 3) and c(2, 3).dtype == np.dtype(dtype)
    assert c().shape == (0,)
    assert isinstance(t, c) and isinstance(t, cr.Tensor)
    assert cr.ones(2).type(c).dtype == np.dtype(dtype)
    if torch is not None:
        tt = getattr(torch, ctor)([1, 0, 2])
        assert t.tolist() == tt.tolist()
        assert cr.ones(2).type(c).type() == torch.ones(2).type(getattr(torch, ctor)).type()


def test_format():
    loss = cr.tensor(0.123456)
    assert f"{loss:.4f}" == "0.1235" and f"{loss:>8.2f}" == "    0.12"
    assert f"{cr.tensor(3):d}" == "3"
    x = cr.ones(2)
    assert f"{x}" == str(x)
    with pytest.raises(TypeError, match="0-d tensor"):
        f"{x:.2f}"
    if torch is not None:
        assert f"{torch.tensor(0.123456):.4f}" == f"{loss:.4f}"


# ----------------------------------------------------------------------------- misc names

def test_small_top_level_names():
    m = cr.nn.Linear(2, 2)
    assert cr.compile(m) is m
    assert cr.is_tensor(cr.ones(1)) and not cr.is_tensor(1.0)
    assert cr.get_default_dtype() == cr.float32
    cr.set_float32_matmul_precision("high")
    assert cr.get_float32_matmul_precision() == "high"
    cr.set_float32_matmul_precision("highest")
    cr.ones(2).contiguous(memory_format=cr.contiguous_format)
    cr.zeros_like(cr.ones(2), memory_format=cr.preserve_format)


def test_seed_and_initial_seed():
    cr.manual_seed(1234)
    assert cr.initial_seed() == 1234
    s = cr.seed()
    assert isinstance(s, int) and cr.initial_seed() == s and 0 <= s < 2**64
    a = cr.rand(4).numpy()
    cr.manual_seed(s)
    np.testing.assert_array_equal(cr.rand(4).numpy(), a)
    assert cr.seed() != s  # fresh entropy each call
    cr.manual_seed(0)


def test_helpful_misses():
    with pytest.raises(AttributeError, match=r"torch\.jit is not supported by chainrule"):
        cr.jit  # noqa: B018
    with pytest.raises(AttributeError, match=r"torch\.nn\.FooBar is not supported"):
        cr.nn.FooBar  # noqa: B018
    assert not hasattr(cr, "no_such_name")


# ----------------------------------------------------------------------------- Tensor.data

def test_data_is_a_detached_tensor_sharing_storage():
    w = cr.nn.Parameter(cr.tensor([1.0, 2.0, 3.0]))
    d = w.data
    assert isinstance(d, cr.Tensor) and not d.requires_grad and d.grad_fn is None
    assert w.data.size(0) == 3 and w.data.shape == (3,)
    w.data.add_(cr.tensor([1.0, 1.0, 1.0]), alpha=-0.5)
    np.testing.assert_allclose(w.detach().numpy(), [0.5, 1.5, 2.5])
    w.data -= 0.5 * cr.tensor([1.0, 1.0, 1.0])
    np.testing.assert_allclose(w.detach().numpy(), [0.0, 1.0, 2.0])
    w.data = cr.tensor([7.0, 8.0])  # assigning replaces the array (shape may change)
    assert w.shape == (2,) and w.requires_grad
    (w * w).sum().backward()  # the engine still works on the new array
    np.testing.assert_allclose(w.grad.numpy(), [14.0, 16.0])
    w.grad.data.zero_()
    np.testing.assert_allclose(w.grad.numpy(), [0.0, 0.0])
    with pytest.raises(TypeError, match="Tensor.data"):
        w.data = [1.0, 2.0]


@needs_torch
def test_manual_sgd_through_data_matches_torch():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 3)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    W0 = rng.standard_normal((3, 1)).astype(np.float32)
    losses = {}
    for lib in (cr, torch):
        w = lib.tensor(W0.copy(), requires_grad=True)
        xs, ys = lib.tensor(X), lib.tensor(y)
        out = []
        for _ in range(5):
            loss = ((xs @ w - ys) ** 2).mean()
            loss.backward()
            w.data.add_(w.grad.data, alpha=-0.1)
            w.grad.data.zero_()
            out.append(loss.item())
        losses[lib.__name__] = out
    np.testing.assert_allclose(losses["chainrule"], losses["torch"], rtol=1e-5)


# ----------------------------------------------------------------------------- save / load

def test_checkpoint_dict_through_file_objects_and_map_location(tmp_path):
    import io

    cr.manual_seed(0)
    m = cr.nn.Linear(3, 2)
    opt = cr.optim.Adam(m.parameters(), lr=0.01)
    m(cr.ones(4, 3)).sum().backward()
    opt.step()
    ck = {"model": m.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "loss": 0.25,
          "arch": "linear", "t": cr.tensor([1.0, 2.0])}
    buf = io.BytesIO()
    cr.save(ck, buf)
    buf.seek(0)
    back = cr.load(buf, map_location="cpu", weights_only=True)
    assert (back["epoch"], back["loss"], back["arch"]) == (3, 0.25, "linear")
    np.testing.assert_array_equal(back["model"]["weight"].numpy(), m.weight.detach().numpy())
    p = tmp_path / "ck.pt"
    with open(p, "wb") as f:
        cr.save(ck, f)
    with open(p, "rb") as f:
        b2 = cr.load(f, map_location=cr.device("cpu"))
    assert b2["t"].tolist() == [1.0, 2.0]
    assert cr.load(str(p), map_location=lambda s, loc: s)["t"].tolist() == [1.0, 2.0]
    assert cr.load(p, map_location={"cuda:0": "cpu"})["t"].tolist() == [1.0, 2.0]
    m2 = cr.nn.Linear(3, 2)
    m2.load_state_dict(b2["model"])
    opt2 = cr.optim.Adam(m2.parameters(), lr=0.01)
    opt2.load_state_dict(b2["optimizer"])
    np.testing.assert_array_equal(m2.weight.detach().numpy(), m.weight.detach().numpy())
    with pytest.raises(TypeError, match="cannot store a Linear"):
        cr.save(m, tmp_path / "m.pt")


# ----------------------------------------------------------------------------- silent differences

@pytest.mark.parametrize("expr, expected", [
    (lambda m: m.logical_not(m.tensor([0, 1, 2])), [True, False, False]),
    (lambda m: m.fmod(m.tensor(-5.0), m.tensor(3.0)), -2.0),
    (lambda m: m.remainder(m.tensor(-5.0), 3.0), 1.0),
    (lambda m: m.tensor([5, 3]) & m.tensor([3, 6]), [1, 2]),
    (lambda m: m.tensor([5, 3]) | m.tensor([3, 6]), [7, 7]),
    (lambda m: m.tensor([5, 3]) ^ m.tensor([3, 6]), [6, 5]),
    (lambda m: ~m.tensor([5, -3]), [-6, 2]),
    (lambda m: m.tensor([5, 3]) & 1, [1, 1]),
    (lambda m: m.tensor([True, False]) ^ m.tensor([True, True]), [False, True]),
    (lambda m: ~m.tensor([True, False]), [False, True]),
])
def test_fixed_silent_differences(expr, expected):
    got = expr(cr).tolist()
    assert got == expected
    if torch is not None:
        assert expr(torch).tolist() == expected


def test_var_and_std_read_a_bool_as_unbiased():
    x = cr.tensor([1.0, 2.0, 4.0])
    np.testing.assert_allclose(x.var(False).item(), 14 / 9, rtol=1e-6)
    np.testing.assert_allclose(x.std(False).item(), (14 / 9) ** 0.5, rtol=1e-6)
    np.testing.assert_allclose(x.var(True).item(), 7 / 3, rtol=1e-6)


def test_shape_errors_are_also_runtime_errors():
    for call in (lambda: cr.ones(2).item(), lambda: cr.ones(2).add_(cr.ones(3))):
        with pytest.raises(RuntimeError):
            call()
        with pytest.raises(ValueError):
            call()
