"""Judge generations against their examples: parse, verify each step, score the answer.

Generations may come from tracekd or any other tool. They are joined to the gold examples by id,
or - for files without ids - by exact (question, context). Every line gets an explicit fate:
judged (with a parse status), or reported as blank, invalid, duplicate or unknown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import DataError
from ..records import Example, Generation, Judgement
from ..traces.parse import parse
from ..traces.templates import Template
from .answer import get_scorer
from .steps import trace_ok, verify_steps


@dataclass(frozen=True)
class JudgeSettings:
    """How generations are judged; recorded in every score summary."""

    template: str
    labels: tuple[str, ...]
    scorer: str = "strict"
    trace_definition: str = "class+evidence-exact"


def judge(example: Example, gen: Generation, template: Template, scorer, trace_definition: str) -> Judgement:
    """One Judgement: parse status, step verdicts, trace verdict, answer verdict."""
    parsed = parse(gen.text, template, finish_reason=gen.finish_reason)
    v = verify_steps(parsed, example)
    extra: dict = {}
    if parsed.status != "ok":
        # a non-ok output is never correct on a step; what the parser did reach is kept in `extra`
        extra["raw_steps"] = {"label_ok": v.label_ok, "evidence_exact": v.evidence_exact}
        v = replace(v, **{f: (False if getattr(v, f) else getattr(v, f))
                          for f in ("label_ok", "evidence_exact", "evidence_all", "evidence_any")})
    if parsed.answer is not None and parsed.status not in ("empty", "truncated"):
        a = scorer(gen.text if getattr(scorer, "raw_text", False) else parsed.answer, example)
        answer_ok, f1 = bool(a.correct), float(a.f1)
        extra.update(a.extra)
    else:
        answer_ok, f1 = False, 0.0
    return Judgement(
        id=example.id,
        status=parsed.status,
        label=parsed.label,
        label_ok=v.label_ok,
        evidence=v.evidence,
        evidence_exact=v.evidence_exact,
        evidence_all=v.evidence_all,
        evidence_any=v.evidence_any,
        evidence_precision=v.evidence_precision,
        evidence_recall=v.evidence_recall,
        trace_ok=trace_ok(parsed.status, v, trace_definition),
        answer=parsed.answer,
        answer_ok=answer_ok,
        answer_f1=f1,
        gold_label=example.gold.label,
        extra=extra,
    )


def _get_path(obj: Any, dotted: str) -> Any:
    """Field lookup with dots for nesting and integers for list items.

    >>> _get_path({"completion": [{"content": "hi"}]}, "completion.0.content")
    'hi'
    """
    for part in dotted.split("."):
        if isinstance(obj, list) and part.lstrip("-").isdigit():
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            raise KeyError(dotted)
    return obj


@dataclass
class ReadReport:
    """What happened to every line of a generations file."""

    lines: int = 0
    blank: list[int] = field(default_factory=list)
    invalid: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    unknown: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"lines": self.lines, "blank": self.blank, "invalid": self.invalid,
                "duplicates": self.duplicates, "unknown": self.unknown}


def read_generations(path: str | Path, examples: list[Example], *, id_field: str | None = "id",
                     text_field: str = "text", finish_field: str | None = "finish_reason",
                     question_field: str = "question", context_field: str = "context",
                     strict: bool = False) -> tuple[list[tuple[Example, Generation]], ReadReport]:
    """Pair each line of a generations JSONL with its example.

    A line without the id field (or every line, when ``id_field`` is None) is joined by exact
    (question, context); a miss or an ambiguity is an error naming the line. Blank lines, invalid
    JSON, duplicate ids (the first is kept) and unknown ids are reported, or raised when ``strict``.
    """
    path = Path(path)
    by_id = {ex.id: ex for ex in examples}
    by_qc: dict[tuple, list[Example]] = {}
    for ex in examples:
        by_qc.setdefault((ex.question, ex.context), []).append(ex)
    report = ReadReport()
    seen: set[str] = set()
    pairs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            report.lines += 1
            if not line.strip():
                report.blank.append(lineno)
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            except ValueError as e:
                err = DataError(f"invalid JSON: {e}", path=path, line=lineno)
                if strict:
                    raise err from None
                report.invalid.append({"line": lineno, "error": str(err)})
                continue
            try:
                text = _get_path(obj, text_field)
            except KeyError:
                raise DataError("missing", path=path, line=lineno, field=text_field) from None
            if not isinstance(text, str):
                raise DataError(f"must be a string, got {type(text).__name__}", path=path, line=lineno,
                                field=text_field)
            finish = obj.get(finish_field) if finish_field else None
            if finish not in (None, "stop", "length"):
                finish = "length" if str(finish).lower() in ("max_tokens", "max_length", "truncated") else "stop"
            ex_id = obj.get(id_field) if id_field else None
            if ex_id is None:
                ex = _join_by_content(obj, by_qc, path, lineno, question_field, context_field)
            else:
                ex = by_id.get(str(ex_id))
                if ex is None:
                    if strict:
                        raise DataError(f"unknown id {ex_id!r}", path=path, line=lineno, field=id_field)
                    report.unknown.append({"line": lineno, "id": str(ex_id)})
                    continue
            if ex.id in seen:
                if strict:
                    raise DataError(f"duplicate id {ex.id!r}", path=path, line=lineno, field=id_field)
                report.duplicates.append({"line": lineno, "id": ex.id})
                continue
            seen.add(ex.id)
            pairs.append((ex, Generation(id=ex.id, text=text, finish_reason=finish,
                                         prompt_tokens=obj.get("prompt_tokens"),
                                         completion_tokens=obj.get("completion_tokens"))))
    return pairs, report


def _join_by_content(obj: dict, by_qc: dict, path: Path, lineno: int, qf: str, cf: str) -> Example:
    for f in (qf, cf):
        if f not in obj:
            raise DataError("missing (the line has no id, so it is joined by question and context)",
                            path=path, line=lineno, field=f)
    context = obj[cf]
    if isinstance(context, str):
        context = tuple(context.split("\n"))
    elif isinstance(context, list):
        context = tuple(context)
    else:
        raise DataError("must be a list of lines or a string", path=path, line=lineno, field=cf)
    found = by_qc.get((obj[qf], context), [])
    if not found:
        raise DataError("no example has this exact question and context", path=path, line=lineno, field=qf)
    if len(found) > 1:
        raise DataError(f"ambiguous: {len(found)} examples share this question and context "
                        f"({', '.join(e.id for e in found[:3])}...); give ids", path=path, line=lineno, field=qf)
    return found[0]


def settings_for(examples: list[Example], template: str | None = None, scorer: str | None = None,
                 trace_definition: str = "class+evidence-exact") -> JudgeSettings:
    """Default settings from the examples' dataset spec, with overrides."""
    names = {ex.dataset for ex in examples}
    if len(names) != 1:
        raise DataError(f"examples must come from one dataset, got {sorted(names)}")
    spec = registry.get(names.pop())
    return JudgeSettings(template=template or spec.template, labels=spec.labels,
                         scorer=scorer or spec.scorer, trace_definition=trace_definition)


def score_pairs(pairs: list[tuple[Example, Generation]], settings: JudgeSettings) -> list[Judgement]:
    from ..traces.templates import get_template

    template = get_template(settings.template)
    scorer = get_scorer(settings.scorer)
    return [judge(ex, gen, template, scorer, settings.trace_definition) for ex, gen in pairs]


def missing_ids(examples: list[Example], judgements: list[Judgement]) -> list[str]:
    got = {j.id for j in judgements}
    return [ex.id for ex in examples if ex.id not in got]
