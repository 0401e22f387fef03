"""``generate(config)``: one completion per SFT row, appended to a JSONL; killed and rerun, it resumes.

Every finished row is one line (``Generation.to_dict()``) written with a flush and fsync, so a
kill (even SIGKILL) loses at most the batch in flight; a rerun skips the ids already written and
finishes with every id exactly once. When all rows are done the file is rewritten (atomically) in
input order, so the result does not depend on how often the run was interrupted. The manifest
``<output stem>.manifest.json`` records the settings; a rerun with different settings is refused.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .. import calibration, devices, runtime, students
from ..config import load_config, to_dict
from ..errors import ConfigError, DataError
from ..fingerprint import Fingerprint
from ..io import JsonlAppender, iter_jsonl, manifest, sha256_file, write_json, write_jsonl
from ..records import Generation
from ..students import DEFAULT_STUDENT
from .base import BACKENDS, batch_seed, batches, length_order
from .config import GenerateConfig

#: settings that change what is generated: a resumed run must match them (those an earlier run recorded)
RESULT_KEYS = ("student", "adapter_sha256", "input_sha256", "backend", "max_new_tokens", "do_sample",
               "temperature", "top_p", "top_k", "seed", "precision", "chat_template_kwargs", "merge_adapter")


def manifest_path(output_file: str | Path) -> Path:
    """
    >>> manifest_path("runs/x/generations.jsonl").name
    'generations.manifest.json'
    """
    p = Path(output_file)
    return p.with_name(p.stem + ".manifest.json")


def find_adapter(path: str | Path) -> Path:
    """The adapter folder: ``path`` itself or, for a training output, where its adapter_config.json is."""
    p = Path(path)
    if (p / "adapter_config.json").is_file():
        return p
    if (p / "adapter" / "adapter_config.json").is_file():
        return p / "adapter"
    raise ConfigError(f"no LoRA adapter in {p} (expected adapter_config.json; train one with `tracekd train`)")


def adapter_training(adapter: Path) -> dict:
    """The training config saved beside an adapter by ``tracekd train`` (empty if none)."""
    for name in ("train_config.json",):
        f = adapter / name
        if f.is_file():
            return json.loads(f.read_text(encoding="utf-8"))
    return {}


def _existing(out: Path, wanted: dict[str, Any]) -> dict[str, dict]:
    """Generations already in ``out`` by id; ids that are not in the input or repeat are errors."""
    done: dict[str, dict] = {}
    if not out.exists():
        return done
    for line, obj in iter_jsonl(out):
        try:
            g = Generation.from_dict(obj)
        except DataError as e:
            raise e.located(out, line) from None
        if g.id not in wanted:
            raise DataError(f"id {g.id!r} is not in the input file; is this the output of another input?",
                            path=out, line=line, field="id")
        if g.id in done:
            raise DataError(f"duplicate id {g.id!r}", path=out, line=line, field="id")
        done[g.id] = obj
    return done


def _settings(cfg: GenerateConfig, student: str, adapter: Path | None, precision: str, template_kwargs: dict) -> dict:
    return {
        "student": student,
        "adapter": str(adapter) if adapter else None,
        "adapter_sha256": sha256_file(adapter / "adapter_model.safetensors")
        if adapter and (adapter / "adapter_model.safetensors").is_file() else None,
        "input_sha256": sha256_file(cfg.input_file),
        "backend": cfg.backend,
        "max_new_tokens": cfg.max_new_tokens,
        "do_sample": cfg.do_sample,
        "temperature": cfg.temperature if cfg.do_sample else None,
        "top_p": cfg.top_p if cfg.do_sample else None,
        "top_k": cfg.top_k if cfg.do_sample else None,
        "seed": cfg.seed if cfg.do_sample else None,
        "precision": precision,
        "chat_template_kwargs": template_kwargs,
        "merge_adapter": cfg.merge_adapter if cfg.backend == "vllm" else None,
    }


def _check_same(previous: dict, now: dict, out: Path, n_done: int) -> None:
    diff = Fingerprint.of(now, only=RESULT_KEYS).changes(previous)
    if diff:
        details = ", ".join(diff)
        raise ConfigError(f"{out} already holds {n_done} generation(s) made with other settings ({details}); "
                          "rerun with the same settings to resume, or write to another --output-file")


def _precision(cfg: GenerateConfig, student_name: str, device: str, resumed_manifest: Path | None) -> str:
    """``auto`` on CPU: bf16 only where a calibration measured it faster with identical greedy outputs
    (:func:`tracekd.calibration.calibrate_generation`, cached per machine); a resumed run keeps its format."""
    if cfg.precision != "auto" or device != "cpu":
        return runtime.precision(cfg.precision, device)
    if resumed_manifest is not None and resumed_manifest.is_file():
        before = json.loads(resumed_manifest.read_text(encoding="utf-8")).get("settings", {}).get("precision")
        if before in ("fp32", "bf16"):
            return before
    cal = calibration.measured(student_name, "cpu", "generate")
    return runtime.precision("auto", device, cpu_measured=cal.precision if cal else None)


def _backend(cfg: GenerateConfig, student, tokenizer, adapter: Path | None, precision: str, device: str,
             settings: dict):
    """The generator of ``cfg.backend`` (:data:`tracekd.generate.base.BACKENDS`, imported only when chosen)."""
    return BACKENDS.get(cfg.backend)(cfg, student, tokenizer, adapter, precision, device)


@dataclasses.dataclass
class Setup:
    """What a generation run resolved before generating: rows, adapter, student, tokenizer, device."""

    config: GenerateConfig
    out: Path
    started: float  # time.monotonic() at the start
    rows: list  # the input's SFTRows (the configured subset)
    adapter: Path | None
    student_name: str
    student: Any  # students.Student
    tokenizer: Any
    template_kwargs: dict  # chat template kwargs: the training's, its date pinned
    device: str


@dataclasses.dataclass
class Progress:
    """The output file's state: what an earlier run wrote, the settings (checked against its), what is left."""

    done: dict[str, dict]  # id -> generation already in the output
    settings: dict
    todo: list  # rows still to generate, in input order
    stats: dict  # counts and timings for the manifest


