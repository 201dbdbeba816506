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
      .lock               held (flock) by the process training in the folder

A run folder is a unit of trust: every file of it is written through :func:`write_text` /
:func:`write_bytes` (a temporary file created exclusively beside it, fsynced, renamed over
it: never written through a link, never half there) or appended to through
:func:`append_text` (only a plain file of the run's own, never through a link). One process
at a time trains in a folder (:meth:`RunDir.lock`), and the temporaries a killed process left
are removed when the next one takes the lock.
"""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
import shutil

from ..serialization import atomic_write, open_append, remove_temporaries

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

_HELD: dict[str, int] = {}  # real path of a run folder -> the fd of its lock, for this process


class RunError(ValueError):
    """A run folder that cannot be created or resumed as asked."""


RUN_FILES = ("config.toml", "tokenizer.json", "metrics.jsonl", "checkpoint.safetensors",
             "samples.txt", "report.png", "report.html", "data/tokens.bin", "data/tokens.json")


def _lock_holder(fd: int) -> str:
    """`` (pid N)`` from a held lock file, as the holder wrote it ('' when unreadable)."""
    try:
        pid = int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return ""
    return f" (pid {pid})"


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

    lock_file = property(lambda self: self.file(".lock"))

    def lock(self) -> RunDir:
        """Take the run's lock for the life of this process (a second process training or
        resuming the same run is refused with a RunError naming the holder's pid), then remove
        the temporary files a killed process left behind. Refuses a run whose ``data`` or
        ``tensorboard`` folder is a link (the run's files would be written elsewhere).

        The lock is an ``flock`` on ``.lock``, which holds the pid: the kernel releases it
        when its process ends however it ends (SIGKILL included), so the file a dead process
        leaves is never a stale lock, and nothing has to guess from a pid whether it is."""
        key = os.path.realpath(self.path)
        if key not in _HELD:
            try:
                fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                             | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as e:
                raise RunError(f"cannot lock the run folder {self.path!r}: {self.lock_file} "
                               f"cannot be opened ({e.strerror or e}; a link there is "
                               "refused)") from None
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    holder = _lock_holder(fd)
                    os.close(fd)
                    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise RunError(
                            f"the run folder {self.path!r} is in use by another chainrule "
                            f"process{holder} (its .lock is held); wait until that process "
                            "ends, or stop it first") from None
                    raise
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError:
                pass
            _HELD[key] = fd
        for sub in (self.data_dir, self.tensorboard_dir, self.file("diagnostics")):
            if os.path.islink(sub):
                raise RunError(f"{sub!r} is a symbolic link; a run writes only inside its own "
                               "folder: remove the link")
        for folder in (self.path, self.data_dir):
            remove_temporaries(folder)
        for name in RUN_FILES:  # a link where a file of the run belongs was not made by a run
            p = self.file(name)
            if os.path.islink(p):
                os.unlink(p)
        return self

    def unlock(self) -> None:
        """Release the lock (a process normally holds it until it ends)."""
        fd = _HELD.pop(os.path.realpath(self.path), None)
        if fd is not None:
            os.close(fd)

    def clear(self) -> None:
        """Remove everything in the folder but its lock (a run restarted from nothing)."""
        for name in os.listdir(self.path):
            if name == ".lock":
                continue
            p = self.file(name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)

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
        self._f = open_append(path)
        self._tb = None
        if tensorboard_dir:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                pass
            else:
                # an unguessable event-file name: no link can be planted where it will be
                self._tb = SummaryWriter(tensorboard_dir,
                                         filename_suffix=f".{secrets.token_hex(6)}")

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
    write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def write_text(path: str, text: str) -> None:
    """Replace a file of the run atomically (never through a link)."""
    atomic_write(path, text)


def write_bytes(path: str, data: bytes) -> None:
    """Replace a file of the run atomically (never through a link)."""
    atomic_write(path, data)


def append_text(path: str, text: str) -> None:
    """Append to a file of the run (created if missing; never through a link)."""
    with open_append(path) as f:
        f.write(text)


def open_run_folder(path: str) -> RunDir:
    """The folder of a new run, created and locked. A folder that holds a run with no
    checkpoint yet (one killed before its first) is cleared and reused; any other non-empty
    folder is a RunError."""
    run = RunDir(path)
    if os.path.isdir(path) and os.listdir(path):
        if run.has_checkpoint() or not os.path.exists(run.config) and not os.path.exists(
                run.lock_file):
            raise RunError(f"run folder {path!r} already exists and is not empty; continue it "
                           f"with 'chainrule train --resume {path}' or choose another --name")
        run.lock()
        run.clear()  # a run that never reached its first checkpoint: start it again
        return run
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create run folder {path!r}: {e.strerror}") from None
    return run.lock()


def require_entries(ckpt, keys, where: str) -> None:
    """RunError unless the checkpoint is a dict holding each of ``keys``."""
    if not isinstance(ckpt, dict):
        raise RunError(f"{where}: the checkpoint holds a {type(ckpt).__name__}, not a training "
                       "checkpoint")
    missing = [k for k in keys if k not in ckpt]
    if missing:
        raise RunError(f"{where}: the checkpoint lacks {', '.join(map(repr, missing))}: it was "
                       "not written by chainrule train, or is damaged")


def gpt_shapes(cfg, vocab_size: int) -> dict:
    """The parameter shapes of the GPT ``cfg`` describes, by state-dict key (no allocation)."""
    e, out = cfg.n_embd, {"wte.weight": (vocab_size, cfg.n_embd),
                          "wpe.weight": (cfg.block_size, cfg.n_embd)}
    layers = {"ln_1.weight": (e,), "attn.c_attn.weight": (3 * e, e),
              "attn.c_proj.weight": (e, e), "ln_2.weight": (e,), "mlp.c_fc.weight": (4 * e, e),
              "mlp.c_proj.weight": (e, 4 * e)}
    biases = {"ln_1.bias": (e,), "attn.c_attn.bias": (3 * e,), "attn.c_proj.bias": (e,),
              "ln_2.bias": (e,), "mlp.c_fc.bias": (4 * e,), "mlp.c_proj.bias": (e,)}
    for i in range(cfg.n_layer):
        for k, v in {**layers, **(biases if cfg.bias else {})}.items():
            out[f"h.{i}.{k}"] = v
    out["ln_f.weight"] = (e,)
    if cfg.bias:
        out["ln_f.bias"] = (e,)
    return out


def check_model_state(state, cfg, vocab_size: int, where: str) -> None:
    """RunError unless the checkpoint's model entry holds exactly the tensors of the GPT the
    config describes, each of its shape: checked before the model is built, so a small file
    cannot make the loader allocate a large model."""
    if not isinstance(state, dict):
        raise RunError(f"{where}: the checkpoint's model entry is not a state dict")
    want = gpt_shapes(cfg, vocab_size)
    extra = sorted(set(state) - set(want))
    missing = sorted(set(want) - set(state))
    if missing or extra:
        what = (f"missing {', '.join(missing[:3])}" if missing else "") + (
            ("; " if missing else "") + f"unexpected {', '.join(extra[:3])}" if extra else "")
        raise RunError(f"{where}: the checkpoint's weights do not fit its configuration "
                       f"(n_layer={cfg.n_layer}, n_embd={cfg.n_embd}, bias={cfg.bias}): {what}")
    for k, shape in want.items():
        got = tuple(getattr(state[k], "shape", ()))
        if got != shape:
            raise RunError(f"{where}: the checkpoint's {k} has shape {list(got)} but its "
                           f"configuration needs {list(shape)} (n_embd={cfg.n_embd}, "
                           f"block_size={cfg.block_size}, vocab_size={vocab_size})")

