"""Verify the two sub-steps of a parsed trace against the gold decomposition.

- **class**: the predicted label equals the gold label, case-insensitive and whitespace-normalised.
- **evidence**: predicted lines are compared with the context by *text* (:func:`~tracekd.text.normalize_line`), so a
  sentence that occurs twice in a story is one piece of evidence whichever copy is named. Sets are
  over distinct normalised texts; a predicted line that matches no context line is a false positive.

Edge cases (``P`` = predicted texts, ``G`` = gold texts):

- precision = |P & G| / |P|; with P empty: 1.0 if G is empty else 0.0;
- recall = |P & G| / |G|; with G empty: 1.0;
- exact = (P == G); all = G is a subset of P (so True for empty G); any = P & G non-empty, and for
  empty G, any = (P is empty) - so exact implies all and any.

A step the parse did not reach (``label``/``evidence`` None) has verdicts None, never True.

>>> from tracekd.records import Decomposition, Example
>>> from tracekd.traces.parse import ParsedOutput
>>> ex = Example("x/1", "babi", "test", "Where is Mary?",
...              ("Mary went home.", "John left.", "Mary went home."), ("home",), Decomposition("qa1", (2,)))
>>> verdicts = verify_steps(ParsedOutput("ok", "...", "home", "QA1", ("mary went home", "Sam ran.")), ex)
>>> (verdicts.label_ok, verdicts.evidence, verdicts.evidence_exact, verdicts.evidence_all,
...  verdicts.evidence_precision, verdicts.unmatched)
(True, (2,), False, True, 0.5, 1)
>>> trace_ok("ok", verdicts, "class+evidence-all"), trace_ok("ok", verdicts), trace_ok("truncated", verdicts, "class")
(True, False, False)
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

from ..records import Example
from ..registry import Registry
from ..text import normalize_label, normalize_line

if TYPE_CHECKING:
    from ..traces.parse import ParsedOutput

@dataclass(frozen=True)
class StepVerdicts:
    """Verdicts on the class and evidence steps; ``None`` where the step was not reached.

    ``evidence`` holds the matched context indices (for a text that is gold, the gold copies; else
    the first copy); ``unmatched`` counts distinct predicted lines found nowhere in the context.
    """

    label_ok: bool | None = None
    evidence: tuple[int, ...] | None = None
    evidence_exact: bool | None = None
    evidence_all: bool | None = None
    evidence_any: bool | None = None
    evidence_precision: float | None = None
    evidence_recall: float | None = None
    unmatched: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["evidence"] = list(self.evidence) if self.evidence is not None else None
        return d


def evidence_verdicts(predicted, example: Example) -> StepVerdicts:
    """Evidence verdicts of predicted lines (label fields left None).

    >>> from tracekd.records import Decomposition, Example
    >>> ex = Example("x/1", "babi", "test", "q?", ("a.", "b.", "c."), ("x",), Decomposition("l", ()))
    >>> verdicts = evidence_verdicts([], ex)
    >>> (verdicts.evidence_exact, verdicts.evidence_all, verdicts.evidence_any, verdicts.evidence_precision,
    ...  verdicts.evidence_recall)
    (True, True, True, 1.0, 1.0)
    >>> verdicts = evidence_verdicts(["b"], ex)
    >>> (verdicts.evidence_exact, verdicts.evidence_all, verdicts.evidence_any, verdicts.evidence_precision,
    ...  verdicts.evidence_recall)
    (False, True, False, 0.0, 1.0)
    >>> ex = Example("x/1", "babi", "test", "q?", ("a.", "b.", "c."), ("x",), Decomposition("l", (0, 2)))
    >>> verdicts = evidence_verdicts(["A", "a.", "zzz"], ex)
    >>> (verdicts.evidence, verdicts.evidence_exact, verdicts.evidence_any, verdicts.evidence_precision,
    ...  verdicts.evidence_recall, verdicts.unmatched)
    ((0,), False, True, 0.5, 0.5, 1)
    >>> evidence_verdicts([], ex).evidence_precision
    0.0
    """
    return _verdicts(None, predicted, example)


def _verdicts(label_ok: bool | None, predicted, example: Example) -> StepVerdicts:
    by_text, gold_idx, gold = _context_index(example.context, example.gold.evidence)
    pred = {normalize_line(x) for x in predicted}
    hits = pred & gold
    indices: set[int] = set()
    unmatched = 0
    for text in pred:
        found = by_text.get(text)
        if not found:
            unmatched += 1
        elif text in gold:
            indices.update(i for i in found if i in gold_idx)
        else:
            indices.add(found[0])
    precision = len(hits) / len(pred) if pred else (1.0 if not gold else 0.0)
    recall = len(hits) / len(gold) if gold else 1.0
    return StepVerdicts(
        label_ok=label_ok,
        evidence=tuple(sorted(indices)),
        evidence_exact=pred == gold,
        evidence_all=gold <= pred,
        evidence_any=bool(hits) if gold else not pred,
        evidence_precision=precision,
        evidence_recall=recall,
        unmatched=unmatched,
    )


@functools.lru_cache(maxsize=4096)
def _context_index(context: tuple[str, ...], evidence: tuple[int, ...]) -> tuple[dict, frozenset, frozenset]:
    """``(normalised text -> context indices, gold indices, gold texts)`` of one example (cached: the same
    example is judged once per arm and seed)."""
    by_text: dict[str, list[int]] = {}
    for i, line in enumerate(context):
        by_text.setdefault(normalize_line(line), []).append(i)
    return by_text, frozenset(evidence), frozenset(normalize_line(context[i]) for i in evidence)


def verify_steps(parsed: "ParsedOutput", example: Example) -> StepVerdicts:
    """Class and evidence verdicts of a parsed output against ``example.gold`` (whatever its status)."""
    label_ok = None
    if parsed.label is not None:
        label_ok = normalize_label(parsed.label) == normalize_label(example.gold.label)
    if parsed.evidence is None:
        return StepVerdicts(label_ok=label_ok)
    return _verdicts(label_ok, parsed.evidence, example)


#: name -> predicate: is the whole trace correct? (``None`` step verdicts count as wrong)
TRACE_DEFINITIONS: Registry[Callable[[StepVerdicts], bool]] = Registry("trace definition")
#: what makes a whole trace correct unless a config says otherwise (score, experiments, judge settings)
DEFAULT_TRACE_DEFINITION = "class+evidence-exact"
TRACE_DEFINITIONS.add(DEFAULT_TRACE_DEFINITION,
                      lambda verdicts: verdicts.label_ok is True and verdicts.evidence_exact is True,
                      "the right class and exactly the gold evidence lines (the default)")
TRACE_DEFINITIONS.add("class+evidence-all",
                      lambda verdicts: verdicts.label_ok is True and verdicts.evidence_all is True,
                      "the right class and every gold evidence line (extra lines allowed)")
TRACE_DEFINITIONS.add("class", lambda verdicts: verdicts.label_ok is True, "the right class alone")
TRACE_DEFINITIONS.add("evidence-exact", lambda verdicts: verdicts.evidence_exact is True,
                      "exactly the gold evidence lines alone")


def get_trace_definition(name: str) -> Callable[[StepVerdicts], bool]:
    """The predicate named ``name`` (did-you-mean on a typo).

    >>> get_trace_definition("class+evidence")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: unknown trace definition 'class+evidence'; did you mean 'class+evidence-all'? (choices: class, class+evidence-all, class+evidence-exact, evidence-exact)
    """
    return TRACE_DEFINITIONS.get(name)


def trace_ok(status: str, verdicts: StepVerdicts, definition: str = DEFAULT_TRACE_DEFINITION) -> bool:
    """Whether the trace is correct under ``definition``; always False unless ``status`` is ``ok``."""
    predicate = get_trace_definition(definition)
    return status == "ok" and bool(predicate(verdicts))
