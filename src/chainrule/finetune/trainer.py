"""Fine-tuning runs: a pre-trained model, a text file, and chainrule's training loop.

The loop, progress bar, evaluation, samples, metrics and report are the GPT trainer's
(:class:`chainrule.train.loop.Trainer`); what differs is kept here:

- the model comes from a file (:func:`chainrule.pretrained.from_pretrained`) with its own
  tokenizer, and is prepared for one of three methods: LoRA adapters (``lora``), only the last
  N blocks (``last``), or every weight (``full``);
- the optimizer sees only trainable parameters, so AdamW holds state for those alone;
- a checkpoint stores only the trainable tensors (and the optimizer state) beside
  ``finetune.json``, which names the base model: a LoRA run's checkpoint is a few MB;
- checkpoints are written at every evaluation (or every ``checkpoint_interval`` steps) and
  hold the fingerprints of the training text and of the base model, so ``--resume``
  continues to the run's own ``max_iters`` and refuses when either changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

import chainrule as cr

from ..data import TokenData, resolve_source
from ..random import use_generator
from ..train.config import TrainConfig, config_from_dict, to_toml
from ..train.loop import (
    Trainer,
    TrainResult,
    _say,
    check_format,
    make_streams,
    new_run,
    streams_from_checkpoint,
)
from ..train.run import RunDir, RunError, require_entries, truncate_metrics, write_text
from .freeze import parameter_counts, train_last, trainable_parameters
from .lora import DEFAULT_TARGETS, apply_lora

FORMAT = 2  # 2: one state per random stream; 1: the state of a single generator
SPEC_FILE = "finetune.json"


@dataclass
class FinetuneSpec:
    """What to fine-tune and how (saved in the run folder as ``finetune.json``)."""

    model: str  # a GGUF file, a Hugging Face folder, or a known name ('smollm2')
    method: str = "lora"  # 'lora', 'last' (the last train_last blocks) or 'full'
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: list = field(default_factory=lambda: list(DEFAULT_TARGETS))
    train_last: int = 1
    chat: bool = False  # sample prompts go through the model's chat template

    def validate(self) -> FinetuneSpec:
        if self.method not in ("lora", "last", "full"):
            raise ValueError(f"finetune: method must be 'lora', 'last' or 'full', got "
                             f"{self.method!r}")
        if self.method == "lora" and self.lora_rank < 1:
            raise ValueError(f"finetune: --lora-rank must be >= 1, got {self.lora_rank}")
        if self.method == "last" and self.train_last < 1:
            raise ValueError(f"finetune: --train-last must be >= 1, got {self.train_last}")
        return self

    def describe(self) -> str:
        if self.method == "lora":
            return (f"LoRA rank {self.lora_rank}, alpha {self.lora_alpha:g} on "
                    f"{', '.join(self.lora_targets)}")
        if self.method == "last":
            return f"last {self.train_last} block(s) and the final norm"
        return "all weights"


def prepare_model(spec: FinetuneSpec):
    """``(model, tokenizer)``: the pre-trained model with only the chosen parameters trainable."""
    from ..pretrained import from_pretrained, resolve

    model, tok = from_pretrained(resolve(spec.model))
    if tok is None:
        raise ValueError(f"finetune: {spec.model} has no tokenizer (tokenizer.json) beside it")
    if spec.method == "lora":
        apply_lora(model, spec.lora_rank, spec.lora_alpha, spec.lora_targets)
    elif spec.method == "last":
        train_last(model, spec.train_last)
    if spec.chat and not tok.chat_template:
        raise ValueError(f"finetune: --chat needs a chat template, and {spec.model} has none")
    return model, tok


def make_optimizer(model, cfg: TrainConfig):
    """AdamW over the trainable parameters only; matrices decay, vectors do not."""
    params = trainable_parameters(model)
    if not params:
        raise ValueError("finetune: no parameter is trainable")
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    from ..optim import AdamW

    return AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate,
                          betas=(cfg.beta1, cfg.beta2))


def optimizer_state_bytes(optimizer) -> int:
    """Bytes held in the optimizer's per-parameter state (AdamW: two moments each)."""
    n = 0
    for state in optimizer.state.values():
        for v in state.values():
            data = v._data if isinstance(v, cr.Tensor) else v
            n += getattr(data, "nbytes", 0)
    return n


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


