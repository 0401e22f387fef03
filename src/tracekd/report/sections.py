"""What the report says: blocks built from the analysis dict of ``tracekd.experiment.analysis``.

One section per dataset x student: accuracy per arm (seeds aggregated), step accuracy, the step x
answer tables and their tests, McNemar between arms, per-class breakdown, parse statuses and
concrete examples of the off-diagonal cells. Every number comes from the analysis dict.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records import STATUSES
from . import numbers as nb
from . import plots
from .document import Block, Contents, Example, Facts, Figure, Footnotes, Heading, Paragraph, Table, slug

#: report row name -> key of the analysis group ``metrics``; the pooled value's summary accessor
MEASURES = {
    "answer": ("answer", "answer"),
    "class": ("class", "class"),
    "evidence": ("evidence", "evidence_exact"),
    "trace": ("trace", "trace"),
}
STEPS = ("class", "evidence", "trace")
KINDS = {"trace_right_answer_wrong": ("trace right, answer wrong", "step_only"),
         "trace_wrong_answer_right": ("trace wrong, answer right", "answer_only")}

HOW_TO_READ = (
    "Every generation counts in every denominator: an output that could not be parsed, or was cut off, "
    "counts as wrong on every step it could not be judged (the parse-status tables say how many).",
    "Evidence = the exact set of gold evidence lines. Trace = the whole trace is right ({trace_definition}).",
    "Mean, SD, min and max are over seeds (each seed re-draws the corruptions and trains its own student); "
    "SD is the sample SD (n/a with one seed). Intervals are 95% Wilson intervals over all seeds' items pooled.",
    "The step x answer tables pool the seeds: each test item appears once per seed, so pooled tests treat "
    "repeated items as independent and their p-values are descriptive; the per-seed rows are the proper tests.",
    "chi2: Pearson's chi-square with 1 df, without and with Yates' correction (3.841 is the 5% critical value); "
    "phi: signed, positive when step and answer are right together; Fisher p: two-sided exact test (prefer it "
    "when an expected count is below 5). McNemar: exact two-sided binomial p and the continuity-corrected "
    "chi-square on items paired by id. n/a = undefined; the note column says why.",
)


@dataclass(frozen=True)
class Header:
    """What the report's header states besides the analysis itself."""

    version: str  # tracekd version writing the report
    command: str | None = None  # exact command that reproduces the run
    source: str = "analysis.json"


def _section_keys(analysis: dict) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    for g in analysis["groups"]:
        if (g["dataset"], g["student"]) not in keys:
            keys.append((g["dataset"], g["student"]))
    return keys


def _groups(analysis: dict, dataset: str, student: str) -> list[dict]:
    arms = analysis["arms"]
    gs = [g for g in analysis["groups"] if g["dataset"] == dataset and g["student"] == student]
    return sorted(gs, key=lambda g: arms.index(g["arm"]) if g["arm"] in arms else len(arms))


def _cells(analysis: dict, dataset: str, student: str, arm: str) -> list[dict]:
    cs = [c for c in analysis["cells"] if (c["dataset"], c["student"], c["arm"]) == (dataset, student, arm)]
    return sorted(cs, key=lambda c: (c["seed"] is None, c["seed"] if c["seed"] is not None else 0))


def _seeds_text(seeds: list) -> str:
    return ", ".join(nb.seed_label(s) for s in seeds)


def build(analysis: dict, header: Header, *, examples_per_cell: int = 3) -> list[Block]:
    """Every block of the report, figures drawn, in order."""
    sections = _section_keys(analysis)
    blocks: list[Block] = [Heading(1, f"tracekd report: {analysis.get('experiment') or '(unnamed)'}", "top")]
    facts = [("Experiment", str(analysis.get("experiment") or "(unnamed)"))]
    if header.command:
        facts.append(("Reproduce", header.command))
    facts += [("tracekd version", header.version),
              ("Source", header.source),
              ("Datasets x students", "; ".join(f"{d} / {s}" for d, s in sections) or "(none)"),
              ("Arms", ", ".join(analysis.get("arms", []))),
              ("Seeds", _seeds_text(analysis.get("seeds", [])))]
    if analysis.get("trace_definition"):
        facts.append(("Trace counted right when", analysis["trace_definition"]))
    blocks.append(Facts(tuple(facts), code=frozenset({"Reproduce"})))
    blocks.append(Contents((("How to read this report", "how-to-read"), ("Overview", "overview"),
                            *((f"{d} / {s}", slug("section", d, s)) for d, s in sections))))

    blocks.append(Heading(2, "How to read this report", "how-to-read"))
    trace_def = analysis.get("trace_definition") or "as scored"
    blocks += [Paragraph(t.format(trace_definition=trace_def)) for t in HOW_TO_READ]

    blocks.append(Heading(2, "Overview", "overview"))
    blocks.append(_overview(analysis, sections))
    for dataset, student in sections:
        blocks += _section(analysis, dataset, student, examples_per_cell)
    return blocks


