"""The target decomposition of every arm, with seeded corruptions.

- ``vanilla``: no trace (target ``None``); ``correct``: the gold decomposition.
- wrong class: uniform over the other labels (compared case-insensitively, as the verifier does).
- wrong evidence: a uniform sample, sorted ascending, of the non-gold context lines, as many as the
  gold has where possible. A line whose text equals a gold line's (after
  :func:`~tracekd.text.normalize_line`) counts as gold, since the verifier matches by text.
  ``evidence_case`` records which rule applied: ``full`` (as many wrong lines as gold lines; also
  one wrong line when the gold is empty), ``fewer`` (fewer non-gold lines exist than gold lines),
  ``empty`` (no non-gold line: the empty list, still wrong because the gold is not empty).
- ``incorrect`` = the ``incorrect-class`` label + the ``incorrect-evidence`` evidence.

Every draw uses its own ``random.Random(f"{seed}/{example.id}/{step}")``, so targets depend only on
(seed, example, labels) - not on the order examples are processed, nor on the other arms built.

>>> from tracekd.records import Decomposition, Example
>>> ex = Example("babi/qa1/test/0/4", "babi", "test", "Where is Mary?",
...              ("Mary went home.", "John left.", "Sam ran.", "Mary went home."), ("home",),
...              Decomposition("qa1", (3,)))
>>> t = target_for(ex, "incorrect", ("qa1", "qa2", "qa3"), seed=0)
>>> t.decomposition.label != "qa1", t.decomposition.evidence in ((1,), (2,)), t.evidence_case
(True, True, 'full')
>>> target_for(ex, "incorrect", ("qa1", "qa2", "qa3"), 0) == t
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import ConfigError, TracekdError, did_you_mean
from ..records import Decomposition, Example
from ..registry import Registry
from ..text import normalize_label, normalize_line

ARMS = ("vanilla", "correct", "incorrect", "incorrect-class", "incorrect-evidence")
#: arms rendered from teacher responses (tracekd.teacher.arms), and untrained baselines (the base student prompted)
TEACHER_ARMS = ("teacher-trace", "teacher-summary", "teacher-explanation", "teacher-swapped", "teacher-trace-short")
BASELINE_ARMS = ("zero-shot", "zero-shot-format")
#: every arm a build can write: ARMS get their targets from :func:`target_for`, the others from tracekd.teacher
ALL_ARMS = ARMS + TEACHER_ARMS + BASELINE_ARMS
EVIDENCE_CASES = ("full", "fewer", "empty")


class CannotCorrupt(TracekdError):
    """No wrong value exists for a step of this example; ``reason`` says why."""

    def __init__(self, reason: str, example_id: str = "", step: str = ""):
        self.reason = reason
        self.example_id = example_id
        self.step = step
        super().__init__(reason)


@dataclass(frozen=True)
class Target:
    """What an arm's completion encodes: ``decomposition`` (None for vanilla) and, for arms with
    wrong evidence, which ``evidence_case`` applied."""

    decomposition: Decomposition | None
    evidence_case: str | None = None


def wrong_label(example: Example, labels, seed: int) -> str:
    """A uniformly random label other than the gold one.

    >>> from tracekd.records import Decomposition, Example
    >>> ex = Example("e/1", "d", "test", "q", ("a",), ("x",), Decomposition("A", (0,)))
    >>> wrong_label(ex, ["a", "b"], 0)
    'b'
    >>> wrong_label(ex, ["A"], 0)
    Traceback (most recent call last):
    ...
    tracekd.traces.corrupt.CannotCorrupt: no other class than 'A' among 1 label(s)
    """
    gold = normalize_label(example.gold.label)
    others = sorted({label for label in labels if normalize_label(label) != gold})
    if not others:
        raise CannotCorrupt(f"no other class than {example.gold.label!r} among {len(set(labels))} label(s)",
                            example.id, "class")
    return random.Random(f"{seed}/{example.id}/class").choice(others)


def non_gold_lines(example: Example) -> list[int]:
    """Indices of context lines that are neither gold nor identical in text to a gold line.

    >>> from tracekd.records import Decomposition, Example
    >>> ex = Example("e/1", "d", "test", "q", ("A b.", "c.", "a  B"), ("x",), Decomposition("l", (2,)))
    >>> non_gold_lines(ex)
    [1]
    """
    gold = set(example.gold.evidence)
    gold_texts = {normalize_line(example.context[i]) for i in gold}
    return [i for i, line in enumerate(example.context)
            if i not in gold and normalize_line(line) not in gold_texts]


def wrong_evidence(example: Example, seed: int) -> tuple[tuple[int, ...], str]:
    """``(indices, evidence_case)``: sampled non-gold lines, sorted ascending.

    >>> from tracekd.records import Decomposition, Example
    >>> ex = Example("e/1", "d", "test", "q", ("a.", "b."), ("x",), Decomposition("l", (0, 1)))
    >>> wrong_evidence(ex, 0)
    ((), 'empty')
    >>> ex = Example("e/1", "d", "test", "q", ("a.", "b.", "c."), ("x",), Decomposition("l", (0, 1)))
    >>> wrong_evidence(ex, 0)
    ((2,), 'fewer')
    """
    gold = example.gold.evidence
    pool = non_gold_lines(example)
    if not gold:
        if not pool:
            raise CannotCorrupt("gold evidence is empty and every context line is gold-identical "
                                "(no wrong evidence exists)", example.id, "evidence")
        k, case = 1, "full"
    elif not pool:
        k, case = 0, "empty"
    elif len(pool) < len(gold):
        k, case = len(pool), "fewer"
    else:
        k, case = len(gold), "full"
    rng = random.Random(f"{seed}/{example.id}/evidence")
    return tuple(sorted(rng.sample(pool, k))), case


def _vanilla(example: Example, labels, seed: int) -> Target:
    return Target(None)


def _correct(example: Example, labels, seed: int) -> Target:
    return Target(example.gold)


def _incorrect(example: Example, labels, seed: int) -> Target:
    label = wrong_label(example, labels, seed)
    evidence, case = wrong_evidence(example, seed)
    return Target(Decomposition(label, evidence), case)


def _incorrect_class(example: Example, labels, seed: int) -> Target:
    return Target(Decomposition(wrong_label(example, labels, seed), example.gold.evidence))


def _incorrect_evidence(example: Example, labels, seed: int) -> Target:
    evidence, case = wrong_evidence(example, seed)
    return Target(Decomposition(example.gold.label, evidence), case)


#: arm -> what makes it, and its one line for `tracekd ls`. For ARMS ``(example, labels, seed) -> Target``
#: (:func:`target_for`); for TEACHER_ARMS ``(teacher_arms, example, partner) -> trace text``
#: (:meth:`tracekd.teacher.arms.TeacherArms.trace`); for BASELINE_ARMS ``(examples, template, prompts, worked)
#: -> rows`` (:func:`tracekd.teacher.arms.baseline_rows`)
ARM_MAKERS: Registry = Registry("arm")
ARM_MAKERS.add("vanilla", _vanilla, "no trace: the target is the gold answer alone")
ARM_MAKERS.add("correct", _correct, "the gold class and gold evidence in the trace, then the gold answer")
ARM_MAKERS.add("incorrect", _incorrect,
               "a wrong class and wrong evidence (seeded, verified wrong), then the gold answer")
ARM_MAKERS.add("incorrect-class", _incorrect_class, "a wrong class with the gold evidence, then the gold answer")
ARM_MAKERS.add("incorrect-evidence", _incorrect_evidence, "the gold class with wrong evidence, then the gold answer")
ARM_MAKERS.add("teacher-trace", "tracekd.teacher.arms:teacher_trace",
               "the teacher's reasoning as the trace (teacher-correct items only; needs --teacher-responses)")
ARM_MAKERS.add("teacher-summary", "tracekd.teacher.arms:teacher_summary",
               "a short summary of the teacher's reasoning as the trace (needs a summary response)")
ARM_MAKERS.add("teacher-explanation", "tracekd.teacher.arms:teacher_explanation",
               "the teacher's post-hoc explanation as the trace (needs an explanation response)")
ARM_MAKERS.add("teacher-swapped", "tracekd.teacher.arms:teacher_swapped",
               "another item's teacher reasoning (seeded derangement within each class) with this answer")
ARM_MAKERS.add("teacher-trace-short", "tracekd.teacher.arms:teacher_trace_short",
               "the teacher's reasoning cut at a sentence to the length of the correct decomposed trace")
ARM_MAKERS.add("zero-shot", "tracekd.teacher.arms:zero_shot_rows",
               "not trained: the base student with the method's prompt (reference: the gold answer)")
ARM_MAKERS.add("zero-shot-format", "tracekd.teacher.arms:zero_shot_format_rows",
               "not trained: the base student shown one worked example of the trace format")


def target_for(example: Example, arm: str, labels, seed: int) -> Target:
    """The target of ``arm`` for ``example``; raises :class:`CannotCorrupt` when a wrong value is impossible."""
    if arm not in ARMS:
        raise ConfigError(did_you_mean(arm, ARMS, "arm"))
    return ARM_MAKERS.get(arm)(example, labels, seed)
