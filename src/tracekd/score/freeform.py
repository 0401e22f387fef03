"""What can be checked in a free-form trace (a teacher's reasoning, or a student trained on one).

Free-form traces have no class sentence or evidence list to verify, so tracekd measures what is
checkable and reports it beside the strict verdicts:

- **class mentioned**: the gold class label, or one of its listed synonyms, occurs in the trace as a
  whole-word phrase (case, punctuation and hyphens ignored: ``two-supporting-facts`` matches
  "two supporting facts");
- **evidence mentioned**: a context line counts as quoted or closely paraphrased when one sentence of
  the trace holds at least ``threshold`` (default 0.8) of its distinct normalised words and at least
  one of the words that set it apart from the other context lines (its entity, say);
  recall and precision of those lines against the gold evidence lines (a line whose text equals a
  gold line's counts as gold, as in the step verifier);
- **length**: tokens as :func:`tokens` splits them (words and single punctuation marks; no model
  tokenizer, so the count is the same whatever the student).

Everything here is pure; :func:`measure` gives the whole record for one trace.

>>> from tracekd.records import Decomposition, Example
>>> ex = Example("b/1", "babi", "test", "Where is Mary?",
...              ("Mary went to the office.", "John went to the office.", "Mary took the apple."),
...              ("office",), Decomposition("single-supporting-fact", (0,)))
>>> m = measure("Okay. Mary went to the office, so she is there. This is a single supporting fact question.", ex)
>>> m.class_mentioned, m.evidence_mentioned, m.evidence_recall, m.evidence_precision, m.evidence_all, m.tokens
(True, (0,), 1.0, 1.0, True, 21)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence

from ..text import normalize_line

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_THINK = re.compile(r"<\s*think\s*>(.*?)(?:<\s*/\s*think\s*>|\Z)", re.IGNORECASE | re.DOTALL)
_ANSWER = re.compile(r"<\s*answer\s*>.*?(?:<\s*/\s*answer\s*>|\Z)", re.IGNORECASE | re.DOTALL)
_STOP = frozenset({"a", "an", "the"})

#: default share of a context line's tokens that must occur in one trace sentence
DEFAULT_THRESHOLD = 0.8


def tokens(text: str) -> list[str]:
    """Words and single punctuation marks: the length unit of free-form traces.

    >>> tokens("Mary's in the office.")
    ['Mary', "'", 's', 'in', 'the', 'office', '.']
    >>> len(tokens(""))
    0
    """
    return _TOKEN.findall(unicodedata.normalize("NFKC", text))


def words(text: str) -> list[str]:
    """Lower-cased words without the articles a/an/the; hyphens and punctuation split words.

    >>> words("The two-supporting-facts task, John's.")
    ['two', 'supporting', 'facts', 'task', 'john', 's']
    """
    return [w for w in _WORD.findall(unicodedata.normalize("NFKC", text).casefold()) if w not in _STOP]


def sentences(text: str) -> list[str]:
    """Sentences (split after ``.!?`` and at line breaks), blank ones dropped.

    >>> sentences("One. Two!\\nThree? four")
    ['One.', 'Two!', 'Three?', 'four']
    """
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def cut_at_sentence(text: str, max_tokens: int) -> str:
    """The longest run of whole leading sentences of ``text`` within ``max_tokens`` tokens; the first
    sentence alone when even it is longer (a cut never falls inside a sentence).

    >>> cut_at_sentence("One two. Three four five. Six.", 7)  # 3 + 4 tokens, then 2 more
    'One two. Three four five.'
    >>> cut_at_sentence("One two. Three four five. Six.", 2)
    'One two.'
    >>> cut_at_sentence("One two three four.", 2)
    'One two three four.'
    """
    best = ""
    for end in [m.start() for m in _SENTENCE_END.finditer(text)] + [len(text)]:
        prefix = text[:end].strip()
        if not prefix or prefix == best:
            continue
        n = len(tokens(prefix))
        if best and n > max_tokens:
            break
        best = prefix
        if n > max_tokens:
            break
    return best


def trace_text(text: str) -> str:
    """The trace part of a completion: the ``<think>`` block when there is one, else the text
    without any ``<answer>`` element.

    >>> trace_text("<think>Because X.</think> <answer>home</answer>")
    'Because X.'
    >>> trace_text("Because X. <answer>home</answer>")
    'Because X.'
    """
    m = _THINK.search(text)
    if m:
        return m.group(1).strip()
    return _ANSWER.sub(" ", text).strip()


def _contains_phrase(haystack: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(list(haystack[i:i + n]) == list(phrase) for i in range(len(haystack) - n + 1))


def mentions_class(text: str, label: str, synonyms: Iterable[str] = ()) -> bool:
    """Whether ``text`` names the class ``label`` or a synonym as a whole-word phrase.

    >>> mentions_class("These intervals overlap in time.", "overlap")
    True
    >>> mentions_class("An overlapping period.", "overlap")
    False
    >>> mentions_class("They held both roles at the same time.", "equal", ["same time", "simultaneously"])
    True
    >>> mentions_class("a two supporting facts question", "two-supporting-facts")
    True
    """
    w = words(text)
    return any(_contains_phrase(w, words(p)) for p in (label, *synonyms))


def line_overlap(line: str, text: str) -> float:
    """The largest share of ``line``'s distinct words found in one sentence of ``text``.

    >>> line_overlap("Mary went to the office.", "First, Mary went to the office. Then she slept.")
    1.0
    >>> line_overlap("Mary went to the office.", "John went to the office.")
    0.75
    >>> line_overlap("", "anything")
    0.0
    """
    want = set(words(line))
    if not want:
        return 0.0
    return max((len(want & set(words(s))) / len(want) for s in sentences(text)), default=0.0)


def mentioned_lines(text: str, context: Sequence[str], threshold: float = DEFAULT_THRESHOLD) -> tuple[int, ...]:
    """Indices of the context lines that ``text`` quotes or closely paraphrases: one sentence of ``text``
    holds at least ``threshold`` of the line's distinct words *and* at least one of its own words (those
    no other, different context line has), when it has any - so of two facts that differ only in the
    entity, the one whose entity the trace names is the one mentioned.

    >>> ctx = ["Ann works for NKT from 2010 to 2012.", "Ann works for Vestas from 2010 to 2012."]
    >>> mentioned_lines("So: Ann works for NKT from 2010 to 2012.", ctx)
    (0,)
    >>> round(line_overlap(ctx[1], "So: Ann works for NKT from 2010 to 2012."), 3)  # overlap alone would count it
    0.875
    """
    sents = [set(words(s)) for s in sentences(text)]
    lines = [set(words(line)) for line in context]
    out = []
    for i, want in enumerate(lines):
        if not want:
            continue
        own = want - set().union(*(other for other in lines if other != want))
        if any(len(want & s) / len(want) >= threshold and (not own or own & s) for s in sents):
            out.append(i)
    return tuple(out)


@dataclass(frozen=True)
class FreeformMeasures:
    """The checkable facts about one free-form trace (``None`` where undefined)."""

    class_mentioned: bool
    evidence_mentioned: tuple[int, ...]
    evidence_recall: float | None  # None when the gold evidence is empty
    evidence_precision: float | None  # None when no line is mentioned
    evidence_all: bool  # every gold evidence line mentioned (True for empty gold)
    tokens: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["evidence_mentioned"] = list(self.evidence_mentioned)
        return d


def measure(text: str, example, synonyms: Mapping[str, Sequence[str]] | None = None,
            threshold: float = DEFAULT_THRESHOLD) -> FreeformMeasures:
    """The free-form measures of trace ``text`` against ``example``'s gold class and evidence.

    ``synonyms`` maps a class label to other names for it. ``text`` should be the trace alone
    (see :func:`trace_text`).

    >>> from tracekd.records import Decomposition, Example
    >>> ex = Example("c/1", "cotemp", "test", "q", ("A was in X.", "B was in Y.", "A was in X."), ("a",),
    ...              Decomposition("during", (0,)))
    >>> m = measure("B was in Y.", ex)
    >>> m.evidence_mentioned, m.evidence_recall, m.evidence_precision, m.evidence_all, m.class_mentioned
    ((1,), 0.0, 0.0, False, False)
    >>> measure("A was in X, during that time.", ex).evidence_precision  # line 2 repeats gold line 0
    1.0
    """
    label = example.gold.label
    mentioned = mentioned_lines(text, example.context, threshold)
    gold_texts = {normalize_line(example.context[i]) for i in example.gold.evidence}
    gold = {i for i, line in enumerate(example.context) if normalize_line(line) in gold_texts}
    hit_gold_texts = {normalize_line(example.context[i]) for i in mentioned if i in gold}
    recall = len(hit_gold_texts) / len(gold_texts) if gold_texts else None
    precision = sum(i in gold for i in mentioned) / len(mentioned) if mentioned else None
    return FreeformMeasures(
        class_mentioned=mentions_class(text, label, (synonyms or {}).get(label, ())),
        evidence_mentioned=mentioned,
        evidence_recall=recall,
        evidence_precision=precision,
        evidence_all=hit_gold_texts == gold_texts,
        tokens=len(tokens(text)),
    )
