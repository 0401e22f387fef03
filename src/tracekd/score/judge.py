"""Judge generations against their examples: parse, verify each step, score the answer.

Generations may come from tracekd or any other tool. Every line of a generations file gets a fate:
judged (with a parse status), or reported in ``summary.json`` with its line number and the reason
(blank, invalid, duplicate, unknown). Every example gets a judgement: one with no generation is
judged ``missing`` (never correct), so it stays in every denominator.

Join rules (:func:`read_generations`):

- a line with the id field is joined by id (an integer id is compared as a string);
- a line without it (or every line, with ``id_field=None``) is joined by exact (question, context);
  when several examples share that pair and all have the same gold (answers and decomposition), the
  lines go to them in file order, one each; when their gold differs the join is an error naming the
  line and the example ids;
- a line that joins nothing, or has a ``null`` / non-string text, a ``null`` or non-scalar id, or
  neither an id nor a question and context, is reported and the rest is judged (``strict`` raises on
  the first); if no line joins at all, that is an error saying what was tried and what to change.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..datasets import DATASETS
from ..errors import DataError
from ..records import Example, Generation, Judgement
from ..traces.parse import parse
from ..traces.templates import Template, get_template
from .answer import get_scorer
from .steps import DEFAULT_TRACE_DEFINITION, StepVerdicts, trace_ok, verify_steps

#: statuses whose parse reached both steps' sentences, so each step is judged on what it gave
_STEPWISE = frozenset({"unparseable_class", "unparseable_evidence"})


@dataclass(frozen=True)
class JudgeSettings:
    """How generations are judged; recorded in every score summary."""

    template: str
    labels: tuple[str, ...]
    scorer: str = "strict"
    trace_definition: str = DEFAULT_TRACE_DEFINITION


def judge(example: Example, gen: Generation, template: Template, scorer, trace_definition: str) -> Judgement:
    """One Judgement: parse status, step verdicts, trace verdict, answer verdict.

    An output whose class sentence cannot be read but whose evidence can (or the reverse) is judged on
    each step by itself: the unreadable step is wrong, the other gets its verdict. Any other non-ok
    output is never correct on a step (what the parser reached is kept in ``extra["raw_steps"]``). A
    scorer that reads the raw text (``cotemp-official``) scores every output, whatever its status.
    """
    parsed = parse(gen.text, template, finish_reason=gen.finish_reason)
    verdicts = verify_steps(parsed, example)
    extra: dict = {}
    if parsed.status in _STEPWISE:
        verdicts = replace(verdicts, label_ok=bool(verdicts.label_ok))
        if verdicts.evidence_exact is None:
            verdicts = _evidence_wrong(verdicts)
    elif parsed.status != "ok":
        # a non-ok output is never correct on a step; what the parser did reach is kept in `extra`
        extra["raw_steps"] = {"label_ok": verdicts.label_ok, "evidence_exact": verdicts.evidence_exact}
        if verdicts.label_ok or verdicts.evidence_any or verdicts.evidence_all:  # what it reached counts as wrong
            verdicts = replace(verdicts, **{f: (False if getattr(verdicts, f) else getattr(verdicts, f))
                                            for f in ("label_ok", "evidence_exact", "evidence_all", "evidence_any")})
    if getattr(scorer, "raw_text", False):
        a = scorer(gen.text, example)
        answer_ok, f1 = bool(a.correct), float(a.f1)
        extra.update(a.extra)
    elif parsed.answer is not None and parsed.status not in ("empty", "truncated"):
        a = scorer(parsed.answer, example)
        answer_ok, f1 = bool(a.correct), float(a.f1)
        extra.update(a.extra)
    else:
        answer_ok, f1 = False, 0.0
    return Judgement(
        id=example.id,
        status=parsed.status,
        label=parsed.label,
        label_ok=verdicts.label_ok,
        evidence=verdicts.evidence,
        evidence_exact=verdicts.evidence_exact,
        evidence_all=verdicts.evidence_all,
        evidence_any=verdicts.evidence_any,
        evidence_precision=verdicts.evidence_precision,
        evidence_recall=verdicts.evidence_recall,
        trace_ok=trace_ok(parsed.status, verdicts, trace_definition),
        answer=parsed.answer,
        answer_ok=answer_ok,
        answer_f1=f1,
        gold_label=example.gold.label,
        extra=extra,
    )


def _evidence_wrong(verdicts: StepVerdicts) -> StepVerdicts:
    """Verdicts of an unreadable evidence step: wrong (precision and recall 0), the class kept."""
    return replace(verdicts, evidence=(), evidence_exact=False, evidence_all=False, evidence_any=False,
                   evidence_precision=0.0, evidence_recall=0.0)


def judge_missing(example: Example) -> Judgement:
    """The judgement of an example that has no generation: status ``missing``, wrong on everything."""
    return Judgement(id=example.id, status="missing", label=None, label_ok=None, evidence=None,
                     evidence_exact=None, evidence_all=None, evidence_any=None, evidence_precision=None,
                     evidence_recall=None, trace_ok=False, answer=None, answer_ok=False, answer_f1=0.0,
                     gold_label=example.gold.label)


_MISSING = object()


def _get_path(obj: Any, dotted: str, default: Any = _MISSING) -> Any:
    """Field lookup with dots for nesting and integers for list items (``default`` when absent).

    >>> _get_path({"completion": [{"content": "hi"}]}, "completion.0.content")
    'hi'
    >>> _get_path({"a": {"b": 1}}, "a.c", None) is None
    True
    """
    for part in dotted.split("."):
        if isinstance(obj, list) and part.lstrip("-").isdigit() and -len(obj) <= int(part) < len(obj):
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif default is not _MISSING:
            return default
        else:
            raise KeyError(dotted)
    return obj


def _fields_of(obj: dict, prefix: str = "", depth: int = 2) -> list[str]:
    """The field paths a line has, nested objects and first list items one level down.

    >>> _fields_of({"id": 1, "completion": [{"role": "assistant", "content": "x"}]})
    ['id', 'completion', 'completion.0.role', 'completion.0.content']
    """
    out = []
    for key, value in obj.items():
        path = f"{prefix}{key}"
        out.append(path)
        if depth:
            if isinstance(value, dict):
                out += _fields_of(value, path + ".", depth - 1)
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                out += _fields_of(value[0], path + ".0.", depth - 1)
    return out


def missing_field_message(obj: dict, name: str, flag: str) -> str:
    """What to say when a line lacks ``name``: the fields it has and the flag that picks another.

    >>> print(missing_field_message({"id": "a", "completion": [{"content": "x"}]}, "text", "--text-field"))
    missing; the line has: id, completion, completion.0.content; pass --text-field NAME (dots for nesting; for SFT files: --text-field completion.0.content)
    """
    have = ", ".join(_fields_of(obj)) or "(no fields)"
    hint = ""
    if flag == "--text-field" and isinstance(_get_path(obj, "completion.0.content", None), str):
        hint = " (dots for nesting; for SFT files: --text-field completion.0.content)"
    elif flag != "--text-field":
        hint = " (dots for nesting)"
    return f"missing; the line has: {have}; pass {flag} NAME{hint}"


@dataclass
class ReadReport:
    """What happened to every line of a generations file (each entry names its line and the reason)."""

    lines: int = 0
    blank: list[int] = field(default_factory=list)
    invalid: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    unknown: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"lines": self.lines, "blank": self.blank, "invalid": self.invalid,
                "duplicates": self.duplicates, "unknown": self.unknown}


@dataclass(frozen=True)
class ReadOptions:
    """Where a generations file keeps each field (``score`` records these in its summary)."""

    id_field: str | None = "id"
    text_field: str = "text"
    finish_field: str | None = "finish_reason"
    question_field: str = "question"
    context_field: str = "context"


class _Skip(Exception):
    """A line that is reported, not judged: ``kind`` is the report list, ``entry`` its record."""

    def __init__(self, kind: str, entry: dict, error: DataError):
        super().__init__(str(error))
        self.kind, self.entry, self.error = kind, entry, error


def read_generations(path: str | Path, examples: list[Example], *, id_field: str | None = "id",
                     text_field: str = "text", finish_field: str | None = "finish_reason",
                     question_field: str = "question", context_field: str = "context",
                     strict: bool = False) -> tuple[list[tuple[Example, Generation]], ReadReport]:
    """Pair each line of a generations JSONL with its example (the module doc states the join rules).

    Returns the pairs in file order and what happened to every other line; ``strict`` raises a
    DataError naming the first line that is not judged.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=path)
    opts = ReadOptions(id_field, text_field, finish_field, question_field, context_field)
    by_id = {ex.id: ex for ex in examples}
    by_qc: dict[tuple, list[Example]] = {}
    for ex in examples:
        by_qc.setdefault((ex.question, ex.context), []).append(ex)
    report = ReadReport()
    seen: set[str] = set()
    pairs = []
    tried = {"id": 0, "content": 0}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            report.lines += 1
            if not line.strip():
                report.blank.append(lineno)
                continue
            try:
                ex, gen = _read_line(line, path, lineno, opts, by_id, by_qc, seen, tried)
            except _Skip as skip:
                if strict:
                    raise skip.error from None
                getattr(report, skip.kind).append(skip.entry)
                continue
            seen.add(ex.id)
            pairs.append((ex, gen))
    if not pairs:
        raise DataError(_nothing_joined(path, examples, report, opts, tried), path=path)
    return pairs, report


