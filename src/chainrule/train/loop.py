"""The training loop: a GPT on text, with evaluation, checkpoints, samples and a report.

One step is the textbook one::

    lr = get_lr(step)                       # linear warmup, then cosine decay to min_lr
    x, y = data.batch("train", B, T)        # random windows; y is x shifted by one token
    logits, loss = model(x, y)
    loss.backward()
    clip_grad_norm_(params, grad_clip)
    optimizer.step(); optimizer.zero_grad()

A checkpoint holds everything the next step depends on (model, optimizer, step, the global
random generator that draws batches and dropout masks), so ``--resume`` continues with the very
losses an uninterrupted run would have had, also after the process was killed: checkpoints are
written atomically, and the metrics logged after the last checkpoint are dropped on resume.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import tomllib
from dataclasses import dataclass

import numpy as np

import chainrule as cr

from ..data import TokenData, resolve_source, tokenizer_from_dict, train_tokenizer
from ..data.tokenizers import save_tokenizer
from .config import RESUMABLE_KEYS, ConfigError, TrainConfig, config_from_dict, to_toml
from .memory import retain_freed_memory
from .report import write_report
from .run import MetricsLog, RunDir, RunError, read_metrics, truncate_metrics

CHECKPOINT_FORMAT = 1
REPORT_EVERY_S = 30.0  # during training, refresh the report at an evaluation at most this often


def get_lr(step: int, cfg: TrainConfig) -> float:
    """Learning rate for the update that follows ``step`` completed updates:
    lr (step+1)/(warmup+1) during warmup, then min_lr + (lr - min_lr)(1 + cos(pi r))/2 with
    r = (step - warmup) / (decay_iters - warmup), and min_lr after decay_iters."""
    decay = cfg.lr_decay_iters or cfg.max_iters
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_iters + 1)
    if step >= decay:
        return cfg.min_lr
    r = (step - cfg.warmup_iters) / max(decay - cfg.warmup_iters, 1)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * r)) * (cfg.learning_rate - cfg.min_lr)


@dataclass
class TrainResult:
    run_dir: str
    step: int
    interrupted: bool = False
    val_loss: float | None = None
    sample: str = ""


class StopTraining(Exception):
    """Raise from an ``on_step`` callback to end a run at once, as a crash would (no final
    checkpoint, report or sample)."""


def _say(msg: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stdout)
    except ImportError:
        print(msg, flush=True)


# ----------------------------------------------------------------------------- setup


def new_run(cfg: TrainConfig) -> RunDir:
    """Create the run folder ``out_dir/name`` (a timestamp when name is empty)."""
    name = cfg.name or time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(os.path.expanduser(cfg.out_dir), name)
    if os.path.isdir(path) and os.listdir(path):
        raise RunError(f"run folder {path!r} already exists and is not empty; continue it with "
                       f"'chainrule train --resume {path}' or choose another --name")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create run folder {path!r}: {e.strerror}") from None
    return RunDir(path)


def _model_and_optimizer(cfg: TrainConfig, vocab_size: int):
    from ..models.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=vocab_size, **cfg.model_kwargs()))
    opt = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2))
    return model, opt


def _load_checkpoint(run: RunDir) -> dict:
    if not run.has_checkpoint():
        raise RunError(f"--resume: {run.path!r} holds no checkpoint (is it a run folder?)")
    try:
        return cr.load(run.checkpoint)
    except (OSError, ValueError) as e:
        raise RunError(f"--resume: cannot read the checkpoint in {run.path!r}: {e}") from None


def resume_config(run_path: str, explicit: dict) -> TrainConfig:
    """The run's saved config with the explicitly given values applied; a change to anything
    but logging and stopping keys is a RunError listing each difference."""
    run = RunDir(run_path)
    if not os.path.isfile(run.config):
        raise RunError(f"--resume: {run_path!r} is not a run folder (no config.toml)")
    try:
        with open(run.config, "rb") as f:
            saved = config_from_dict(tomllib.load(f), run.config)
    except tomllib.TOMLDecodeError as e:
        raise RunError(f"--resume: {run.config!r} is not valid TOML: {e}") from None
    if explicit.get("data"):
        explicit = dict(explicit, data=resolve_source(explicit["data"]).name)
    diffs = []
    for k, v in explicit.items():
        if k not in RESUMABLE_KEYS and getattr(saved, k) != v:
            diffs.append(f"{k}: the run has {getattr(saved, k)!r}, now {v!r}")
    if diffs:
        raise RunError(
            f"--resume {run_path}: the configuration does not match the run's:\n  "
            + "\n  ".join(diffs)
            + "\nOnly these keys may change on resume: " + ", ".join(sorted(RESUMABLE_KEYS))
        )
    for k, v in explicit.items():
        setattr(saved, k, v)
    return saved.validate()


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """Holds a run's state; :meth:`fit` runs the loop. Built by :func:`train`."""

    def __init__(self, cfg, run, tokenizer, data, model, optimizer, step=0, elapsed=0.0,
                 fingerprint=""):
        self.cfg, self.run, self.tokenizer, self.data = cfg, run, tokenizer, data
        self.model, self.optimizer = model, optimizer
        self.step, self.elapsed, self.fingerprint = step, elapsed, fingerprint
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.last_val: float | None = None
        self.watcher = None
        self._watch_failed = False
        self._last_report = time.perf_counter()

    # -- pieces --------------------------------------------------------------------------
    @cr.no_grad()
    def evaluate(self) -> dict:
        """Mean loss over ``eval_iters`` batches of each split, the same batches every time
        (a generator of its own, so evaluating does not change the training batches)."""
        cfg = self.cfg
        self.model.eval()
        rng = np.random.default_rng(cfg.seed + 1)
        out = {}
        for split in ("train", "val"):
            losses = []
            for _ in range(cfg.eval_iters):
                x, y = self.data.batch(split, cfg.batch_size, cfg.block_size, rng)
                losses.append(self.model(cr.tensor(x), cr.tensor(y))[1].item())
            out[split] = float(np.mean(losses))
        self.model.train()
        return out

    def sample(self, n_tokens: int, seed_offset: int = 0) -> str:
        cfg = self.cfg
        prompt = cfg.sample_prompt
        if prompt:
            ids = self.tokenizer.encode(prompt)
        else:
            try:
                ids = self.tokenizer.encode("\n")
            except ValueError:
                ids = [int(self.data.splits["val"][0])]
        rng = np.random.default_rng(cfg.seed + 2 + seed_offset)
        out = self.model.generate(cr.tensor(np.array([ids], dtype=np.int64)), n_tokens,
                                  temperature=cfg.temperature, top_k=cfg.top_k or None,
                                  generator=rng)
        return self.tokenizer.decode(out.numpy()[0])

    def checkpoint(self) -> None:
        cr.save({
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": "warmup_cosine", "step": self.step},
            "step": self.step,
            "rng": cr.get_rng_state(),
            "config": self.cfg.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "data_fingerprint": self.fingerprint,
            "elapsed": self.elapsed,
            "val_loss": self.last_val,
        }, self.run.checkpoint)

    def _watch(self, method, *args, **kwargs):
        """Call the training doctor, guarded: a failure there never stops training."""
        if self.watcher is None or self._watch_failed:
            return None
        try:
            return getattr(self.watcher, method)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - diagnostics must not kill a run
            self._watch_failed = True
            _say(f"warning: the training doctor failed ({type(e).__name__}: {e}); "
                 "training continues without it")
            return None

    def _start_watcher(self):
        if self.cfg.diagnose_interval <= 0:
            return
        try:
            from .. import diagnostics

            watch = diagnostics.watch
        except (ImportError, AttributeError):
            return
        try:
            self.watcher = watch(self.model, self.optimizer, interval=self.cfg.diagnose_interval)
        except Exception as e:  # noqa: BLE001
            _say(f"warning: the training doctor could not start ({type(e).__name__}: {e})")

    def _eval_and_save(self, metrics: MetricsLog, save: bool) -> None:
        ev = self.evaluate()
        self.last_val = ev["val"]
        metrics.write({"step": self.step, "train_loss": ev["train"], "val_loss": ev["val"],
                       "time": round(self.elapsed, 3)})
        _say(f"step {self.step}: train loss {ev['train']:.4f}, val loss {ev['val']:.4f}")
        if self.cfg.sample_tokens:
            text = self.sample(min(self.cfg.sample_tokens, 200), seed_offset=self.step)
            with open(self.run.samples, "a", encoding="utf-8") as f:
                f.write(f"=== step {self.step} (val loss {ev['val']:.4f}) ===\n{text}\n\n")
        if save:
            self.checkpoint()
        if time.perf_counter() - self._last_report > REPORT_EVERY_S:
            self._watch("save", self.run.path)
            self.write_report()

    def write_report(self, sample: str = "") -> None:
        self._last_report = time.perf_counter()
        cfg = self.cfg
        findings = self._watch("findings") if self.watcher is not None else None
        evals = [r for r in read_metrics(self.run.metrics) if "val_loss" in r]
        summary = {
            "data": cfg.data or "embedded corpus (pydoc_data.topics)",
            "tokenizer": f"{cfg.tokenizer} ({self.tokenizer.vocab_size} tokens)",
            "tokens (train / val)": f"{len(self.data.splits['train']):,} / "
                                    f"{len(self.data.splits['val']):,}",
            "model": f"GPT n_layer={cfg.n_layer} n_head={cfg.n_head} n_embd={cfg.n_embd} "
                     f"block_size={cfg.block_size}",
            "parameters": f"{self.model.num_params(non_embedding=False):,}",
            "steps": f"{self.step} / {cfg.max_iters}",
            "batch": f"{cfg.batch_size} x {cfg.block_size} tokens",
            "training time (s)": f"{self.elapsed:.1f}",
        }
        if evals:
            summary["first val loss"] = f"{evals[0]['val_loss']:.4f} (step {evals[0]['step']})"
            summary["last val loss"] = f"{evals[-1]['val_loss']:.4f} (step {evals[-1]['step']})"
        sample = sample or self.run.last_sample()
        if findings is None:
            findings = [] if self.watcher is not None else None
        write_report(self.run, summary, sample, findings)

    # -- the loop ------------------------------------------------------------------------
    def fit(self, on_step=None) -> TrainResult:
        """Train until ``max_iters``; Ctrl-C stops after the current step with a checkpoint.
        ``on_step(step, loss)`` runs after each update (raise :class:`StopTraining` to end the
        run at once, as a crash would)."""
        from ..nn.utils import clip_grad_norm_

        cfg, model, opt = self.cfg, self.model, self.optimizer
        run = self.run
        metrics = MetricsLog(run.metrics, run.tensorboard_dir)
        self._start_watcher()
        stop = {"requested": False}
        old_handler = None
        if threading.current_thread() is threading.main_thread():
            def on_sigint(signum, frame):
                if stop["requested"]:  # a second Ctrl-C: stop now
                    raise KeyboardInterrupt
                stop["requested"] = True
                _say("Ctrl-C: stopping after this step and saving a checkpoint "
                     "(press again to stop at once)")
            old_handler = signal.signal(signal.SIGINT, on_sigint)
        bar = self._progress_bar()
        tokens_per_step = cfg.batch_size * cfg.block_size
        tps = None
        interrupted = crashed = False
        try:
            if self.step == 0 and not read_metrics(run.metrics):
                self._eval_and_save(metrics, save=True)
            while self.step < cfg.max_iters:
                rng_before = cr.get_rng_state()
                phase = "before"  # where a KeyboardInterrupt lands: before/during/after update
                try:
                    t0 = time.perf_counter()
                    lr = get_lr(self.step, cfg)
                    for group in opt.param_groups:
                        group["lr"] = lr
                    x, y = self.data.batch("train", cfg.batch_size, cfg.block_size)
                    _, loss = model(cr.tensor(x), cr.tensor(y))
                    loss.backward()
                    norm = clip_grad_norm_(
                        self.params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
                    phase = "during"
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    self.step += 1
                    phase = "after"
                    dt = time.perf_counter() - t0
                    self.elapsed += dt
                    loss_value = loss.item()
                    now_tps = tokens_per_step / dt
                    tps = now_tps if tps is None else 0.9 * tps + 0.1 * now_tps  # smoothed
                    if not math.isfinite(loss_value):
                        _say(f"step {self.step}: the loss is {loss_value}; stopping (lower the "
                             "learning_rate or check the data)")
                        self._watch("step", self.step, loss=loss_value)
                        self.checkpoint()
                        interrupted = True
                        break
                    self._after_step(metrics, bar, loss_value, lr, norm, tps)
                    if on_step is not None:
                        on_step(self.step, loss_value)
                    at_eval = self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters
                    at_ckpt = (bool(cfg.checkpoint_interval)
                               and self.step % cfg.checkpoint_interval == 0)
                    if at_eval:
                        self._eval_and_save(metrics, save=not cfg.checkpoint_interval or at_ckpt)
                    elif at_ckpt:
                        self.checkpoint()
                except KeyboardInterrupt:
                    if phase == "during":  # parameters half updated: keep the last checkpoint
                        _say(f"stopped during the update of step {self.step + 1}; the last "
                             "checkpoint stays as it was")
                        interrupted = True
                        break
                    if phase == "before":
                        cr.set_rng_state(rng_before)  # as if this step never started
                        opt.zero_grad(set_to_none=True)
                    stop["requested"] = True
                if stop["requested"]:
                    break
            if stop["requested"]:
                self.checkpoint()
                interrupted = True
                _say(f"interrupted at step {self.step}: checkpoint saved; continue with\n"
                     f"  chainrule train --resume {run.path}")
        except StopTraining:
            crashed = True
        finally:
            if bar is not None:
                bar.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
            metrics.close()
        if crashed:
            return TrainResult(run.path, self.step, True, self.last_val, "")
        sample = ""
        if not interrupted and cfg.sample_tokens:
            sample = self.sample(cfg.sample_tokens, seed_offset=-1)
        self._watch("save", run.path)
        self.write_report(sample)
        return TrainResult(run.path, self.step, interrupted, self.last_val, sample)

    def _after_step(self, metrics, bar, loss_value, lr, norm, tps):
        cfg = self.cfg
        self._watch("step", self.step, loss=loss_value)
        if self.step % cfg.log_interval == 0 or self.step == cfg.max_iters:
            metrics.write({"step": self.step, "loss": loss_value, "lr": lr,
                           "grad_norm": float(norm), "tokens_per_s": round(tps, 1),
                           "time": round(self.elapsed, 3)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", tok_s=f"{tps:,.0f}", refresh=False)

    def _progress_bar(self):
        if not self.cfg.progress:
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=self.cfg.max_iters, initial=self.step, unit="step", dynamic_ncols=True,
                    file=sys.stderr, smoothing=0.1)


def train(cfg: TrainConfig | None = None, resume: str | None = None, explicit: dict | None = None,
          on_step=None) -> TrainResult:
    """Train a GPT as ``cfg`` says, in a new run folder; or continue the run in folder
    ``resume`` (``explicit``: the config values given for it, which must agree with the run's
    except for logging and stopping keys)."""
    retain_freed_memory()
    if resume:
        trainer = _resume_trainer(resume, explicit or {})
    else:
        trainer = _new_trainer((cfg or TrainConfig()).validate())
    return trainer.fit(on_step)


def _new_trainer(cfg: TrainConfig) -> Trainer:
    source = resolve_source(cfg.data)  # errors about the data come before a folder is made
    if cfg.data:
        cfg.data = source.name
    if not cfg.lr_decay_iters:
        cfg.lr_decay_iters = cfg.max_iters
    run = new_run(cfg)
    cr.manual_seed(cfg.seed)
    try:
        tokenizer = train_tokenizer(cfg.tokenizer, source.chunks(), cfg.bpe_vocab_size)
        data = TokenData.build(source, tokenizer, run.data_dir, cfg.val_fraction)
        data.check_block_size(cfg.block_size)
    except Exception:
        _remove_if_fresh(run)
        raise
    save_tokenizer(tokenizer, run.tokenizer)
    with open(run.config, "w", encoding="utf-8") as f:
        f.write(to_toml(cfg))
    model, opt = _model_and_optimizer(cfg, tokenizer.vocab_size)
    fingerprint = _fingerprint(run)
    _say(f"run folder: {run.path}\nGPT with {model.num_params(False):,} parameters, "
         f"{tokenizer.vocab_size} tokens ({cfg.tokenizer}), "
         f"{len(data.splits['train']):,} training tokens")
    return Trainer(cfg, run, tokenizer, data, model, opt, fingerprint=fingerprint)


def _fingerprint(run: RunDir) -> str:
    import json

    with open(os.path.join(run.data_dir, "tokens.json")) as f:
        return json.load(f)["fingerprint"]


def _remove_if_fresh(run: RunDir) -> None:
    """Remove a run folder that failed before training started (so the name is free again)."""
    import shutil

    if not os.path.exists(run.metrics) and not run.has_checkpoint():
        shutil.rmtree(run.path, ignore_errors=True)


def _resume_trainer(path: str, explicit: dict) -> Trainer:
    cfg = resume_config(path, explicit)
    run = RunDir(path)
    ckpt = _load_checkpoint(run)
    saved_cfg = ckpt.get("config", {})
    file_cfg = {k: v for k, v in cfg.to_dict().items() if k not in RESUMABLE_KEYS}
    diffs = [k for k, v in file_cfg.items() if saved_cfg.get(k) != v]
    if diffs:
        raise RunError(f"--resume {path}: config.toml no longer matches the checkpoint's "
                       f"configuration ({', '.join(diffs)} differ); restore config.toml")
    try:
        tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    except (KeyError, ValueError) as e:
        raise RunError(f"--resume {path}: the checkpoint's tokenizer cannot be read: {e}") \
            from None
    if os.path.exists(run.tokenizer):
        import json

        with open(run.tokenizer, encoding="utf-8") as f:
            on_disk = json.load(f)
        if on_disk != ckpt["tokenizer"]:
            raise RunError(f"--resume {path}: tokenizer.json does not match the tokenizer the "
                           "checkpoint was trained with; restore it (or start a new run)")
    source = resolve_source(cfg.data)
    data = TokenData.build(source, tokenizer, run.data_dir, cfg.val_fraction)
    fingerprint = _fingerprint(run)
    if ckpt.get("data_fingerprint") and ckpt["data_fingerprint"] != fingerprint:
        raise RunError(f"--resume {path}: the training text {source.name!r} changed since the "
                       "run started, so the run cannot continue exactly; start a new run")
    data.check_block_size(cfg.block_size)
    model, opt = _model_and_optimizer(cfg, tokenizer.vocab_size)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    cr.set_rng_state(ckpt["rng"])
    step = int(ckpt["step"])
    truncate_metrics(run.metrics, step)
    _say(f"resuming {run.path} at step {step}")
    t = Trainer(cfg, run, tokenizer, data, model, opt, step=step,
                elapsed=float(ckpt.get("elapsed", 0.0)), fingerprint=fingerprint)
    t.last_val = ckpt.get("val_loss")
    with open(run.config, "w", encoding="utf-8") as f:  # the changed logging/stopping keys
        f.write(to_toml(cfg))
    return t





def load_run(run_path: str):
    """``(model, tokenizer, config)`` from a run folder's checkpoint, the model in eval mode."""
    retain_freed_memory()
    run = RunDir(run_path)
    if not os.path.isdir(run_path):
        raise RunError(f"{run_path!r} is not a folder; pass a run folder made by chainrule train")
    if not run.has_checkpoint():
        raise RunError(f"{run_path!r} holds no checkpoint; pass a run folder made by "
                       "chainrule train")
    try:
        ckpt = cr.load(run.checkpoint)
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read the checkpoint in {run_path!r}: {e}") from None
    cfg = config_from_dict(dict(ckpt["config"]), f"{run_path} checkpoint")
    tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    model, _ = _model_and_optimizer(cfg, tokenizer.vocab_size)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, tokenizer, cfg


__all__ = ["train", "load_run", "Trainer", "TrainResult", "StopTraining", "get_lr",
           "resume_config", "ConfigError"]