class FinetuneTrainer(Trainer):
    """The GPT trainer's loop with a pre-trained model (see the module docstring)."""

    def __init__(self, spec: FinetuneSpec, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.spec = spec
        self.counts = parameter_counts(self.model)
        self.eos_id = self.tokenizer.eos_id if spec.chat else None
        self.base_fingerprint = ""  # of the base model's files (see model_fingerprint)

    def checkpoint(self) -> None:
        cr.save({
            "format": FORMAT,
            "finetune": asdict(self.spec),
            "trainable": {n: p._data for n, p in self.model.named_parameters() if p.requires_grad},
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "rng": self.rng_state(),
            "config": self.cfg.to_dict(),
            "elapsed": self.elapsed,
            "val_loss": self.last_val,
            "data_fingerprint": self.fingerprint,
            "base_fingerprint": self.base_fingerprint,
        }, self.run.checkpoint)

    def prompt_ids(self) -> list[int]:
        prompt = self.cfg.sample_prompt
        if self.spec.chat:
            return self.tokenizer.encode(self.tokenizer.chat_prompt(prompt))
        if prompt:
            return self.tokenizer.encode(prompt)
        return [int(t) for t in self.data.splits["val"][:8]]

    def sample(self, n_tokens: int, seed_offset: int = 0) -> str:
        ids = self.prompt_ids()
        rng = np.random.default_rng(self.cfg.seed + 2 + seed_offset)
        out = self.model.generate(np.array([ids], dtype=np.int64), n_tokens,
                                  temperature=self.cfg.temperature, top_k=self.cfg.top_k or None,
                                  generator=rng, eos_id=self.eos_id)
        return self.tokenizer.decode(out._data[0], skip_special_tokens=self.spec.chat)

    def summary(self) -> dict:
        cfg, c = self.cfg, self.counts
        share = 100 * c["trainable"] / c["total"]
        return {
            "model": f"{self.spec.model} ({type(self.model).__name__}, {c['total']:,} parameters)",
            "method": self.spec.describe(),
            "trainable parameters": f"{c['trainable']:,} ({share:.2f}%)",
            "optimizer state": _mb(optimizer_state_bytes(self.optimizer)) + " (AdamW moments "
                               "of the trainable parameters only)",
            "data": cfg.data or "embedded corpus (pydoc_data.topics)",
            "tokens (train / val)": f"{len(self.data.splits['train']):,} / "
                                    f"{len(self.data.splits['val']):,}",
            "steps": f"{self.step} / {cfg.max_iters}",
            "batch": cfg.describe_batch(),
            "training time (s)": f"{self.elapsed:.1f}",
        }

    def write_report(self, sample: str = "") -> None:
        from ..train.report import write_report
        from ..train.run import read_metrics

        summary = self.summary()
        evals = [r for r in read_metrics(self.run.metrics) if "val_loss" in r]
        if evals:
            summary["val loss before"] = f"{evals[0]['val_loss']:.4f} (step {evals[0]['step']})"
            summary["val loss now"] = f"{evals[-1]['val_loss']:.4f} (step {evals[-1]['step']})"
        sample = sample or self.run.last_sample()
        findings = self._watch("findings") if self.watcher is not None else None
        write_report(self.run, summary, sample, findings)


def finetune(spec: FinetuneSpec, cfg: TrainConfig, on_step=None,
             trainer_class=None) -> TrainResult:
    """Fine-tune ``spec.model`` on ``cfg.data`` in a new run folder (see the module doc).
    ``trainer_class``: a subclass of :class:`FinetuneTrainer` to run it (data parallel)."""
    spec.validate()
    cfg.validate()
    source = resolve_source(cfg.data)  # data errors before any folder is made
    if cfg.data:
        cfg.data = source.name
    if not cfg.lr_decay_iters:
        cfg.lr_decay_iters = cfg.max_iters
    generators = make_streams(cfg.seed)
    with use_generator(generators["init"]):  # LoRA's A matrices
        model, tok = prepare_model(spec)  # model errors too
    run = new_run(cfg)
    try:
        data = TokenData.build(source, tok, run.data_dir, cfg.val_fraction)
        data.check_block_size(cfg.block_size)
    except Exception:
        import shutil

        run.unlock()
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    write_text(run.config, to_toml(cfg))
    write_text(os.path.join(run.path, SPEC_FILE), json.dumps(asdict(spec), indent=1))
    tok.save(run.path)
    opt = make_optimizer(model, cfg)
    trainer = (trainer_class or FinetuneTrainer)(spec, cfg, run, tok, data, model, opt,
                                                 generators=generators,
                                                 fingerprint=data_fingerprint(run))
    trainer.base_fingerprint = model_fingerprint(spec.model)
    c = trainer.counts
    _say(f"run folder: {run.path}\n{spec.model}: {c['total']:,} parameters, "
         f"{c['trainable']:,} trainable ({spec.describe()}); {len(data.splits['train']):,} "
         f"training tokens; {cfg.describe_step()}")
    return _fit(trainer, on_step)


def _fit(trainer: FinetuneTrainer, on_step) -> TrainResult:
    result = trainer.fit(on_step)
    c = trainer.counts
    _say(f"trainable parameters: {c['trainable']:,} of {c['total']:,}; optimizer state: "
         f"{_mb(optimizer_state_bytes(trainer.optimizer))}")
    return result


def data_fingerprint(run: RunDir) -> str:
    """The fingerprint of the run's training text (as its token cache records it)."""
    try:
        with open(os.path.join(run.data_dir, "tokens.json"), encoding="utf-8") as f:
            return str(json.load(f).get("fingerprint", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def model_fingerprint(model) -> str:
    """A fingerprint of a base model's files (a GGUF file, or a Hugging Face folder's
    config, tokenizer and weight files): their names and sizes and a SHA-256 of the first and
    last MiB of each; cheap on multi-GB files, and changed by any re-download or edit that
    changes a file's size, header or tail."""
    from ..pretrained import resolve

    path = resolve(model)
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path)
                       if n.endswith((".json", ".safetensors", ".gguf")))
        files = [(n, os.path.join(path, n)) for n in names]
    else:
        files = [(os.path.basename(path), path)]
    h = hashlib.sha256()
    for name, p in files:
        size = os.path.getsize(p)
        h.update(f"{name}\0{size}\0".encode())
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
                h.update(f.read(1 << 20))
    return h.hexdigest()


def is_finetune_run(run_dir) -> bool:
    return os.path.isfile(os.path.join(run_dir, SPEC_FILE))


def _read_run(run_dir):
    run = RunDir(os.fspath(run_dir))
    if not is_finetune_run(run.path):
        raise RunError(f"{run.path!r} is not a fine-tuning run folder (no {SPEC_FILE})")
    if not run.has_checkpoint():
        raise RunError(f"{run.path!r} holds no checkpoint")
    try:
        with open(os.path.join(run.path, SPEC_FILE), encoding="utf-8") as f:
            spec = FinetuneSpec(**json.load(f)).validate()
    except (ValueError, TypeError) as e:
        raise RunError(f"{run.path!r}: {SPEC_FILE} cannot be read ({e})") from None
    try:
        ckpt = cr.load(run.checkpoint)
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read the checkpoint in {run.path!r}: {e}") from None
    require_entries(ckpt, ("trainable", "optimizer", "step", "config"), run.path)
    if not isinstance(ckpt["trainable"], dict):
        raise RunError(f"{run.path!r}: the checkpoint's trainable tensors are malformed")
    model, tok = prepare_model(spec)
    params = dict(model.named_parameters())
    saved = ckpt["trainable"]
    wrong = sorted(set(saved) ^ {n for n, p in params.items() if p.requires_grad})
    wrong += sorted(n for n, a in saved.items() if n in params
                    and tuple(getattr(a, "shape", ())) != tuple(params[n].shape))
    if wrong:
        raise RunError(f"{run.path!r}: the checkpoint's tensors do not fit {spec.model} prepared "
                       f"as {spec.describe()} ({', '.join(wrong[:4])})")
    for n, a in saved.items():
        params[n]._data = np.array(a, dtype=params[n]._data.dtype)
    cfg = config_from_dict(dict(ckpt["config"]), f"{run.path} checkpoint")
    return run, spec, ckpt, model, tok, cfg


class _ChatPrompts:
    """A tokenizer whose ``encode`` puts the text in the chat template as a user message."""

    def __init__(self, tok):
        self.tok, self.vocab_size, self.kind = tok, tok.vocab_size, "pretrained"

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(self.tok.chat_prompt(text))

    def decode(self, ids) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)


