"""What the report says: blocks built from the analysis of :mod:`tracekd.stats.analysis`.

One section per dataset x student: accuracy per arm (seeds aggregated), step accuracy, the step x
answer tables and their tests, McNemar between arms, per-class breakdown, parse statuses and
concrete examples of the off-diagonal cells, then the extra sections of :mod:`tracekd.report.extra`.
Every number comes from the typed analysis (:class:`tracekd.stats.results.Analysis`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..records import STATUSES
from ..stats.results import NO_TRACE, Analysis, Cell, Group, ShownExample
from . import extra
from . import numbers as nb
from . import plots
from .document import Block, Contents, ExampleBlock, Facts, Figure, Footnotes, Heading, Paragraph, Table, slug

#: report row name -> (the group's per-seed metric, the pooled summary's accuracy)
MEASURES = {
    "answer": (lambda g: g.metrics.answer, lambda g: g.pooled.accuracy.answer),
    "class": (lambda g: g.metrics.class_, lambda g: g.pooled.accuracy.class_),
    "evidence": (lambda g: g.metrics.evidence, lambda g: g.pooled.accuracy.evidence_exact),
    "trace": (lambda g: g.metrics.trace, lambda g: g.pooled.accuracy.trace),
}
STEPS = ("class", "evidence", "trace")
KINDS = {"trace_right_answer_wrong": ("trace right, answer wrong", "step_only"),
         "trace_wrong_answer_right": ("trace wrong, answer right", "answer_only")}

HOW_TO_READ = (
    "Every test item counts in every denominator: an output that could not be parsed, or was cut off, "
    "counts as wrong on every step it could not be judged, and an item with no output at all is `missing` "
    "and wrong on everything (the parse-status tables say how many). Arms trained without a trace (vanilla) "
    "show their steps as n/a (no trace).",
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


def _seeds_text(seeds) -> str:
    return ", ".join(nb.seed_label(s) for s in seeds)


def _step(g: Group, value: float | None) -> str:
    """A step measure of a group: ``n/a (no trace)`` for outputs without a trace."""
    return NO_TRACE if not g.pooled.has_trace else nb.prop(value)


def build(analysis: Analysis, header: Header, *, examples_per_cell: int = 3,
          run_dir: Path | None = None) -> list[Block]:
    """Every block of the report, figures drawn, in order (the extra sections last)."""
    sections = analysis.section_keys()
    extras = extra.build_sections(analysis, run_dir)
    blocks: list[Block] = [Heading(1, f"tracekd report: {analysis.experiment or '(unnamed)'}", "top")]
    facts = [("Experiment", analysis.experiment or "(unnamed)")]
    if header.command:
        facts.append(("Reproduce", header.command))
    facts += [("tracekd version", header.version),
              ("Source", header.source),
              ("Datasets x students", "; ".join(f"{d} / {s}" for d, s in sections) or "(none)"),
              ("Arms", ", ".join(analysis.arms)),
              ("Seeds", _seeds_text(analysis.seeds))]
    if analysis.trace_definition:
        facts.append(("Trace counted right when", analysis.trace_definition))
    blocks.append(Facts(tuple(facts), code=frozenset({"Reproduce"})))
    blocks.append(Contents((("How to read this report", "how-to-read"), ("Overview", "overview"),
                            *((f"{d} / {s}", slug("section", d, s)) for d, s in sections),
                            *((x.title, x.anchor) for x in extras))))

    blocks.append(Heading(2, "How to read this report", "how-to-read"))
    trace_def = analysis.trace_definition or "as scored"
    blocks += [Paragraph(t.format(trace_definition=trace_def)) for t in HOW_TO_READ]

    blocks.append(Heading(2, "Overview", "overview"))
    blocks.append(_overview(analysis, sections))
    for dataset, student in sections:
        blocks += _section(analysis, dataset, student, examples_per_cell)
    for x in extras:
        blocks.append(Heading(2, x.title, x.anchor))
        blocks += x.blocks
    return blocks


def _overview(analysis: Analysis, sections: list[tuple[str, str]]) -> Table:
    rows = []
    for dataset, student in sections:
        for g in analysis.groups_of(dataset, student):
            m = g.metrics
            rows.append((dataset, student, g.arm, _seeds_text(g.seeds), ", ".join(str(n) for n in g.n_per_seed),
                         nb.prop(m.answer.mean), _step(g, m.class_.mean), _step(g, m.evidence.mean),
                         _step(g, m.trace.mean), _step(g, g.pooled.steps.trace.both_share)))
    several = any(len(g.seeds) > 1 for g in analysis.groups)
    return Table("Overview: means over seeds; last column pooled over seeds" if several else "Overview",
                 ("dataset", "student", "arm", "seeds", "n per seed", "answer", "class", "evidence", "trace",
                  "trace and answer right / n"),
                 tuple(rows), (False, False, False, False, True, True, True, True, True, True))


def _section(analysis: Analysis, dataset: str, student: str, k_examples: int) -> list[Block]:
    groups = analysis.groups_of(dataset, student)
    name = f"{dataset} / {student}"
    anchor = slug("section", dataset, student)
    seeds = sorted({s for g in groups for s in g.seeds}, key=lambda s: (s is None, s if s is not None else 0))
    pooled_note = f"pooled over seeds {_seeds_text(seeds)}" if len(seeds) > 1 else f"seed {_seeds_text(seeds)}"

    def fig(kind: str, png: bytes, alt: str, caption: str) -> Figure:
        return Figure(f"plots/{slug(dataset, student, kind)}.png", png, alt, caption)

    out: list[Block] = [Heading(2, name, anchor)]
    n_text = "; ".join(f"{g.arm}: {', '.join(map(str, g.n_per_seed))}" for g in groups)
    out.append(Paragraph(f"Seeds: {_seeds_text(seeds)}. Test items per seed - {n_text}."))

    out.append(Heading(3, "Answer and step accuracy", slug(anchor, "accuracy")))
    out.append(fig("answer", plots.answer_accuracy(groups, f"Answer accuracy - {name}"),
                   f"Answer accuracy per arm, {name}",
                   "Answer accuracy per arm. Bar: mean over seeds; dots: single seeds; "
                   f"error bar: 95% Wilson interval, {pooled_note}."))
    no_trace = [g.arm for g in groups if not g.pooled.has_trace]
    out.append(fig("steps", plots.step_accuracy(groups, f"Step accuracy - {name}"),
                   f"Step accuracy per arm, {name}",
                   "Class, evidence (exact set) and whole-trace accuracy per arm. Bar: mean over seeds; dots: "
                   f"single seeds; error bar: 95% Wilson interval, {pooled_note}."
                   + (f" {', '.join(no_trace)}: {NO_TRACE}, no bars." if no_trace else "")))
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
    classes = sorted({c for g in groups for c in g.pooled.per_class})
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


def _accuracy_table(groups: list[Group], name: str) -> Table:
    rows = []
    for g in groups:
        for measure, (metric, pooled) in MEASURES.items():
            m, a = metric(g), pooled(g)
            if measure != "answer" and not g.pooled.has_trace:
                rows.append((g.arm, measure, *([NO_TRACE] * 7)))
                continue
            rows.append((g.arm, measure, nb.props(m.values), nb.prop(m.mean), nb.stat(m.sd),
                         nb.prop(m.min), nb.prop(m.max), nb.prop(a.accuracy), nb.ci(a.ci95)))
        m = g.metrics.answer_f1
        rows.append((g.arm, "answer F1", nb.props(m.values), nb.prop(m.mean), nb.stat(m.sd),
                     nb.prop(m.min), nb.prop(m.max), nb.prop(g.pooled.means.answer_f1.mean), ""))
    return Table(f"Accuracy per arm - {name}",
                 ("arm", "measure", "per seed", "mean", "SD", "min", "max", "pooled", "95% CI (pooled)"),
                 tuple(rows), (False, False, True, True, True, True, True, True, True))


def _evidence_table(groups: list[Group], name: str, pooled_note: str) -> Table:
    rows = []
    for g in groups:
        p = g.pooled
        if not p.has_trace:
            rows.append((g.arm, str(p.n), *([NO_TRACE] * 5)))
            continue
        rows.append((g.arm, str(p.n), nb.prop(p.accuracy.evidence_exact.accuracy),
                     nb.prop(p.accuracy.evidence_all.accuracy), nb.prop(p.accuracy.evidence_any.accuracy),
                     nb.prop(p.means.evidence_precision.mean), nb.prop(p.means.evidence_recall.mean)))
    return Table(f"Evidence step verdicts ({pooled_note}) - {name}",
                 ("arm", "n", "exact set", "all gold present", "any gold present", "precision", "recall"),
                 tuple(rows), (False, True, True, True, True, True, True))


STAT_HEADER = ("arm", "seed", "n", "both right", "step only", "answer only", "both wrong", "chi2", "p",
               "chi2 Yates", "p Yates", "phi", "Fisher p", "P(ans | step right)", "P(ans | step wrong)",
               "both right / n", "note")


def _stat_row(arm: str, seed: str, r, notes: Footnotes) -> tuple[str, ...]:
    t = r.table
    return (arm, seed, str(r.n), str(t.both), str(t.step_only), str(t.answer_only), str(t.neither),
            nb.stat(r.chi2), nb.pval(r.p), nb.stat(r.chi2_yates), nb.pval(r.p_yates), nb.stat(r.phi),
            nb.pval(r.fisher_p), nb.prop(r.p_answer_given_step), nb.prop(r.p_answer_given_not_step),
            nb.prop(r.both_share), notes.mark(r.note or ""))


def _step_table(analysis: Analysis, groups: list[Group], dataset: str, student: str, step: str,
                name: str) -> Table:
    rows = []
    notes = Footnotes()
    for g in groups:
        cells = analysis.cells_of(dataset, student, g.arm)
        for c in cells:
            rows.append(_stat_row(g.arm, nb.seed_label(c.seed), c.summary.steps[step], notes))
        if len(cells) != 1:
            rows.append(_stat_row(g.arm, "pooled", g.pooled.steps[step], notes))
    what = {"class": "class step", "evidence": "evidence step (exact set)", "trace": "whole trace"}[step]
    return Table(f"Step x answer statistics, {what} - {name}", STAT_HEADER, tuple(rows),
                 (False, False, *([True] * 14), False), notes.texts)


MCNEMAR_HEADER = ("seed", "arm A", "arm B", "paired", "verdict", "accuracy A", "accuracy B", "right only in A",
                  "right only in B", "exact p", "chi2 (cc)", "p", "note")


def _mcnemar(analysis: Analysis, dataset: str, student: str, name: str) -> list[Block]:
    rows = []
    notes = Footnotes()
    for c in analysis.comparisons:
        if (c.dataset, c.student) != (dataset, student):
            continue
        r = c.result
        unpaired = (f"unpaired items: {r.unpaired_a} only in A, {r.unpaired_b} only in B"
                    if r.unpaired_a or r.unpaired_b else "")
        for verdict in ("answer", "trace"):
            m = getattr(r, verdict)
            rows.append((nb.seed_label(c.seed), c.arm_a, c.arm_b, str(r.n_paired), verdict,
                         nb.prop(m.accuracy_a), nb.prop(m.accuracy_b), str(m.b10), str(m.b01),
                         nb.pval(m.p_exact), nb.stat(m.chi2), nb.pval(m.p), notes.mark(m.note or "", unpaired)))
    if not rows:
        return [Paragraph("No pair of arms was evaluated on the same seed.", note=True)]
    return [Table(f"McNemar between arms, per seed - {name}", MCNEMAR_HEADER, tuple(rows),
                  (False, False, False, True, False, *([True] * 7), False), notes.texts)]


def _class_table(groups: list[Group], classes: list[str], name: str, pooled_note: str) -> Table:
    rows = []
    for cl in classes:
        for g in groups:
            c = g.pooled.per_class.get(cl)
            if c is None:
                continue
            rows.append((cl, g.arm, str(c.n), nb.prop(c.answer_accuracy), _step(g, c.trace_accuracy),
                         _step(g, c.class_accuracy), _step(g, c.evidence_exact_accuracy)))
    return Table(f"Accuracy per gold class ({pooled_note}) - {name}",
                 ("gold class", "arm", "n", "answer", "trace", "class", "evidence"),
                 tuple(rows), (False, False, True, True, True, True, True))


def _status_table(analysis: Analysis, groups: list[Group], dataset: str, student: str, name: str) -> Table:
    extra_statuses = sorted({s for g in groups for s in g.pooled.status if s not in STATUSES})
    statuses = [*STATUSES, *extra_statuses]
    rows = []
    for g in groups:
        cells: list[Cell] = analysis.cells_of(dataset, student, g.arm)
        for c in cells:
            st = c.summary.status
            rows.append((g.arm, nb.seed_label(c.seed), *(str(st.get(s, 0)) for s in statuses), str(c.summary.n)))
        if len(cells) != 1:
            st = g.pooled.status
            rows.append((g.arm, "all", *(str(st.get(s, 0)) for s in statuses), str(g.pooled.n)))
    return Table(f"Parse status per arm and seed - {name}", ("arm", "seed", *statuses, "n"), tuple(rows),
                 (False, False, *([True] * (len(statuses) + 1))))


def _answers_text(answers) -> str:
    return " | ".join(str(a) for a in answers) if answers else "(none)"


def _examples(analysis: Analysis, groups: list[Group], dataset: str, student: str, k: int,
              pooled_note: str) -> list[Block]:
    shown = [e for e in analysis.examples if (e.dataset, e.student) == (dataset, student)]
    out: list[Block] = [Paragraph(
        "Items where the trace and the answer disagree, as the student wrote them. Gold evidence lines are "
        "marked in the context. Counts are " + pooled_note + ".")]
    if analysis.examples_how:
        out.append(Paragraph(f"No examples were recorded for this report: to record them, {analysis.examples_how}.",
                             note=True))
    for g in groups:
        p = g.pooled
        if not p.has_trace:
            out.append(Heading(4, f"{g.arm}", slug("ex", dataset, student, g.arm)))
            out.append(Paragraph("No generation of this arm has a trace (as expected of vanilla), so its "
                                 "off-diagonal cells say nothing about traces; no examples are shown."))
            continue
        for kind, (label, cell) in KINDS.items():
            total = getattr(p.steps.trace.table, cell)
            picked, seen = [], set()
            for e in shown:
                if e.arm == g.arm and e.kind == kind and e.id not in seen and len(picked) < k:
                    picked.append(e)
                    seen.add(e.id)
            out.append(Heading(4, f"{g.arm}: {label}", slug("ex", dataset, student, g.arm, kind)))
            if not picked:
                out.append(Paragraph(f"{total} such items; none recorded in the analysis." if total
                                     else "No such items."))
                continue
            out.append(Paragraph(f"{len(picked)} shown of {total}."))
            out += [_example(e) for e in picked]
    return out


def _example(e: ShownExample) -> ExampleBlock:
    def shown(value) -> str:
        return "(none)" if value is None or value == "" else str(value)

    evidence = list(e.gold_evidence)
    context = tuple(e.context)
    pairs = (("class", shown(e.gold_label), shown(e.label)),
             ("answer", _answers_text(e.gold_answers), shown(e.answer)),
             ("evidence", " / ".join(evidence) or "(none)", ""))  # the student's is in the trace shown
    return ExampleBlock(f"{e.id} - seed {nb.seed_label(e.seed)}, status {e.status}",
                   e.question, pairs, context, frozenset(i for i, line in enumerate(context) if line in set(evidence)),
                   e.text)
