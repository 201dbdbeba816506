"""Data-parallel training: ``mpiexec -n N chainrule train ...`` (and ``chainrule finetune``).

Every rank holds the whole model (a :class:`~chainrule.distributed.DistributedDataParallel`
around it) and the same data stream. Each step every rank draws the same global batch of
``batch_size`` windows per micro-batch from that stream, exactly as one process would, and
trains on its own contiguous slice of ``batch_size / N`` windows (a distributed sampler over
the token windows: rank r takes windows ``r*b .. (r+1)*b - 1``). The gradients are averaged
across ranks during the last micro-batch's backward (the earlier ones run under
``no_sync()``), so clipping sees the global gradient and every rank takes the same step: N
ranks with a global batch B train as one process with batch B.

Dropout masks differ between ranks: with more than one rank, each rank's dropout stream is
re-derived every step from (the run's dropout seed, rank, step), so a resumed run draws the
very masks an uninterrupted one would have, with nothing per rank in the checkpoint.

Rank 0 alone writes: the run folder, the tokenizer, the data cache, metrics, evaluations,
samples, checkpoints and the report; the other ranks wait for the folder, then read what
they need from it. Ranks whose configurations differ are refused before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

import numpy as np

from .. import distributed as dist
from ..data import TokenData, resolve_source, tokenizer_from_dict
from ..distributed.ddp import CollectiveError
from ..nn.utils import clip_grad_norm_
from ..random import Generator, use_generator
from . import loop
from .memory import retain_freed_memory
from .run import RunDir, RunError


def check_same_config(values: dict, where: str) -> None:
    """CollectiveError unless every rank passes the same ``values`` (a config as a dict);
    the message names the first rank and keys that differ."""
    everyone: list = []
    dist.all_gather_object(everyone, values)
    ref = everyone[0]
    for rank, theirs in enumerate(everyone[1:], start=1):
        if theirs != ref:
            keys = sorted(k for k in set(ref) | set(theirs) if ref.get(k) != theirs.get(k))
            shown = "; ".join(f"{k}: rank 0 has {ref.get(k)!r}, rank {rank} has "
                              f"{theirs.get(k)!r}" for k in keys[:4])
            raise CollectiveError(f"{where}: the ranks were started with different "
                                  f"configurations ({shown}); every rank must run the same "
                                  "command")


def check_batch(cfg) -> None:
    """CollectiveError unless ``batch_size`` splits evenly over the ranks."""
    world = dist.get_world_size()
    if cfg.batch_size % world:
        raise CollectiveError(
            f"distributed training: batch_size {cfg.batch_size} (the global batch) cannot be "
            f"split over {world} ranks; choose a batch_size divisible by {world}")


class DataParallel:
    """The data-parallel seams of a :class:`~chainrule.train.loop.Trainer`, mixed in before
    it (``class T(DataParallel, Trainer)``): the batch slice of this rank, the reduction of
    gradients and losses, the main process. The collective set-up runs at the start of
    :meth:`fit`."""

    _files_ready = False  # True on a rank that already waited for rank 0's run folder

    @property
    def is_main(self) -> bool:
        return dist.get_rank() == 0

    def setup_distributed(self) -> None:
        if not self._files_ready:
            dist.barrier()  # rank 0 has written the run folder; the others have read it
            self._files_ready = True
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        cfg = self.cfg
        check_batch(cfg)
        self.ddp = dist.DistributedDataParallel(self.model)
        self.local_batch = cfg.batch_size // self.world
        self._dropout_seed = loop.stream_seeds(cfg.seed)["dropout"]
        self._stop = None
        self.say(f"data parallel: {self.world} ranks (MPI); global batch {cfg.describe_batch()}"
                 f" = {cfg.tokens_per_step():,} tokens per step, {self.local_batch} windows per "
                 f"rank per micro-batch; gradients in {self.ddp.stats['buckets']} bucket(s)")

    def fit(self, on_step=None):
        self.setup_distributed()
        return super().fit(on_step)

    # -- one step ------------------------------------------------------------------------
    def get_batch(self) -> list:
        """This rank's slice of each of the ``grad_accum`` global micro-batches."""
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        return [(x[lo:hi], y[lo:hi]) for x, y in super().get_batch()]

    def compute_loss(self, x, y):
        import chainrule as cr

        return self.ddp(cr.tensor(x), cr.tensor(y))[1]

    def reduce_gradients(self) -> None:
        """The last micro-batch's backward has averaged the gradients across ranks; this
        checks that every bucket was reduced."""
        self.ddp.wait_for_gradients()

    def _dropout_generator(self):
        seq = np.random.SeedSequence([self._dropout_seed, self.rank, self.step])
        return Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0]))

    def train_step(self, batch) -> tuple[float, float]:
        micro = [batch] if loop._is_micro_batch(batch) else list(batch)
        n = len(micro)
        if n == 0:
            raise ValueError("Trainer.train_step: the batch holds no micro-batch; expected a "
                             "list of (x, y) pairs or one (x, y) pair")
        total = 0.0
        with use_generator(self._dropout_generator()):
            for i, (x, y) in enumerate(micro):
                with self.ddp.no_sync() if i < n - 1 else contextlib.nullcontext():
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
        # the global mean loss, and whether any rank was asked to stop (Ctrl-C)
        flags = np.array([total / n, float(bool(self._stop and self._stop["requested"]))])
        dist.all_reduce(flags)
        if flags[1] and self._stop is not None:
            self._stop["requested"] = True
        return float(flags[0] / self.world), float(norm)

    def _catch_sigint(self, stop: dict):
        self._stop = stop
        return super()._catch_sigint(stop)


