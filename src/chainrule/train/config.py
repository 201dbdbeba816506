"""The training configuration: one flat dataclass, read from TOML and ``--key=value`` overrides.

Every key has a type and a default; a TOML file (``--config FILE``) sets some of them and
command-line overrides set others, last one winning. An unknown key or a value of the wrong
type is a :class:`ConfigError` naming the key, what was given and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass, fields


class ConfigError(ValueError):
    """An unknown config key, a value of the wrong type, or an inconsistent combination."""


@dataclass
class TrainConfig:
    """Everything ``chainrule train`` needs (the defaults train the quick-start model)."""

    # data
    data: str = ""  # '' = the embedded corpus (pydoc_data.topics); a UTF-8 file or .txt folder
    tokenizer: str = "char"  # 'char' or 'bpe' (byte-level BPE; needs chainrule[bpe])
    bpe_vocab_size: int = 1024  # vocabulary size when tokenizer = 'bpe'
    val_fraction: float = 0.1  # the last 10% of the tokens validate
    # model (GPTConfig; vocab_size comes from the tokenizer)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = False
    # optimisation: AdamW, linear warmup then cosine decay to min_lr
    batch_size: int = 12  # windows per micro-batch
    grad_accum: int = 1  # micro-batches per step (gradient accumulation)
    max_iters: int = 3000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 0  # 0 = max_iters (resolved when the run starts)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 = no clipping
    # evaluation, logging, checkpoints, samples
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    checkpoint_interval: int = 0  # 0 = at every evaluation
    sample_tokens: int = 300  # tokens sampled at each evaluation and at the end
    sample_prompt: str = ""  # '' = start from the first character of the validation text
    temperature: float = 0.8
    top_k: int = 0  # 0 = no top-k filter
    diagnose_interval: int = 50  # training-doctor statistics every N steps; 0 = off
    # run
    seed: int = 1337
    out_dir: str = "runs"
    name: str = ""  # the run folder's name; '' = a timestamp
    progress: bool = True  # a tqdm progress bar (when tqdm is installed)
    device: str = "cpu"  # 'cpu' or 'cuda' (an NVIDIA GPU through CuPy: chainrule[cuda12])
    activation_checkpointing: bool = False  # recompute each block's forward in backward

    def model_kwargs(self) -> dict:
        return {k: getattr(self, k) for k in MODEL_KEYS}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def tokens_per_step(self) -> int:
        """Tokens one optimizer step trains on: grad_accum x batch_size x block_size."""
        return self.grad_accum * self.batch_size * self.block_size

    def describe_step(self) -> str:
        """``'768 tokens per step (batch_size 12 x block_size 64)'``, with ``grad_accum N x``
        in front when accumulating."""
        accum = f"grad_accum {self.grad_accum} x " if self.grad_accum > 1 else ""
        return (f"{self.tokens_per_step():,} tokens per step ({accum}batch_size "
                f"{self.batch_size} x block_size {self.block_size})")

    def describe_batch(self) -> str:
        """``'12 x 64 tokens'`` (batch_size x block_size), ``'2 x 12 x 64 tokens'`` when
        accumulating (grad_accum first)."""
        accum = f"{self.grad_accum} x " if self.grad_accum > 1 else ""
        return f"{accum}{self.batch_size} x {self.block_size} tokens"

    def validate(self) -> TrainConfig:
        """Check value ranges and combinations; returns self."""
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "float" and not math.isfinite(v):
                raise ConfigError(f"config: {f.name} must be a finite number, got {v}")
        for k, hi in _UPPER.items():
            if getattr(self, k) > hi:
                raise ConfigError(f"config: {k} must be at most {hi:,}, got {getattr(self, k):,}")
        positive = ["n_layer", "n_head", "n_embd", "block_size", "batch_size", "grad_accum",
                    "eval_iters", "eval_interval", "log_interval"]
        for k in positive:
            if getattr(self, k) <= 0:
                raise ConfigError(f"config: {k} must be a positive integer, got {getattr(self, k)}")
        nonneg = ["max_iters", "warmup_iters", "lr_decay_iters", "checkpoint_interval",
                  "sample_tokens", "top_k", "diagnose_interval", "grad_clip", "weight_decay",
                  "min_lr", "temperature", "seed"]
        for k in nonneg:
            if getattr(self, k) < 0:
                raise ConfigError(f"config: {k} must be >= 0, got {getattr(self, k)}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"config: n_embd ({self.n_embd}) must be divisible by n_head "
                              f"({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"config: dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"config: val_fraction must be in (0, 1), got {self.val_fraction}")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise ConfigError(f"config: learning_rate must be > 0, got {self.learning_rate}")
        for k in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, k) < 1.0:
                raise ConfigError(f"config: {k} must be in [0, 1), got {getattr(self, k)}")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ConfigError(f"config: device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.tokenizer not in ("char", "bpe"):
            raise ConfigError(f"config: tokenizer must be 'char' or 'bpe', got {self.tokenizer!r}")
        if self.tokenizer == "bpe" and self.bpe_vocab_size < 257:
            raise ConfigError(f"config: bpe_vocab_size must be at least 257, got "
                              f"{self.bpe_vocab_size}")
        if self.temperature > 1e6:
            raise ConfigError(f"config: temperature must be at most 1e6, got {self.temperature}")
        need, have = self.training_bytes(), _physical_memory()
        if have and need > have:
            raise ConfigError(
                f"config: a model of n_layer={self.n_layer}, n_embd={self.n_embd}, "
                f"block_size={self.block_size} needs about {need / 2**30:,.1f} GiB for its "
                f"weights, gradients and optimizer state, more than this machine's "
                f"{have / 2**30:,.1f} GiB; choose a smaller n_embd / n_layer")
        return self

    def training_bytes(self) -> int:
        """A lower bound on the memory training this model takes: float32 weights, gradients
        and AdamW's two moments (16 bytes a parameter; the vocabulary counted as 65536)."""
        e = self.n_embd
        params = self.n_layer * 12 * e * e + (65536 + self.block_size) * e
        return 16 * params


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 0


