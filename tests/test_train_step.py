"""The trainer's step seam: Trainer.train_step against hand-computed references, the
reduce_gradients hook, gradient accumulation, the is_main guard on every output, and the three
random streams (init, data, dropout) with their checkpoints."""

import json
import math
import os

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim
from chainrule.data import default_corpus_text
from chainrule.finetune.trainer import FinetuneTrainer
from chainrule.random import Generator
from chainrule.train import RunError, TrainConfig, loop, make_config, read_metrics, train
from chainrule.train.loop import StopTraining, Trainer

TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=12,
            eval_interval=6, eval_iters=2, log_interval=1, sample_tokens=20, warmup_iters=3,
            dropout=0.1, diagnose_interval=0, progress=False, checkpoint_interval=5)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("text") / "text.txt"
    p.write_text(default_corpus_text()[:20000], encoding="utf-8")
    return str(p)


def _cfg(tmp_path, text_file, name, **kw):
    return make_config(None, dict(TINY, data=text_file, out_dir=str(tmp_path), name=name, **kw))


def _losses(run_dir):
    recs = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    return ([(r["step"], r["loss"]) for r in recs if "loss" in r],
            [(r["step"], r["train_loss"], r["val_loss"]) for r in recs if "val_loss" in r])


def _crash_at(n):
    def on_step(step, loss):
        if step == n:
            raise StopTraining

    return on_step


# ----------------------------------------------------------------------------- train_step


class LeastSquares(nn.Module):
    """loss = mean((x W - y)^2): gradient 2/N x^T (x W - y), easy to write out by hand."""

    def __init__(self, w):
        super().__init__()
        self.weight = nn.Parameter(cr.tensor(w))

    def forward(self, x, y):
        r = x @ self.weight - y
        return r, (r * r).mean()


def _least_squares_trainer(cls=Trainer, grad_clip=0.0, lr=0.1, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, 2))
    model = LeastSquares(w)
    opt = optim.SGD(model.parameters(), lr=lr)
    cfg = TrainConfig(grad_clip=grad_clip)
    return cls(cfg, None, None, None, model, opt), w, rng


def _reference(w, x, y):
    r = x @ w - y
    return float(np.mean(r * r)), 2.0 * x.T @ r / r.size


def test_train_step_returns_the_loss_and_pre_clip_norm_and_updates_by_the_clipped_gradient():
    t, w, rng = _least_squares_trainer(grad_clip=0.5, lr=0.1)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    ref_loss, g = _reference(w, x, y)
    norm = float(np.sqrt((g * g).sum()))
    assert norm > 0.5  # the clip is active
    loss, grad_norm = t.train_step((x, y))
    assert isinstance(loss, float) and isinstance(grad_norm, float)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert grad_norm == pytest.approx(norm, rel=1e-12)
    np.testing.assert_allclose(t.model.weight._data, w - 0.1 * g * 0.5 / (norm + 1e-6),
                               rtol=1e-12)
    assert t.model.weight.grad is None and t.step == 1  # zero_grad(set_to_none=True)


def test_train_step_over_micro_batches_averages_their_losses_and_gradients():
    t, w, rng = _least_squares_trainer(lr=0.1)
    x1, y1 = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    x2, y2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    (l1, g1), (l2, g2) = _reference(w, x1, y1), _reference(w, x2, y2)
    loss, norm = t.train_step([(x1, y1), (x2, y2)])
    g = (g1 + g2) / 2
    assert loss == pytest.approx((l1 + l2) / 2, rel=1e-12)
    assert norm == pytest.approx(float(np.sqrt((g * g).sum())), rel=1e-12)
    np.testing.assert_allclose(t.model.weight._data, w - 0.1 * g, rtol=1e-12)
    with pytest.raises(ValueError, match="train_step: the batch holds no micro-batch"):
        t.train_step([])


class Recording(Trainer):
    """Scales the gradients by 1/2 in the hook (as an average over two processes holding the
    same gradients would) and records what it saw."""

    seen = None

    def reduce_gradients(self):
        p = self.model.weight
        self.seen = {"grad": p.grad._data.copy(), "weight": p._data.copy(),
                     "optimizer_state": len(self.optimizer.state)}
        p.grad._data *= 0.5