class DistributedTrainer(DataParallel, loop.Trainer):
    """The GPT trainer, data parallel over the ranks of ``mpiexec``."""


def _as(cls, t):
    """``t`` (a Trainer) rebuilt as an instance of ``cls``."""
    new = cls(t.cfg, t.run, t.tokenizer, t.data, t.model, t.optimizer, step=t.step,
              elapsed=t.elapsed, fingerprint=t.fingerprint, generators=t.generators)
    new.last_val = t.last_val
    return new


def name_run(cfg) -> None:
    """Give every rank rank 0's run name (a timestamp when the config has none)."""
    box = [cfg.name or time.strftime("%Y%m%d-%H%M%S")]
    dist.broadcast_object_list(box, src=0)
    cfg.name = box[0]


def train(cfg=None, resume: str | None = None, explicit: dict | None = None, on_step=None):
    """:func:`chainrule.train.train` on every rank of ``mpiexec``; one rank is the plain
    trainer."""
    dist.init()
    if dist.get_world_size() == 1:
        return loop.train(cfg, resume=resume, explicit=explicit, on_step=on_step)
    retain_freed_memory()
    main = dist.get_rank() == 0
    if resume:
        check_same_config({"resume": os.path.abspath(resume), **(explicit or {})},
                          "train --resume")
        if main:
            t = _as(DistributedTrainer, loop._resume_trainer(resume, explicit or {}))
        else:
            dist.barrier()  # rank 0 has rewritten config.toml and the metrics
            t = _follower_resume(resume, explicit or {})
        return t.fit(on_step)
    cfg = (cfg or loop.TrainConfig()).validate()
    check_same_config(cfg.to_dict(), "train")
    check_batch(cfg)
    name_run(cfg)
    if main:
        t = _as(DistributedTrainer, loop._new_trainer(cfg))
    else:
        dist.barrier()  # rank 0 has made the run folder, the tokenizer and the data cache
        t = _follower_new(cfg)
    return t.fit(on_step)


def _read_tokenizer(run: RunDir):
    with open(run.tokenizer, encoding="utf-8") as f:
        return tokenizer_from_dict(json.load(f))


def _follower_new(cfg) -> DistributedTrainer:
    """A rank other than 0 in a new run: everything from rank 0's run folder, nothing
    written."""
    source = resolve_source(cfg.data)
    if cfg.data:
        cfg.data = source.name
    if not cfg.lr_decay_iters:
        cfg.lr_decay_iters = cfg.max_iters
    run = RunDir(os.path.join(os.path.expanduser(cfg.out_dir), cfg.name))
    if not os.path.isfile(run.tokenizer):
        raise RunError(f"distributed training: rank {dist.get_rank()} cannot read the run "
                       f"folder {run.path!r} rank 0 made; every rank must see the same "
                       "out_dir (a shared file system)")
    tokenizer = _read_tokenizer(run)
    data = TokenData.build(source, tokenizer, run.data_dir, cfg.val_fraction)
    generators = loop.make_streams(cfg.seed)
    with use_generator(generators["init"]):
        model, opt = loop._model_and_optimizer(cfg, tokenizer.vocab_size)
    t = DistributedTrainer(cfg, run, tokenizer, data, model, opt,
                           fingerprint=loop._fingerprint(run), generators=generators)
    t._files_ready = True
    return t


def _follower_resume(path: str, explicit: dict) -> DistributedTrainer:
    """A rank other than 0 resuming: the state from the checkpoint, nothing written."""
    import chainrule as cr

    cfg = loop.resume_config(path, explicit)
    run = RunDir(path)
    ckpt = cr.load(run.checkpoint)
    tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    data = TokenData.build(resolve_source(cfg.data), tokenizer, run.data_dir, cfg.val_fraction)
    generators = loop.streams_from_checkpoint(ckpt.get("rng"), cfg.seed, f"--resume {path}")
    with use_generator(Generator().manual_seed(cfg.seed)):
        model, opt = loop._model_and_optimizer(cfg, tokenizer.vocab_size)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    t = DistributedTrainer(cfg, run, tokenizer, data, model, opt, step=int(ckpt["step"]),
                           elapsed=float(ckpt.get("elapsed", 0.0)),
                           fingerprint=loop._fingerprint(run), generators=generators)
    t.last_val = ckpt.get("val_loss")
    t._files_ready = True
    return t


__all__ = ["DataParallel", "DistributedTrainer", "train", "check_same_config", "name_run",
           "check_batch"]
