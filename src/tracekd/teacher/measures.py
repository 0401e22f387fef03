"""Free-form trace measures recorded in judgements (``extra["freeform"]``) and summarised per arm.

Every generation with a ``<think>`` block gets :func:`tracekd.score.freeform.measure` of that block
(outputs without one - vanilla answers - get none). The strict verdicts of the same judgement stay as
they are; these measures sit beside them, so a teacher arm's free-form traces and a decomposed arm's
traces can be compared on the same checkable facts.

>>> from tracekd.records import Decomposition, Example, Generation, Judgement
>>> ex = Example("b/1", "babi", "test", "Where is Mary?", ("Mary went home.", "John left."), ("home",),
...              Decomposition("counting", (0,)))
>>> j = Judgement("b/1", "unparseable_class", None, False, None, False, False, False, None, None, False,
...               "home", True, 1.0, "counting")
>>> [k] = add_freeform([j], [(ex, Generation("b/1", "<think>Mary went home.</think><answer>home</answer>"))])
>>> k.extra["freeform"]["evidence_all"], k.extra["freeform"]["class_mentioned"]
(True, False)
>>> summarize_freeform([k])["answer_by_evidence_all"]
{'evidence_all_answer_right': 1, 'evidence_all_answer_wrong': 0, 'evidence_missing_answer_right': 0, 'evidence_missing_answer_wrong': 0}
"""

from __future__ import annotations

import re
import statistics
from dataclasses import replace

from ..records import Example, Generation, Judgement
from ..score.freeform import measure, trace_text
from .prompts import load_prompts

_HAS_THINK = re.compile(r"<\s*/?\s*think\s*>", re.IGNORECASE)


def add_freeform(judgements: list[Judgement], pairs: list[tuple[Example, Generation]],
                 prompts: str | None = None) -> list[Judgement]:
    """The judgements with ``extra["freeform"]`` set for every output that has a think block."""
    synonyms = load_prompts(prompts).class_synonyms
    by_id = {ex.id: (ex, gen) for ex, gen in pairs}
    out = []
    for j in judgements:
        ex, gen = by_id[j.id]
        if _HAS_THINK.search(gen.text):
            extra = {**j.extra, "freeform": measure(trace_text(gen.text), ex, synonyms).to_dict()}
            j = replace(j, extra=extra)
        out.append(j)
    return out


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.fmean(vals), 4) if vals else None


def summarize_freeform(judgements: list[Judgement]) -> dict:
    """Per-arm numbers: how many outputs had a trace to measure, the mean measures over those, the
    answer accuracy over all, and the 2x2 of "every gold evidence line mentioned" x answer right."""
    measured = [(j, j.extra["freeform"]) for j in judgements if "freeform" in (j.extra or {})]
    cells = {"evidence_all_answer_right": 0, "evidence_all_answer_wrong": 0,
             "evidence_missing_answer_right": 0, "evidence_missing_answer_wrong": 0}
    for j, f in measured:
        cells[f"evidence_{'all' if f['evidence_all'] else 'missing'}_answer_{'right' if j.answer_ok else 'wrong'}"] += 1
    return {
        "n": len(judgements),
        "measured": len(measured),
        "answer_accuracy": _mean([float(j.answer_ok) for j in judgements]),
        "class_mentioned": _mean([float(f["class_mentioned"]) for _, f in measured]),
        "evidence_all": _mean([float(f["evidence_all"]) for _, f in measured]),
        "evidence_recall": _mean([f["evidence_recall"] for _, f in measured]),
        "evidence_precision": _mean([f["evidence_precision"] for _, f in measured]),
        "tokens": _mean([f["tokens"] for _, f in measured]),
        "answer_by_evidence_all": cells,
    }
