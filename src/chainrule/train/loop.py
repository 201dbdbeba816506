"""The training loop: a GPT on text, with evaluation, checkpoints, samples and a report.

One step (:meth:`Trainer.train_step`) is the textbook one, with gradient accumulation::

    lr = get_lr(step)                       # linear warmup, then cosine decay to min_lr
    for x, y in micro_batches:              # grad_accum random windows of batch_size each
        logits, loss = model(x, y)          # y is x shifted by one token
        (loss / grad_accum).backward()      # the gradients add up to their mean
    reduce_gradients()                      # across processes (nothing on one process)
    clip_grad_norm_(params, grad_clip)
    optimizer.step(); optimizer.zero_grad()

Three random streams, each a :class:`~chainrule.random.Generator` derived from the run's seed,
keep the parts of a run from disturbing each other: ``init`` draws the initial weights,
``data`` the training windows and ``dropout`` the dropout masks (so changing the dropout does
not change which batches are drawn). Only the main process (:attr:`Trainer.is_main`) writes
anything: checkpoints, metrics, samples, the report, the progress bar.

A checkpoint holds everything the next step depends on (model, optimizer, step, the three
streams), so ``--resume`` continues with the very losses an uninterrupted run would have had,
also after the process was killed: checkpoints are written atomically, and the metrics logged
after the last checkpoint are dropped on resume.
"""

from __future__ import annotations

import functools
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
from ..nn.utils import clip_grad_norm_
from ..random import Generator, use_generator
from .config import RESUMABLE_KEYS, ConfigError, TrainConfig, config_from_dict, to_toml
from .memory import retain_freed_memory
from .report import write_report
from .run import (
    MetricsLog,
    RunDir,
    RunError,
    append_text,
    check_model_state,
    open_run_folder,
    read_metrics,
    require_entries,
    truncate_metrics,
    write_text,
)

CHECKPOINT_FORMAT = 2  # 2: one state per random stream; 1: the state of a single generator
STREAMS = ("init", "data", "dropout")
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
    return open_run_folder(os.path.join(os.path.expanduser(cfg.out_dir), name))


def _model_and_optimizer(cfg: TrainConfig, vocab_size: int, device=None):
    from ..models.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=vocab_size, **cfg.model_kwargs()))
    model.to(device or cfg.device)  # initialized on the host (same weights on every device)
    if cfg.activation_checkpointing:
        checkpoint_blocks(model)
    opt = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2))
    return model, opt


def checkpoint_blocks(model):
    """Run each transformer block of ``model.h`` under activation checkpointing
    (:func:`chainrule.utils.checkpoint.checkpoint`): a block keeps only its input during the
    forward pass and runs again in backward, with the random state restored so that dropout
    repeats its masks. The same losses and gradients, less memory, one more forward a block.
    Parameter names and the state dict are unchanged (the blocks' ``forward`` is wrapped, not
    the blocks)."""
    from ..utils.checkpoint import checkpoint

    for block in model.h:
        plain = block.forward

        def forward(*args, _plain=plain, **kwargs):
            return checkpoint(_plain, *args, **kwargs)

        block.forward = forward
    return model


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
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
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


# ----------------------------------------------------------------------------- random streams


def stream_seeds(seed: int) -> dict[str, int]:
    """The seeds of a run's three random streams. ``init`` is the run seed itself, so a model
    starts as it would after ``manual_seed(seed)``; ``data`` (the training windows) and
    ``dropout`` are 64-bit seeds of the children of NumPy's ``SeedSequence(seed)``, streams
    independent of it and of each other."""
    data, dropout = (int(child.generate_state(1, np.uint64)[0])
                     for child in np.random.SeedSequence(seed).spawn(2))
    return {"init": int(seed), "data": data, "dropout": dropout}


def make_streams(seed: int) -> dict[str, Generator]:
    """``{'init', 'data', 'dropout'}``: a new :class:`~chainrule.random.Generator` for each."""
    return {name: Generator().manual_seed(s) for name, s in stream_seeds(seed).items()}


def streams_state(generators: dict) -> dict:
    """Each stream's generator state, for a checkpoint. A stream that shares the generator of
    a stream before it is stored as that stream's name (a run resumed from a single-state
    checkpoint keeps drawing everything from one generator)."""
    out, first = {}, {}
    for name, g in generators.items():
        if id(g) in first:
            out[name] = first[id(g)]
        else:
            first[id(g)] = name
            out[name] = g.get_state()
    return out


