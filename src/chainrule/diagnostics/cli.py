"""``chainrule diagnose RUN_DIR``: print the training doctor's findings for a saved run.

Reads ``RUN_DIR/diagnostics.jsonl`` (written by ``Watcher.save``; the GPT trainer saves it by
itself), runs the doctor's rules on it and prints each finding with its module path, step and
suggested fix. ``--plots`` redraws the pictures from the file.
"""

from __future__ import annotations

import json
import os
import sys

from .doctor import SEVERITIES, diagnose
from .watcher import JSONL, load_run


def configure_parser(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help=f"a run folder holding {JSONL} (or the file itself)")
    parser.add_argument("--json", action="store_true",
                        help="print the findings as JSON, one object a line")
    parser.add_argument("--min-severity", choices=SEVERITIES, default="info",
                        help="hide findings less severe than this (default: show all)")
    parser.add_argument("--plots", action="store_true",
                        help="redraw gradient_flow.png, update_ratio.png and activations.png "
                             "into RUN_DIR from the statistics")


def _find(run_dir):
    for cand in (run_dir, os.path.join(run_dir, "diagnostics")):
        if os.path.isfile(cand) or os.path.exists(os.path.join(cand, JSONL)):
            return cand
    return run_dir


def run(args) -> int:
    """Print the findings; 0 when the file was read (whatever it says), 1 when it was not."""
    where = _find(args.run_dir)
    try:
        meta, records, losses = load_run(where)
    except (FileNotFoundError, ValueError) as e:
        print(f"chainrule diagnose: {e}", file=sys.stderr)
        return 1
    findings = diagnose(meta, records, losses)
    keep = SEVERITIES[: SEVERITIES.index(args.min_severity) + 1]
    findings = [f for f in findings if f.severity in keep]
    if args.json:
        for f in findings:
            print(json.dumps(f.to_dict()))
    else:
        steps = losses[0]
        span = f"steps {steps[0]}..{steps[-1]}, " if steps else ""
        print(f"{where}: {len(records)} checked step(s) ({span}statistics every "
              f"{meta.get('interval', '?')} steps), {len(meta.get('params', {}))} parameters")
        if not findings:
            print("no problems found")
        for f in findings:
            print(f)
    if args.plots:
        from . import plots

        out = where if os.path.isdir(where) else os.path.dirname(where)
        for path in plots.save_all(meta, records, out):
            if not args.json:
                print(f"wrote {path}")
    return 0
