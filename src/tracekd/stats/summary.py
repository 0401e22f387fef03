"""Summaries of judged generations: statuses, accuracies with Wilson CIs, step-vs-answer tables.

Every judgement counts in every denominator: a step that could not be judged (``None``, e.g. no
trace) counts as not correct, and its precision/recall as 0. The results are the typed records of
:mod:`tracekd.stats.results`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import replace
from typing import Any, Iterable, Sequence

from ..errors import ConfigError, DataError, did_you_mean
from ..records import STATUSES, Judgement
from .contingency import association, mcnemar, table_2x2
from .results import (NO_TRACE, TRACE_FREE_STATUSES, Accuracies, Accuracy, Association, ClassAccuracy, Comparison,
                      McNemar, Mean, Means, StepTables, Summary)

#: accuracy name -> Judgement field (None counts as wrong)
ACCURACIES = {
    "class": "label_ok",
    "evidence_exact": "evidence_exact",
    "evidence_all": "evidence_all",
    "evidence_any": "evidence_any",
    "trace": "trace_ok",
    "answer": "answer_ok",
}
#: mean name -> Judgement field (None counts as 0)
MEANS = {
    "evidence_precision": "evidence_precision",
    "evidence_recall": "evidence_recall",
    "answer_f1": "answer_f1",
}
#: step crossed with the answer -> Judgement field; the evidence step is the exact-set verdict
STEPS = {"class": "label_ok", "evidence": "evidence_exact", "trace": "trace_ok"}


def _accuracy(flags: Sequence[Any]) -> Accuracy:
    return Accuracy.of(sum(1 for x in flags if x), len(flags))


def _mean(values: Sequence[float | None]) -> Mean:
    judged = [float(v) for v in values if v is not None]
    n = len(values)
    note = None if judged else ("no items" if not n else "no item judged")
    return Mean(mean=sum(judged) / n if n else None,  # None counted as 0
                mean_judged=sum(judged) / len(judged) if judged else None, n_judged=len(judged), note=note)


def _group_value(j: Judgement, key: str) -> str:
    value = getattr(j, key) if key in _FIELDS else j.extra.get(key)
    return "(none)" if value is None or value == "" else str(value)


_FIELDS = {f.name for f in dataclasses.fields(Judgement)} - {"extra"}
#: steps that only an output with a trace can get right
_TRACE_STEPS = frozenset({"class", "evidence_exact", "evidence_all", "evidence_any", "trace"})


def has_trace(judgements: Iterable[Judgement]) -> bool:
    """Whether any output has a trace to judge (False for a vanilla arm: every output ``no_trace``,
    ``missing`` or ``empty``)."""
    return any(j.status not in TRACE_FREE_STATUSES for j in judgements)


def summarize(judgements: list[Judgement], *, group: str | None = None, traced: bool | None = None) -> Summary:
    """Statistics of one set of judgements (one model x arm x dataset, say).

    ``n``; ``status`` (count of every status in ``records.STATUSES``, zeros included, plus any other
    status met); ``accuracy`` (class, evidence_exact/all/any, trace, answer: correct, n, accuracy, Wilson
    ``ci95``); ``means`` (evidence precision/recall, answer F1); ``steps`` (class, evidence = exact set,
    trace: each crossed with the answer, see :func:`~tracekd.stats.contingency.association`);
    ``per_class`` (by gold label: n and the accuracy of answer, trace, class, evidence). With ``group``
    (a Judgement field or a key of ``extra``), ``groups`` holds the same summary for each value of it.
    ``traced`` says whether the outputs were meant to carry a trace (default: whether any has one, see
    :func:`has_trace`); without one the step accuracies are None with the note ``n/a (no trace)``.

    >>> j = [Judgement("a", "ok", "x", True, (0,), True, True, True, 1.0, 1.0, True, "k", True, 1.0, "x"),
    ...      Judgement("b", "no_trace", None, None, None, None, None, None, None, None, False, "k",
    ...                True, 1.0, "y")]
    >>> s = summarize(j)
    >>> s.n, s.status["no_trace"], s.accuracy.trace.accuracy, s.steps.trace.table
    (2, 1, 0.5, Counts2x2(both=1, step_only=0, answer_only=1, neither=0))
    >>> summarize(j[1:]).accuracy.trace.note
    'n/a (no trace)'
    """
    n = len(judgements)
    traced = has_trace(judgements) if traced is None else traced
    status = Counter(j.status for j in judgements)
    counts = {s: status.get(s, 0) for s in STATUSES}
    counts.update({s: c for s, c in sorted(status.items()) if s not in STATUSES})
    accuracy = {name: (_accuracy([getattr(j, f) for j in judgements]) if traced or name not in _TRACE_STEPS
                       else Accuracy.not_applicable(n))
                for name, f in ACCURACIES.items()}
    answers = [j.answer_ok for j in judgements]
    steps = {name: Association.of(association(table_2x2([getattr(j, f) for j in judgements], answers)))
             for name, f in STEPS.items()}
    if not traced:
        steps = {name: replace(a, note=NO_TRACE) for name, a in steps.items()}
    per_class: dict[str, list[Judgement]] = {}
    for j in judgements:
        per_class.setdefault(j.gold_label or "(none)", []).append(j)
    classes = {
        label: ClassAccuracy(len(js), *(
            _accuracy([getattr(j, ACCURACIES[name]) for j in js]).accuracy if traced or name not in _TRACE_STEPS
            else None for name in ("answer", "trace", "class", "evidence_exact")))
        for label, js in sorted(per_class.items())
    }
    groups = None
    if group is not None:
        if group not in _FIELDS and not any(group in j.extra for j in judgements):
            extras = {k for j in judgements for k in j.extra}
            raise ConfigError(did_you_mean(group, _FIELDS | extras, "judgement field"))
        by_value: dict[str, list[Judgement]] = {}
        for j in judgements:
            by_value.setdefault(_group_value(j, group), []).append(j)
        groups = {value: summarize(js, traced=traced) for value, js in sorted(by_value.items())}
    return Summary(n=n, status=counts, has_trace=traced,
                   accuracy=Accuracies(**{_attr(k): v for k, v in accuracy.items()}),
                   means=Means(**{name: _mean([getattr(j, f) for j in judgements]) for name, f in MEANS.items()}),
                   steps=StepTables(**{_attr(k): v for k, v in steps.items()}),
                   per_class=classes, group=group, groups=groups)


def _attr(name: str) -> str:
    return "class_" if name == "class" else name


def compare(j_a: Iterable[Judgement], j_b: Iterable[Judgement]) -> Comparison:
    """McNemar's test on answer and trace correctness between two arms, paired by example id.

    Only ids both sides have are paired (``n_paired``); ``unpaired_a``/``unpaired_b`` count the
    rest. A duplicate id on either side is an error. ``b01`` = wrong in a, right in b.

    >>> mk = lambda i, ok: Judgement(i, "ok", None, None, None, None, None, None, None, None, ok, "",
    ...                              ok, float(ok))
    >>> r = compare([mk("1", True), mk("2", False), mk("3", True)], [mk("2", True), mk("3", True)])
    >>> r.n_paired, r.unpaired_a, r.unpaired_b, r.answer.b01, r.answer.b10
    (2, 1, 0, 1, 0)
    """
    def by_id(js: Iterable[Judgement], side: str) -> dict[str, Judgement]:
        out: dict[str, Judgement] = {}
        for j in js:
            if j.id in out:
                raise DataError(f"duplicate id {j.id!r} in judgements {side}", field="id")
            out[j.id] = j
        return out

    a, b = by_id(j_a, "a"), by_id(j_b, "b")
    ids = sorted(a.keys() & b.keys())
    return Comparison(
        n_paired=len(ids), unpaired_a=len(a) - len(ids), unpaired_b=len(b) - len(ids),
        answer=McNemar.from_dict(json_safe(mcnemar([a[i].answer_ok for i in ids], [b[i].answer_ok for i in ids]))),
        trace=McNemar.from_dict(json_safe(mcnemar([a[i].trace_ok for i in ids], [b[i].trace_ok for i in ids]))))


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (nan, inf) replaced by None, tuples made lists.

    >>> json_safe({"p": float("nan"), "ci": (0.1, float("inf")), "n": 3})
    {'p': None, 'ci': [0.1, None], 'n': 3}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------- tables

def _num(x: Any, fmt: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, fmt)


def _p(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.4f}" if x >= 1e-4 else f"{x:.1e}"


def _rows(header: Sequence[str], rows: Sequence[Sequence[str]], first_left: bool = True) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: Sequence[str]) -> str:
        cells = [str(c).ljust(w) if (i == 0 and first_left) else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        return "  ".join(cells).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def format_summary(summary: Summary, title: str = "") -> str:
    """A fixed-width terminal rendering of :func:`summarize`'s output (undefined shown as ``-``, steps of
    outputs without a trace as ``n/a (no trace)``)."""
    lines = [f"== {title} (n={summary.n})" if title else f"== n={summary.n}"]
    lines.append("status: " + "  ".join(f"{k}={v}" for k, v in summary.status.items()))
    lines.append("")
    acc_rows = []
    for name, a in summary.accuracy.items():
        if a.note == NO_TRACE:
            acc_rows.append([name, "", NO_TRACE, ""])
            continue
        lo, hi = a.ci95
        acc_rows.append([name, f"{a.correct}/{a.n}", _num(a.accuracy), f"[{_num(lo)}, {_num(hi)}]"])
    for name, m in summary.means.items():
        acc_rows.append([f"mean {name}", f"{m.n_judged} judged", _num(m.mean), ""])
    lines += _rows(["measure", "correct/n", "value", "95% Wilson CI"], acc_rows)
    lines.append("")
    step_rows = []
    notes = []
    for name, r in summary.steps.items():
        t = r.table
        step_rows.append([name, t.both, t.step_only, t.answer_only, t.neither,
                          _num(r.chi2), _p(r.p), _num(r.chi2_yates), _p(r.p_yates),
                          _num(r.phi), _p(r.fisher_p), _num(r.p_answer_given_step),
                          _num(r.p_answer_given_not_step), _num(r.both_share)])
        if r.note:
            notes.append(f"  {name}: {r.note}")
    lines += _rows(["step vs answer", "both", "step", "ans", "neither", "chi2", "p", "chi2_Y",
                    "p_Y", "phi", "fisher_p", "P(A|S)", "P(A|~S)", "both/n"], step_rows)
    lines += notes
    lines.append("")
    cls_rows = [[label, c.n, _num(c.answer_accuracy), _num(c.trace_accuracy),
                 _num(c.class_accuracy), _num(c.evidence_exact_accuracy)]
                for label, c in summary.per_class.items()]
    lines += _rows(["gold class", "n", "answer", "trace", "class", "evidence"], cls_rows)
    for value, sub in (summary.groups or {}).items():
        lines.append("")
        lines.append(format_summary(sub, f"{summary.group} = {value}"))
    return "\n".join(lines)


def format_compare(cmp: Comparison, a: str = "a", b: str = "b") -> str:
    """A fixed-width rendering of :func:`compare`'s output."""
    lines = [f"== McNemar: {a} vs {b} (paired {cmp.n_paired}, unpaired {cmp.unpaired_a} in "
             f"{a}, {cmp.unpaired_b} in {b})"]
    rows = []
    for name in ("answer", "trace"):
        m = getattr(cmp, name)
        rows.append([name, _num(m.accuracy_a), _num(m.accuracy_b), m.b10, m.b01,
                     _p(m.p_exact), _num(m.chi2), _p(m.p)])
    lines += _rows(["verdict", f"acc {a}", f"acc {b}", f"only {a}", f"only {b}", "p_exact",
                    "chi2_cc", "p"], rows)
    return "\n".join(lines)