def streams_from_checkpoint(saved, seed: int, where: str) -> dict[str, Generator]:
    """The generators a checkpoint's ``rng`` entry describes: one state per stream, or one
    state of a single generator (checkpoints of format 1, where one generator drew the
    initialisation, the batches and the dropout masks: it goes on drawing all three, so such
    a run continues exactly as it would have)."""
    seeds = stream_seeds(seed)
    try:
        if isinstance(saved, dict) and "bit_generator" in saved:  # format 1: a single state
            g = Generator().manual_seed(seed).set_state(saved)
            return {name: g for name in STREAMS}
        gens = {}
        for name in STREAMS:
            s = saved[name]
            gens[name] = (gens[s] if isinstance(s, str)
                          else Generator().manual_seed(seeds[name]).set_state(s))
        return gens
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{where}: the checkpoint's random-generator state cannot be read "
                       f"({type(e).__name__}: {e}); expected a state for each of "
                       f"{', '.join(STREAMS)}") from None


def check_format(ckpt: dict, newest: int, where: str) -> None:
    """RunError unless the checkpoint's ``format`` is one this code reads (1 to ``newest``)."""
    fmt = ckpt.get("format", 1)
    if not isinstance(fmt, int) or fmt > newest:
        raise RunError(f"{where}: the checkpoint has format {fmt!r}, newer than this version "
                       f"of chainrule reads (formats 1 to {newest}); upgrade chainrule")


# ----------------------------------------------------------------------------- the trainer


def main_process_only(method):
    """Run the decorated trainer method only where ``self.is_main``; elsewhere it does nothing
    and returns None. Every output of a run (files, messages, the progress bar) goes through
    such a method."""

    @functools.wraps(method)
    def on_main(self, *args, **kwargs):
        return method(self, *args, **kwargs) if self.is_main else None

    return on_main


def _is_micro_batch(batch) -> bool:
    return (isinstance(batch, tuple) and len(batch) == 2
            and not isinstance(batch[0], (tuple, list)))


