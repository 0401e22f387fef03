"""Run an experiment plan: skip finished stages, resume unfinished ones, then analyze and report.

Every stage writes into its own keyed directory and marks itself finished with ``DONE.json``
(written atomically, last). Training resumes from its last checkpoint and generation appends, so a
run killed at any point and started again finishes with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..build import BuildConfig, build
from ..datasets import DATASETS
from ..devices import visible_gpus
from ..generate import generate_from_settings
from ..io import manifest, read_records, write_json, write_records
from ..records import Example
from ..score.judge import read_generations, score_pairs, settings_for
from ..stats.summary import summarize
from ..synth import generate_into
from ..teacher.stages import describe_teacher_stage, response_dirs, run_teacher_stage
from ..train import train_from_settings
from .config import STAGE_NAMES, ExperimentConfig
from .estimate import ASSUMED_STAGE_S, describe_sources, estimate_stage
from .locks import stage_lock
from .machine_load import LoadMeter
from .plan import Stage
from .state import stage_state


@dataclass(frozen=True)
class StageKind:
    """What a stage kind does: ``run(stage, run_dir)`` fills the stage folder; ``model`` stages load a model.

    ``estimate(stage, run_dir, cache, device) -> (seconds or None, source)`` is the stage's time for the
    dry-run plan (train, generate: :func:`.estimate.estimate_stage`); ``describe(stage, run_dir)`` is a
    line the dry-run plan adds while the stage is not done.
    """

    name: str
    run: Callable[[Stage, Path], None]
    model: bool = False  # train/generate: one per GPU, own process under the subprocess executor
    help: str = ""
    estimate: Callable[[Stage, Path, dict, str], tuple[float | None, str]] | None = None
    describe: Callable[[Stage, Path], str] | None = None


#: stage kind name -> StageKind; the plan's stages name their inputs by kind (``stage.input("build")``)
STAGE_KINDS: dict[str, StageKind] = {}


def stage_kind(name: str, *, model: bool = False, help: str = "",
               estimate: Callable[[Stage, Path, dict, str], tuple[float | None, str]] | None = None,
               describe: Callable[[Stage, Path], str] | None = None):
    """Register the function that runs stages of kind ``name`` (a decorator; the names are the config's)."""
    if name not in STAGE_NAMES:
        raise ValueError(f"stage kind {name!r} is not one of experiment.config.STAGE_NAMES {STAGE_NAMES}")

    def register(fn: Callable[[Stage, Path], None]):
        STAGE_KINDS[name] = StageKind(name, fn, model, help, estimate, describe)
        return fn
    return register


def data_path(stage: Stage, run_dir: Path) -> str:
    """Where a build stage reads its raw data: the synth stage's folder or the configured path."""
    synth = stage.optional_input("synth")
    return str(synth.dir(run_dir) / "data") if synth is not None else stage.spec["data"]


@stage_kind("synth", help="synthetic raw data (tracekd synth)")
def _run_synth(stage: Stage, run_dir: Path) -> None:
    generate_into(stage.spec, stage.dir(run_dir) / "data", overwrite=True)  # an unfinished stage's files


@stage_kind("build", help="SFT sets of every arm (tracekd build)")
def _run_build(stage: Stage, run_dir: Path) -> None:
    spec = dict(stage.spec)
    spec["data"] = data_path(stage, run_dir)
    if stage.optional_input("teacher") is not None:  # restricted to the teacher-correct subset
        spec["teacher_responses"] = response_dirs(stage.input("teacher").dir(run_dir))
    build(BuildConfig(out=str(stage.dir(run_dir) / "sets"), **spec), progress=False, overwrite=True)


def _describe_teacher(stage: Stage, run_dir: Path) -> str:
    """The requests and tokens the teacher stage needs, and how many are cached."""
    return describe_teacher_stage(stage, run_dir, data_path(stage, run_dir))


@stage_kind("teacher", help="teacher answers, explanations and summaries through the client (tracekd teacher)",
            describe=_describe_teacher)
def _run_teacher(stage: Stage, run_dir: Path) -> None:
    run_teacher_stage(stage, run_dir, data_path(stage, run_dir))


def _estimate(stage: Stage, run_dir: Path, cache: dict, device: str) -> tuple[float | None, str]:
    """A train or generate stage's time from its rows' tokens and the rate measured here (:mod:`.estimate`)."""
    return estimate_stage(stage, run_dir, cache, device)


@stage_kind("train", model=True, help="LoRA fine-tuning of one cell (tracekd train)", estimate=_estimate)
def _run_train(stage: Stage, run_dir: Path) -> None:
    build_dir = stage.input("build").dir(run_dir) / "sets"
    train_from_settings(stage.spec["settings"], student=stage.spec["student"], seed=stage.spec["seed"],
                        train_file=build_dir / stage.spec["arm"] / "train.jsonl",
                        output_dir=stage.dir(run_dir) / "adapter")


@stage_kind("generate", model=True, help="generations of one cell's adapter (tracekd generate)",
            estimate=_estimate)
def _run_generate(stage: Stage, run_dir: Path) -> None:
    train = stage.optional_input("train")  # the zero-shot baselines have none
    generate_from_settings(stage.spec["settings"], student=stage.spec["student"], seed=stage.spec["seed"],
                           adapter=train.dir(run_dir) / "adapter" if train is not None else None,
                           input_file=stage.input("build").dir(run_dir) / "sets" / stage.spec["arm"] / "test.jsonl",
                           output_file=stage.dir(run_dir) / "generations.jsonl")


@stage_kind("score", help="parse, verify and score one cell's generations (tracekd score)")
def _run_score(stage: Stage, run_dir: Path) -> None:
    out = stage.dir(run_dir)
    examples = read_records(stage.input("build").dir(run_dir) / "sets" / "examples" / "test.jsonl", Example)
    settings = settings_for(examples, stage.spec["template"], stage.spec["scorer"], stage.spec["trace_definition"])
    pairs, _ = read_generations(stage.input("generate").dir(run_dir) / "generations.jsonl", examples, strict=True)
    judgements = score_pairs(pairs, settings)
    from ..teacher.measures import add_freeform  # checkable facts of the trace as free text, every arm

    judgements = add_freeform(judgements, pairs, stage.spec.get("teacher_prompts"))
    write_records(out / "judgements.jsonl", judgements)
    summary = summarize(judgements)
    write_json(out / "summary.json", summary.to_dict() if hasattr(summary, "to_dict") else summary)


def is_model_stage(stage: Stage) -> bool:
    return STAGE_KINDS[stage.kind].model


def run_stage(stage: Stage, run_dir: Path) -> None:
    """Do one stage's work in its directory (resuming what is there), then write DONE.json.

    Holds the stage folder's lock throughout (:mod:`.locks`): the same stage never runs twice at once,
    whichever executor or re-submission started it.
    """
    out = stage.dir(run_dir)
    with stage_lock(out):
        if stage.done(run_dir):  # finished by another runner while this one waited in a queue
            return
        t0, load = time.monotonic(), LoadMeter.start()
        STAGE_KINDS[stage.kind].run(stage, run_dir)
        write_json(out / "DONE.json", manifest(kind=stage.kind, config=stage.spec, seed=stage.spec.get("seed"),
                                               label=stage.label, key=stage.key, cell=stage.cell))
    if is_model_stage(stage):
        record_timing(stage, run_dir, time.monotonic() - t0, load.others_share())


def record_timing(stage: Stage, run_dir: Path, seconds: float, others_share: float | None = None) -> None:
    """Keep a finished model stage's measured rate for later dry runs (:func:`.estimate.record_stage`), with
    the share of the CPUs other processes took meanwhile (:mod:`.machine_load`).

    Never fails the run: a record that cannot be written is reported on stderr and skipped.
    """
    try:
        from .estimate import record_stage

        record_stage(stage, run_dir, seconds, "cuda" if visible_gpus() else "cpu", others_share=others_share)
    except Exception as e:  # noqa: BLE001 - an input to later estimates, never a reason to fail a finished stage
        print(f"note: could not record {stage.label}'s time for estimates: {type(e).__name__}: {e}", file=sys.stderr)


def estimate_seconds(stage: Stage, run_dir: Path, cache: dict, device: str = "cpu") -> tuple[float | None, str]:
    """(seconds or None, where the figures come from) of a stage whose kind estimates its time; else (None, "")."""
    fn = STAGE_KINDS[stage.kind].estimate
    return fn(stage, run_dir, cache, device) if fn is not None else (None, "")


def missing_data(config: ExperimentConfig) -> list[str]:
    """One line per configured data folder that does not exist, saying where to get it."""
    lines = []
    for entry in config.datasets:
        if entry.data is not None and not Path(entry.data).exists():
            how = DATASETS.get(entry.name).download or "see the README's Data section"
            lines.append(f"missing data: {entry.name} at {entry.data} - {how}")
    return lines


def _fmt_minutes(seconds: float | None) -> str:
    return "unknown" if seconds is None else (f"~{seconds / 60:.1f} min" if seconds >= 60 else f"~{seconds:.0f} s")


def describe_plan(stages: list[Stage], config: ExperimentConfig, run_dir: Path, executor: str = "local") -> str:
    """The plan as a table: stage, key, status, estimate, the rows it waits for and (off local) its resources."""
    device = "cuda" if visible_gpus() else "cpu"
    missing = missing_data(config)
    absent = {e.data for e in config.datasets if e.data is not None and not Path(e.data).exists()}
    index = {s.dirname: i for i, s in enumerate(stages, 1)}

    cache: dict = {}
    sources: dict[tuple[str, str, str], str] = {}
    rows, total, unknown, other = [], 0.0, 0, 0.0
    for i, s in enumerate(stages, 1):
        state = stage_state(s, run_dir).state
        if state == "done":
            state = "cached"
        elif s.kind == "build" and s.spec.get("data") in absent:
            state = "no data"
        est, why = (None, "")
        if state != "cached" and STAGE_KINDS[s.kind].estimate is not None:
            stage_device = (("cuda" if config.executor.resources_for(s.kind).gpus else "cpu") if executor == "slurm"
                            else device)
            est, why = estimate_seconds(s, run_dir, cache, stage_device)
            sources[(s.spec.get("student", "-"), s.kind, stage_device)] = why
            if est is None:
                unknown += 1
            else:
                total += est
        elif state != "cached" and s.kind in ASSUMED_STAGE_S:  # small stages without a model: assumed
            other += ASSUMED_STAGE_S[s.kind]
        row = [str(i), s.label, s.key, state, _fmt_minutes(est) if STAGE_KINDS[s.kind].estimate else "",
               ",".join(str(index[d.dirname]) for d in s.deps) or "-"]
        if executor != "local":
            row.append(resources_summary(config.executor.resources_for(s.kind), executor))
        rows.append(row)
    head = ["#", "stage", "key", "status", "estimate", "after"] + (["resources"] if executor != "local" else [])
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    fmt = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    where = "SLURM nodes" if executor == "slurm" else f"this machine ({device})"
    lines = [f"plan for {config.name}: {len(stages)} stages in {run_dir} (executor: {executor}, on {where})",
             fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows)]
    if executor in ("slurm", "submitit-local"):
        lines.append(f"then: analyze + report (after every score stage; {resources_summary(config.executor.resources_for('analyze'), executor)})")
    if total or other:
        other += ASSUMED_STAGE_S["analyze"]
    parts = f"train/generate {_fmt_minutes(total)}, other stages and analyze + report {_fmt_minutes(other)} assumed"
    lines.append(f"time for what is left: unknown ({unknown} stage(s) cannot be estimated here; the rest: {parts})"
                 if unknown else f"time for what is left: {_fmt_minutes(total + other)} ({parts})"
                 if total + other else "time for what is left: -")
    for (student, kind, stage_device), why in sorted(sources.items()):
        lines.append(f"  {kind} throughput of {student} on {stage_device}: {why}")
    lines += describe_sources(cache)
    for s in stages:
        describe = STAGE_KINDS[s.kind].describe
        if describe is not None and not s.done(run_dir):
            lines.append(f"  {s.label}: " + describe(s, run_dir))
    lines += missing
    return "\n".join(lines)


def resources_summary(res, executor: str) -> str:
    """One line of a stage's resources as the executor uses them."""
    if executor in ("subprocess", "submitit-local"):
        return ("model: " + (f"1 GPU of {len(visible_gpus())}" if visible_gpus() else "CPU, one at a time")) \
            if res.gpus else "cpu"
    parts = [f"{k}={v}" for k, v in (("partition", res.partition), ("gpus", res.gpus), ("cpus", res.cpus),
                                      ("mem", f"{res.mem_gb:g}G" if res.mem_gb else None),
                                      ("time", f"{res.time_min}m"), ("account", res.account)) if v]
    return " ".join(parts)


def write_plan(stages: list[Stage], config: ExperimentConfig, run_dir: Path, command: str | None) -> None:
    """``RUN/plan.json``: the command, the config and every stage with its inputs (what workers and --status read)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "plan.json", {"command": command, "cwd": str(Path.cwd()), "config": config.to_dict(),
                                       "stages": [s.to_dict() for s in stages]})
