"""The MS MARCO answer scorer: EM, token F1, ROUGE-L and BLEU-1 against alternative references.

MARCO's gold answers are *alternatives* (any one is right), kept in ``example.meta["references"]``
(``example.answers`` - the trained answer - when absent). Every metric takes the best reference:

- ``em``: exact match after SQuAD normalisation (:func:`tracekd.text.normalize_answer`:
  lowercase, punctuation and a/an/the dropped, spaces squeezed);
- ``f1``: SQuAD token F1 on the same tokens;
- ``rougeL``: ROUGE-L F-measure from the ``rouge-score`` package, on the same tokens (its own
  tokenizer would drop every non-ASCII letter);
- ``bleu1``: sentence BLEU with unigrams only (brevity penalty included) from ``sacrebleu``, all
  references at once, on the same tokens, scaled to 0..1.

The binary "answer correct" of the 2x2 tables is the *criterion* (default ``em``; ``f1>=0.5``,
``rougeL>=0.5``, ``bleu1>=0.3``, ``>`` also accepted), chosen as ``marco:CRITERION`` in
``tracekd score --scorer`` and recorded in every judgement's ``extra["criterion"]`` with all four
metric values. ``AnswerScore.f1`` is the token F1. A prediction that is a whole generation is
scored on its ``<answer>...</answer>`` text.

>>> from tracekd.records import Decomposition, Example
>>> ex = Example("marco/test/1", "marco", "test", "where is the eiffel tower", ("...",),
...              ("Paris, France",), Decomposition("LOCATION", (0,)),
...              meta={"references": ["Paris, France", "In Paris"]})
>>> s = make_scorer("em")("in paris", ex)
>>> s.correct, s.f1, s.extra["criterion"], s.extra["best_reference"]
(True, 1.0, 'em', 'In Paris')
>>> make_scorer("rougeL>=0.5")("the tower is in Paris", ex).correct
True
>>> make_scorer("em")("the tower is in Paris", ex).correct
False
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..errors import ConfigError, did_you_mean
from ..text import normalize_answer
from .answer import AnswerScore, f1_tokens

if TYPE_CHECKING:
    from ..records import Example

METRICS = ("em", "f1", "rougeL", "bleu1")
_CRITERION = re.compile(r"^\s*([A-Za-z0-9]+)\s*(?:(>=|>)\s*([0-9]*\.?[0-9]+)\s*)?$")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)


def parse_criterion(criterion: str) -> tuple[str, str | None, float | None]:
    """``(metric, op, threshold)`` of a criterion string; metric names are case-insensitive.

    >>> parse_criterion("em")
    ('em', None, None)
    >>> parse_criterion("rougel >= 0.5")
    ('rougeL', '>=', 0.5)
    >>> parse_criterion("bleu1>0.3")
    ('bleu1', '>', 0.3)
    >>> parse_criterion("f1")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: MARCO criterion 'f1' needs a threshold, e.g. 'f1>=0.5'
    >>> parse_criterion("rouge>=0.5")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: unknown MARCO metric 'rouge'; did you mean 'rougeL'? (choices: bleu1, em, f1, rougeL)
    """
    m = _CRITERION.match(criterion or "")
    if not m:
        raise ConfigError(f"bad MARCO criterion {criterion!r}: expected 'em' or METRIC>=T with METRIC one of "
                          f"{', '.join(METRICS)} and T in [0, 1] (e.g. 'rougeL>=0.5')")
    name, op, value = m.groups()
    metric = {x.lower(): x for x in METRICS}.get(name.lower())
    if metric is None:
        raise ConfigError(did_you_mean(name, METRICS, "MARCO metric"))
    if metric == "em":
        if op is not None:
            raise ConfigError(f"MARCO criterion 'em' takes no threshold (got {criterion!r})")
        return "em", None, None
    if op is None:
        raise ConfigError(f"MARCO criterion {criterion!r} needs a threshold, e.g. '{metric}>=0.5'")
    threshold = float(value)
    if not 0 <= threshold <= 1:
        raise ConfigError(f"MARCO criterion threshold must be in [0, 1], got {threshold} in {criterion!r}")
    return metric, op, threshold


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised strings are equal.

    >>> exact_match("The Cello.", "cello"), exact_match("a cello", "violin")
    (1.0, 0.0)
    """
    return float(normalize_answer(prediction) == normalize_answer(reference))


