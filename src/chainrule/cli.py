"""The ``chainrule`` command: ``train``, ``sample``, ``diagnose`` and ``finetune``.

    chainrule train                                   a small GPT on the embedded corpus
    chainrule train --config run.toml --n_layer=6     TOML config, then --key=value overrides
    chainrule train --resume runs/20260101-120000     continue a run exactly where it stopped
    chainrule sample RUN_DIR --prompt "def " --max-new-tokens 200 --temperature 0.8 --top-k 40

A mistake in the input (a missing or non-UTF-8 data file, an unknown config key, a prompt the
tokenizer cannot read...) prints one clear message and exits non-zero: 2 for a configuration or
command-line error, 1 for anything else, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

_EXTERNAL = {  # subcommands implemented elsewhere in the package, imported only when used
    "diagnose": ("chainrule.diagnostics.cli", "diagnose a training run or a model (the "
                 "training doctor)"),
    "finetune": ("chainrule.finetune.cli", "fine-tune a pre-trained language model"),
}


class _Unavailable(Exception):
    pass


def _train_parser(sub) -> None:
    from .train.config import config_help

    p = sub.add_parser(
        "train", help="train a GPT on text (default: the embedded corpus)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a GPT language model. Any config key can be set with --key=value "
                    "(after --config, which they override).",
        epilog="config keys (--key=default  type  meaning):\n" + config_help(),
    )
    p.add_argument("--config", metavar="FILE", help="a TOML file of config keys")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last checkpoint")
    p.set_defaults(func=_cmd_train)


def _sample_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a trained run (inference only)",
                       description="Sample text from the last checkpoint of a training run.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by chainrule train")
    p.add_argument("--prompt", default="", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=500, metavar="N")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="softmax temperature; 0 picks the most likely token (default 0.8)")
    p.add_argument("--top-k", type=int, default=0, metavar="K",
                   help="sample among the K most likely tokens (0 = all)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P",
                   help="sample among the most likely tokens holding probability P (1 = all)")
    p.add_argument("--num-samples", type=int, default=1, metavar="N")
    p.add_argument("--seed", type=int, default=1337)
    p.set_defaults(func=_cmd_sample)


def _external_parser(sub, name: str, configure: bool) -> None:
    module_name, help_text = _EXTERNAL[name]
    if not configure:  # listed in --help, but not imported unless it is the command run
        sub.add_parser(name, help=help_text, add_help=False)
        return
    try:
        module = importlib.import_module(module_name)
        configure_parser, run = module.configure_parser, module.run
    except (ImportError, AttributeError) as e:
        reason = f"{type(e).__name__}: {e}"
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=lambda args: _unavailable(name, reason))
        return
    p = sub.add_parser(name, help=help_text, description=help_text)
    configure_parser(p)
    p.set_defaults(func=run)


def _unavailable(name, e) -> int:
    raise _Unavailable(f"'chainrule {name}' is not available in this installation ({e})")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``command`` (the subcommand about to run) says which external
    subcommand modules to import."""
    parser = argparse.ArgumentParser(
        prog="chainrule", description="chainrule: train, sample and diagnose neural networks.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _train_parser(sub)
    _sample_parser(sub)
    for name in _EXTERNAL:
        _external_parser(sub, name, configure=command == name)
    return parser


def _version() -> str:
    from . import __version__

    return f"chainrule {__version__}"


# ----------------------------------------------------------------------------- commands


def _cmd_train(args, overrides: list[str]) -> int:
    from .distributed import launched_size
    from .train import loop
    from .train.config import load_toml, make_config, parse_overrides

    train = loop.train
    if launched_size() > 1:  # under mpiexec -n N: data parallel over the N ranks
        from .train.distributed import train
    explicit = parse_overrides(overrides)
    if args.resume:
        values = load_toml(args.config) if args.config else {}
        values.update(explicit)
        result = train(resume=args.resume, explicit=values)
    else:
        result = train(make_config(args.config, explicit))
    if result.interrupted:
        return 130
    from .distributed import is_main_process

    if not is_main_process():  # under mpiexec, rank 0 alone reports
        return 0
    if result.sample:
        print("\n--- sample ---\n" + result.sample + "\n--------------")
    val = "" if result.val_loss is None else f", val loss {result.val_loss:.4f}"
    print(f"done: {result.step} steps{val}; report: {result.run_dir}/report.html")
    return 0


def _cmd_sample(args, overrides: list[str]) -> int:
    import numpy as np

    import chainrule as cr

    from .train import load_run

    if overrides:
        raise _UsageError(f"sample: unexpected arguments {' '.join(overrides)}")
    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise _UsageError("sample: --max-new-tokens must be >= 0 and --num-samples >= 1")
    if not 0 <= args.temperature < float("inf") or args.top_k < 0 or not 0 < args.top_p <= 1:
        raise _UsageError(f"sample: need a finite --temperature >= 0, --top-k >= 0 and "
                          f"0 < --top-p <= 1; got --temperature={args.temperature} "
                          f"--top-k={args.top_k} --top-p={args.top_p}")
    if not 0 <= args.seed < 2**63:
        raise _UsageError(f"sample: --seed must be in [0, 2**63), got {args.seed}")
    from .finetune.trainer import is_finetune_run, load_finetuned

    loader = load_finetuned if is_finetune_run(args.run_dir) else load_run
    model, tokenizer, cfg = loader(args.run_dir)
    prompt = args.prompt or "\n"
    try:
        ids = tokenizer.encode(prompt)
    except ValueError as e:
        raise ValueError(f"sample: --prompt {args.prompt!r}: {e}") from None
    if not ids:
        ids = [0]
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for i in range(args.num_samples):
        out = model.generate(cr.tensor(np.array([ids], dtype=np.int64)), args.max_new_tokens,
                             temperature=args.temperature, top_k=args.top_k or None,
                             top_p=args.top_p if args.top_p < 1 else None, generator=rng)
        if i:
            print("\n---------------")
        print(tokenizer.decode(out.numpy()[0]), flush=True)
    dt = time.perf_counter() - start
    n = args.max_new_tokens * args.num_samples
    print(f"[{n} tokens in {dt:.2f} s, {n / max(dt, 1e-9):.0f} tokens/s]", file=sys.stderr)
    return 0


class _UsageError(Exception):
    pass


# ----------------------------------------------------------------------------- entry point


def _user_errors():
    """Exception types that mean a mistake in the input (message, no traceback)."""
    from .data import DataError, TokenizerError
    from .train.run import RunError

    return (DataError, TokenizerError, RunError)


def main(argv: list[str] | None = None) -> int:
    """Run a command; under ``mpiexec`` with several ranks, a failure on any rank prints its
    message once (with the rank) and ends every rank (``MPI_Abort``)."""
    from .distributed import launched_size

    if launched_size() <= 1:
        return _main(argv)
    from . import distributed as dist

    try:
        code = _main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:  # noqa: BLE001 - any failure must end every rank
        dist.init()
        command = next((a for a in (argv or sys.argv[1:]) if not a.startswith("-")), "")
        dist.abort_on(e, f"chainrule {command}: ", traceback=not getattr(
            e, "every_rank", False))
    if code not in (0, None):
        dist.init()
        dist.abort(f"chainrule: exit status {code} (the error is above); stopping every rank",
                   int(code))
    return code


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    if command in ("train", "sample"):
        args, rest = parser.parse_known_args(argv)
    else:
        args, rest = parser.parse_args(argv), []
    if args.command is None:
        parser.print_help()
        return 2
    from .train.config import ConfigError

    try:
        if args.command in _EXTERNAL:
            return int(args.func(args) or 0)
        return args.func(args, rest)
    except (ConfigError, _UsageError) as e:
        print(f"chainrule {args.command}: error: {e}", file=sys.stderr)
        return 2
    except _Unavailable as e:
        print(f"chainrule {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nchainrule {args.command}: interrupted", file=sys.stderr)
        return 130
    except ImportError as e:
        print(f"chainrule {args.command}: error: a missing optional dependency: {e}",
              file=sys.stderr)
        return 1
    except MemoryError:
        print(f"chainrule {args.command}: error: out of memory (a smaller model, batch_size or "
              "block_size needs less)", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk, a folder that cannot be written, a file that vanished
        print(f"chainrule {args.command}: error: {_os_error_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:
        if isinstance(e, (*_user_errors(), ValueError)):
            print(f"chainrule {args.command}: error: {_one_line(e)}", file=sys.stderr)
            return 1
        raise


def _one_line(e: Exception) -> str:
    return str(e) if str(e) else type(e).__name__


def _os_error_line(e: OSError) -> str:
    import errno

    where = f"{e.filename}: " if e.filename and str(e.filename) not in str(e.strerror) else ""
    text = f"{where}{e.strerror or e}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        text += ("; the last checkpoint is intact: free some space and continue with "
                 "--resume")
    return text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
