"""The main job on the embedded default student, offline and with no data directory.

  tracekd demo                       # runs/demo/report.html when it finishes (<= 10 min on 2 cores)
  tracekd demo --out /tmp/demo       # elsewhere
  tracekd demo --print-config        # the recipe it runs (a normal `tracekd run` config)

Generates a small bAbI-style set, trains SmolLM2-135M-Instruct with LoRA on the vanilla, correct and
incorrect arms, generates, scores, analyzes and writes the report; prints wall time and peak memory.
Re-running skips what is finished.
"""

from __future__ import annotations

import argparse
from importlib.resources import files

from ..experiment.config import load_experiment
from ..experiment.executors import run_experiment

HELP = "run the main job (synthetic bAbI, default student, 3 arms) and write the report"


def config_path():
    return files("tracekd") / "configs" / "demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="run directory (default: runs/demo)")
    parser.add_argument("--print-config", action="store_true", help="print the demo's config and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")


def run(args: argparse.Namespace) -> int:
    path = config_path()
    if args.print_config:
        print(path.read_text(encoding="utf-8"), end="")
        return 0
    config = load_experiment(path)
    if args.out:
        config.out = args.out
    command = "tracekd demo" + (f" --out {args.out}" if args.out else "")
    run_experiment(config, dry_run=args.dry_run, command=command)  # prints wall time, peak memory, report path
    return 0
