"""Run an experiment plan: skip finished stages, resume unfinished ones, then analyze and report.

Every stage writes into its own keyed directory and marks itself finished with ``DONE.json``
(written atomically, last). Training resumes from its last checkpoint and generation appends, so a
run killed at any point and started again finishes with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from ..io import manifest, read_records, write_json, write_text
from ..records import Example
from .config import ExperimentConfig
from .plan import Stage, make_plan

#: rough CPU throughput of the default student, measured on this project's 2-core machine; for --dry-run only
_TRAIN_TOK_PER_S = {"smollm2-135m": 120.0, "tiny-random": 20000.0}
_GEN_TOK_PER_S = {"smollm2-135m": 40.0, "tiny-random": 4000.0}


@dataclass
class StageResult:
    stage: Stage
    status: str  # "cached" | "ran"
    seconds: float


def _cell_dirs(stages: list[Stage], run_dir: Path) -> dict:
    return {s.label: str(s.dir(run_dir)) for s in stages}


def data_path(stage: Stage, run_dir: Path) -> str:
    """Where a build stage reads its raw data: the synth stage's folder or the configured path."""
    synth = [d for d in stage.deps if d.kind == "synth"]
    return str(synth[0].dir(run_dir) / "data") if synth else stage.spec["data"]


def run_stage(stage: Stage, config: ExperimentConfig, run_dir: Path) -> None:
    """Do one stage's work in its directory (resuming what is there), then write DONE.json."""
    out = stage.dir(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    if stage.kind == "synth":
        from ..synth import generate_into

        generate_into(stage.spec, out / "data")
    elif stage.kind == "build":
        from ..build import BuildConfig, build

        spec = dict(stage.spec)
        spec["data"] = data_path(stage, run_dir)
        build(BuildConfig(out=str(out / "sets"), **spec), progress=False)
    elif stage.kind == "train":
        from ..train import train_from_settings

        build_dir = stage.deps[0].dir(run_dir) / "sets"
        train_from_settings(stage.spec["settings"], student=stage.spec["student"], seed=stage.spec["seed"],
                            train_file=build_dir / stage.spec["arm"] / "train.jsonl", output_dir=out / "adapter")
    elif stage.kind == "generate":
        from ..generate import generate_from_settings

        train, build = stage.deps
        generate_from_settings(stage.spec["settings"], student=stage.spec["student"], seed=stage.spec["seed"],
                               adapter=train.dir(run_dir) / "adapter",
                               input_file=build.dir(run_dir) / "sets" / stage.spec["arm"] / "test.jsonl",
                               output_file=out / "generations.jsonl")
    elif stage.kind == "score":
        from ..io import write_records
        from ..score.judge import read_generations, score_pairs, settings_for
        from ..stats.summary import summarize

        gen, build = stage.deps
        examples = read_records(build.dir(run_dir) / "sets" / "examples" / "test.jsonl", Example)
        settings = settings_for(examples, stage.spec["template"], stage.spec["scorer"],
                                stage.spec["trace_definition"])
        pairs, report = read_generations(gen.dir(run_dir) / "generations.jsonl", examples, strict=True)
        judgements = score_pairs(pairs, settings)
        write_records(out / "judgements.jsonl", judgements)
        write_json(out / "summary.json", summarize(judgements))
    else:  # pragma: no cover - plan and runner are written together
        raise ValueError(stage.kind)
    write_json(out / "DONE.json", manifest(kind=stage.kind, config=stage.spec, seed=stage.spec.get("seed"),
                                           label=stage.label, key=stage.key, cell=stage.cell))


def estimate_seconds(stage: Stage, config: ExperimentConfig, run_dir: Path) -> float | None:
    """A rough time for train/generate stages from example and token counts (chars / 4)."""
    build = next((d for d in stage.deps if d.kind == "build"), None)
    if stage.kind not in ("train", "generate") or build is None or not build.done(run_dir):
        return None
    split = "train" if stage.kind == "train" else "test"
    path = build.dir(run_dir) / "sets" / stage.spec["arm"] / f"{split}.jsonl"
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    student = stage.spec["student"]
    if stage.kind == "train":
        epochs = float(stage.spec["settings"].get("num_train_epochs", 3))
        max_steps = stage.spec["settings"].get("max_steps")
        chars = sum(len(json.dumps(r["prompt"])) + len(json.dumps(r["completion"])) for r in rows)
        tokens = chars / 4 * epochs
        if max_steps:
            bs = stage.spec["settings"].get("per_device_train_batch_size", 4)
            tokens = min(tokens, chars / 4 / max(1, len(rows)) * bs * max_steps)
        return tokens / _TRAIN_TOK_PER_S.get(student, 120.0)
    new = sum(len(r["completion"][0]["content"]) / 4 for r in rows) * 1.2
    return new / _GEN_TOK_PER_S.get(student, 40.0)


def describe_plan(stages: list[Stage], config: ExperimentConfig, run_dir: Path) -> str:
    lines = [f"plan for {config.name}: {len(stages)} stages in {run_dir}"]
    total = 0.0
    unknown = 0
    for i, s in enumerate(stages, 1):
        state = "cached" if s.done(run_dir) else ("partial" if s.dir(run_dir).exists() else "to run")
        est = None if state == "cached" else estimate_seconds(s, config, run_dir)
        if est is not None:
            total += est
        elif state != "cached" and s.kind in ("train", "generate"):
            unknown += 1
        eta = f"~{est / 60:.1f} min" if est is not None else ""
        lines.append(f"  [{i:>3}/{len(stages)}] {state:<7} {s.label:<55} {s.kind}-{s.key} {eta}")
    lines.append(f"estimated time for what is left: ~{total / 60:.0f} min"
                 + (f" (+ {unknown} train/generate stages whose data is not built yet)" if unknown else ""))
    return "\n".join(lines)


def run_experiment(config: ExperimentConfig, *, dry_run: bool = False, source: str | None = None,
                   log=print) -> Path:
    """Run (or, with ``dry_run``, describe) every stage; then analyze and write the report.

    ``source`` is the config file's path, recorded as the command that reproduces the run.
    """
    run_dir = config.run_dir
    stages = make_plan(config)
    if dry_run:
        log(describe_plan(stages, config, run_dir))
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "plan.json", {"command": f"tracekd run {source}" if source else None,
                                       "config": _config_dict(config),
                                       "stages": [{"label": s.label, "kind": s.kind, "key": s.key, "cell": s.cell,
                                                   "dir": str(s.dir(run_dir).relative_to(run_dir))}
                                                  for s in stages]})
    t_start = time.monotonic()
    for i, s in enumerate(stages, 1):
        if s.done(run_dir):
            log(f"[{i}/{len(stages)}] cached  {s.label}")
            continue
        log(f"[{i}/{len(stages)}] run     {s.label}  ({s.kind}-{s.key})")
        t0 = time.monotonic()
        run_stage(s, config, run_dir)
        log(f"[{i}/{len(stages)}] done    {s.label}  in {time.monotonic() - t0:.1f} s")
    from .analysis import analyze_run
    from ..report import write_report

    analysis = analyze_run(config, stages, run_dir)
    write_json(run_dir / "analysis.json", analysis)
    report = write_report(run_dir, analysis)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    log(f"finished in {time.monotonic() - t_start:.0f} s (peak RSS {peak_gb:.2f} GB); report: {report}")
    return run_dir


def _config_dict(config: ExperimentConfig) -> dict:
    from dataclasses import asdict

    return asdict(config)
