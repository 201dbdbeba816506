"""``chainrule train --activation_checkpointing=True``: each GPT block recomputed in backward,
with the same losses and gradients (dropout included) as the run without it."""

import os

import numpy as np
import pytest

import chainrule as cr
from chainrule.data import default_corpus_text
from chainrule.models.gpt import GPT, GPTConfig
from chainrule.random import Generator, use_generator
from chainrule.train import make_config, parse_overrides, read_metrics, train
from chainrule.train.loop import checkpoint_blocks

TINY = dict(n_layer=2, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=6,
            eval_interval=3, eval_iters=2, log_interval=1, sample_tokens=10, warmup_iters=2,
            dropout=0.1, diagnose_interval=0, progress=False)


def _model(seed=0, dropout=0.2):
    cr.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=23, block_size=12, n_layer=3, n_head=2, n_embd=16,
                         dropout=dropout))


def _step(model, x, y, seed):
    gen = Generator().manual_seed(seed)
    with use_generator(gen):
        _, loss = model(cr.tensor(x), cr.tensor(y))
        loss.backward()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    return loss.item(), grads, gen.get_state()


def test_checkpointed_blocks_give_the_same_loss_gradients_and_random_stream():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 23, (3, 12)), rng.integers(0, 23, (3, 12))
    plain, ckpt = _model(), checkpoint_blocks(_model())
    assert list(plain.state_dict()) == list(ckpt.state_dict())
    lp, gp, sp = _step(plain, x, y, 7)
    lc, gc, sc = _step(ckpt, x, y, 7)
    assert lc == pytest.approx(lp, rel=1e-6)
    for name in gp:
        np.testing.assert_allclose(gc[name], gp[name], rtol=1e-4, atol=1e-7, err_msg=name)
    assert sc == sp  # the recomputation put the dropout stream back where it was


def test_checkpointed_blocks_run_plainly_without_gradients():
    model = checkpoint_blocks(_model(dropout=0.0)).eval()
    ref = _model(dropout=0.0).eval()
    idx = cr.tensor(np.arange(10).reshape(1, 10) % 23)
    with cr.no_grad():
        np.testing.assert_allclose(model(idx)[0].numpy(), ref(idx)[0].numpy(), rtol=1e-6)


def test_the_flag_parses_and_a_run_has_the_same_losses(tmp_path):
    assert parse_overrides(["--activation_checkpointing=True"]) == {
        "activation_checkpointing": True}
    text = tmp_path / "text.txt"
    text.write_text(default_corpus_text()[:8000], encoding="utf-8")
    losses = []
    for name, flag in (("plain", False), ("ckpt", True)):
        cfg = make_config(None, dict(TINY, data=str(text), out_dir=str(tmp_path), name=name,
                                     activation_checkpointing=flag))
        run = train(cfg)
        recs = read_metrics(os.path.join(run.run_dir, "metrics.jsonl"))
        losses.append([r["loss"] for r in recs if "loss" in r])
    assert len(losses[0]) == 6
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