def generate(config: GenerateConfig, *, log=print) -> Path:
    """Generate a completion for every row of ``config.input_file``; returns the generations JSONL.

    The steps, in order: :func:`setup`, :func:`resume`, :func:`loop` (the rows left), :func:`save`.
    """
    run = setup(config, log)
    progress = resume(run)
    write_json(manifest_path(run.out), _manifest(run, progress, complete=False))
    if progress.todo:
        loop(run, progress)
    save(run, progress, log)
    return run.out


def setup(config: GenerateConfig, log=print) -> Setup:
    """Rows, adapter and the student it was trained on, chat template kwargs (the training's), determinism,
    tokenizer and device."""
    runtime.quiet_libraries()
    cfg = config
    started = time.monotonic()
    rows = runtime.subset([lr.row for lr in runtime.read_rows(cfg.input_file, need_completion=False)],
                          cfg.max_examples, cfg.seed)
    adapter = find_adapter(cfg.adapter) if cfg.adapter else None
    trained = adapter_training(adapter) if adapter else {}
    student_name = cfg.student or trained.get("student") or DEFAULT_STUDENT
    if cfg.student and trained.get("student") and cfg.student != trained["student"]:
        log(f"warning: the adapter was trained on {trained['student']!r}, generating with {cfg.student!r}")
    template_kwargs = cfg.chat_template_kwargs
    if template_kwargs is None:
        template_kwargs = trained.get("chat_template_kwargs") or {}
    if cfg.deterministic:
        devices.enable_determinism()
    student = students.resolve(student_name)
    tokenizer = students.load_tokenizer(student)
    # the training's date, or the same pinned one
    template_kwargs = students.pin_template_kwargs(tokenizer.chat_template, template_kwargs)
    return Setup(cfg, Path(cfg.output_file), started, rows, adapter, student_name, student, tokenizer,
                 template_kwargs, runtime.device())


def resume(run: Setup) -> Progress:
    """The generations an earlier run wrote (ids checked), the precision and settings (an earlier run's must
    match), and the rows left to generate."""
    wanted = {r.id: r for r in run.rows}
    done = _existing(run.out, wanted)
    mpath = manifest_path(run.out)
    precision = _precision(run.config, run.student_name, run.device, mpath if done else None)
    settings = _settings(run.config, run.student_name, run.adapter, precision, run.template_kwargs)
    if done and mpath.is_file():
        _check_same(json.loads(mpath.read_text(encoding="utf-8")).get("settings", {}), settings, run.out, len(done))
    todo = [r for r in run.rows if r.id not in done]
    stats = {"rows": len(run.rows), "resumed_with": len(done), "generated_now": 0, "completion_tokens_now": 0,
             "seconds_now": 0.0}
    return Progress(done, settings, todo, stats)


