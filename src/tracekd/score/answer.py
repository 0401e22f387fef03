"""Answer scoring: SQuAD-style normalisation, list parsing, strict set match, token F1, scorer registry.

A scorer is a pure callable ``(prediction: str, example: Example) -> AnswerScore``, looked up by
name with :func:`get_scorer`:

- ``strict`` (default): the normalised set of predicted answers must equal the normalised set of
  gold answers (``example.answers`` is a *set* of required answers, as in CoTemp and bAbI).
- ``cotemp-official``: compatibility mode reproducing the CoTempQA benchmark's own lenient scorer
  (:mod:`tracekd.score.cotemp_official`); reported only to compare with published numbers.
- ``marco[:CRITERION]``: MS MARCO, whose gold answers are alternatives
  (:func:`tracekd.score.marco.make_scorer`, e.g. ``marco:rougeL>=0.5``).

>>> from tracekd.records import Decomposition, Example
>>> ex = Example("babi/qa8/test/0/3", "babi", "test", "What is Mary carrying?", ("...",),
...              ("apple", "football"), Decomposition("lists-sets", (0,)))
>>> get_scorer("strict")("football and the apple", ex)
AnswerScore(correct=True, f1=1.0, extra={'predicted': ['apple', 'football']})
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from ..errors import ConfigError
from ..registry import Registry
from ..text import normalize_answer

if TYPE_CHECKING:
    from ..records import Example

# A list separator: a comma (not one inside a number such as 1,000), optionally followed by "and";
# or " and " on its own. The capture keeps the separator so pieces can be joined back.
_SEP = re.compile(r"(\s*(?:(?<!\d),|,(?!\d))\s*(?:and\s+)?|\s+and\s+)", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_MAX_PIECES = 24  # beyond this many list pieces, skip the gold-aware regrouping search


@dataclass(frozen=True)
class AnswerScore:
    """The verdict of one answer scorer: correct or not, a graded F1, scorer-specific extras."""

    correct: bool
    f1: float
    extra: dict = field(default_factory=dict, compare=False, hash=False)


Scorer = Callable[[str, "Example"], AnswerScore]


def _literal_list(s: str) -> list[str] | None:
    """Items of a JSON or Python list literal, or None when ``s`` is not one."""
    if not (s.startswith("[") and s.endswith("]")):
        return None
    value = None
    try:
        value = json.loads(s)
    except ValueError:
        try:
            value = ast.literal_eval(s)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    if not isinstance(value, (list, tuple)):
        return None
    return [x.strip() if isinstance(x, str) else json.dumps(x) for x in value]


def _split(s: str) -> tuple[list[str], list[str]]:
    """Pieces of ``s`` between list separators, and the separators themselves."""
    parts = _SEP.split(s)
    return [p.strip() for p in parts[0::2]], parts[1::2]


def parse_answer_list(s: str) -> list[str]:
    """The answers in ``s``: a JSON or Python list, or items separated by commas and/or "and".

    Empty items are dropped; a comma inside a number (``1,000``) does not separate.

    >>> parse_answer_list('["apple", "football"]')
    ['apple', 'football']
    >>> parse_answer_list("['apple', 'football']")
    ['apple', 'football']
    >>> parse_answer_list("apple and football")
    ['apple', 'football']
    >>> parse_answer_list("milk, apple, and football")
    ['milk', 'apple', 'football']
    >>> parse_answer_list("milk, apple and football")
    ['milk', 'apple', 'football']
    >>> parse_answer_list("kitchen")
    ['kitchen']
    >>> parse_answer_list("[apple, football]")  # not a valid literal: brackets dropped, then split
    ['apple', 'football']
    >>> parse_answer_list("1,000")
    ['1,000']
    >>> parse_answer_list("")
    []
    """
    s = s.strip()
    items = _literal_list(s)
    if items is None:
        if s.startswith("[") and s.endswith("]"):
            s = s[1:-1]
        items, _ = _split(s)
    return [x for x in items if x]


def _regroup(pieces: list[str], seps: list[str], gold: set[str]) -> list[str] | None:
    """Group consecutive pieces (joined by their own separators) so each group is a gold answer
    and all gold answers are named; None when no grouping does that.

    This lets one answer contain a separator ("Bosnia and Herzegovina", "Minister for Housing,
    Planning and Local Government") without accepting a missing or an extra answer.
    """
    k = len(pieces)
    if k > _MAX_PIECES:
        return None
    seen: set[tuple[int, frozenset]] = set()
    norms: dict[tuple[int, int], str] = {}

    def search(i: int, covered: frozenset) -> list[str] | None:
        if i == k:
            return [] if covered == gold else None
        if (i, covered) in seen:
            return None
        seen.add((i, covered))
        text = pieces[i]
        for j in range(i + 1, k + 1):
            if j > i + 1:
                text = text + seps[j - 2] + pieces[j - 1]
            if (i, j) not in norms:
                norms[i, j] = normalize_answer(text)
            norm = norms[i, j]
            if not norm or norm in gold:
                rest = search(j, covered | {norm} if norm else covered)
                if rest is not None:
                    return ([text.strip()] if norm else []) + rest
        return None

    return search(0, frozenset())


def _answer_text(prediction: str) -> str:
    """The text inside ``<answer>...</answer>`` when the prediction has one, else the prediction."""
    if "<" not in prediction:
        return prediction
    m = _ANSWER_TAG.search(prediction)
    return m.group(1) if m else prediction


def predicted_items(prediction: str, golds: Sequence[str]) -> list[str]:
    """The answers a prediction names, read against the gold set.

    A list literal gives its items as they are. Otherwise the text is split at separators, and
    pieces are joined back only where that makes exactly the gold answers (see :func:`_regroup`).

    >>> predicted_items("Bosnia and Herzegovina", ["Bosnia and Herzegovina"])
    ['Bosnia and Herzegovina']
    >>> predicted_items("Bosnia and Herzegovina", ["Bosnia", "Herzegovina"])
    ['Bosnia', 'Herzegovina']
    >>> predicted_items("Bosnia and Herzegovina", ["Bosnia"])
    ['Bosnia', 'Herzegovina']
    """
    s = prediction.strip()
    if "," not in s and "and" not in s.lower() and not s.startswith("["):  # one item: nothing to split
        return [s] if s else []
    items = _literal_list(s)
    if items is not None:
        return [x for x in items if x]
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    pieces, seps = _split(s)
    gold = {normalize_answer(g) for g in golds} - {""}
    grouped = _regroup(pieces, seps, gold) if gold else None
    return grouped if grouped is not None else [p for p in pieces if p]


def strict_correct(prediction: str, golds: Sequence[str]) -> bool:
    """True iff the normalised set of predicted answers equals the normalised gold set.

    ``golds`` is a set of *required* answers (CoTemp, bAbI lists-sets): every one must be named,
    and nothing else. Order and repeats do not matter.

    >>> strict_correct("the Kitchen.", ["kitchen"])
    True
    >>> strict_correct("['football', 'apple']", ["apple", "football"])
    True
    >>> strict_correct("apple", ["apple", "football"])
    False
    >>> strict_correct("apple, football and milk", ["apple", "football"])
    False
    >>> strict_correct("Minister for Housing, Planning and Local Government",
    ...                ["Minister for Housing, Planning and Local Government"])
    True
    """
    predicted = {normalize_answer(x) for x in predicted_items(prediction, golds)} - {""}
    return predicted == {normalize_answer(g) for g in golds} - {""}


def _tokens(items: Iterable[str]) -> list[str]:
    return [t for x in items for t in normalize_answer(x).split()]


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD token F1 of the prediction against the gold answers.

    Gold answers here form a *set* (all required), so the prediction's tokens (of all the answers
    it names, separators left out) are compared with the tokens of all gold answers together, as
    multisets; with one gold answer this is exactly SQuAD's F1. (MS MARCO, whose golds are
    alternatives, takes the best gold in its own scorer.) Both empty -> 1.0; one empty -> 0.0.

    >>> token_f1("the kitchen", ["kitchen"])
    1.0
    >>> token_f1("kitchen garden", ["kitchen"])
    0.6666666666666666
    >>> token_f1("apple", ["apple", "football"])
    0.6666666666666666
    >>> token_f1("bedroom", ["kitchen"])
    0.0
    """
    return f1_tokens(_tokens(predicted_items(prediction, golds)), _tokens(golds))


def f1_tokens(pred: Sequence[str], gold: Sequence[str]) -> float:
    """SQuAD's F1 of two token multisets; both empty -> 1.0, one empty -> 0.0.

    >>> f1_tokens(["paris", "france"], ["paris"])
    0.6666666666666666
    >>> f1_tokens([], [])
    1.0
    """
    if not pred or not gold:
        return float(len(pred) == len(gold) == 0)
    if pred == gold:
        return 1.0
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def strict(prediction: str, example: "Example") -> AnswerScore:
    """The ``strict`` scorer: set equality after normalisation, plus token F1.

    ``prediction`` may be the parsed answer or a whole generation; in the latter case the text
    inside ``<answer>...</answer>`` is scored. ``extra["predicted"]``: the normalised predicted set.

    >>> from tracekd.records import Decomposition, Example
    >>> ex = Example("x", "cotemp", "test", "q?", ("f.",), ("Liberals",), Decomposition("equal", (0,)))
    >>> strict("<think>...</think> <answer>the Liberals</answer>", ex).correct
    True
    >>> strict("Liberal Party", ex)
    AnswerScore(correct=False, f1=0.0, extra={'predicted': ['liberal party']})
    """
    text = _answer_text(prediction)
    golds = example.answers
    items = predicted_items(text, golds)  # read once: the verdict and the F1 below both use it
    predicted = {normalize_answer(x) for x in items} - {""}
    correct = predicted == {normalize_answer(g) for g in golds} - {""}
    return AnswerScore(correct=correct, f1=f1_tokens(_tokens(items), _tokens(golds)),
                       extra={"predicted": sorted(predicted)})


#: scorer name -> the scorer, or for a name in :data:`TAKES_ARGUMENT` the factory that makes it (called with
#: ``ARG`` from ``name:ARG`` when given); imported only when asked for
SCORERS: Registry[Callable] = Registry("answer scorer")
SCORERS.add("strict", "tracekd.score.answer:strict", "normalised set equality of the answer items (the default)")
SCORERS.add("cotemp-official", "tracekd.score.cotemp_official:score",
            "the CoTempQA benchmark's lenient scorer (compatibility mode)")
SCORERS.add("marco", "tracekd.score.marco:make_scorer",
            "MS MARCO: exact match by default, or a threshold as marco:f1>=0.5, marco:rougeL>=0.5, marco:bleu1>=0.3")
TAKES_ARGUMENT = frozenset({"marco"})


def scorer_names() -> list[str]:
    """The registered scorer names.

    >>> scorer_names()
    ['cotemp-official', 'marco', 'strict']
    """
    return sorted(SCORERS)


def get_scorer(spec: str) -> Scorer:
    """The scorer named by ``spec`` (``name`` or ``name:ARG``), imported only when asked for.

    >>> get_scorer("strict").__name__
    'strict'
    >>> get_scorer("strickt")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: unknown answer scorer 'strickt'; did you mean 'strict'? (choices: cotemp-official, marco, strict)
    >>> get_scorer("strict:x")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: answer scorer 'strict' takes no argument (got 'strict:x')
    """
    name, colon, arg = spec.partition(":")
    name = SCORERS.check(name.strip())
    if colon and name not in TAKES_ARGUMENT:
        raise ConfigError(f"answer scorer {name!r} takes no argument (got {spec!r})")
    scorer = SCORERS.get(name)
    if name not in TAKES_ARGUMENT:
        return scorer
    return scorer(arg) if colon else scorer()
