"""The run folder: where a training run keeps everything it writes.

    <out_dir>/<name>/
      config.toml         the resolved configuration (``--config`` can read it back)
      tokenizer.json      the tokenizer (also inside every checkpoint)
      metrics.jsonl       one JSON object per logged step and per evaluation
      checkpoint.safetensors  the latest checkpoint (arrays + JSON metadata), written atomically
      samples.txt         text sampled at each evaluation
      report.png          loss, learning rate, gradient norm and tokens/s against step
      report.html         the same figure inline, tables of evaluations, a sample, a diagnosis
      data/               the token array (memory-mapped) for the run's text
      diagnostics/        the training doctor's statistics and plots (when it is installed)
      tensorboard/        TensorBoard event files (only when tensorboardX is installed)
"""

from __future__ import annotations

import json
import math
import os


class RunError(ValueError):
    """A run folder that cannot be created or resumed as asked."""


class RunDir:
    def __init__(self, path: str):
        self.path = path

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    config = property(lambda self: self.file("config.toml"))
    tokenizer = property(lambda self: self.file("tokenizer.json"))
    metrics = property(lambda self: self.file("metrics.jsonl"))
    checkpoint = property(lambda self: self.file("checkpoint.safetensors"))
    samples = property(lambda self: self.file("samples.txt"))
    report_png = property(lambda self: self.file("report.png"))
    report_html = property(lambda self: self.file("report.html"))
    data_dir = property(lambda self: self.file("data"))
    tensorboard_dir = property(lambda self: self.file("tensorboard"))

    def has_checkpoint(self) -> bool:
        return os.path.isfile(self.checkpoint)

    def last_sample(self) -> str:
        """The text of the last "=== step ... ===" entry of samples.txt ('' if none yet)."""
        if not os.path.exists(self.samples):
            return ""
        with open(self.samples, encoding="utf-8") as f:
            return f.read().rsplit("=== step", 1)[-1].split("===\n", 1)[-1].strip("\n")


class MetricsLog:
    """Appends one JSON object per line (flushed, so a killed run keeps what it logged); also
    mirrors scalars to TensorBoard when tensorboardX is importable."""

    def __init__(self, path: str, tensorboard_dir: str | None = None):
        self.path = path
        self._f = open(path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard_dir:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                pass
            else:
                self._tb = SummaryWriter(tensorboard_dir)

    def write(self, record: dict) -> None:
        rec = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in record.items()}
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()
        if self._tb is not None and "step" in record:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str) -> list[dict]:
    """Every complete record of a metrics file (a torn last line from a kill is skipped)."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def truncate_metrics(path: str, step: int) -> None:
    """Keep only records up to ``step`` (a resumed run rewrites what came after its
    checkpoint)."""
    keep = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in keep:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)
