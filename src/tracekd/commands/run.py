"""Run a whole experiment from one config: build -> train -> generate -> score -> analyze -> report.

  tracekd run configs/experiments/babi/smollm2-135m_cpu.yaml
  tracekd run configs/experiments/babi/smollm2-135m_cpu.yaml --dry-run     # the plan, what is cached, a time estimate
  tracekd run --explain                                        # every config key with its help text
  tracekd run CONFIG --executor subprocess --max-parallel 2    # each stage its own process (the default)
  tracekd run CONFIG --executor slurm --dry-run                # the SLURM jobs, dependencies and resources
  tracekd run CONFIG --executor slurm                          # submit them (submitit), return
  tracekd run --status runs/NAME                               # every stage: done/running/queued/failed/...

Each stage's output lives in RUN/stages/<kind>-<hash of what it depends on>/, so a re-run skips
finished stages and resumes unfinished ones (training from its last checkpoint, generation by
appending). Unknown or mistyped config keys are errors with did-you-mean.
"""

from __future__ import annotations

import argparse

from ..config import explain as explain_fields
from ..config import read_yaml, settings_of
from ..errors import ConfigError
from ..experiment.config import DatasetEntry, ExecutorConfig, ExperimentConfig, Resources, SynthSpec, load_experiment
from ..experiment.executors import run_experiment
from ..experiment.state import status_table
from ..generate.config import GenerateConfig, GenerateSettings
from ..teacher.stages import Endpoint, TeacherSection
from ..train.config import TrainConfig, TrainSettings

HELP = "run an experiment config end to end (resumable; --dry-run shows the plan)"

#: the executors (tracekd.experiment.config.EXECUTORS; repeated here so --help needs no import)
EXECUTOR_CHOICES = ("auto", "local", "subprocess", "slurm", "submitit-local")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="experiment YAML")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and a rough time estimate, run nothing")
    parser.add_argument("--out", default=None, help="run directory (overrides the config's `out`)")
    parser.add_argument("--explain", action="store_true", help="print every config key with its help text")
    parser.add_argument("--executor", default=None, choices=EXECUTOR_CHOICES,
                        help="where stages run (default: the config's `executor.name`, auto = subprocess)")
    parser.add_argument("--max-parallel", type=int, default=None,
                        help="subprocess/submitit-local: stages at once (model stages still one per GPU)")
    parser.add_argument("--status", metavar="RUN", default=None,
                        help="print the state of every stage of the run folder RUN and exit")


def explain() -> str:
    """Every key of the experiment config (and its nested sections) with its type, default and help."""
    return "\n\n".join(f"# {title}\n{explain_fields(cls)}" for title, cls in (
        ("top level", ExperimentConfig), ("datasets[] entries", DatasetEntry), ("datasets[].synth", SynthSpec),
        ("train (flat keys; the headings are their sections)", TrainSettings),
        ("generate (flat keys; the headings are their sections)", GenerateSettings),
        ("executor", ExecutorConfig), ("executor.resources.<kind>", Resources), ("teacher", TeacherSection),
        ("teacher.summariser / teacher.explainer", Endpoint)))


def run(args: argparse.Namespace) -> int:
    if args.explain:
        print(explain())
        return 0
    if args.status:
        print(status_table(args.status))
        return 0
    if not args.config:
        raise ConfigError("give an experiment config (see configs/experiments/), or --explain, or --status RUN")
    not_an_experiment(args.config)
    config = load_experiment(args.config)
    if args.out:
        config.out = args.out
    if args.max_parallel is not None and args.max_parallel < 1:
        raise ConfigError("--max-parallel must be >= 1")
    command = f"tracekd run {args.config}" + (f" --out {args.out}" if args.out else "") \
        + (f" --executor {args.executor}" if args.executor else "")
    run_experiment(config, dry_run=args.dry_run, command=command, executor=args.executor,
                   max_parallel=args.max_parallel)
    return 0


def not_an_experiment(path: str) -> None:
    """A train or generate recipe given to `tracekd run` is named as such, with the command that takes it."""
    keys = {str(k).replace("-", "_") for k in read_yaml(path)}
    if not keys or "datasets" in keys:
        return
    for command, cls, files in (("train", TrainConfig, "--train-file SFT.jsonl --output-dir OUT"),
                                ("generate", GenerateConfig, "--adapter OUT --input-file TEST.jsonl "
                                                             "--output-file OUT/generations.jsonl")):
        if keys <= set(settings_of(cls)):
            raise ConfigError(f"{path} is a `tracekd {command}` config, not an experiment: "
                              f"tracekd {command} --config {path} {files} "
                              "(experiment configs are in configs/experiments/)")