def _overview(analysis: dict, sections: list[tuple[str, str]]) -> Table:
    rows = []
    for dataset, student in sections:
        for g in _groups(analysis, dataset, student):
            m = g["metrics"]
            both = g["pooled"]["steps"]["trace"]["both_share"]
            rows.append((dataset, student, g["arm"], _seeds_text(g["seeds"]),
                         ", ".join(str(n) for n in g["n_per_seed"]),
                         nb.prop(m["answer"]["mean"]), nb.prop(m["class"]["mean"]),
                         nb.prop(m["evidence"]["mean"]), nb.prop(m["trace"]["mean"]), nb.prop(both)))
    several = any(len(g["seeds"]) > 1 for g in analysis["groups"])
    return Table("Overview: means over seeds; last column pooled over seeds" if several else "Overview",
                 ("dataset", "student", "arm", "seeds", "n per seed", "answer", "class", "evidence", "trace",
                  "trace and answer right / n"),
                 tuple(rows), (False, False, False, False, True, True, True, True, True, True))


def _section(analysis: dict, dataset: str, student: str, k_examples: int) -> list[Block]:
    groups = _groups(analysis, dataset, student)
    name = f"{dataset} / {student}"
    anchor = slug("section", dataset, student)
    seeds = sorted({s for g in groups for s in g["seeds"]}, key=lambda s: (s is None, s if s is not None else 0))
    pooled_note = f"pooled over seeds {_seeds_text(seeds)}" if len(seeds) > 1 else f"seed {_seeds_text(seeds)}"

    def fig(kind: str, png: bytes, alt: str, caption: str) -> Figure:
        return Figure(f"plots/{slug(dataset, student, kind)}.png", png, alt, caption)

    out: list[Block] = [Heading(2, name, anchor)]
    n_text = "; ".join(f"{g['arm']}: {', '.join(map(str, g['n_per_seed']))}" for g in groups)
    out.append(Paragraph(f"Seeds: {_seeds_text(seeds)}. Test items per seed - {n_text}."))

    out.append(Heading(3, "Answer and step accuracy", slug(anchor, "accuracy")))
    out.append(fig("answer", plots.answer_accuracy(groups, f"Answer accuracy - {name}"),
                   f"Answer accuracy per arm, {name}",
                   "Answer accuracy per arm. Bar: mean over seeds; dots: single seeds; "
                   f"error bar: 95% Wilson interval, {pooled_note}."))
    out.append(fig("steps", plots.step_accuracy(groups, f"Step accuracy - {name}"),
                   f"Step accuracy per arm, {name}",
                   "Class, evidence (exact set) and whole-trace accuracy per arm. Bar: mean over seeds; dots: "
                   f"single seeds; error bar: 95% Wilson interval, {pooled_note}."))
    out.append(_accuracy_table(groups, name))
    out.append(_evidence_table(groups, name, pooled_note))

    out.append(Heading(3, "Step x answer", slug(anchor, "step-answer")))
    out.append(fig("tables", plots.step_answer_tables(groups, f"Step x answer, {pooled_note} - {name}"),
                   f"Step x answer 2x2 tables per arm, {name}",
                   f"Step x answer 2x2 tables per arm ({pooled_note}): count and share of all items."))
    for step in STEPS:
        out.append(_step_table(analysis, groups, dataset, student, step, name))
    if len(seeds) > 1:
        out.append(Paragraph("Pooled rows count each test item once per seed; their p-values are descriptive.",
                             note=True))

    out.append(Heading(3, "McNemar between arms", slug(anchor, "mcnemar")))
    out += _mcnemar(analysis, dataset, student, name)

    out.append(Heading(3, "Per class", slug(anchor, "per-class")))
    classes = sorted({c for g in groups for c in g["pooled"]["per_class"]})
    if classes:
        out.append(fig("classes", plots.per_class(groups, classes, f"Per gold class ({pooled_note}) - {name}"),
                       f"Answer and trace accuracy per gold class, {name}",
                       f"Answer and trace accuracy per gold class and arm, {pooled_note}."))
    out.append(_class_table(groups, classes, name, pooled_note))

    out.append(Heading(3, "Parse status", slug(anchor, "status")))
    out.append(fig("status", plots.parse_status(groups, f"Parse status ({pooled_note}) - {name}"),
                   f"Parse-status counts per arm, {name}",
                   f"Parse status of every generation per arm, {pooled_note}."))
    out.append(_status_table(analysis, groups, dataset, student, name))

    out.append(Heading(3, "Examples", slug(anchor, "examples")))
    out += _examples(analysis, groups, dataset, student, k_examples, pooled_note)
    return out