class Trainer:
    """Holds a run's state; :meth:`fit` runs the loop, one :meth:`train_step` per update.
    Built by :func:`train`.

    The seams a data-parallel trainer overrides: :meth:`reduce_gradients` (between the
    backward passes and clipping; nothing on one process) and :attr:`is_main` (True on one
    process; only the main process writes the run's outputs)."""

    def __init__(self, cfg, run, tokenizer, data, model, optimizer, step=0, elapsed=0.0,
                 fingerprint="", generators=None):
        self.cfg, self.run, self.tokenizer, self.data = cfg, run, tokenizer, data
        self.model, self.optimizer = model, optimizer
        self.step, self.elapsed, self.fingerprint = step, elapsed, fingerprint
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        # the random streams: 'init' (weights), 'data' (training windows), 'dropout' (masks)
        self.generators = make_streams(cfg.seed) if generators is None else generators
        self.last_val: float | None = None
        self.watcher = None
        self._watch_failed = False
        self._last_report = time.perf_counter()
        self._metrics: MetricsLog | None = None
        self._bar = None
        self._phase = "before"  # where a KeyboardInterrupt lands: before/during/after update

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's outputs: checkpoints, metrics, evaluations,
        samples, the report, the training doctor's files, the progress bar and messages.
        True on a single process."""
        return True

    # -- one step ------------------------------------------------------------------------
    def get_batch(self) -> list:
        """``grad_accum`` micro-batches ``(x, y)`` of ``batch_size`` training windows each,
        drawn from the data stream."""
        cfg, rng = self.cfg, self.generators["data"]
        return [self.data.batch("train", cfg.batch_size, cfg.block_size, rng)
                for _ in range(cfg.grad_accum)]

    def compute_loss(self, x, y):
        """The model's loss on one micro-batch (a 0-d tensor with its graph)."""
        dev = self.cfg.device
        return self.model(cr.tensor(x, device=dev), cr.tensor(y, device=dev))[1]

    def reduce_gradients(self) -> None:
        """Runs after the backward passes of a step and before clipping, with the step's
        gradients in ``p.grad``; a data-parallel trainer averages them across processes here.
        On one process it does nothing."""

    def train_step(self, batch) -> tuple[float, float]:
        """One optimizer update: forward and backward on each micro-batch of ``batch`` (a list
        of ``(x, y)``, or one ``(x, y)`` pair), each loss scaled by 1/len(batch) so that the
        gradients add up to their mean; :meth:`reduce_gradients`; clipping to ``grad_clip``;
        the optimizer step at the learning rate already in its groups; ``zero_grad``. Dropout
        draws from the dropout stream. Returns ``(loss, grad_norm)``: the mean of the
        micro-batch losses and the global gradient norm before clipping, as floats."""
        micro = [batch] if _is_micro_batch(batch) else list(batch)
        n = len(micro)
        if n == 0:
            raise ValueError("Trainer.train_step: the batch holds no micro-batch; expected a "
                             "list of (x, y) pairs or one (x, y) pair")
        total = 0.0
        with use_generator(self.generators["dropout"]):
            for x, y in micro:
                loss = self.compute_loss(x, y)
                (loss if n == 1 else loss / n).backward()
                total += loss.item()
        self.reduce_gradients()
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        norm = clip_grad_norm_(self.params, clip)
        self._phase = "during"
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self._phase = "after"
        return total / n, float(norm)

    def apply_lr(self) -> float:
        """Set the learning rate of the next update (:func:`get_lr`) in every group."""
        lr = get_lr(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def rng_state(self) -> dict:
        """The random streams' state (as a checkpoint stores it)."""
        return streams_state(self.generators)

    def set_rng_state(self, state: dict) -> None:
        for name, s in state.items():
            if not isinstance(s, str):
                self.generators[name].set_state(s)

    # -- what the outputs hold -----------------------------------------------------------
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
                losses.append(self.model(cr.tensor(x, device=cfg.device),
                                         cr.tensor(y, device=cfg.device))[1].item())
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
        """Write the checkpoint file (call :meth:`save_checkpoint`, which does it on the main
        process only)."""
        cr.save({
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": "warmup_cosine", "step": self.step},
            "step": self.step,
            "rng": self.rng_state(),
            "config": self.cfg.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "data_fingerprint": self.fingerprint,
            "elapsed": self.elapsed,
            "val_loss": self.last_val,
        }, self.run.checkpoint)

    def summary(self) -> dict:
        """The report's summary table."""
        cfg = self.cfg
        return {
            "data": cfg.data or "embedded corpus (pydoc_data.topics)",
            "tokenizer": f"{cfg.tokenizer} ({self.tokenizer.vocab_size} tokens)",
            "tokens (train / val)": f"{len(self.data.splits['train']):,} / "
                                    f"{len(self.data.splits['val']):,}",
            "model": f"GPT n_layer={cfg.n_layer} n_head={cfg.n_head} n_embd={cfg.n_embd} "
                     f"block_size={cfg.block_size}",
            "parameters": f"{self.model.num_params(non_embedding=False):,}",
            "steps": f"{self.step} / {cfg.max_iters}",
            "batch": cfg.describe_batch(),
            "training time (s)": f"{self.elapsed:.1f}",
        }

    def write_report(self, sample: str = "") -> None:
        """Write report.png and report.html (the loop calls it through :meth:`finish` and
        :meth:`log_eval`, on the main process only)."""
        self._last_report = time.perf_counter()
        findings = self._watch("findings") if self.watcher is not None else None
        evals = [r for r in read_metrics(self.run.metrics) if "val_loss" in r]
        summary = self.summary()
        if evals:
            summary["first val loss"] = f"{evals[0]['val_loss']:.4f} (step {evals[0]['step']})"
            summary["last val loss"] = f"{evals[-1]['val_loss']:.4f} (step {evals[-1]['step']})"
        sample = sample or self.run.last_sample()
        if findings is None:
            findings = [] if self.watcher is not None else None
        write_report(self.run, summary, sample, findings)

    # -- the outputs: each on the main process only --------------------------------------
    @main_process_only
    def say(self, msg: str) -> None:
        _say(msg)

    @main_process_only
    def open_outputs(self) -> None:
        """Open the metrics log, start the training doctor and the progress bar."""
        self._metrics = MetricsLog(self.run.metrics, self.run.tensorboard_dir)
        self._start_watcher()
        self._bar = self._progress_bar()

    @main_process_only
    def close_outputs(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    @main_process_only
    def log_step(self, loss: float, lr: float, norm: float, tps: float) -> None:
        """After an update: the training doctor, a metrics line every ``log_interval`` steps,
        the progress bar."""
        cfg = self.cfg
        self._watch("step", self.step, loss=loss)
        if self.step % cfg.log_interval == 0 or self.step == cfg.max_iters:
            self._metrics.write({"step": self.step, "loss": loss, "lr": lr, "grad_norm": norm,
                                 "tokens_per_s": round(tps, 1), "time": round(self.elapsed, 3)})
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tps:,.0f}", refresh=False)

    @main_process_only
    def log_eval(self, save: bool) -> None:
        """Evaluate, log it, append a sample to samples.txt, checkpoint (when ``save``), and
        refresh the report at most every REPORT_EVERY_S seconds."""
        ev = self.evaluate()
        self.last_val = ev["val"]
        self._metrics.write({"step": self.step, "train_loss": ev["train"], "val_loss": ev["val"],
                             "time": round(self.elapsed, 3)})
        _say(f"step {self.step}: train loss {ev['train']:.4f}, val loss {ev['val']:.4f}")
        if self.cfg.sample_tokens:
            text = self.sample(min(self.cfg.sample_tokens, 200), seed_offset=self.step)
            append_text(self.run.samples,
                        f"=== step {self.step} (val loss {ev['val']:.4f}) ===\n{text}\n\n")
        if save:
            self.checkpoint()
        if time.perf_counter() - self._last_report > REPORT_EVERY_S:
            self._watch("save", self.run.path)
            self.write_report()

    @main_process_only
    def save_checkpoint(self) -> None:
        self.checkpoint()

    @main_process_only
    def finish(self, interrupted: bool) -> str:
        """At the end of a run: the final sample (unless interrupted), the training doctor's
        files and the report; returns the sample."""
        sample = ""
        if not interrupted and self.cfg.sample_tokens:
            sample = self.sample(self.cfg.sample_tokens, seed_offset=-1)
        self._watch("save", self.run.path)
        self.write_report(sample)
        return sample

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

    def _progress_bar(self):
        if not self.cfg.progress:
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=self.cfg.max_iters, initial=self.step, unit="step", dynamic_ncols=True,
                    file=sys.stderr, smoothing=0.1)

    def _catch_sigint(self, stop: dict):
        """Ctrl-C asks to stop after the current step; a second one stops at once. Returns
        the previous handler (None off the main thread, where signals cannot be caught)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_sigint(signum, frame):
            if stop["requested"]:
                raise KeyboardInterrupt
            stop["requested"] = True
            self.say("Ctrl-C: stopping after this step and saving a checkpoint "
                     "(press again to stop at once)")

        return signal.signal(signal.SIGINT, on_sigint)

    # -- the loop ------------------------------------------------------------------------
    def fit(self, on_step=None) -> TrainResult:
        """Train until ``max_iters``; Ctrl-C stops after the current step with a checkpoint.
        ``on_step(step, loss)`` runs after each update (raise :class:`StopTraining` to end the
        run at once, as a crash would)."""
        cfg = self.cfg
        self.open_outputs()
        stop = {"requested": False}
        old_handler = self._catch_sigint(stop)
        tokens_per_step = cfg.tokens_per_step()
        tps = None
        interrupted = crashed = False
        try:
            if self.step == 0 and not read_metrics(self.run.metrics):
                self.log_eval(save=True)
            while self.step < cfg.max_iters:
                streams_before = self.rng_state()
                self._phase = "before"
                try:
                    t0 = time.perf_counter()
                    lr = self.apply_lr()
                    loss, norm = self.train_step(self.get_batch())
                    dt = time.perf_counter() - t0
                    self.elapsed += dt
                    now_tps = tokens_per_step / dt
                    tps = now_tps if tps is None else 0.9 * tps + 0.1 * now_tps  # smoothed
                    if not math.isfinite(loss):
                        self.say(f"step {self.step}: the loss is {loss}; stopping (lower the "
                                 "learning_rate or check the data)")
                        self._watch("step", self.step, loss=loss)
                        self.save_checkpoint()
                        interrupted = True
                        break
                    self.log_step(loss, lr, norm, tps)
                    if on_step is not None:
                        on_step(self.step, loss)
                    at_eval = self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters
                    at_ckpt = (bool(cfg.checkpoint_interval)
                               and self.step % cfg.checkpoint_interval == 0)
                    if at_eval:
                        self.log_eval(save=not cfg.checkpoint_interval or at_ckpt)
                    elif at_ckpt:
                        self.save_checkpoint()
                except KeyboardInterrupt:
                    if self._phase == "during":  # parameters half updated: keep the checkpoint
                        self.say(f"stopped during the update of step {self.step + 1}; the last "
                                 "checkpoint stays as it was")
                        interrupted = True
                        break
                    if self._phase == "before":
                        self.set_rng_state(streams_before)  # as if this step never started
                        self.optimizer.zero_grad(set_to_none=True)
                    stop["requested"] = True
                if stop["requested"]:
                    break
            if stop["requested"]:
                self.save_checkpoint()
                interrupted = True
                self.say(f"interrupted at step {self.step}: checkpoint saved; continue with\n"
                         f"  chainrule train --resume {self.run.path}")
        except StopTraining:
            crashed = True
        finally:
            self.close_outputs()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if crashed:
            return TrainResult(self.run.path, self.step, True, self.last_val, "")
        sample = self.finish(interrupted) or ""
        return TrainResult(self.run.path, self.step, interrupted, self.last_val, sample)


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


def _new_trainer(cfg: TrainConfig, generators: dict | None = None) -> Trainer:
    """A trainer for a new run folder; ``generators``: the random streams (default
    :func:`make_streams` of the seed)."""
    source = resolve_source(cfg.data)  # errors about the data come before a folder is made
    if cfg.data:
        cfg.data = source.name
    if not cfg.lr_decay_iters:
        cfg.lr_decay_iters = cfg.max_iters
    run = new_run(cfg)
    generators = make_streams(cfg.seed) if generators is None else generators
    try:
        tokenizer = train_tokenizer(cfg.tokenizer, source.chunks(), cfg.bpe_vocab_size)
        data = TokenData.build(source, tokenizer, run.data_dir, cfg.val_fraction)
        data.check_block_size(cfg.block_size)
    except Exception:
        _remove_if_fresh(run)
        raise
    save_tokenizer(tokenizer, run.tokenizer)
    write_text(run.config, to_toml(cfg))
    with use_generator(generators["init"]):
        model, opt = _model_and_optimizer(cfg, tokenizer.vocab_size)
    fingerprint = _fingerprint(run)
    _say(f"run folder: {run.path}\nGPT with {model.num_params(False):,} parameters, "
         f"{tokenizer.vocab_size} tokens ({cfg.tokenizer}), "
         f"{len(data.splits['train']):,} training tokens; {cfg.describe_step()}")
    return Trainer(cfg, run, tokenizer, data, model, opt, fingerprint=fingerprint,
                   generators=generators)


def _fingerprint(run: RunDir) -> str:
    import json

    with open(os.path.join(run.data_dir, "tokens.json")) as f:
        return json.load(f)["fingerprint"]


def _remove_if_fresh(run: RunDir) -> None:
    """Remove a run folder that failed before training started (so the name is free again)."""
    import shutil

    if not os.path.exists(run.metrics) and not run.has_checkpoint():
        run.unlock()
        shutil.rmtree(run.path, ignore_errors=True)


def _resume_trainer(path: str, explicit: dict) -> Trainer:
    run = RunDir(path).lock() if os.path.isdir(path) else RunDir(path)
    cfg = resume_config(path, explicit)
    ckpt = _load_checkpoint(run)
    check_format(ckpt, CHECKPOINT_FORMAT, f"--resume {path}")
    require_entries(ckpt, ("model", "optimizer", "step", "tokenizer"), f"--resume {path}")
    saved_cfg = {**TrainConfig().to_dict(), **ckpt.get("config", {})}  # keys added since: defaults
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
    generators = streams_from_checkpoint(ckpt.get("rng"), cfg.seed, f"--resume {path}")
    check_model_state(ckpt["model"], cfg, tokenizer.vocab_size, f"--resume {path}")
    with use_generator(Generator().manual_seed(cfg.seed)):  # the weights come from the file
        model, opt = _model_and_optimizer(cfg, tokenizer.vocab_size)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    step = int(ckpt["step"])
    truncate_metrics(run.metrics, step)
    _say(f"resuming {run.path} at step {step}; {cfg.describe_step()}")
    t = Trainer(cfg, run, tokenizer, data, model, opt, step=step,
                elapsed=float(ckpt.get("elapsed", 0.0)), fingerprint=fingerprint,
                generators=generators)
    t.last_val = ckpt.get("val_loss")
    write_text(run.config, to_toml(cfg))  # the changed logging/stopping keys
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
    require_entries(ckpt, ("config", "tokenizer", "model"), f"{run_path}")
    cfg = config_from_dict(dict(ckpt["config"]), f"{run_path} checkpoint").validate()
    tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    check_model_state(ckpt["model"], cfg, tokenizer.vocab_size, f"{run_path}")
    model, _ = _model_and_optimizer(cfg, tokenizer.vocab_size, device="cpu")
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, tokenizer, cfg


__all__ = ["train", "load_run", "Trainer", "TrainResult", "StopTraining", "get_lr",
           "resume_config", "ConfigError", "main_process_only", "stream_seeds", "make_streams"]
