"""The training doctor on deliberately broken runs (each must be named) and healthy ones (no
finding at all), the statistics it gathers, its files, pictures, report and CLI."""

import argparse
import math
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.diagnostics import Finding, watch
from chainrule.diagnostics import cli as diag_cli
from chainrule.diagnostics.watcher import diagnose_run, load_run
from chainrule.optim import SGD, Adam

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the diverging runs overflow
        yield


def _data(n=128, d=8, seed=0):
    """A learnable regression: y = tanh(x w) + 0.1 sin(3 x_0)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal((d, 1)).astype(np.float32)
    y = np.tanh(x @ w) + 0.1 * np.sin(3 * x[:, :1])
    return cr.tensor(x), cr.tensor(y.astype(np.float32))


def _train(model, opt, steps=40, interval=5, zero_after_step=False):
    x, y = _data()
    w = watch(model, opt, interval=interval)
    for s in range(steps):
        if not zero_after_step:
            opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        if zero_after_step:
            opt.zero_grad()
        w.step(s, loss.item())
    return w


def _mlp(*sizes, act=nn.ReLU):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _kinds(findings):
    return {(f.kind, f.module) for f in findings}


# ----------------------------------------------------------------------------- broken runs


def test_deep_sigmoid_mlp_with_default_init_is_diagnosed_vanishing_at_the_early_layers():
    cr.manual_seed(0)
    model = _mlp(8, *[32] * 19, 1, act=nn.Sigmoid)  # 20 Linear layers: paths 0, 2, ..., 38
    w = _train(model, SGD(model.parameters(), lr=0.1), steps=10, interval=2)
    (f,) = [f for f in w.findings() if f.kind == "vanishing_gradient"]
    assert f.module == "0" and f.severity == "warning"
    assert f.related[:3] == ["0", "2", "4"]
    # independent check from the raw gradients: the first layer's RMS is > 1000x below the last
    rec = w.records[-1]["params"]
    assert rec["0.weight"]["rms"] < 1e-3 * rec["38.weight"]["rms"]


def test_learning_rate_of_10_is_diagnosed_exploding_and_too_high():
    cr.manual_seed(0)
    model = _mlp(8, 32, 1)
    w = _train(model, SGD(model.parameters(), lr=10.0), steps=20, interval=2)
    kinds = {f.kind for f in w.findings()}
    assert {"exploding", "lr_too_high"} <= kinds
    lr = next(f for f in w.findings() if f.kind == "lr_too_high")
    assert lr.severity == "error" and lr.step == 0
    assert "dead_relu" not in kinds  # NaN activations are not dead units


def test_layer_with_requires_grad_off_is_diagnosed_frozen_by_name():
    cr.manual_seed(0)
    model = _mlp(8, 32, 32, 1)
    model[2].requires_grad_(False)
    w = _train(model, Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2))
    (f,) = w.findings()
    assert (f.kind, f.module) == ("frozen", "2")
    assert f.related == ["2.weight", "2.bias"] and "requires_grad=False" in f.message


class _Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 32)
        self.fc2 = nn.Linear(32, 1)

    def forward(self, x):
        return self.fc2(self.fc1(x).detach().relu())


def test_layer_cut_off_by_detach_is_diagnosed_no_gradient_by_name():
    cr.manual_seed(0)
    model = _Detached()
    w = _train(model, Adam(model.parameters(), lr=1e-2))
    (f,) = w.findings()
    assert (f.kind, f.module, f.severity) == ("no_gradient", "fc1", "error")
    assert "detach" in f.suggestion


def test_parameter_left_out_of_the_optimizer_is_named():
    cr.manual_seed(0)
    model = _mlp(8, 32, 1)
    opt = Adam([model[0].weight, model[0].bias, model[2].weight], lr=1e-2)
    w = _train(model, opt)
    (f,) = w.findings()
    assert (f.kind, f.module, f.related) == ("not_in_optimizer", "2", ["2.bias"])
    assert "gets a gradient" in f.message


def test_parameters_the_optimizer_never_moves_are_named():
    cr.manual_seed(0)
    model = _mlp(8, 32, 1)
    opt = Adam([{"params": list(model[0].parameters()), "lr": 0.0},
                {"params": list(model[2].parameters())}], lr=1e-2)
    w = _train(model, opt, steps=20)
    (f,) = w.findings()
    assert (f.kind, f.module, f.related) == ("not_updated", "0", ["0.weight", "0.bias"])


def test_relu_units_killed_by_a_large_negative_bias_are_diagnosed_dead_naming_the_layer():
    cr.manual_seed(0)
    model = _mlp(8, 32, 1)
    with cr.no_grad():
        model[0].bias.fill_(-100.0)
    w = _train(model, Adam(model.parameters(), lr=1e-2))
    dead = [f for f in w.findings() if f.kind == "dead_relu"]
    assert [(f.module, f.related, f.severity) for f in dead] == [("1", ["0"], "error")]
    assert "100% of the units" in dead[0].message
    # no separate alarm for layer 0's all-zero gradient: the dead ReLU explains it
    assert not [f for f in w.findings() if f.kind == "zero_gradient"]


class _FunctionalRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 32)
        self.fc2 = nn.Linear(32, 1)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())


def test_dead_units_of_a_functional_relu_name_the_layer_it_follows():
    cr.manual_seed(0)
    model = _FunctionalRelu()
    with cr.no_grad():
        model.fc1.bias.fill_(-100.0)
    w = _train(model, Adam(model.parameters(), lr=1e-2))
    dead = [f for f in w.findings() if f.kind == "dead_relu"]
    assert [f.module for f in dead] == ["fc1"]
    assert "the relu applied to the output of 'fc1' in the model's forward" in dead[0].message
    act = w.records[0]["activations"]["fc1>relu"]
    assert act["dead_frac"] == 1.0 and act["units"] == 32


def test_tiny_learning_rate_is_diagnosed_too_low_and_stalled():
    cr.manual_seed(0)
    model = _mlp(8, 32, 1)
    w = _train(model, Adam(model.parameters(), lr=1e-8), steps=45, interval=5)
    kinds = {f.kind for f in w.findings()}
    assert {"lr_too_low", "loss_stalled"} <= kinds


def test_saturated_tanh_layer_is_diagnosed():
    cr.manual_seed(0)
    model = _mlp(8, 16, 1, act=nn.Tanh)
    with cr.no_grad():
        model[0].weight.mul_(200.0)
    w = _train(model, SGD(model.parameters(), lr=1e-3), steps=10, interval=2)
    assert ("saturated", "1") in _kinds(w.findings())


# ----------------------------------------------------------------------------- healthy runs


def test_healthy_mlp_on_a_learnable_problem_has_no_finding():
    cr.manual_seed(1)
    model = _mlp(8, 32, 32, 1)
    w = _train(model, Adam(model.parameters(), lr=1e-2), steps=80, interval=5)
    assert w.losses[-1] < 0.1 * w.losses[0]  # it did learn
    assert w.findings() == []


def test_healthy_default_gpt_has_no_finding():
    gpt = pytest.importorskip("chainrule.models.gpt")
    cr.manual_seed(0)
    model = gpt.GPT(gpt.GPTConfig())  # the baby configuration
    opt = model.configure_optimizers(0.1, 1e-3)
    text = "the quick brown fox jumps over the lazy dog. " * 100
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text])
    rng = np.random.default_rng(0)
    w = watch(model, opt, interval=4)
    for s in range(16):
        ix = rng.integers(0, len(ids) - 65, 12)
        x = cr.tensor(np.stack([ids[i:i + 64] for i in ix]))
        y = cr.tensor(np.stack([ids[i + 1:i + 65] for i in ix]))
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(s, loss.item())
    assert w.losses[-1] < w.losses[0]
    assert len(w.records) == 4  # steps 0, 4, 8, 12
    assert w.findings() == []


# ----------------------------------------------------------------------------- the statistics


def test_gathers_on_the_first_step_and_every_interval_th_after():
    cr.manual_seed(0)
    model = _mlp(8, 4, 1)
    w = _train(model, SGD(model.parameters(), lr=0.01), steps=17, interval=5)
    assert [r["step"] for r in w.records] == [0, 5, 10, 15]
    assert w.steps == list(range(17)) and len(w.losses) == 17


def test_update_ratio_and_grad_norm_match_the_sgd_step_even_when_grads_are_zeroed_after():
    cr.manual_seed(0)
    model = _mlp(8, 4, 1)
    x, y = _data()
    lr = 0.05
    opt = SGD(model.parameters(), lr=lr)
    w = watch(model, opt, interval=3)
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    g = model[0].weight.grad.numpy().copy()
    p = model[0].weight.detach().numpy().copy()
    opt.step()
    opt.zero_grad()  # before watcher.step: the wrapped optimizer step already read them
    w.step(0, loss)
    rec = w.records[0]["params"]["0.weight"]
    assert rec["norm"] == pytest.approx(np.linalg.norm(g), rel=1e-5)
    assert rec["update_ratio"] == pytest.approx(lr * np.linalg.norm(g) / np.linalg.norm(p),
                                                rel=1e-4)
    assert rec["param_norm"] == pytest.approx(np.linalg.norm(p - lr * g), rel=1e-5)


def test_gradient_norms_are_read_before_clipping():
    cr.manual_seed(0)
    model = _mlp(8, 4, 1)
    x, y = _data()
    opt = SGD(model.parameters(), lr=0.01)
    w = watch(model, opt, interval=3)
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    g = model[0].weight.grad.detach().numpy().copy()
    nn.utils.clip_grad_norm_(model.parameters(), 1e-6)
    opt.step()
    w.step(0, loss)
    assert w.records[0]["params"]["0.weight"]["norm"] == pytest.approx(np.linalg.norm(g),
                                                                       rel=1e-5)


def test_forward_passes_under_no_grad_are_not_counted_as_activations():
    cr.manual_seed(0)
    model = _mlp(8, 16, 1)
    x, y = _data()
    opt = SGD(model.parameters(), lr=0.01)
    w = watch(model, opt, interval=10)
    with cr.no_grad():
        model(x * 1000.0)  # an evaluation pass with wild inputs
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    h = model[0](x).detach().numpy()  # the training pass's pre-activations (before the update)
    opt.step()
    w.step(0, loss.item())
    relu = w.records[0]["activations"]["1"]
    assert relu["mean"] == pytest.approx(np.maximum(h, 0).mean(), rel=1e-4)


def test_close_removes_hooks_and_restores_the_optimizer_step():
    model = _mlp(8, 4, 1)
    opt = SGD(model.parameters(), lr=0.01)
    w = watch(model, opt)
    assert "step" in opt.__dict__ and model[0]._forward_hooks
    w.close()
    assert "step" not in opt.__dict__ and not model[0]._forward_hooks
    assert w._on_op not in cr.autograd.forward_observers()


def test_bad_arguments_are_named():
    model = _mlp(2, 1)
    with pytest.raises(ValueError, match="interval must be an integer >= 1, got 0"):
        watch(model, None, interval=0)
    with pytest.raises(TypeError, match="expected an nn.Module, got list"):
        watch([1], None)


# ----------------------------------------------------------------------------- files and pictures


def test_save_writes_jsonl_that_diagnoses_the_same_and_non_empty_pngs(tmp_path):
    cr.manual_seed(0)
    model = _mlp(8, 32, 1)
    opt = Adam([model[0].weight, model[0].bias, model[2].weight], lr=1e-2)
    w = _train(model, opt, steps=20)
    paths = w.save(tmp_path)
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    assert names == ["activations.png", "diagnostics.jsonl", "gradient_flow.png",
                     "update_ratio.png"]
    for name in names[:1] + names[2:]:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000
    assert [f.to_dict() for f in diagnose_run(tmp_path)] == [f.to_dict() for f in w.findings()]
    meta, records, (steps, losses) = load_run(tmp_path)
    assert steps == list(range(20)) and losses == pytest.approx(w.losses, rel=1e-5)
    assert [r["step"] for r in records] == [0, 5, 10, 15]


def test_non_finite_statistics_survive_the_file(tmp_path):
    cr.manual_seed(0)
    model = _mlp(8, 32, 1)
    w = _train(model, SGD(model.parameters(), lr=10.0), steps=8, interval=2)
    w.save(tmp_path)
    _, records, (_, losses) = load_run(tmp_path)
    assert any(math.isnan(v) or math.isinf(v) for v in losses)
    assert {f.kind for f in diagnose_run(tmp_path)} == {f.kind for f in w.findings()}


def test_report_html_lists_findings_and_inlines_pictures():
    cr.manual_seed(0)
    model = _Detached()
    w = _train(model, Adam(model.parameters(), lr=1e-2), steps=10)
    html = w.report_html()
    assert "no_gradient" in html and "<code>fc1</code>" in html
    assert html.count('src="data:image/png;base64,') == 3


def test_cli_prints_the_findings_of_a_saved_run(tmp_path, capsys):
    cr.manual_seed(0)
    model = _Detached()
    _train(model, Adam(model.parameters(), lr=1e-2), steps=10).save(tmp_path)
    parser = argparse.ArgumentParser()
    diag_cli.configure_parser(parser)
    assert diag_cli.run(parser.parse_args([str(tmp_path)])) == 0
    out = capsys.readouterr().out
    assert "no_gradient at 'fc1', step 0" in out and "fix:" in out
    assert diag_cli.run(parser.parse_args([str(tmp_path / "missing")])) == 1
    assert "no diagnostics.jsonl" in capsys.readouterr().err


def test_finding_prints_severity_kind_module_step_and_fix():
    f = Finding("frozen", "blocks.1", 7, "it never learns", "unfreeze it", "warning")
    assert str(f) == ("[warning] frozen at 'blocks.1', step 7: it never learns\n"
                      "    fix: unfreeze it")


# ----------------------------------------------------------------------------- rules on plain data

_EMPTY_META = {"params": {}, "modules": {}, "order": [], "activations": {}}


def _loss_findings(losses):
    from chainrule.diagnostics import diagnose

    return [(f.kind, f.step) for f in diagnose(_EMPTY_META, [], (list(range(len(losses))),
                                                                  losses))]


def test_loss_rules_spike_rise_divergence_and_quiet_decrease():
    rng = np.random.default_rng(0)
    decreasing = list(2.0 * np.exp(-np.arange(60) / 20) + 0.05 * rng.random(60))
    assert _loss_findings(decreasing) == []
    assert _loss_findings([1.0] * 10 + [5.0] + [0.9] * 5) == [("loss_spike", 10)]
    rising = [1.0, 1.1, 1.0] + list(np.linspace(1.2, 3.0, 12))
    assert ("loss_rising", 12) in _loss_findings(rising)
    assert _loss_findings([1.0, 0.9, float("nan"), float("nan")]) == [("exploding", 2)]
    assert ("loss_stalled", 45) in _loss_findings([1.0 + 0.01 * np.sin(i) for i in range(50)])
