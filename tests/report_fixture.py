"""A seeded synthetic run analysis for report tests: 1 dataset x 1 student x 3 arms x N seeds.

Judgements are drawn at random (seeded) with arm-dependent step and answer rates and assembled
by the same code as ``tracekd run`` (``tracekd.stats.analysis.assemble_analysis``), so the
dict has exactly the keys a real run's analysis.json has.
"""

from __future__ import annotations

import json
import random

from tracekd.records import Decomposition, Example, Generation, Judgement
from tracekd.stats.analysis import assemble_analysis, off_diagonal_examples

CLASSES = ("single-supporting-fact", "two-supporting-facts", "counting")
ARMS = ("vanilla", "correct", "incorrect")
#: arm -> (P(class right), P(evidence right), P(answer right | trace right), P(answer right | trace wrong))
RATES = {"vanilla": (0.0, 0.0, 0.0, 0.55), "correct": (0.85, 0.6, 0.8, 0.45), "incorrect": (0.2, 0.15, 0.5, 0.5)}


def example(i: int) -> Example:
    label = CLASSES[i % len(CLASSES)]
    context = (f"Mary went to the kitchen {i}.", "John <b>took</b> the milk | there & *here*.",
               "Sandra `moved` to the garden.", "Mary travelled to the office.")
    return Example(id=f"babi/qa{1 + i % 3}/test/{i}/5", dataset="babi", split="test",
                   question=f"Where is Mary? <{i}>", context=context, answers=("office",),
                   gold=Decomposition(label, (0, 3)), meta={})


def judgement(rng: random.Random, ex: Example, arm: str) -> tuple[Judgement, Generation]:
    p_class, p_ev, p_ans_trace, p_ans_other = RATES[arm]
    if arm == "vanilla":
        status = "no_trace"
    else:
        status = rng.choices(["ok", "truncated", "no_answer", "unparseable_evidence"], [0.85, 0.06, 0.05, 0.04])[0]
    judged = status in ("ok", "no_answer")
    label_ok = (rng.random() < p_class) if judged else None
    ev_ok = (rng.random() < p_ev) if judged else None
    label = (ex.gold.label if label_ok else "counting" if ex.gold.label != "counting" else "lists-sets") \
        if judged else None
    trace_ok = bool(label_ok and ev_ok and status == "ok")
    answer_ok = status != "no_answer" and rng.random() < (p_ans_trace if trace_ok else p_ans_other)
    answer = None if status == "no_answer" else ("office" if answer_ok else "kitchen")
    j = Judgement(ex.id, status, label, label_ok, (0, 3) if ev_ok else ((1,) if judged else None), ev_ok,
                  ev_ok, (ev_ok or rng.random() < 0.5) if judged else None,
                  (1.0 if ev_ok else 0.5) if judged else None, (1.0 if ev_ok else 0.5) if judged else None,
                  trace_ok, answer, answer_ok, 1.0 if answer_ok else 0.0, ex.gold.label)
    text = (answer or "") if arm == "vanilla" else (
        f"<think>The category of the question asked is: {label}.\nI need to use the following text: "
        f'{json.dumps([ex.context[i] for i in (j.evidence or ())])}</think> <answer>{answer}</answer>')
    return j, Generation(ex.id, text, "length" if status == "truncated" else "stop")


def make_analysis(seeds=(0, 1), n: int = 48, arms=ARMS, k_examples: int = 2, judgements_hook=None) -> dict:
    """The analysis of a synthetic run as analysis.json holds it; ``judgements_hook(arm, seed, list)`` may
    replace a cell's list."""
    examples = {e.id: e for e in (example(i) for i in range(n))}
    judged, shown = {}, []
    for seed in seeds:
        for arm in arms:
            rng = random.Random(f"{arm}/{seed}")
            pairs = [judgement(rng, ex, arm) for ex in examples.values()]
            js = [j for j, _ in pairs]
            if judgements_hook is not None:
                js = judgements_hook(arm, seed, js)
            gens = {g.id: g for _, g in pairs}
            key = ("babi", "tiny-random", arm, seed)
            judged[key] = js
            cell = dict(zip(("dataset", "student", "arm", "seed"), key))
            shown += [{**cell, **e} for e in off_diagonal_examples(js, gens, examples, k_examples)]
    return assemble_analysis(judged, experiment="synthetic", arms=list(arms), seeds=list(seeds),
                             trace_definition="class+evidence-exact",
                             score_dirs={k: f"stages/score-{k[2]}-{k[3]}" for k in judged}, examples=shown).to_dict()