def squad_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 of one prediction against one reference (no list parsing: MARCO answers
    are free text). Both empty -> 1.0; one empty -> 0.0.

    >>> squad_f1("Paris, France", "in Paris")
    0.5
    >>> squad_f1("", "")
    1.0
    """
    return f1_tokens(normalize_answer(prediction).split(), normalize_answer(reference).split())


class _Tokens:
    """rouge-score tokenizer: the SQuAD-normalised tokens (keeps non-ASCII letters)."""

    def tokenize(self, text: str) -> list[str]:
        return normalize_answer(text).split()


_ROUGE = None
_BLEU1 = None


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (``rouge-score``) on normalised tokens.

    >>> round(rouge_l("the cat sat on the mat", "a cat sat on a mat"), 6)
    1.0
    >>> round(rouge_l("Édith Piaf sang it", "Édith Piaf"), 3)
    0.667
    """
    global _ROUGE
    if _ROUGE is None:
        try:
            from rouge_score import rouge_scorer
        except ImportError:  # pragma: no cover - the marco extra
            raise ConfigError("ROUGE-L needs rouge-score: pip install 'tracekd[marco]'") from None
        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokens())
    return float(_ROUGE.score(reference, prediction)["rougeL"].fmeasure)


def bleu1(prediction: str, references: Sequence[str]) -> float:
    """Sentence BLEU-1 (``sacrebleu``, unigram precision x brevity penalty) against all references,
    on normalised tokens, in 0..1.

    >>> bleu1("paris", ["Paris"])
    1.0
    >>> round(bleu1("paris", ["paris france"]), 4)
    0.3679
    >>> bleu1("", ["paris"])
    0.0
    """
    global _BLEU1
    if _BLEU1 is None:
        try:
            from sacrebleu.metrics import BLEU
        except ImportError:  # pragma: no cover - the marco extra
            raise ConfigError("BLEU-1 needs sacrebleu: pip install 'tracekd[marco]'") from None
        _BLEU1 = BLEU(max_ngram_order=1, effective_order=True, tokenize="none")
    hyp = normalize_answer(prediction)
    refs = [normalize_answer(r) for r in references]
    if not hyp or not any(refs):
        return float(not hyp and not any(refs))
    return round(float(_BLEU1.sentence_score(hyp, refs).score) / 100.0, 10)  # sacrebleu works in 0..100


def references(example: "Example") -> list[str]:
    """The alternative gold answers of a MARCO example (``meta["references"]``, else ``answers``)."""
    refs = example.meta.get("references") if isinstance(example.meta, dict) else None
    return [r for r in (refs or example.answers) if isinstance(r, str)]


def metrics(prediction: str, refs: Sequence[str]) -> dict:
    """Every metric against the best reference, and the reference that gave the best token F1.

    >>> m = metrics("206 bones", ["206"])
    >>> m["em"], round(m["f1"], 4), round(m["rougeL"], 4), round(m["bleu1"], 4)
    (0.0, 0.6667, 0.6667, 0.5)
    """
    refs = list(refs) or [""]
    em = [exact_match(prediction, r) for r in refs]
    f1 = [squad_f1(prediction, r) for r in refs]
    rl = [rouge_l(prediction, r) for r in refs]
    best = max(range(len(refs)), key=lambda i: (em[i], f1[i], rl[i], -i))
    return {"em": max(em), "f1": max(f1), "rougeL": max(rl), "bleu1": bleu1(prediction, refs),
            "best_reference": refs[best]}


@dataclass(frozen=True)
class MarcoScorer:
    """A scorer ``(prediction, example) -> AnswerScore`` whose ``correct`` is ``criterion``."""

    criterion: str = "em"

    def __post_init__(self) -> None:
        parse_criterion(self.criterion)

    @property
    def __name__(self) -> str:  # like the function scorers
        return f"marco:{self.criterion}"

    def __call__(self, prediction: str, example: "Example") -> AnswerScore:
        m = _ANSWER_TAG.search(prediction)
        text = (m.group(1) if m else prediction).strip()
        values = metrics(text, references(example))
        metric, op, threshold = parse_criterion(self.criterion)
        if metric == "em":
            correct = values["em"] == 1.0
        else:
            value = values[metric]
            correct = value >= threshold if op == ">=" else value > threshold
        return AnswerScore(correct=bool(correct), f1=float(values["f1"]),
                           extra={"criterion": self.criterion, **values})


def make_scorer(criterion: str = "em") -> MarcoScorer:
    """The MARCO scorer whose binary verdict is ``criterion`` (see the module docstring).

    >>> make_scorer("rougeL>=0.5").criterion
    'rougeL>=0.5'
    >>> make_scorer("bleu2>=0.3")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: unknown MARCO metric 'bleu2'; did you mean 'bleu1'? (choices: bleu1, em, f1, rougeL)
    """
    return MarcoScorer((criterion or "em").strip())
