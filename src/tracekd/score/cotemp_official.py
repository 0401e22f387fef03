"""``cotemp-official``: compatibility mode reproducing the CoTempQA benchmark's own lenient scorer.

Use it only to compare with numbers published with that scorer; tracekd's default is ``strict``.
The judge hands it the raw text of every output, whatever tracekd's parse status (no answer, cut off,
unreadable trace): the reference scorer looks at no tag beyond its own extraction. The scorer, step by
step, on the whole generated text:

1. Lowercase the prediction.
2. Keep the text after ``<answer>`` up to ``</answer>`` (or to the end, when it is not closed) if
   ``<answer>`` is present; else, if it contains
   ``"answer the question based on"``, the text before it; else, if it contains ``" answer "``,
   the text after it; else, if it contains ``"answer:"``, the text after it. ("After" is the
   benchmark's ``text.split(sep)[1]``: up to a second occurrence of ``sep``, if any.)
3. Delete every ``"assistant"`` and ``"think"`` substring.
4. Candidates = the gold answers plus one entity from each context fact (:func:`fact_entity`):
   its object, or its subject when the question's ``triple_element`` is not ``S2_R1_O1``.
   All lowercased, deduplicated, sorted longest first (ties alphabetically, for determinism).
5. Walk the candidates: the first one found both in the prediction and in the (lowercased)
   question is deleted from the prediction and skipped (once); every other candidate found in
   the prediction is collected and deleted from it (``str.replace``: all occurrences).
6. Nothing collected -> the remaining prediction text is the one candidate.
7. Correct iff the collected candidates (deduplicated, then normalised: lowercase, punctuation
   removed, spaces squeezed - the benchmark's normalisation, which keeps articles) sorted equal
   the normalised, deduplicated, sorted golds; F1 = multiset overlap of those two lists.

>>> from tracekd.records import Decomposition, Example
>>> ex = Example("cotemp/equal/0", "cotemp", "test",
...     "While Jan Trøjborg was working for Billund Airport, which employer did Jan Trøjborg "
...     "work for during the same time span?",
...     ("Jan Trøjborg works for Billund Airport from January 2, 2007 to December 3, 2010.",
...      "Jan Trøjborg works for NKT from March 25, 2010 to May 6, 2012."),
...     ("NKT",), Decomposition("equal", (1,)), meta={"triple_element": "S1_R1_O2"})
>>> score("<answer>Jan Trøjborg worked for NKT.</answer>", ex).correct
True
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import TYPE_CHECKING, Sequence

from ..errors import DataError
from ..text import normalize_official
from .answer import AnswerScore

if TYPE_CHECKING:
    from ..records import Example

#: keyword searched in a fact (first found wins) -> the relation phrase in its patterns
RELATIONS: tuple[tuple[str, str], ...] = (
    (" the position of ", "holds the position of"),
    (" a member of ", "is a member of the"),
    (" the chair of ", "is the chair of"),
    (" the head of ", "is the head of"),
    (" owned by ", "is owned by"),
    ("attend", "attended"),
    ("work", "works for"),
    ("play", "plays for"),
)
#: past-tense forms rewritten to the patterns' present tense before matching
REWRITES: tuple[tuple[str, str], ...] = (
    (" was ", " is "),
    (" held ", " holds "),
    (" worked ", " works "),
    (" played ", " plays "),
)
#: tried in this order with ``re.match``; group 1 = subject, group 2 = object
PATTERNS: tuple[str, ...] = (
    r"(.+?) {rel} (.+?) from (.+?) to (.+?)\.",
    r"(.+?) {rel} (.+?) in (.+?)\.",
    r"(.+?) {rel} (.+?) from (.+?)",
    r"(.+?) {rel} (.+?)\.",
)
_COMPILED = {rel: [re.compile(p.format(rel=re.escape(rel))) for p in PATTERNS] for _, rel in RELATIONS}
def extract_prediction(text: str) -> str:
    """Steps 1-3: lowercase, cut out the answer part, delete "assistant" and "think".

    >>> extract_prediction("<think>hmm</think> <answer>NKT</answer>")
    'nkt'
    >>> extract_prediction("assistant\\nNKT")
    '\\nnkt'
    >>> extract_prediction("NKT. Answer the question based on the context: ...")
    'nkt. '
    >>> extract_prediction("The answer is NKT")
    'is nkt'
    >>> extract_prediction("Final answer: NKT")
    ' nkt'
    >>> extract_prediction("<think>x</think><answer>NKT and Orange")   # never closed: to the end
    'nkt and orange'
    >>> extract_prediction("<think>I think NKT fits")                   # unclosed think: the whole text
    '<>i  nkt fits'
    """
    p = text.lower()
    if "<answer>" in p:
        p = p.split("<answer>")[1].split("</answer>")[0]
    elif "answer the question based on" in p:
        p = p.split("answer the question based on")[0]
    elif " answer " in p:
        p = p.split(" answer ")[1]
    elif "answer:" in p:
        p = p.split("answer:")[1]
    return p.replace("assistant", "").replace("think", "")


@functools.lru_cache(maxsize=1 << 16)
def fact_entity(fact: str, use_subject: bool) -> str | None:
    """The subject (``use_subject``) or object of one fact, lowercased; None if no pattern fits.

    >>> fact_entity("Neill Roberts plays for Durban City F.C. from 1977 to 1978.", False)
    'durban city f.c.'
    >>> fact_entity("Neill Roberts played for Durban City F.C. in 1983.", True)
    'neill roberts'
    >>> fact_entity("Eamon de Valera was a member of the Sinn Fein in 1926.", False)
    'sinn fein'
    >>> fact_entity("Eamon de Valera is a member of Sinn Fein in 1926.", False) is None
    True
    """
    for keyword, rel in RELATIONS:
        if keyword in fact:
            break
    else:
        return None
    for old, new in REWRITES:
        fact = fact.replace(old, new)
    for pattern in _COMPILED[rel]:
        m = pattern.match(fact)
        if m:
            return (m.group(1) if use_subject else m.group(2)).lower()
    return None


def candidates(facts: Sequence[str], golds: Sequence[str], use_subject: bool) -> list[str]:
    """Step 4: gold answers plus one entity per fact, lowercased, unique, longest first.

    >>> candidates(["A works for NKT from 2010 to 2012.", "A works for Orange in 1998."],
    ...            ["NKT"], use_subject=False)
    ['orange', 'nkt']
    """
    return list(_candidates(tuple(facts), tuple(golds), use_subject))


@functools.lru_cache(maxsize=4096)
def _candidates(facts: tuple[str, ...], golds: tuple[str, ...], use_subject: bool) -> tuple[str, ...]:
    found = [g.lower() for g in golds]
    for fact in facts:
        entity = fact_entity(fact, use_subject)
        if entity is not None:
            found.append(entity)
    return tuple(sorted(set(found), key=lambda c: (-len(c), c)))


def collect(prediction: str, question: str, cands: Sequence[str]) -> list[str]:
    """Steps 5-6: the candidates the prediction names (the question-overlap rule applied).

    >>> collect("nkt and billund airport", "while x worked for billund airport, ...",
    ...         ["billund airport", "nkt"])
    ['nkt']
    >>> collect("i do not know", "q", ["nkt"])
    ['i do not know']
    """
    question = question.lower()
    skipped = False
    got: list[str] = []
    for c in cands:
        if c not in prediction:
            continue
        if c in question and not skipped:
            prediction = prediction.replace(c, "")
            skipped = True
            continue
        got.append(c)
        prediction = prediction.replace(c, "")
    return got if got else [prediction]


def compare(collected: Sequence[str], golds: Sequence[str]) -> tuple[bool, float, float, float]:
    """Step 7: (correct, f1, precision, recall) of the collected candidates against the golds.

    >>> compare(["titular bishop", "catholic bishop"], ["Catholic bishop", "titular bishop"])
    (True, 1.0, 1.0, 1.0)
    >>> compare(["titular bishop"], ["Catholic bishop", "titular bishop"])
    (False, 0.6666666666666666, 1.0, 0.5)
    """
    pred = sorted(normalize_official(x) for x in set(collected))
    gold = _gold_list(tuple(golds))
    if pred and pred == gold:
        return True, 1.0, 1.0, 1.0
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return pred == gold, 0.0, 0.0, 0.0
    precision, recall = same / len(pred), same / len(gold)
    return pred == gold, 2 * precision * recall / (precision + recall), precision, recall


@functools.lru_cache(maxsize=4096)
def _gold_list(golds: tuple[str, ...]) -> list[str]:
    return sorted(normalize_official(g) for g in {g.lower() for g in golds})


def score_text(text: str, question: str, facts: Sequence[str], golds: Sequence[str],
               triple_element: str) -> AnswerScore:
    """The benchmark's verdict on one generated ``text`` (all steps).

    >>> facts = ["Mary Odili attended University of Nigeria from 1972 to 1976.",
    ...          "Sidney Hemming attended University of Nigeria in October, 1982."]
    >>> s = score_text("Mary Odili", "While X attended University of Nigeria, who also attended?",
    ...                facts, ["Mary Odili"], "S2_R1_O1")
    >>> s.correct, s.extra["collected"]
    (True, ['mary odili'])
    """
    use_subject = triple_element != "S2_R1_O1"
    cands = _candidates(tuple(facts), tuple(golds), use_subject)
    got = collect(extract_prediction(text), question, cands)
    correct, f1, precision, recall = compare(got, golds)
    return AnswerScore(correct=correct, f1=f1,
                       extra={"collected": got, "precision": precision, "recall": recall})


def score(prediction: str, example: "Example") -> AnswerScore:
    """The ``cotemp-official`` scorer (compatibility mode). Give it the whole generated text.

    Reads ``example.context`` (the facts), ``example.question``, ``example.answers`` and
    ``example.meta["triple_element"]``.
    """
    triple = example.meta.get("triple_element")
    if not isinstance(triple, str):
        raise DataError("cotemp-official needs the example's CoTemp triple_element",
                        field="meta.triple_element", source=example.id)
    return score_text(prediction, example.question, example.context, example.answers, triple)


#: the judge hands this scorer the whole generated text: it does its own answer extraction
score.raw_text = True
