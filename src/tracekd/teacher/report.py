"""The report's section on teacher arms and free-form traces (an extra section of ``tracekd.report.extra``).

Per dataset x student, every arm (seeds pooled) on answer accuracy and on the free-form measures of
its outputs' traces (:mod:`tracekd.teacher.measures`), then for the teacher arms the 2x2 of "every
gold evidence line mentioned" x "answer right" with phi and Fisher's exact p. When the run has teacher
stages, the section also states the teacher-correct subset of every build (kept, dropped by reason)
and the same measures of the training targets themselves. Numbers come from the score stages'
``judgements.jsonl`` and the builds' ``manifest.json`` of the run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io import read_records
from ..records import Judgement
from ..report import numbers as nb
from ..report.document import Paragraph, Table
from ..report.extra import Section
from ..stats.contingency import association, table_2x2
from ..traces.corrupt import TEACHER_ARMS
from .measures import summarize_freeform

TITLE = "Teacher arms and free-form traces"
MEASURES_TEXT = (
    "Free-form measures of each output's <think> block, the same for every arm: class = it names the gold "
    "class (label or a listed synonym); all evidence = every gold evidence line is quoted or closely "
    "paraphrased (at least 80% of a line's words in one sentence of the trace); recall / precision of the "
    "mentioned context lines against the gold lines; length in word tokens. Means are over the outputs that "
    "have a trace (the 'traced' column); answer accuracy is over all outputs (strict scorer). Seeds pooled.")


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _builds(run_dir: Path) -> list[tuple[str, dict]]:
    """``(build label, build manifest)`` of each build stage of the run that used teacher responses."""
    plan = _read_json(run_dir / "plan.json") or {}
    out = []
    for s in plan.get("stages", []):
        if s.get("kind") == "build":
            m = _read_json(run_dir / s["dir"] / "sets" / "manifest.json")
            if m and (m.get("teacher") or {}).get("subset"):
                out.append((s["label"], m))
    return out


def pooled(analysis, run_dir: Path) -> dict[tuple[str, str, str], list[Judgement]]:
    """Judgements of every (dataset, student, arm), seeds pooled, in the analysis' arm order."""
    out: dict[tuple[str, str, str], list[Judgement]] = {}
    for c in analysis.cells:
        if not c.score_dir:
            continue
        path = run_dir / c.score_dir / "judgements.jsonl"
        if path.is_file():
            out.setdefault((c.dataset, c.student, c.arm), []).extend(read_records(path, Judgement))
    arms = list(analysis.arms)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                    arms.index(kv[0][2]) if kv[0][2] in arms else len(arms))))


def section(analysis, run_dir: Path | None) -> Section | None:
    """The section, or None when the run has neither a teacher build nor a teacher arm."""
    if run_dir is None:
        return None
    run_dir = Path(run_dir)
    judged = pooled(analysis, run_dir)
    summaries = {k: summarize_freeform(js) for k, js in judged.items()}
    builds = _builds(run_dir)
    if not builds and not any(arm in TEACHER_ARMS for _, _, arm in judged):  # a run without a teacher
        return None
    blocks: list = [Paragraph(MEASURES_TEXT)]
    for label, m in builds:
        t = m["teacher"]
        subset = "; ".join(
            f"{split}: {counts['kept']} of {counts['before']} kept (dropped: "
            + (", ".join(f"{k.replace('_', ' ')} {n}" for k, n in counts["dropped"].items()) or "none") + ")"
            for split, counts in t["subset"].items())
        judged_by = ("every answered item kept (scorer none)" if t.get("scorer") == "none"
                     else f"teacher answers judged by the {t.get('scorer')} scorer")
        blocks.append(Paragraph(f"{label}: teacher {', '.join(t.get('models', []))}; {judged_by}; trace from its "
                                f"{t.get('trace', 'reasoning')}; teacher-correct subset {subset}. Every arm of this "
                                f"build is restricted to it. Teacher arms' <answer>: {t.get('answer')}."))
    keys = sorted({(d, s) for d, s, _ in summaries})
    for dataset, student in keys:
        rows = []
        for (d, s, arm), summary in summaries.items():
            if (d, s) != (dataset, student):
                continue
            rows.append((arm, str(summary["n"]), _f(summary["answer_accuracy"]), str(summary["measured"]),
                         _f(summary["class_mentioned"]), _f(summary["evidence_all"]), _f(summary["evidence_recall"]),
                         _f(summary["evidence_precision"]), _f(summary["tokens"], 1)))
        blocks.append(Table(f"{dataset} / {student}: answer accuracy and free-form measures of the outputs' traces",
                            ("arm", "n", "answer", "traced", "class", "all evidence", "recall", "precision",
                             "tokens"), tuple(rows), (False,) + (True,) * 8))
        rows2 = []
        for (d, s, arm), js in judged.items():
            if (d, s) != (dataset, student) or arm not in TEACHER_ARMS:
                continue
            measured = [j for j in js if "freeform" in (j.extra or {})]
            t = table_2x2([j.extra["freeform"]["evidence_all"] for j in measured], [j.answer_ok for j in measured])
            a = association(t)
            rows2.append((arm, str(t.both), str(t.step_only), str(t.answer_only), str(t.neither),
                          nb.stat(a["phi"]), nb.pval(a["fisher_p"]), a["note"] or ""))
        if rows2:
            blocks.append(Table(f"{dataset} / {student}, teacher arms: all gold evidence mentioned x answer right "
                                "(traced outputs)",
                                ("arm", "evidence all, answer right", "evidence all, answer wrong",
                                 "evidence missing, answer right", "evidence missing, answer wrong", "phi",
                                 "Fisher p", "note"), tuple(rows2), (False,) + (True,) * 6 + (False,)))
    for label, m in builds:
        arms = (m["teacher"].get("arms") or {}).get("train") or {}
        rows3 = [(arm, str(measures["n"]), _f(measures["class_mentioned"]), _f(measures["evidence_all"]),
                  _f(measures["evidence_recall"]), _f(measures["evidence_precision"]), _f(measures["tokens"], 1))
                 for arm, measures in arms.items() if arm in TEACHER_ARMS]
        if rows3:
            blocks.append(Table(f"{label}: the same measures of the teacher arms' training targets (train split)",
                                ("arm", "n", "class", "all evidence", "recall", "precision", "tokens"),
                                tuple(rows3), (False,) + (True,) * 6))
    return Section(TITLE, tuple(blocks))