def loop(run: Setup, progress: Progress) -> None:
    """Generate the rows left in batches (longest prompts first unless told otherwise), appending each
    finished row to the output with a flush and fsync."""
    cfg, todo, stats = run.config, progress.todo, progress.stats
    prompts = [runtime.prompt_ids(run.tokenizer, r.prompt, run.template_kwargs) for r in todo]
    order = length_order([len(p) for p in prompts]) if cfg.sort_by_length else list(range(len(todo)))
    backend = _backend(cfg, run.student, run.tokenizer, run.adapter, progress.settings["precision"], run.device,
                       progress.settings)
    bar = tqdm(total=len(run.rows), initial=len(progress.done), desc="generate", unit="row", dynamic_ncols=True,
               disable=not cfg.progress)
    started = time.monotonic()
    try:
        with JsonlAppender(run.out) as sink:
            for batch in batches(order, cfg.batch_size):
                ids = [todo[i].id for i in batch]
                outs = backend.generate([prompts[i] for i in batch], seed=batch_seed(cfg.seed, ids))
                for i, c in zip(batch, outs, strict=True):
                    sink.write(Generation(id=todo[i].id, text=c.text, finish_reason=c.finish_reason,
                                          prompt_tokens=len(prompts[i]),
                                          completion_tokens=c.completion_tokens).to_dict())
                    stats["generated_now"] += 1
                    stats["completion_tokens_now"] += c.completion_tokens
                dt = max(1e-9, time.monotonic() - started)
                bar.set_postfix(tok_s=f"{stats['completion_tokens_now'] / dt:.1f}", refresh=False)
                bar.update(len(batch))
    finally:
        bar.close()
        stats["seconds_now"] = round(time.monotonic() - started, 3)
        backend.close()


def save(run: Setup, progress: Progress, log=print) -> None:
    """Every id is there exactly once: store the generations in input order (atomically), then the final
    manifest."""
    out, rows, stats = run.out, run.rows, progress.stats
    final = _existing(out, {r.id: r for r in rows})
    missing = [r.id for r in rows if r.id not in final]
    if missing:  # pragma: no cover - only if the backend returned fewer outputs than prompts
        raise DataError(f"{len(missing)} row(s) have no generation (first: {missing[0]!r}); rerun to finish",
                        path=out)
    write_jsonl(out, (final[r.id] for r in rows))
    stats["total_seconds"] = round(time.monotonic() - run.started, 3)
    m = _manifest(run, progress, complete=True, generations=[final[r.id] for r in rows])
    write_json(manifest_path(out), m)
    tps = stats["completion_tokens_now"] / stats["seconds_now"] if stats["seconds_now"] else 0.0
    log(f"wrote {len(rows)} generations to {out} ({stats['generated_now']} new, {tps:.1f} tok/s; "
        f"{m['counts']['stop']} stopped, {m['counts']['length']} hit max_new_tokens)")


def _manifest(run: Setup, progress: Progress, *, complete: bool, generations: list[dict] | None = None) -> dict:
    cfg, settings, stats = run.config, progress.settings, progress.stats
    counts = None
    if generations is not None:
        counts = {"rows": len(generations),
                  "stop": sum(1 for g in generations if g.get("finish_reason") == "stop"),
                  "length": sum(1 for g in generations if g.get("finish_reason") == "length"),
                  "prompt_tokens": sum(g.get("prompt_tokens") or 0 for g in generations),
                  "completion_tokens": sum(g.get("completion_tokens") or 0 for g in generations)}
    secs = stats.get("seconds_now") or 0.0
    return manifest(kind="generate", config=to_dict(cfg), seed=cfg.seed, files={"input_file": settings["input_sha256"]},
                    settings=settings, student=run.student.describe(), complete=complete, counts=counts,
                    timing={**stats, "completion_tokens_per_second":
                            round(stats["completion_tokens_now"] / secs, 2) if secs else None})


def generate_from_settings(settings: dict[str, Any], **fields: Any) -> Path:
    """Generate from an experiment's ``generate:`` settings plus caller fields (appends, so it resumes)."""
    merged = {**dict(settings or {}), **{k: (str(v) if isinstance(v, Path) else v) for k, v in fields.items()
                                         if v is not None}}
    return generate(load_config(GenerateConfig, merged))
