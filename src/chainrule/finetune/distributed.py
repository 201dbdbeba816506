"""Data-parallel fine-tuning: ``mpiexec -n N chainrule finetune ...``.

The GPT trainer's data-parallel seams (:mod:`chainrule.train.distributed`) on the
fine-tuning trainer: the same global batches sliced by rank, the trainable parameters'
gradients averaged across ranks, and only rank 0 writing the run folder.
"""

from __future__ import annotations

import os
from dataclasses import asdict

from .. import distributed as dist
from ..data import TokenData, resolve_source
from ..random import use_generator
from ..train.distributed import DataParallel, check_batch, check_same_config, name_run
from ..train.loop import make_streams, streams_from_checkpoint
from ..train.run import RunDir
from . import trainer as ft


class DistributedFinetuneTrainer(DataParallel, ft.FinetuneTrainer):
    """The fine-tuning trainer, data parallel over the ranks of ``mpiexec``."""


def finetune(spec, cfg, on_step=None):
    """:func:`chainrule.finetune.trainer.finetune` on every rank of ``mpiexec``."""
    dist.init()
    if dist.get_world_size() == 1:
        return ft.finetune(spec, cfg, on_step)
    spec.validate()
    cfg.validate()
    check_same_config({"finetune": asdict(spec), **cfg.to_dict()}, "finetune")
    check_batch(cfg)
    name_run(cfg)
    if dist.get_rank() == 0:
        return ft.finetune(spec, cfg, on_step, trainer_class=DistributedFinetuneTrainer)
    source = resolve_source(cfg.data)
    if cfg.data:
        cfg.data = source.name
    if not cfg.lr_decay_iters:
        cfg.lr_decay_iters = cfg.max_iters
    generators = make_streams(cfg.seed)
    with use_generator(generators["init"]):  # LoRA's A matrices, as on rank 0
        model, tok = ft.prepare_model(spec)
    dist.barrier()  # rank 0 has made the run folder and the data cache
    run = RunDir(os.path.join(os.path.expanduser(cfg.out_dir), cfg.name))
    data = TokenData.build(source, tok, run.data_dir, cfg.val_fraction)
    opt = ft.make_optimizer(model, cfg)
    t = DistributedFinetuneTrainer(spec, cfg, run, tok, data, model, opt, generators=generators)
    t._files_ready = True
    return t.fit(on_step)


def resume(run_dir, max_iters=None, on_step=None):
    """:func:`chainrule.finetune.trainer.resume` on every rank of ``mpiexec``."""
    dist.init()
    if dist.get_world_size() == 1:
        return ft.resume(run_dir, max_iters, on_step)
    check_same_config({"resume": os.path.abspath(run_dir), "max_iters": max_iters},
                      "finetune --resume")
    if dist.get_rank() == 0:
        return ft.resume(run_dir, max_iters, on_step, trainer_class=DistributedFinetuneTrainer)
    run, spec, ckpt, model, tok, cfg = ft._read_run(run_dir)
    generators = streams_from_checkpoint(ckpt.get("rng"), cfg.seed, f"--resume {run.path}")
    if max_iters is not None:
        cfg.max_iters = max_iters
    data = TokenData.build(resolve_source(cfg.data), tok, run.data_dir, cfg.val_fraction)
    opt = ft.make_optimizer(model, cfg)
    opt.load_state_dict(ckpt["optimizer"])
    t = DistributedFinetuneTrainer(spec, cfg, run, tok, data, model, opt,
                                   step=int(ckpt["step"]),
                                   elapsed=float(ckpt.get("elapsed", 0.0)),
                                   generators=generators)
    t.last_val = ckpt.get("val_loss")
    return t.fit(on_step)  # waits for rank 0 (which truncates the metrics) in its set-up


__all__ = ["DistributedFinetuneTrainer", "finetune", "resume"]
