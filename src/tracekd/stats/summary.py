"""Summaries of judged generations: statuses, accuracies with Wilson CIs, step-vs-answer tables.

Every judgement counts in every denominator: a step that could not be judged (``None``, e.g. no
trace) counts as not correct, and its precision/recall as 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any, Iterable, Sequence

from ..errors import ConfigError, DataError, did_you_mean
from ..records import STATUSES, Judgement
from .contingency import association, mcnemar, table_2x2, wilson

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


def _accuracy(flags: Sequence[Any]) -> dict:
    k = sum(1 for x in flags if x)
    n = len(flags)
    lo, hi = wilson(k, n)
    return {"correct": k, "n": n, "accuracy": k / n if n else math.nan, "ci95": [lo, hi]}


def _mean(values: Sequence[float | None]) -> dict:
    judged = [float(v) for v in values if v is not None]
    n = len(values)
    return {
        "mean": sum(judged) / n if n else math.nan,  # None counted as 0
        "mean_judged": sum(judged) / len(judged) if judged else math.nan,
        "n_judged": len(judged),
    }


def _group_value(j: Judgement, key: str) -> str:
    value = getattr(j, key) if key in _FIELDS else j.extra.get(key)
    return "(none)" if value is None or value == "" else str(value)


_FIELDS = {f.name for f in dataclasses.fields(Judgement)} - {"extra"}


def summarize(judgements: list[Judgement], *, group: str | None = None) -> dict:
    """Statistics of one set of judgements (one model x arm x dataset, say).

    Keys: ``n``; ``status`` (count of every status in ``records.STATUSES``, zeros included, plus
    any other status met); ``accuracy`` (class, evidence_exact/all/any, trace, answer: correct,
    n, accuracy, Wilson ``ci95``); ``means`` (evidence precision/recall, answer F1); ``steps``
    (class, evidence = exact set, trace: each crossed with the answer, see
    :func:`~tracekd.stats.contingency.association`); ``per_class`` (by gold label: n and the
    accuracy of answer, trace, class, evidence). With ``group`` (a Judgement field or a key of
    ``extra``), ``groups`` holds the same summary for each value of it.

    >>> j = [Judgement("a", "ok", "x", True, (0,), True, True, True, 1.0, 1.0, True, "k", True, 1.0, "x"),
    ...      Judgement("b", "no_trace", None, None, None, None, None, None, None, None, False, "k",
    ...                True, 1.0, "y")]
    >>> s = summarize(j)
    >>> s["n"], s["status"]["no_trace"], s["accuracy"]["trace"]["accuracy"], s["steps"]["trace"]["table"]
    (2, 1, 0.5, {'both': 1, 'step_only': 0, 'answer_only': 1, 'neither': 0})
    """
    n = len(judgements)
    status = Counter(j.status for j in judgements)
    out: dict = {"n": n}
    out["status"] = {s: status.get(s, 0) for s in STATUSES}
    out["status"].update({s: c for s, c in sorted(status.items()) if s not in STATUSES})
    out["accuracy"] = {name: _accuracy([getattr(j, f) for j in judgements])
                       for name, f in ACCURACIES.items()}
    out["means"] = {name: _mean([getattr(j, f) for j in judgements]) for name, f in MEANS.items()}
    answers = [j.answer_ok for j in judgements]
    out["steps"] = {name: association(table_2x2([getattr(j, f) for j in judgements], answers))
                    for name, f in STEPS.items()}
    per_class: dict[str, list[Judgement]] = {}
    for j in judgements:
        per_class.setdefault(j.gold_label or "(none)", []).append(j)
    out["per_class"] = {
        label: {
            "n": len(js),
            **{f"{name}_accuracy": _accuracy([getattr(j, ACCURACIES[name]) for j in js])["accuracy"]
               for name in ("answer", "trace", "class", "evidence_exact")},
        }
        for label, js in sorted(per_class.items())
    }
    if group is not None:
        if group not in _FIELDS and not any(group in j.extra for j in judgements):
            extras = {k for j in judgements for k in j.extra}
            raise ConfigError(did_you_mean(group, _FIELDS | extras, "judgement field"))
        groups: dict[str, list[Judgement]] = {}
        for j in judgements:
            groups.setdefault(_group_value(j, group), []).append(j)
        out["group"] = group
        out["groups"] = {value: summarize(js) for value, js in sorted(groups.items())}
    return out


def compare(j_a: Iterable[Judgement], j_b: Iterable[Judgement]) -> dict:
    """McNemar's test on answer and trace correctness between two arms, paired by example id.

    Only ids both sides have are paired (``n_paired``); ``unpaired_a``/``unpaired_b`` count the
    rest. A duplicate id on either side is an error. ``b01`` = wrong in a, right in b.

    >>> mk = lambda i, ok: Judgement(i, "ok", None, None, None, None, None, None, None, None, ok, "",
    ...                              ok, float(ok))
    >>> r = compare([mk("1", True), mk("2", False), mk("3", True)], [mk("2", True), mk("3", True)])
    >>> r["n_paired"], r["unpaired_a"], r["unpaired_b"], r["answer"]["b01"], r["answer"]["b10"]
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
    return {
        "n_paired": len(ids),
        "unpaired_a": len(a) - len(ids),
        "unpaired_b": len(b) - len(ids),
        "answer": mcnemar([a[i].answer_ok for i in ids], [b[i].answer_ok for i in ids]),
        "trace": mcnemar([a[i].trace_ok for i in ids], [b[i].trace_ok for i in ids]),
    }


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


