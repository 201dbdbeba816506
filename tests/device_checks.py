"""Checks shared by the GPU tests (``test_cuda.py``, on a real GPU) and the stand-in device's
tests (``test_strict_device.py``, on the CPU): each takes the device to run on and compares
what it computes there with the CPU's results."""

from __future__ import annotations

import numpy as np

import chainrule as cr
from op_specs import SPECS

CASES = [(s, c) for s in SPECS.values() for c in s.cases]
CASE_IDS = [f"{s.op}-{c.id}" for s, c in CASES]
# rows whose test function builds its inputs with NumPy on purpose (a namespace's own test)
HOST_ONLY_ROWS = {"_ScatterAddZeros": "builds its scatter index with NumPy itself"}
# ops that still compute with NumPy on the host, so they fail on a device (expected failures,
# strict: a row that starts to pass must leave this list)
NOT_ON_DEVICE_YET: dict = {}


def device_case_params():
    """The op-spec cases as pytest params for a device run, the known host-only ones marked."""
    import pytest

    out = []
    for (s, c), i in zip(CASES, CASE_IDS):
        if s.op in HOST_ONLY_ROWS:
            continue
        marks = ([pytest.mark.xfail(strict=True, reason=NOT_ON_DEVICE_YET[s.op])]
                 if s.op in NOT_ON_DEVICE_YET else [])
        out.append(pytest.param(s, c, id=i, marks=marks))
    return out


class OnDevice:
    """The ``chainrule`` module as an op-spec row sees it, with tensors made on ``device``
    (``F.tensor(index)`` inside a row makes a device tensor, as the inputs are)."""

    def __init__(self, device):
        self._device = device

    def __getattr__(self, name):
        return getattr(cr, name)

    def tensor(self, data, dtype=None, requires_grad=False, device=None):
        return cr.tensor(data, dtype=dtype, requires_grad=requires_grad,
                         device=device or self._device)


def _host(x):
    return None if x is None else x.detach().cpu().numpy() if isinstance(x, cr.Tensor) \
        else np.asarray(x)


def run_case(s, c, device, dtype=np.float64):
    """The row's output and the gradients of its tensor inputs for one fixed upstream
    gradient, computed on ``device``; as NumPy arrays."""
    F = cr if device == "cpu" else OnDevice(device)
    xs = []
    for a, grad in s.arrays(c, dtype):
        if grad is None:
            xs.append(cr.tensor(a, device=device) if isinstance(a, np.ndarray) else a)
        else:
            xs.append(cr.tensor(a, dtype=a.dtype, requires_grad=grad, device=device))
    kw = c.kw
    if s.op != "GetItem":  # an index array for getitem may sit on the host, as in PyTorch
        kw = {k: cr.tensor(v, device=device) if isinstance(v, np.ndarray) else v
              for k, v in kw.items()}
    y = s.fn(F, *xs, **kw)
    leaves = [x for x in xs if isinstance(x, cr.Tensor) and x.requires_grad]
    grads = []
    if leaves and isinstance(y, cr.Tensor) and y.requires_grad:
        u = np.random.default_rng(0).standard_normal(tuple(y.shape)).astype(dtype)
        grads = cr.grad(y, leaves, cr.tensor(u, dtype=y.dtype, device=device),
                        allow_unused=True)
    if isinstance(y, cr.Tensor) and s.op != "ToDevice":  # (that row moves to the host)
        assert y.device == device, f"{s.op}: output on {y.device}, inputs on {device}"
    for g in grads:
        assert g is None or g.device == device, f"{s.op}: gradient on {g.device}"
    return _host(y), [_host(g) for g in grads]


def check_case_matches_cpu(s, c, device, rtol=1e-10, atol=1e-12):
    y_ref, g_ref = run_case(s, c, "cpu")
    y, gs = run_case(s, c, device)
    np.testing.assert_allclose(y, y_ref, rtol=rtol, atol=atol)
    assert len(gs) == len(g_ref)
    for g, r in zip(gs, g_ref):
        if r is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- training


def _train(make_model, make_batch, device, steps, opt="adamw", lr=1e-3):
    cr.manual_seed(0)
    model = make_model().to(device)
    if opt == "adamw":
        optim = cr.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    else:
        optim = cr.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(steps):
        x, y = make_batch(rng)
        loss = model.loss(cr.tensor(x, device=device), cr.tensor(y, device=device))
        optim.zero_grad()
        loss.backward()
        cr.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        losses.append(loss.item())
    for p in model.parameters():
        assert p.device == device and p.grad.device == device
    for state in optim.state.values():
        for v in state.values():
            if isinstance(v, cr.Tensor) and v.ndim:
                assert v.device == device, "optimizer state on another device"
    return losses, {k: _host(v) for k, v in model.state_dict().items()}


class _MLP(cr.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = cr.nn.Sequential(cr.nn.Linear(8, 32), cr.nn.GELU(), cr.nn.LayerNorm(32),
                                    cr.nn.Linear(32, 4))

    def loss(self, x, y):
        return cr.nn.functional.cross_entropy(self.net(x), y)


class _CNN(cr.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = cr.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = cr.nn.BatchNorm2d(4)
        self.c2 = cr.nn.Conv2d(4, 8, 3, stride=2)
        self.fc = cr.nn.Linear(8 * 2 * 2, 5)

    def loss(self, x, y):
        h = cr.nn.functional.max_pool2d(cr.relu(self.bn(self.c1(x))), 2)
        h = cr.relu(self.c2(h))
        return cr.nn.functional.cross_entropy(self.fc(h.flatten(1)), y)


def _gpt(dropout=0.0):
    from chainrule.models import GPT, GPTConfig

    class _GPT(GPT):
        def loss(self, x, y):
            return self(x, y)[1]

    return _GPT(GPTConfig(block_size=16, vocab_size=17, n_layer=2, n_head=2, n_embd=16,
                          dropout=dropout))


def mlp_batch(rng):
    return rng.standard_normal((16, 8)).astype(np.float32), rng.integers(0, 4, 16)


def cnn_batch(rng):
    return rng.standard_normal((4, 1, 12, 12)).astype(np.float32), rng.integers(0, 5, 4)


def gpt_batch(rng):
    x = rng.integers(0, 17, (4, 16))
    return x, np.roll(x, -1, axis=1)


MODELS = {"mlp": (_MLP, mlp_batch, "adamw"), "cnn": (_CNN, cnn_batch, "sgd"),
          "gpt": (_gpt, gpt_batch, "adamw")}


def check_training_matches_cpu(name, device, steps=4, rtol=1e-4, atol=1e-5):
    """A few optimizer steps of a small model on ``device`` and on the CPU: the same losses
    and parameters within float32 tolerance."""
    make_model, make_batch, opt = MODELS[name]
    ref_losses, ref_state = _train(make_model, make_batch, "cpu", steps, opt)
    losses, state = _train(make_model, make_batch, device, steps, opt)
    np.testing.assert_allclose(losses, ref_losses, rtol=rtol, atol=atol)
    assert state.keys() == ref_state.keys()
    for k in state:
        np.testing.assert_allclose(state[k], ref_state[k], rtol=rtol * 10, atol=atol * 10,
                                   err_msg=k)
    return losses