def _accuracy_table(groups: list[dict], name: str) -> Table:
    rows = []
    for g in groups:
        for measure, (metric, acc) in MEASURES.items():
            m = g["metrics"][metric]
            a = g["pooled"]["accuracy"][acc]
            rows.append((g["arm"], measure, nb.props(m["values"]), nb.prop(m["mean"]), nb.stat(m["sd"]),
                         nb.prop(m["min"]), nb.prop(m["max"]), nb.prop(a["accuracy"]), nb.ci(a["ci95"])))
        m = g["metrics"]["answer_f1"]
        rows.append((g["arm"], "answer F1", nb.props(m["values"]), nb.prop(m["mean"]), nb.stat(m["sd"]),
                     nb.prop(m["min"]), nb.prop(m["max"]), nb.prop(g["pooled"]["means"]["answer_f1"]["mean"]), ""))
    return Table(f"Accuracy per arm - {name}",
                 ("arm", "measure", "per seed", "mean", "SD", "min", "max", "pooled", "95% CI (pooled)"),
                 tuple(rows), (False, False, True, True, True, True, True, True, True))


def _evidence_table(groups: list[dict], name: str, pooled_note: str) -> Table:
    rows = []
    for g in groups:
        p = g["pooled"]
        rows.append((g["arm"], str(p["n"]), nb.prop(p["accuracy"]["evidence_exact"]["accuracy"]),
                     nb.prop(p["accuracy"]["evidence_all"]["accuracy"]),
                     nb.prop(p["accuracy"]["evidence_any"]["accuracy"]),
                     nb.prop(p["means"]["evidence_precision"]["mean"]),
                     nb.prop(p["means"]["evidence_recall"]["mean"])))
    return Table(f"Evidence step verdicts ({pooled_note}) - {name}",
                 ("arm", "n", "exact set", "all gold present", "any gold present", "precision", "recall"),
                 tuple(rows), (False, True, True, True, True, True, True))


STAT_HEADER = ("arm", "seed", "n", "both right", "step only", "answer only", "both wrong", "chi2", "p",
               "chi2 Yates", "p Yates", "phi", "Fisher p", "P(ans | step right)", "P(ans | step wrong)",
               "both right / n", "note")


def _stat_row(arm: str, seed: str, r: dict, notes: Footnotes) -> tuple[str, ...]:
    t = r["table"]
    return (arm, seed, str(r["n"]), str(t["both"]), str(t["step_only"]), str(t["answer_only"]), str(t["neither"]),
            nb.stat(r["chi2"]), nb.pval(r["p"]), nb.stat(r["chi2_yates"]), nb.pval(r["p_yates"]), nb.stat(r["phi"]),
            nb.pval(r["fisher_p"]), nb.prop(r["p_answer_given_step"]), nb.prop(r["p_answer_given_not_step"]),
            nb.prop(r["both_share"]), notes.mark(r.get("note") or ""))


def _step_table(analysis: dict, groups: list[dict], dataset: str, student: str, step: str, name: str) -> Table:
    rows = []
    notes = Footnotes()
    for g in groups:
        cells = _cells(analysis, dataset, student, g["arm"])
        for c in cells:
            rows.append(_stat_row(g["arm"], nb.seed_label(c["seed"]), c["summary"]["steps"][step], notes))
        if len(cells) != 1:
            rows.append(_stat_row(g["arm"], "pooled", g["pooled"]["steps"][step], notes))
    what = {"class": "class step", "evidence": "evidence step (exact set)", "trace": "whole trace"}[step]
    return Table(f"Step x answer statistics, {what} - {name}", STAT_HEADER, tuple(rows),
                 (False, False, *([True] * 14), False), notes.texts)


MCNEMAR_HEADER = ("seed", "arm A", "arm B", "paired", "verdict", "accuracy A", "accuracy B", "right only in A",
                  "right only in B", "exact p", "chi2 (cc)", "p", "note")


def _mcnemar(analysis: dict, dataset: str, student: str, name: str) -> list[Block]:
    rows = []
    notes = Footnotes()
    for c in analysis["comparisons"]:
        if (c["dataset"], c["student"]) != (dataset, student):
            continue
        r = c["result"]
        unpaired = (f"unpaired items: {r['unpaired_a']} only in A, {r['unpaired_b']} only in B"
                    if r["unpaired_a"] or r["unpaired_b"] else "")
        for verdict in ("answer", "trace"):
            m = r[verdict]
            rows.append((nb.seed_label(c["seed"]), c["arm_a"], c["arm_b"], str(r["n_paired"]), verdict,
                         nb.prop(m["accuracy_a"]), nb.prop(m["accuracy_b"]), str(m["b10"]), str(m["b01"]),
                         nb.pval(m["p_exact"]), nb.stat(m["chi2"]), nb.pval(m["p"]),
                         notes.mark(m.get("note") or "", unpaired)))
    if not rows:
        return [Paragraph("No pair of arms was evaluated on the same seed.", note=True)]
    return [Table(f"McNemar between arms, per seed - {name}", MCNEMAR_HEADER, tuple(rows),
                  (False, False, False, True, False, *([True] * 7), False), notes.texts)]


