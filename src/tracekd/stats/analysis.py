"""The analysis of a set of scored cells: per-cell summaries, seed spreads, McNemar between arms, examples.

Pure functions of judgements (no files): ``tracekd analyze`` and ``tracekd run``
(:func:`tracekd.experiment.analysis.analyze_run`) both build their :class:`~tracekd.stats.results.Analysis`
with :func:`assemble_analysis`.
"""

from __future__ import annotations

import itertools
import statistics

from ..records import Example, Generation, Judgement
from ..traces.corrupt import ARMS
from .results import NO_TRACE, Analysis, ArmComparison, Cell, Group, Metrics, ShownExample, Spread, Summary
from .summary import compare, has_trace, summarize


def spread(values: list[float | None], note: str | None = None) -> Spread:
    """Mean, sample SD (None for one value), min and max; ``note`` says why a value is undefined.

    >>> spread([0.5, 0.7]).to_dict()
    {'values': [0.5, 0.7], 'mean': 0.6, 'sd': 0.1414, 'min': 0.5, 'max': 0.7}
    >>> spread([None], "n/a (no trace)").to_dict()
    {'values': [None], 'mean': None, 'sd': None, 'min': None, 'max': None, 'note': 'n/a (no trace)'}
    """
    vals = [v for v in values if v is not None]
    if not vals:
        return Spread(tuple(values), None, None, None, None, note or "no value")
    sd = statistics.stdev(vals) if len(vals) > 1 else None
    return Spread(tuple(values), round(statistics.fmean(vals), 10), round(sd, 4) if sd is not None else None,
                  min(vals), max(vals), note)


def seed_metrics(per_seed: list[Summary]) -> Metrics:
    """The per-seed measures (answer, class, evidence = exact set, trace accuracy, mean answer F1) over seeds."""
    def over(read, step: bool) -> Spread:
        no_trace = step and not any(s.has_trace for s in per_seed)
        return spread([read(s) for s in per_seed], NO_TRACE if no_trace else None)

    return Metrics(answer=over(lambda s: s.accuracy.answer.accuracy, False),
                   class_=over(lambda s: s.accuracy.class_.accuracy, True),
                   evidence=over(lambda s: s.accuracy.evidence_exact.accuracy, True),
                   trace=over(lambda s: s.accuracy.trace.accuracy, True),
                   answer_f1=over(lambda s: s.means.answer_f1.mean, False))


def off_diagonal_examples(judgements: list[Judgement], gens: dict[str, Generation], examples: dict[str, Example],
                          k: int) -> list[dict]:
    """Up to ``k`` items of each off-diagonal cell of trace x answer, with what the report shows of them."""
    out = []
    kinds = {"trace_right_answer_wrong": lambda j: j.trace_ok and not j.answer_ok,
             "trace_wrong_answer_right": lambda j: not j.trace_ok and j.answer_ok}
    for kind, pick in kinds.items():
        for j in [j for j in judgements if pick(j)][:k]:
            ex = examples[j.id]
            out.append({"kind": kind, "id": j.id, "question": ex.question, "context": list(ex.context),
                        "gold_answers": list(ex.answers), "gold_label": ex.gold.label,
                        "gold_evidence": list(ex.evidence_lines), "text": gens[j.id].text if j.id in gens else "",
                        "status": j.status, "label": j.label, "answer": j.answer})
    return out


def assemble_analysis(judged: dict[tuple[str, str, str, int | None], list[Judgement]], *, experiment: str,
                      arms: list[str], seeds: list[int | None], trace_definition: str | None,
                      score_dirs: dict[tuple, str] | None = None, examples: list[dict] | None = None,
                      examples_how: str | None = None, group: str | None = None, **extra) -> Analysis:
    """The analysis dict from judgements keyed by ``(dataset, student, arm, seed)`` (cells in that
    dict's order) and the examples to show (dicts of :func:`off_diagonal_examples` plus the cell).
    Pure: :func:`analyze_run` reads the files and calls this. ``group`` breaks each cell's summary down by a
    judgement field; ``extra`` holds further :class:`~tracekd.stats.results.Analysis` fields.

    >>> j = Judgement("x", "ok", "k", True, (0,), True, True, True, 1.0, 1.0, True, "a", True, 1.0, "k")
    >>> a = assemble_analysis({("d", "s", "correct", 0): [j]}, experiment="e", arms=["correct"], seeds=[0],
    ...                       trace_definition="class+evidence-exact")
    >>> a.groups[0].metrics.answer.mean, a.comparisons
    (1.0, ())
    """
    cells = []
    for key, judgements in judged.items():
        cells.append(Cell(**dict(zip(("dataset", "student", "arm", "seed"), key)),
                          score_dir=score_dirs[key] if score_dirs is not None else None,
                          summary=summarize(judgements, group=group, traced=traced(key[2], judgements))))

    def seed_order(s: int | None) -> tuple:
        return (s is None, s if s is not None else 0)

    groups = []
    for (dataset, student, arm), keys in itertools.groupby(
            sorted(judged, key=lambda k: (k[0], k[1], arms.index(k[2]), seed_order(k[3]))), key=lambda k: k[:3]):
        keys = list(keys)
        pooled_js = [j for k in keys for j in judged[k]]
        per_seed = [summarize(judged[k], traced=traced(arm, pooled_js)) for k in keys]
        groups.append(Group(dataset=dataset, student=student, arm=arm, seeds=tuple(k[3] for k in keys),
                            n_per_seed=tuple(s.n for s in per_seed), metrics=seed_metrics(per_seed),
                            pooled=summarize(pooled_js, traced=traced(arm, pooled_js))))

    comparisons = []
    for dataset, student, seed in sorted({(k[0], k[1], k[3]) for k in judged},
                                         key=lambda k: (k[0], k[1], seed_order(k[2]))):
        for a, b in itertools.combinations(arms, 2):
            ja, jb = judged.get((dataset, student, a, seed)), judged.get((dataset, student, b, seed))
            if ja is not None and jb is not None:
                comparisons.append(ArmComparison(dataset=dataset, student=student, seed=seed, arm_a=a, arm_b=b,
                                                 result=compare(ja, jb)))
    return Analysis(experiment=experiment, arms=tuple(arms), seeds=tuple(seeds), trace_definition=trace_definition,
                    cells=tuple(cells), groups=tuple(groups), comparisons=tuple(comparisons),
                    examples=tuple(ShownExample.from_dict(e) for e in examples or ()), examples_how=examples_how,
                    **extra)


def traced(arm: str, judgements: list[Judgement]) -> bool:
    """Whether an arm's outputs carry a trace: never for ``vanilla`` (trained without one), always for the
    other built-in arms, and for any other name whether some output has one (:func:`has_trace`)."""
    if arm in ARMS:
        return arm != "vanilla"
    return has_trace(judgements)
