"""Run an experiment plan: skip finished stages, resume unfinished ones, then analyze and report.

Every stage writes into its own keyed directory and marks itself finished with ``DONE.json``
(written atomically, last). Training resumes from its last checkpoint and generation appends, so a
run killed at any point and started again finishes with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict
from pathlib import Path

from ..io import manifest, read_records, write_json
from ..records import Example
from .config import ExperimentConfig
from .plan import Stage, make_plan

#: rough CPU throughput of the default student, measured on this project's 2-core machine; for --dry-run only
_TRAIN_TOK_PER_S = {"smollm2-135m": 160.0, "tiny-random": 20000.0}
_GEN_TOK_PER_S = {"smollm2-135m": 100.0, "tiny-random": 4000.0}


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


def planned_rows(build: Stage, run_dir: Path, cache: dict) -> dict:
    """``{(arm, split): [row dict, ...]}`` of a build stage: read if built, else rendered in memory.

    Nothing is written: a synthetic dataset is generated into a temporary folder.
    """
    if build.key in cache:
        return cache[build.key]
    if build.done(run_dir):
        sets = build.dir(run_dir) / "sets"
        rows = {(arm, split): [json.loads(x) for x in (sets / arm / f"{split}.jsonl").read_text().splitlines()]
                for arm in build.spec["arms"] for split in ("train", "test")}
    else:
        import tempfile

        from ..build import BuildConfig, build_rows, stratified_subset
        from ..registry import get
        from ..traces.templates import get_template

        with tempfile.TemporaryDirectory() as tmp:
            data = build.spec["data"]
            synth = [d for d in build.deps if d.kind == "synth"]
            if synth:
                from ..synth import generate_into

                data = Path(tmp) / "data"
                generate_into(synth[0].spec, data)
            cfg = BuildConfig(out=tmp, **{**build.spec, "data": str(data)})
            spec = get(cfg.dataset)
            splits = spec.load_splits(cfg.data, **cfg.options)
            rows = {}
            for split, examples in splits.items():
                limit = {"train": cfg.max_train, "test": cfg.max_test}.get(split)
                examples = stratified_subset(examples, limit, cfg.subset_seed)
                by_arm = build_rows(examples, cfg.arms, spec.labels, cfg.seed,
                                    get_template(cfg.template or spec.template), progress=False)[0]
                rows.update({(arm, split): [r.to_dict() for r in rs] for arm, rs in by_arm.items()})
    cache[build.key] = rows
    return rows


def estimate_seconds(stage: Stage, run_dir: Path, cache: dict) -> float | None:
    """A rough time for a train or generate stage from its row and token counts (chars / 4)."""
    build = next((d for d in stage.deps if d.kind == "build"), None)
    if stage.kind not in ("train", "generate") or build is None:
        return None
    split = "train" if stage.kind == "train" else "test"
    rows = planned_rows(build, run_dir, cache)[(stage.spec["arm"], split)]
    settings, student = stage.spec["settings"], stage.spec["student"]
    if stage.kind == "train":
        rows = rows[: settings.get("max_examples") or len(rows)]
        chars = sum(len(json.dumps(r["prompt"])) + len(json.dumps(r["completion"])) for r in rows)
        tokens = chars / 4 * float(settings.get("num_train_epochs", 3))
        if settings.get("max_steps"):
            per_step = chars / 4 / max(1, len(rows)) * settings.get("per_device_train_batch_size", 4) \
                * settings.get("gradient_accumulation_steps", 4)
            tokens = min(tokens, per_step * settings["max_steps"])
        return tokens / _TRAIN_TOK_PER_S.get(student, 120.0)
    new = sum(len(r["completion"][0]["content"]) / 4 for r in rows) * 1.2  # if it learns the target length
    return new / _GEN_TOK_PER_S.get(student, 40.0)


def describe_plan(stages: list[Stage], config: ExperimentConfig, run_dir: Path) -> str:
    lines = [f"plan for {config.name}: {len(stages)} stages in {run_dir}"]
    total = 0.0
    cache: dict = {}
    for i, s in enumerate(stages, 1):
        state = "cached" if s.done(run_dir) else ("partial" if s.dir(run_dir).exists() else "to run")
        est = None if state == "cached" else estimate_seconds(s, run_dir, cache)
        total += est or 0.0
        eta = f"~{est / 60:.1f} min" if est is not None else ""
        lines.append(f"  [{i:>3}/{len(stages)}] {state:<7} {s.label:<55} {s.kind}-{s.key} {eta}")
    lines.append(f"rough time for what is left: ~{total / 60:.0f} min (train/generate only; throughput "
                 f"assumed per student: {_TRAIN_TOK_PER_S} train tok/s, {_GEN_TOK_PER_S} generated tok/s)")
    return "\n".join(lines)


def run_experiment(config: ExperimentConfig, *, dry_run: bool = False, command: str | None = None,
                   log=print) -> Path:
    """Run (or, with ``dry_run``, describe) every stage; then analyze and write the report.

    ``command`` is the command line that reproduces the run; the report shows it.
    """
    run_dir = config.run_dir
    stages = make_plan(config)
    if dry_run:
        log(describe_plan(stages, config, run_dir))
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "plan.json", {"command": command,
                                       "config": asdict(config),
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