def _read_line(line: str, path: Path, lineno: int, opts: ReadOptions, by_id: dict, by_qc: dict,
               seen: set, tried: dict) -> tuple[Example, Generation]:
    def skip(kind: str, message: str, field_name: str | None = None, **entry) -> _Skip:
        err = DataError(message, path=path, line=lineno, field=field_name)
        record = {"line": lineno, **entry}
        if kind == "invalid":
            record["error"] = str(err)
        elif kind == "unknown":
            record["reason"] = f"field {field_name!r}: {message}" if field_name else message
        return _Skip(kind, record, err)

    try:
        obj = json.loads(line)
    except ValueError as e:
        raise skip("invalid", f"invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise skip("invalid", f"invalid JSON: expected a JSON object, got {type(obj).__name__}")
    text = _get_path(obj, opts.text_field, _MISSING_TEXT)
    if text is _MISSING_TEXT:
        raise skip("invalid", missing_field_message(obj, opts.text_field, "--text-field"), opts.text_field)
    if not isinstance(text, str):
        raise skip("invalid", f"must be a string, got {'null' if text is None else type(text).__name__}",
                   opts.text_field)
    finish = _get_path(obj, opts.finish_field, None) if opts.finish_field else None
    if finish not in (None, "stop", "length"):
        finish = "length" if str(finish).lower() in ("max_tokens", "max_length", "truncated") else "stop"

    has_id = opts.id_field is not None and _get_path(obj, opts.id_field, _MISSING_TEXT) is not _MISSING_TEXT
    if has_id:
        tried["id"] += 1
        raw_id = _get_path(obj, opts.id_field)
        if raw_id is None:
            raise skip("invalid", "is null", opts.id_field)
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise skip("invalid", f"must be a string or an integer, got {type(raw_id).__name__}", opts.id_field)
        ex = by_id.get(str(raw_id))
        if ex is None:
            raise skip("unknown", f"unknown id {raw_id!r}", opts.id_field, id=str(raw_id))
        if ex.id in seen:
            raise skip("duplicates", f"duplicate id {ex.id!r}", opts.id_field, id=ex.id)
    else:
        tried["content"] += 1
        ex = _join_by_content(obj, by_qc, seen, path, lineno, opts, skip)
    return ex, Generation(id=ex.id, text=text, finish_reason=finish, prompt_tokens=obj.get("prompt_tokens"),
                          completion_tokens=obj.get("completion_tokens"))


_MISSING_TEXT = object()


def _join_by_content(obj: dict, by_qc: dict, seen: set, path: Path, lineno: int, opts: ReadOptions,
                     skip) -> Example:
    values = {}
    for name, flag in ((opts.question_field, "--question-field"), (opts.context_field, "--context-field")):
        value = _get_path(obj, name, _MISSING_TEXT)
        if value is _MISSING_TEXT:
            why = "no id" if opts.id_field is None else f"no {opts.id_field!r} field"
            raise skip("invalid", f"{missing_field_message(obj, name, flag)} (the line has {why}, so it is joined "
                                  "by question and context)", name)
        values[name] = value
    question, context = values[opts.question_field], values[opts.context_field]
    if not isinstance(question, str):
        raise skip("invalid", f"must be a string, got {type(question).__name__}", opts.question_field)
    if isinstance(context, str):
        context = tuple(context.split("\n"))
    elif isinstance(context, list) and all(isinstance(c, str) for c in context):
        context = tuple(context)
    else:
        raise skip("invalid", "must be a list of lines or a string", opts.context_field)
    found = by_qc.get((question, context), [])
    if not found:
        raise skip("unknown", "no example has this exact question and context", opts.question_field)
    if len(found) > 1:
        golds = {(ex.answers, ex.gold) for ex in found}
        if len(golds) > 1:
            raise DataError(f"{len(found)} examples share this question and context but not their gold "
                            f"({', '.join(e.id for e in found)}): the line cannot be joined without ids; "
                            "pass --id-field", path=path, line=lineno, field=opts.question_field)
    for ex in found:  # same gold: hand the lines out in file order
        if ex.id not in seen:
            return ex
    raise skip("duplicates", f"every example with this question and context is taken "
                             f"({', '.join(e.id for e in found)})", opts.question_field, id=found[-1].id)


def _nothing_joined(path: Path, examples: list[Example], report: ReadReport, opts: ReadOptions,
                    tried: dict) -> str:
    """Why no line of ``path`` joined an example, and what to try."""
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    if report.lines == len(report.blank):
        return "no generations: the file is empty"
    lines = [f"no line joined an example of the {len(examples):,} given"]
    if head.startswith("[") and len(report.invalid) >= report.lines - len(report.blank) - 1:
        lines.append("the file looks like one JSON array; tracekd reads JSONL, one object a line "
                     f"(convert it: jq -c '.[]' {path} > generations.jsonl)")
    what = []
    if tried["id"]:
        sample = [u["id"] for u in report.unknown if "id" in u][:2]
        what.append(f"{tried['id']} line(s) by {opts.id_field!r} (ids such as {', '.join(map(repr, sample))}; "
                    f"the examples' look like {examples[0].id!r})" if sample and examples
                    else f"{tried['id']} line(s) by {opts.id_field!r}")
    if tried["content"]:
        what.append(f"{tried['content']} line(s) by exact question and context")
    if what:
        lines.append("tried: " + "; ".join(what))
    first = (report.invalid or report.unknown or [{}])[0]
    if first:
        lines.append(f"first problem: line {first['line']}: {first.get('error') or first.get('reason')}")
    hints = []
    if tried["id"]:
        hints.append("--id-field none (join by question and context)")
    if opts.id_field is not None:
        hints.append("--id-field NAME (the field that holds the example id)")
    split = {ex.split for ex in examples}
    if split:
        other = "train" if "test" in split else "test"
        hints.append(f"the examples file of the other split (examples/{other}.jsonl)")
    lines.append("try: " + "; ".join(hints))
    return "\n  ".join(lines)


def score_all(examples: list[Example], pairs: list[tuple[Example, Generation]],
              settings: "JudgeSettings") -> list[Judgement]:
    """Judgements of ``pairs`` (in their order), then a ``missing`` one for each example without a generation."""
    judged = score_pairs(pairs, settings)
    got = {j.id for j in judged}
    return judged + [judge_missing(ex) for ex in examples if ex.id not in got]


def settings_for(examples: list[Example], template: str | None = None, scorer: str | None = None,
                 trace_definition: str = DEFAULT_TRACE_DEFINITION) -> JudgeSettings:
    """Default settings from the examples' dataset spec, with overrides."""
    names = {ex.dataset for ex in examples}
    if len(names) != 1:
        raise DataError(f"examples must come from one dataset, got {sorted(names)}")
    spec = DATASETS.get(names.pop())
    return JudgeSettings(template=template or spec.template, labels=spec.labels,
                         scorer=scorer or spec.scorer, trace_definition=trace_definition)


def score_pairs(pairs: list[tuple[Example, Generation]], settings: JudgeSettings) -> list[Judgement]:
    template = get_template(settings.template)
    scorer = get_scorer(settings.scorer)
    was_enabled = gc.isenabled()
    gc.disable()  # judgements make no reference cycles; the collector would rescan them all, again and again
    try:
        return [judge(ex, gen, template, scorer, settings.trace_definition) for ex, gen in pairs]
    finally:
        if was_enabled:
            gc.enable()


def missing_ids(examples: list[Example], judgements: list[Judgement]) -> list[str]:
    got = {j.id for j in judgements}
    return [ex.id for ex in examples if ex.id not in got]