def test_reduce_gradients_runs_after_backward_and_before_clipping_and_the_update():
    t, w, rng = _least_squares_trainer(Recording, grad_clip=0.2, lr=0.1)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    _, g = _reference(w, x, y)
    norm = float(np.sqrt((g * g).sum()))
    assert norm / 2 > 0.2
    _, grad_norm = t.train_step((x, y))
    np.testing.assert_allclose(t.seen["grad"], g, rtol=1e-12)  # the whole, unclipped gradient
    np.testing.assert_array_equal(t.seen["weight"], w)  # before the step
    assert grad_norm == pytest.approx(norm / 2, rel=1e-12)  # clipping saw the reduced grads
    half = g / 2
    np.testing.assert_allclose(t.model.weight._data, w - 0.1 * half * 0.2 / (norm / 2 + 1e-6),
                               rtol=1e-12)


class Capturing(Trainer):
    grads = None

    def reduce_gradients(self):
        self.grads = {n: p.grad._data.copy() for n, p in self.model.named_parameters()}


def test_two_micro_batches_of_B_equal_one_batch_of_2B_for_a_float64_gpt():
    from chainrule.models.gpt import GPT, GPTConfig

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 11, (6, 9))
    x, y = ids[:, :-1], ids[:, 1:]
    results = []
    for batch in ([(x, y)], [(x[:3], y[:3]), (x[3:], y[3:])]):
        cr.manual_seed(1)
        model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8))
        model.double()
        opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.99))
        t = Capturing(TrainConfig(grad_clip=1.0), None, None, None, model, opt)
        loss, norm = t.train_step(batch)
        results.append((loss, norm, t.grads, {n: p._data.copy()
                                                for n, p in model.named_parameters()}))
    (l1, n1, g1, p1), (l2, n2, g2, p2) = results
    assert l1 == pytest.approx(l2, rel=1e-13) and n1 == pytest.approx(n2, rel=1e-12)
    for name in g1:
        np.testing.assert_allclose(g2[name], g1[name], rtol=1e-10, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(p2[name], p1[name], rtol=1e-10, atol=1e-14, err_msg=name)


def test_finetune_trainer_inherits_the_step():
    for name in ("train_step", "reduce_gradients", "get_batch", "fit", "is_main"):
        assert getattr(FinetuneTrainer, name) is getattr(Trainer, name), name


# ----------------------------------------------------------------------------- grad_accum


def test_grad_accum_draws_that_many_micro_batches_and_is_validated(tmp_path, text_file):
    cfg = _cfg(tmp_path, text_file, "acc", grad_accum=3)
    t = loop._new_trainer(cfg)
    batch = t.get_batch()
    assert len(batch) == 3 and all(x.shape == y.shape == (4, 16) for x, y in batch)
    assert cfg.tokens_per_step() == 3 * 4 * 16
    assert cfg.describe_step() == "192 tokens per step (grad_accum 3 x batch_size 4 x " \
                                  "block_size 16)"
    with pytest.raises(Exception, match="grad_accum must be a positive integer, got 0"):
        make_config(None, {"grad_accum": 0})


def test_train_command_takes_grad_accum_and_says_the_tokens_per_step(tmp_path, text_file,
                                                                     capsys):
    from chainrule import cli

    argv = ["train", f"--data={text_file}", f"--out_dir={tmp_path}", "--name=cli",
            "--grad_accum=2", "--max_iters=2", "--eval_interval=2", "--sample_tokens=0"]
    argv += [f"--{k}={v}" for k, v in TINY.items() if k not in ("max_iters", "eval_interval",
                                                                 "sample_tokens")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "128 tokens per step (grad_accum 2 x batch_size 4 x block_size 16)" in out
    rows = [r for r in read_metrics(str(tmp_path / "cli" / "metrics.jsonl")) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]


def test_finetune_command_passes_grad_accum():
    import argparse

    from chainrule.finetune.cli import _spec_and_config, configure_parser

    p = argparse.ArgumentParser()
    configure_parser(p)
    _, cfg = _spec_and_config(p.parse_args(["--model", "m", "--grad-accum", "4"]))
    assert cfg.grad_accum == 4


def test_a_resumed_run_with_grad_accum_reproduces_the_uninterrupted_losses(tmp_path, text_file):
    full = train(_cfg(tmp_path, text_file, "full", grad_accum=2))
    train(_cfg(tmp_path, text_file, "crashed", grad_accum=2), on_step=_crash_at(8))
    crashed = os.path.join(tmp_path, "crashed")
    assert max(s for s, _ in _losses(crashed)[0]) == 8
    resumed = train(resume=crashed)
    assert resumed.step == 12
    steps, evals = _losses(crashed)
    assert [s for s, _ in steps] == list(range(1, 13))
    assert (steps, evals) == _losses(full.run_dir)  # bit-identical, dropout included
    assert resumed.sample == full.sample


# ----------------------------------------------------------------------------- is_main


class NotMain(Trainer):
    is_main = property(lambda self: False)


def _files(folder):
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            out[os.path.relpath(p, folder)] = (os.path.getsize(p), os.path.getmtime(p))
    return out


def test_a_trainer_that_is_not_main_writes_nothing_and_shows_no_progress_bar(tmp_path, text_file,
                                                                            capfd):
    pytest.importorskip("tqdm")
    cfg = _cfg(tmp_path, text_file, "worker", progress=True, diagnose_interval=2, max_iters=6,
               eval_interval=3, checkpoint_interval=2)
    t = loop._new_trainer(cfg)
    worker = NotMain(t.cfg, t.run, t.tokenizer, t.data, t.model, t.optimizer,
                     fingerprint=t.fingerprint, generators=t.generators)
    before = _files(t.run.path)
    weights = {n: p._data.copy() for n, p in t.model.named_parameters()}
    capfd.readouterr()
    result = worker.fit()
    out, err = capfd.readouterr()
    assert result.step == 6 and not result.interrupted
    assert result.sample == "" and result.val_loss is None
    assert _files(t.run.path) == before  # no metrics, checkpoint, samples, report, doctor
    assert out == "" and err == ""  # no progress bar, no messages
    assert any((p._data != weights[n]).any() for n, p in t.model.named_parameters())  # trained


def test_the_main_trainer_shows_the_progress_bar(tmp_path, text_file, capfd):
    pytest.importorskip("tqdm")
    train(_cfg(tmp_path, text_file, "main", progress=True, max_iters=2, eval_interval=2,
               sample_tokens=0))
    assert "2/2" in capfd.readouterr().err


# ----------------------------------------------------------------------------- streams


def test_three_independent_streams_derive_from_the_seed():
    seeds = loop.stream_seeds(1337)
    assert seeds["init"] == 1337 and len(set(seeds.values())) == 3
    assert seeds == loop.stream_seeds(1337) and seeds != loop.stream_seeds(1338)
    gens = loop.make_streams(1337)
    assert {k: g.initial_seed() for k, g in gens.items()} == seeds


TINY_SEED = TrainConfig().seed


def _drawn_batches(tmp_path, text_file, name, **kw):
    t = loop._new_trainer(_cfg(tmp_path, text_file, name, max_iters=4, eval_interval=4,
                               sample_tokens=0, **kw))
    init = {n: p._data.copy() for n, p in t.model.named_parameters()}
    drawn, get_batch = [], t.get_batch
    t.get_batch = lambda: drawn.append(get_batch()) or drawn[-1]
    t.fit()
    return t, drawn, init


def test_dropout_does_not_change_the_batches_and_init_is_the_seeds_model(tmp_path, text_file):
    from chainrule.models.gpt import GPT, GPTConfig

    plain, b0, init0 = _drawn_batches(tmp_path, text_file, "p0", dropout=0.0)
    dropped, b1, init1 = _drawn_batches(tmp_path, text_file, "p3", dropout=0.3)
    assert len(b0) == len(b1) == 4
    for m0, m1 in zip(b0, b1, strict=True):
        for (x0, y0), (x1, y1) in zip(m0, m1, strict=True):
            np.testing.assert_array_equal(x0, x1)
            np.testing.assert_array_equal(y0, y1)
    data_rng = Generator().manual_seed(loop.stream_seeds(TINY_SEED)["data"])
    for m in b0:  # the batches come from the data stream alone
        x, y = plain.data.batch("train", 4, 16, data_rng)
        np.testing.assert_array_equal(m[0][0], x)
        np.testing.assert_array_equal(m[0][1], y)
    dropout_seed = loop.stream_seeds(TINY_SEED)["dropout"]
    assert dropped.generators["dropout"].get_state() != \
        Generator().manual_seed(dropout_seed).get_state()  # the masks came from it
    assert _losses(plain.run.path)[0] != _losses(dropped.run.path)[0]
    cr.manual_seed(TINY_SEED)  # the initial weights: the model the run's seed gives
    ref = GPT(GPTConfig(vocab_size=plain.tokenizer.vocab_size, **plain.cfg.model_kwargs()))
    for n, p in ref.named_parameters():
        np.testing.assert_array_equal(init0[n], p._data, err_msg=n)
        np.testing.assert_array_equal(init1[n], p._data, err_msg=n)


def test_a_checkpoint_holds_the_three_streams_and_resume_restores_them(tmp_path, text_file):
    train(_cfg(tmp_path, text_file, "s", max_iters=5, eval_interval=5))
    run = os.path.join(tmp_path, "s")
    ckpt = cr.load(os.path.join(run, "checkpoint.safetensors"))
    assert ckpt["format"] == loop.CHECKPOINT_FORMAT == 2
    assert set(ckpt["rng"]) == {"init", "data", "dropout"}
    assert all(isinstance(s, dict) for s in ckpt["rng"].values())
    assert len({json.dumps(s, sort_keys=True) for s in ckpt["rng"].values()}) == 3
    t = loop._resume_trainer(run, {})
    assert t.rng_state() == ckpt["rng"]
    assert len({id(g) for g in t.generators.values()}) == 3


def _single_stream(seed):
    g = Generator().manual_seed(seed)
    return {name: g for name in loop.STREAMS}


def test_a_format_1_checkpoint_resumes_with_its_single_generator_exactly(tmp_path, text_file):
    # A format-1 run drew init, batches and dropout from one generator seeded with the seed:
    # a trainer whose three streams are one generator runs exactly as such a run did.
    full = loop._new_trainer(_cfg(tmp_path, text_file, "one"), _single_stream(TINY_SEED)).fit()
    old = loop._new_trainer(_cfg(tmp_path, text_file, "old"), _single_stream(TINY_SEED))
    old.fit(on_step=_crash_at(8))
    path = os.path.join(old.run.path, "checkpoint.safetensors")
    ckpt = cr.load(path)
    assert ckpt["rng"]["data"] == ckpt["rng"]["dropout"] == "init"  # stored once, named twice
    ckpt["format"], ckpt["rng"] = 1, ckpt["rng"]["init"]  # the layout of format 1
    cr.save(ckpt, path)
    resumed = train(resume=old.run.path)
    assert resumed.step == 12
    assert _losses(old.run.path) == _losses(full.run_dir)
    after = cr.load(path)
    assert after["format"] == 2 and after["rng"]["dropout"] == "init"


def test_an_unreadable_or_newer_checkpoint_is_a_clear_error(tmp_path, text_file):
    train(_cfg(tmp_path, text_file, "bad", max_iters=2, eval_interval=2, sample_tokens=0))
    path = os.path.join(tmp_path, "bad", "checkpoint.safetensors")
    ckpt = cr.load(path)
    cr.save(dict(ckpt, format=3), path)
    with pytest.raises(RunError, match="checkpoint has format 3, newer than this version"):
        train(resume=os.path.join(tmp_path, "bad"))
    cr.save(dict(ckpt, rng={"init": ckpt["rng"]["init"]}), path)
    with pytest.raises(RunError, match="random-generator state cannot be read.*init, data, "
                                       "dropout"):
        train(resume=os.path.join(tmp_path, "bad"))


def test_a_killed_finetune_run_with_grad_accum_resumes_exactly(tmp_path):
    pytest.importorskip("tokenizers")
    from chainrule.finetune.trainer import FinetuneSpec, finetune, resume
    from test_finetune import write_tiny_hf

    write_tiny_hf(tmp_path / "base")
    data = tmp_path / "d.txt"
    data.write_text("the cat sat on the mat; " * 200, encoding="utf-8")

    def cfg(name):
        return TrainConfig(data=str(data), block_size=16, batch_size=2, grad_accum=2,
                           max_iters=6, learning_rate=1e-2, warmup_iters=1, eval_interval=3,
                           eval_iters=1, log_interval=1, checkpoint_interval=3,
                           sample_tokens=0, diagnose_interval=0, out_dir=str(tmp_path),
                           name=name, progress=False)

    spec = FinetuneSpec(model=str(tmp_path / "base"), method="lora", lora_rank=2)
    finetune(spec, cfg("whole"))
    finetune(FinetuneSpec(**vars(spec)), cfg("killed"), on_step=_crash_at(5))
    ckpt = cr.load(str(tmp_path / "killed" / "checkpoint.safetensors"))
    assert ckpt["format"] == 2 and set(ckpt["rng"]) == {"init", "data", "dropout"}
    resume(tmp_path / "killed")

    def losses(name):
        rows = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["loss"]) for r in map(json.loads, rows) if "loss" in r]

    assert losses("killed") == losses("whole") and len(losses("whole")) == 6
    assert all(math.isfinite(v) for _, v in losses("whole"))