# no run can use more (and larger values overflow what the engine and NumPy can index)
_UPPER = {"n_layer": 4096, "n_head": 65536, "n_embd": 1 << 20, "block_size": 1 << 24,
          "batch_size": 1 << 24, "grad_accum": 1 << 20, "max_iters": 1 << 40,
          "warmup_iters": 1 << 40, "lr_decay_iters": 1 << 40, "eval_iters": 1 << 30,
          "eval_interval": 1 << 40, "log_interval": 1 << 40, "checkpoint_interval": 1 << 40,
          "sample_tokens": 1 << 24, "top_k": 1 << 30, "diagnose_interval": 1 << 40,
          "bpe_vocab_size": 1 << 24, "seed": 2**63 - 1}


MODEL_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias")
# keys a resumed run may change: they steer logging and stopping, not the computation
RESUMABLE_KEYS = frozenset({
    "max_iters", "eval_interval", "eval_iters", "log_interval", "checkpoint_interval",
    "sample_tokens", "sample_prompt", "temperature", "top_k", "diagnose_interval", "progress",
    "out_dir", "name", "activation_checkpointing",
})

_TYPES = {f.name: f.type for f in fields(TrainConfig)}
_TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def _unknown(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(_TYPES), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return ConfigError(f"{where}: unknown config key {key!r}{hint} (chainrule train --help lists "
                       "every key)")


def _check_type(key: str, value, where: str):
    """``value`` (from TOML or JSON) as the field's type, or ConfigError."""
    want = _TYPES[key]
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[want]
    if not ok:
        raise ConfigError(f"{where}: {key} must be {_TYPE_NAMES[want]}, got {value!r} "
                          f"({type(value).__name__})")
    return float(value) if want == "float" else value


def parse_value(key: str, text: str, where: str = "command line"):
    """A command-line string as the type of config field ``key``."""
    if key not in _TYPES:
        raise _unknown(key, where)
    want = _TYPES[key]
    try:
        if want == "int":
            return int(text.replace("_", ""))
        if want == "float":
            return float(text)
        if want == "bool":
            low = text.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
    except ValueError:
        raise ConfigError(f"{where}: --{key} must be {_TYPE_NAMES[want]}, got {text!r}") from None
    return text


def parse_overrides(args: list[str]) -> dict:
    """``['--n_layer=2', '--lr', '3e-4']`` -> ``{'n_layer': 2, 'lr': 3e-4}`` (typed)."""
    out = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise ConfigError(f"command line: unexpected argument {a!r}; config overrides look "
                              "like --key=value")
        body = a[2:]
        if "=" in body:
            key, text = body.split("=", 1)
        else:
            key = body
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                text = args[i + 1]
                i += 1
            elif _TYPES.get(key.replace("-", "_")) == "bool":
                text = "true"  # a bare --flag turns a boolean on
            else:
                raise ConfigError(f"command line: --{key} needs a value (--{key}=VALUE)")
        key = key.replace("-", "_")
        out[key] = parse_value(key, text)
        i += 1
    return out


def load_toml(path: str) -> dict:
    """The typed key/value pairs of a TOML config file (flat; tables are flattened)."""
    import tomllib

    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > _MAX_TOML:
                raise ConfigError(f"--config: {path!r} is larger than {_MAX_TOML:,} bytes; "
                                  "a config file is a few lines of TOML")
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config: file {path!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"--config: {path!r} is a folder, not a TOML file") from None
    except OSError as e:
        raise ConfigError(f"--config: {path!r} cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"--config: {path!r} is not UTF-8 text (byte {e.start}); TOML files "
                          "are UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config: {path!r} is not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"--config: {path!r} nests too deeply to be a config") from None
    flat = {}
    for k, v in raw.items():
        # sections ([model], [optim], ...) are only for grouping: their keys are the same keys
        for kk, vv in (v.items() if isinstance(v, dict) else [(k, v)]):
            if kk not in _TYPES:
                raise _unknown(kk, path)
            flat[kk] = _check_type(kk, vv, path)
    return flat


_MAX_TOML = 1 << 20


def make_config(config_file: str | None = None, overrides: dict | None = None) -> TrainConfig:
    """Defaults, then the TOML file, then the overrides; validated."""
    values = load_toml(config_file) if config_file else {}
    for k, v in (overrides or {}).items():
        if k not in _TYPES:
            raise _unknown(k, "command line")
        values[k] = _check_type(k, v, "command line")
    return TrainConfig(**values).validate()


def config_from_dict(d: dict, where: str) -> TrainConfig:
    for k, v in d.items():
        if k not in _TYPES:
            raise _unknown(k, where)
        d[k] = _check_type(k, v, where)
    return TrainConfig(**d)


def to_toml(cfg: TrainConfig) -> str:
    """The config as a flat TOML document (readable back by ``--config``)."""
    lines = ["# chainrule train configuration (resolved)"]
    for k, v in cfg.to_dict().items():
        if isinstance(v, bool):
            s = "true" if v else "false"
        elif isinstance(v, float):
            s = repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
        elif isinstance(v, int):
            s = str(v)
        else:
            s = json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
        lines.append(f"{k} = {s}")
    return "\n".join(lines) + "\n"


_HELP = {
    "data": "UTF-8 text file or folder of .txt files ('' = the embedded corpus)",
    "tokenizer": "'char' or 'bpe' (byte-level BPE, needs chainrule[bpe])",
    "bpe_vocab_size": "vocabulary size of the BPE tokenizer",
    "val_fraction": "the last fraction of the tokens that validates",
    "n_layer": "transformer blocks", "n_head": "attention heads per block",
    "n_embd": "embedding width", "block_size": "context length (tokens)",
    "dropout": "dropout probability", "bias": "biases in Linear and LayerNorm layers",
    "batch_size": "windows per micro-batch",
    "grad_accum": "micro-batches per step (tokens per step: grad_accum x batch_size x "
    "block_size)", "max_iters": "training steps",
    "learning_rate": "peak AdamW learning rate", "min_lr": "learning rate after the decay",
    "warmup_iters": "steps of linear warmup", "lr_decay_iters": "end of the cosine decay "
    "(0 = max_iters)", "weight_decay": "AdamW weight decay (matrices only)",
    "beta1": "AdamW beta1", "beta2": "AdamW beta2", "grad_clip": "gradient norm clip (0 = off)",
    "eval_interval": "evaluate every N steps", "eval_iters": "batches per split per evaluation",
    "log_interval": "write a metrics line every N steps",
    "checkpoint_interval": "checkpoint every N steps (0 = at every evaluation)",
    "sample_tokens": "tokens sampled at evaluations and at the end (0 = none)",
    "sample_prompt": "prompt of those samples ('' = a newline)",
    "temperature": "sampling temperature", "top_k": "sample among the k likeliest (0 = all)",
    "diagnose_interval": "training-doctor statistics every N steps (0 = off)",
    "seed": "random seed (init, batch and dropout streams)", "out_dir": "folder of run folders",
    "name": "run folder name ('' = a timestamp)", "progress": "show a progress bar",
    "device": "'cpu' or 'cuda' (a GPU through CuPy)",
}


def config_help() -> str:
    """One line per key: name, default, type and meaning (for ``chainrule train --help``)."""
    rows = []
    for f in fields(TrainConfig):
        key = f"--{f.name}={f.default!r}"
        rows.append(f"  {key:<26} {f.type:<6} {_HELP.get(f.name, '')}")
    return "\n".join(rows)
