"""Run a whole experiment from one config: build -> train -> generate -> score -> analyze -> report.

  tracekd run configs/experiments/babi/smollm2-135m_cpu.yaml
  tracekd run configs/experiments/babi/smollm2-135m_cpu.yaml --dry-run     # the plan, what is cached, a time estimate
  tracekd run --explain                                        # every config key with its help text

Each stage's output lives in RUN/stages/<kind>-<hash of what it depends on>/, so a re-run skips
finished stages and resumes unfinished ones (training from its last checkpoint, generation by
appending). Unknown or mistyped config keys are errors with did-you-mean.
"""

from __future__ import annotations

import argparse

HELP = "run an experiment config end to end (resumable; --dry-run shows the plan)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="experiment YAML")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and a rough time estimate, run nothing")
    parser.add_argument("--out", default=None, help="run directory (overrides the config's `out`)")
    parser.add_argument("--explain", action="store_true", help="print every config key with its help text")


def explain() -> str:
    """Every key of the experiment config (and its nested sections) with its type, default and help."""
    from ..config import explain as explain_fields
    from ..experiment.config import DatasetEntry, ExperimentConfig, SynthSpec

    return "\n\n".join(f"# {title}\n{explain_fields(cls)}" for title, cls in (
        ("top level", ExperimentConfig), ("datasets[] entries", DatasetEntry), ("datasets[].synth", SynthSpec)))


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..experiment.config import load_experiment
    from ..experiment.runner import run_experiment

    if args.explain:
        print(explain())
        return 0
    if not args.config:
        raise ConfigError("give an experiment config (see configs/), or --explain")
    config = load_experiment(args.config)
    if args.out:
        config.out = args.out
    command = f"tracekd run {args.config}" + (f" --out {args.out}" if args.out else "")
    run_experiment(config, dry_run=args.dry_run, command=command)
    return 0