def _class_table(groups: list[dict], classes: list[str], name: str, pooled_note: str) -> Table:
    rows = []
    for cl in classes:
        for g in groups:
            c = g["pooled"]["per_class"].get(cl)
            if c is None:
                continue
            rows.append((cl, g["arm"], str(c["n"]), nb.prop(c["answer_accuracy"]), nb.prop(c["trace_accuracy"]),
                         nb.prop(c["class_accuracy"]), nb.prop(c["evidence_exact_accuracy"])))
    return Table(f"Accuracy per gold class ({pooled_note}) - {name}",
                 ("gold class", "arm", "n", "answer", "trace", "class", "evidence"),
                 tuple(rows), (False, False, True, True, True, True, True))


def _status_table(analysis: dict, groups: list[dict], dataset: str, student: str, name: str) -> Table:
    extra = sorted({s for g in groups for s in g["pooled"]["status"] if s not in STATUSES})
    statuses = [*STATUSES, *extra]
    rows = []
    for g in groups:
        cells = _cells(analysis, dataset, student, g["arm"])
        for c in cells:
            st = c["summary"]["status"]
            rows.append((g["arm"], nb.seed_label(c["seed"]), *(str(st.get(s, 0)) for s in statuses),
                         str(c["summary"]["n"])))
        if len(cells) != 1:
            st = g["pooled"]["status"]
            rows.append((g["arm"], "all", *(str(st.get(s, 0)) for s in statuses), str(g["pooled"]["n"])))
    return Table(f"Parse status per arm and seed - {name}", ("arm", "seed", *statuses, "n"), tuple(rows),
                 (False, False, *([True] * (len(statuses) + 1))))


def _answers_text(answers: list) -> str:
    return " | ".join(str(a) for a in answers) if answers else "(none)"


def _examples(analysis: dict, groups: list[dict], dataset: str, student: str, k: int,
              pooled_note: str) -> list[Block]:
    shown = [e for e in analysis.get("examples", []) if (e["dataset"], e["student"]) == (dataset, student)]
    out: list[Block] = [Paragraph(
        "Items where the trace and the answer disagree, as the student wrote them. Gold evidence lines are "
        "marked in the context. Counts are " + pooled_note + ".")]
    for g in groups:
        p = g["pooled"]
        if p["n"] and p["status"].get("no_trace", 0) == p["n"]:
            out.append(Heading(4, f"{g['arm']}", slug("ex", dataset, student, g["arm"])))
            out.append(Paragraph("No generation of this arm has a trace (as expected of vanilla), so its "
                                 "off-diagonal cells say nothing about traces; no examples are shown."))
            continue
        for kind, (label, cell) in KINDS.items():
            total = p["steps"]["trace"]["table"][cell]
            picked, seen = [], set()
            for e in shown:
                if e["arm"] == g["arm"] and e["kind"] == kind and e["id"] not in seen and len(picked) < k:
                    picked.append(e)
                    seen.add(e["id"])
            out.append(Heading(4, f"{g['arm']}: {label}", slug("ex", dataset, student, g["arm"], kind)))
            if not picked:
                out.append(Paragraph(f"{total} such items; none recorded in the analysis." if total
                                     else "No such items."))
                continue
            out.append(Paragraph(f"{len(picked)} shown of {total}."))
            out += [_example(e) for e in picked]
    return out


def _example(e: dict) -> Example:
    def shown(value) -> str:
        return "(none)" if value is None or value == "" else str(value)

    evidence = list(e.get("gold_evidence") or [])
    context = tuple(e.get("context") or [])
    pairs = (("class", shown(e.get("gold_label")), shown(e.get("label"))),
             ("answer", _answers_text(e.get("gold_answers") or []), shown(e.get("answer"))),
             ("evidence", " / ".join(evidence) or "(none)", ""))  # the student's is in the trace shown
    return Example(f"{e['id']} - seed {nb.seed_label(e.get('seed'))}, status {e.get('status', '?')}",
                   str(e.get("question", "")), pairs, context,
                   frozenset(i for i, line in enumerate(context) if line in set(evidence)), e.get("text", ""))