def load_finetuned(run_dir):
    """``(model, tokenizer, config)`` of a fine-tuning run, for ``chainrule sample``. For a
    ``--chat`` run the tokenizer wraps prompts in the chat template, and generation stops at
    the end-of-turn token."""
    _, spec, _, model, tok, cfg = _read_run(run_dir)
    model.eval()
    if spec.chat:
        model.eos_id = tok.eos_id
        return model, _ChatPrompts(tok), cfg
    return model, tok, cfg


def resume(run_dir, max_iters: int | None = None, on_step=None,
           trainer_class=None) -> TrainResult:
    """Continue a fine-tuning run from its checkpoint to the run's own ``max_iters`` (or to a
    new one); ``trainer_class`` as in :func:`finetune`. Refused when the training text or the
    base model changed since the run started, or when another process holds the run."""
    if os.path.isdir(run_dir):
        RunDir(os.fspath(run_dir)).lock()
    run, spec, ckpt, model, tok, cfg = _read_run(run_dir)
    where = f"--resume {run.path}"
    check_format(ckpt, FORMAT, where)
    generators = streams_from_checkpoint(ckpt.get("rng"), cfg.seed, where)
    if max_iters is not None:
        cfg.max_iters = max_iters
    cfg.validate()
    base = model_fingerprint(spec.model)
    if ckpt.get("base_fingerprint") and ckpt["base_fingerprint"] != base:
        raise RunError(f"{where}: the base model {spec.model!r} changed since the run started "
                       "(its files differ), so the run cannot continue exactly; start a new run")
    source = resolve_source(cfg.data)
    data = TokenData.build(source, tok, run.data_dir, cfg.val_fraction)
    fingerprint = data_fingerprint(run)
    if ckpt.get("data_fingerprint") and ckpt["data_fingerprint"] != fingerprint:
        raise RunError(f"{where}: the training text {source.name!r} changed since the run "
                       "started, so the run cannot continue exactly; start a new run")
    data.check_block_size(cfg.block_size)
    opt = make_optimizer(model, cfg)
    opt.load_state_dict(ckpt["optimizer"])
    step = int(ckpt["step"])
    truncate_metrics(run.metrics, step)
    _say(f"resuming {run.path} at step {step}; {cfg.describe_step()}")
    trainer = (trainer_class or FinetuneTrainer)(spec, cfg, run, tok, data, model, opt,
                                                 step=step, elapsed=float(ckpt.get("elapsed", 0.0)),
                                                 generators=generators,
                                                 fingerprint=fingerprint)
    trainer.base_fingerprint = base
    trainer.last_val = ckpt.get("val_loss")
    return _fit(trainer, on_step)
