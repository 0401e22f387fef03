"""``tracekd audit cotemp``: the rule-based relation classifier (:mod:`tracekd.datasets.cotemp_rules`)
against the dataset's categories, on the CoTemp files as read by :mod:`tracekd.datasets.cotemp`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, did_you_mean
from .cotemp import data_files, read_category_file
from .cotemp_rules import CATEGORIES, SEMANTICS, RuleVerdict, classify_question


def _describe(row, verdict: RuleVerdict, facts: Sequence[str]) -> str:
    """A disagreement's reason with the times involved."""
    parts = [verdict.reason]
    if verdict.anchor:
        parts.append("anchor: " + "; ".join(facts[i] for i in verdict.anchor))
    for answer, ids in verdict.answer_facts.items():
        parts.append(f"{answer}: " + "; ".join(facts[i] for i in ids))
    return " | ".join(parts)


def audit(path: str | Path, semantics: str = "wikidata") -> dict:
    """Agreement of :func:`classify_question` with the dataset's categories on the CoTemp file(s) at
    ``path`` (a folder with the four files, or one file): overall, per category, the confusion
    table, every disagreement with its reason, and the facts whose time could not be parsed.
    The agreement under the other semantics is reported too (``other_semantics``)."""
    if semantics not in SEMANTICS:
        raise ConfigError(did_you_mean(str(semantics), SEMANTICS, "time semantics"))
    other = [s for s in SEMANTICS if s != semantics]
    per: dict[str, dict] = {}
    confusion: dict[str, Counter] = {}
    disagreements = []
    unparsed_facts = []
    inverted = []
    n_facts = 0
    other_agree = Counter()
    for category, f in data_files(path):
        rows, errors = read_category_file(f)
        if errors:
            raise errors[0]
        stats = per.setdefault(category, {"n": 0, "agree": 0})
        conf = confusion.setdefault(category, Counter())
        for row in rows:
            n_facts += len(row.facts)
            verdict = classify_question(row.question, row.facts, row.answer, row.triple_element, semantics)
            for i in verdict.unparsed:
                unparsed_facts.append({"id": f"cotemp/{category}/{row.index}", "fact": row.facts[i],
                                       "source": f"{f.name}:{row.line}"})
            for i in verdict.inverted:
                inverted.append({"id": f"cotemp/{category}/{row.index}", "fact": row.facts[i],
                                 "source": f"{f.name}:{row.line}"})
            predicted = verdict.label or "unclassified"
            stats["n"] += 1
            conf[predicted] += 1
            if verdict.label == category:
                stats["agree"] += 1
            else:
                disagreements.append({
                    "id": f"cotemp/{category}/{row.index}", "category": category, "predicted": predicted,
                    "triple_element": row.triple_element, "question": row.question,
                    "reason": _describe(row, verdict, row.facts), "source": f"{f.name}:{row.line}",
                })
            for s in other:
                if classify_question(row.question, row.facts, row.answer, row.triple_element, s).label == category:
                    other_agree[s] += 1
    n = sum(s["n"] for s in per.values())
    agree = sum(s["agree"] for s in per.values())
    for s in per.values():
        s["agreement"] = s["agree"] / s["n"] if s["n"] else 0.0
    columns = [*CATEGORIES, "unclassified"]
    return {
        "path": str(path),
        "semantics": semantics,
        "n": n,
        "agree": agree,
        "agreement": agree / n if n else 0.0,
        "per_category": per,
        "confusion": {c: {k: conf.get(k, 0) for k in columns} for c, conf in confusion.items()},
        "unclassified": sum(conf.get("unclassified", 0) for conf in confusion.values()),
        "facts": n_facts,
        "unparsed_time_expressions": len(unparsed_facts),
        "unparsed": unparsed_facts,
        "inverted_spans": inverted,
        "other_semantics": {s: {"agree": other_agree[s], "agreement": other_agree[s] / n if n else 0.0}
                            for s in other},
        "disagreements": disagreements,
    }


def format_audit(report: dict, show: int | None = 20) -> str:
    """The audit as a readable table, with up to ``show`` disagreements (all when None)."""
    cols = [*CATEGORIES, "unclassified"]
    width = max(12, *(len(c) for c in report["confusion"]))
    lines = [f"CoTemp rule-based relation classifier vs the dataset's categories ({report['path']})",
             f"time semantics: {report['semantics']}", "",
             "dataset \\ rules".ljust(width + 4) + "".join(c.rjust(13) for c in cols) + "agreement".rjust(22)]
    for cat, conf in report["confusion"].items():
        s = report["per_category"][cat]
        lines.append(cat.ljust(width + 4) + "".join(str(conf[c]).rjust(13) for c in cols)
                     + f"{s['agree']:,}/{s['n']:,}".rjust(15) + f"{100 * s['agreement']:6.1f}%")
    lines.append(f"overall: {report['agree']:,} / {report['n']:,} = {100 * report['agreement']:.1f}% agree; "
                 f"{report['unclassified']} unclassified")
    for s, o in report["other_semantics"].items():
        lines.append(f"  (semantics {s}: {o['agree']:,} / {report['n']:,} = {100 * o['agreement']:.1f}%)")
    lines.append(f"facts: {report['facts']:,}; time expressions not parsed: {report['unparsed_time_expressions']}")
    for u in report["unparsed"][: show if show is not None else None]:
        lines.append(f"  unparsed {u['source']} ({u['id']}): {u['fact']}")
    if report["inverted_spans"]:
        lines.append(f"spans ending before they start (parsed, used as written): {len(report['inverted_spans'])}")
        for u in report["inverted_spans"][: show if show is not None else None]:
            lines.append(f"  {u['source']} ({u['id']}): {u['fact']}")
    dis = report["disagreements"]
    if dis:
        shown = dis if show is None else dis[:show]
        lines.append("")
        lines.append(f"disagreements ({len(dis)}" + (f", showing {len(shown)}" if len(shown) < len(dis) else "") + "):")
        for d in shown:
            lines.append(f"- {d['id']} ({d['source']}, {d['triple_element']}): dataset {d['category']}, "
                         f"rules {d['predicted']}")
            lines.append(f"    Q: {d['question']}")
            lines.append(f"    why: {d['reason']}")
    return "\n".join(lines)