def format_summary(summary: dict, title: str = "") -> str:
    """A fixed-width terminal rendering of :func:`summarize`'s output (nan shown as ``-``)."""
    lines = [f"== {title} (n={summary['n']})" if title else f"== n={summary['n']}"]
    st = summary["status"]
    lines.append("status: " + "  ".join(f"{k}={v}" for k, v in st.items()))
    lines.append("")
    acc_rows = []
    for name, a in summary["accuracy"].items():
        lo, hi = a["ci95"]
        acc_rows.append([name, f"{a['correct']}/{a['n']}", _num(a["accuracy"]),
                         f"[{_num(lo)}, {_num(hi)}]"])
    for name, m in summary["means"].items():
        acc_rows.append([f"mean {name}", f"{m['n_judged']} judged", _num(m["mean"]), ""])
    lines += _rows(["measure", "correct/n", "value", "95% Wilson CI"], acc_rows)
    lines.append("")
    step_rows = []
    notes = []
    for name, r in summary["steps"].items():
        t = r["table"]
        step_rows.append([name, t["both"], t["step_only"], t["answer_only"], t["neither"],
                          _num(r["chi2"]), _p(r["p"]), _num(r["chi2_yates"]), _p(r["p_yates"]),
                          _num(r["phi"]), _p(r["fisher_p"]), _num(r["p_answer_given_step"]),
                          _num(r["p_answer_given_not_step"]), _num(r["both_share"])])
        if r.get("note"):
            notes.append(f"  {name}: {r['note']}")
    lines += _rows(["step vs answer", "both", "step", "ans", "neither", "chi2", "p", "chi2_Y",
                    "p_Y", "phi", "fisher_p", "P(A|S)", "P(A|~S)", "both/n"], step_rows)
    lines += notes
    lines.append("")
    cls_rows = [[label, c["n"], _num(c["answer_accuracy"]), _num(c["trace_accuracy"]),
                 _num(c["class_accuracy"]), _num(c["evidence_exact_accuracy"])]
                for label, c in summary["per_class"].items()]
    lines += _rows(["gold class", "n", "answer", "trace", "class", "evidence"], cls_rows)
    for value, sub in summary.get("groups", {}).items():
        lines.append("")
        lines.append(format_summary(sub, f"{summary['group']} = {value}"))
    return "\n".join(lines)


def format_compare(cmp: dict, a: str = "a", b: str = "b") -> str:
    """A fixed-width rendering of :func:`compare`'s output."""
    lines = [f"== McNemar: {a} vs {b} (paired {cmp['n_paired']}, unpaired {cmp['unpaired_a']} in "
             f"{a}, {cmp['unpaired_b']} in {b})"]
    rows = []
    for name in ("answer", "trace"):
        m = cmp[name]
        rows.append([name, _num(m["accuracy_a"]), _num(m["accuracy_b"]), m["b10"], m["b01"],
                     _p(m["p_exact"]), _num(m["chi2"]), _p(m["p"])])
    lines += _rows(["verdict", f"acc {a}", f"acc {b}", f"only {a}", f"only {b}", "p_exact",
                    "chi2_cc", "p"], rows)
    return "\n".join(lines)
