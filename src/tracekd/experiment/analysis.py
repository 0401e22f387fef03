"""Analyze a finished run: per-cell summaries, seed aggregates, McNemar between arms, examples.

The JSON this writes (``RUN/analysis.json``) is the single source of every number in the report.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

from ..io import read_records
from ..records import Example, Generation, Judgement
from ..stats.summary import compare, json_safe, summarize
from .config import ExperimentConfig
from .plan import Stage

#: per-seed metrics aggregated over seeds: name -> how to read it from a summary
METRICS = {
    "answer": lambda s: s["accuracy"]["answer"]["accuracy"],
    "class": lambda s: s["accuracy"]["class"]["accuracy"],
    "evidence": lambda s: s["accuracy"]["evidence_exact"]["accuracy"],
    "trace": lambda s: s["accuracy"]["trace"]["accuracy"],
    "answer_f1": lambda s: s["means"]["answer_f1"]["mean"],
}


def spread(values: list[float]) -> dict:
    """Mean, sample SD (None for one value), min and max.

    >>> spread([0.5, 0.7])
    {'values': [0.5, 0.7], 'mean': 0.6, 'sd': 0.1414, 'min': 0.5, 'max': 0.7}
    """
    vals = [v for v in values if v is not None]
    if not vals:
        return {"values": values, "mean": None, "sd": None, "min": None, "max": None}
    sd = statistics.stdev(vals) if len(vals) > 1 else None
    return {"values": values, "mean": round(statistics.fmean(vals), 10), "sd": round(sd, 4) if sd is not None else None,
            "min": min(vals), "max": max(vals)}


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


def analyze_run(config: ExperimentConfig, stages: list[Stage], run_dir: Path) -> dict:
    """Everything the report shows, from the score stages' judgements."""
    judged: dict[tuple, list[Judgement]] = {}
    score_dirs: dict[tuple, str] = {}
    shown = []
    for s in stages:
        if s.kind != "score":
            continue
        gen_stage, build_stage = s.deps
        judgements = read_records(s.dir(run_dir) / "judgements.jsonl", Judgement)
        c = s.cell
        key = (c["dataset"], c["student"], c["arm"], c["seed"])
        judged[key] = judgements
        score_dirs[key] = str(s.dir(run_dir).relative_to(run_dir))
        if config.report_examples:
            examples = {e.id: e for e in read_records(build_stage.dir(run_dir) / "sets" / "examples" / "test.jsonl",
                                                      Example)}
            gens = {g.id: g for g in read_records(gen_stage.dir(run_dir) / "generations.jsonl", Generation)}
            shown += [{**c, **e} for e in off_diagonal_examples(judgements, gens, examples, config.report_examples)]
    return assemble_analysis(judged, experiment=config.name, arms=list(config.arms), seeds=list(config.seeds),
                             trace_definition=config.trace_definition, score_dirs=score_dirs, examples=shown)


def assemble_analysis(judged: dict[tuple[str, str, str, int], list[Judgement]], *, experiment: str,
                      arms: list[str], seeds: list[int], trace_definition: str,
                      score_dirs: dict[tuple, str] | None = None, examples: list[dict] | None = None) -> dict:
    """The analysis dict from judgements keyed by ``(dataset, student, arm, seed)`` (cells in that
    dict's order) and the examples to show (dicts of :func:`off_diagonal_examples` plus the cell).
    Pure: :func:`analyze_run` reads the files and calls this.

    >>> j = Judgement("x", "ok", "k", True, (0,), True, True, True, 1.0, 1.0, True, "a", True, 1.0, "k")
    >>> a = assemble_analysis({("d", "s", "correct", 0): [j]}, experiment="e", arms=["correct"], seeds=[0],
    ...                       trace_definition="class+evidence-exact")
    >>> a["groups"][0]["metrics"]["answer"]["mean"], a["comparisons"]
    (1.0, [])
    """
    cells = []
    for key, judgements in judged.items():
        cell = dict(zip(("dataset", "student", "arm", "seed"), key))
        if score_dirs is not None:
            cell["score_dir"] = score_dirs[key]
        cells.append({**cell, "summary": summarize(judgements)})

    groups = []
    for (dataset, student, arm), keys in itertools.groupby(
            sorted(judged, key=lambda k: (k[0], k[1], arms.index(k[2]), k[3])), key=lambda k: k[:3]):
        keys = list(keys)
        per_seed = [summarize(judged[k]) for k in keys]
        pooled = summarize([j for k in keys for j in judged[k]])
        groups.append({"dataset": dataset, "student": student, "arm": arm, "seeds": [k[3] for k in keys],
                       "n_per_seed": [s["n"] for s in per_seed],
                       "metrics": {m: spread([f(s) for s in per_seed]) for m, f in METRICS.items()},
                       "pooled": pooled})

    comparisons = []
    for dataset, student, seed in sorted({(k[0], k[1], k[3]) for k in judged}):
        for a, b in itertools.combinations(arms, 2):
            ja, jb = judged.get((dataset, student, a, seed)), judged.get((dataset, student, b, seed))
            if ja is not None and jb is not None:
                comparisons.append({"dataset": dataset, "student": student, "seed": seed, "arm_a": a, "arm_b": b,
                                    "result": compare(ja, jb)})
    return json_safe({"kind": "analysis", "experiment": experiment, "arms": list(arms),
                      "seeds": list(seeds), "trace_definition": trace_definition,
                      "cells": cells, "groups": groups, "comparisons": comparisons, "examples": list(examples or [])})
