"""Seeded corruption: determinism, order independence, the evidence cases, the same surface format."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from tracekd.errors import ConfigError
from tracekd.records import Decomposition, Example
from tracekd.traces.corrupt import (ALL_ARMS, ARM_MAKERS, ARMS, EVIDENCE_CASES, CannotCorrupt, Target,
                                    non_gold_lines, target_for, wrong_evidence)
from tracekd.traces.templates import get_template, render_completion, render_row

LABELS = ("single-supporting-fact", "two-supporting-facts", "two-arg-relations", "counting", "lists-sets",
          "conjunction", "time-reasoning", "basic-deduction", "basic-induction", "positional-reasoning",
          "size-reasoning")
WORDS = "Mary John Sandra Daniel went moved travelled to the kitchen garden office hallway bathroom".split()


def story(i: int, n_lines: int, gold: tuple[int, ...], label: str = "counting") -> Example:
    rng = random.Random(i)
    context = tuple(f"{' '.join(rng.choices(WORDS, k=5))} {i}-{j}." for j in range(n_lines))
    return Example(f"babi/qa7/train/{i}/{n_lines + 1}", "babi", "train", "How many?", context, ("two",),
                   Decomposition(label, gold))


def many() -> list[Example]:
    out = []
    for i in range(200):
        n = 2 + i % 7
        k = 1 + i % min(n, 3)
        gold = tuple(sorted(random.Random(-i).sample(range(n), k)))
        out.append(story(i, n, gold, LABELS[i % len(LABELS)]))
    return out


def targets(examples, seed, arms=ARMS):
    return {(ex.id, arm): target_for(ex, arm, LABELS, seed) for ex in examples for arm in arms}


def test_deterministic_and_order_independent():
    exs = many()
    first = targets(exs, 7)
    assert targets(exs, 7) == first
    shuffled = exs[:]
    random.Random(3).shuffle(shuffled)
    assert targets(shuffled, 7) == first
    # computing one arm alone gives the same as computing all arms
    assert targets(exs, 7, ("incorrect-evidence",)) == {k: v for k, v in first.items() if k[1] == "incorrect-evidence"}


def test_other_seed_changes_incorrect_not_correct():
    exs = many()
    a, b = targets(exs, 0), targets(exs, 1)
    for arm in ("vanilla", "correct"):
        assert all(a[ex.id, arm] == b[ex.id, arm] for ex in exs)
    differ = {arm: sum(a[ex.id, arm] != b[ex.id, arm] for ex in exs) / len(exs)
              for arm in ("incorrect", "incorrect-class", "incorrect-evidence")}
    # 10 other labels: the same one again with probability 1/10; evidence often has a single choice
    assert differ["incorrect-class"] > 0.8 and differ["incorrect"] > 0.8 and differ["incorrect-evidence"] > 0.2


def test_incorrect_combines_the_two_single_corruptions():
    for ex in many():
        t = {arm: target_for(ex, arm, LABELS, 11) for arm in ARMS}
        assert t["vanilla"] == Target(None, None)
        assert t["correct"] == Target(ex.gold, None)
        assert t["incorrect-class"].decomposition.evidence == ex.gold.evidence
        assert t["incorrect-class"].evidence_case is None
        assert t["incorrect-evidence"].decomposition.label == ex.gold.label
        assert t["incorrect"].decomposition == Decomposition(t["incorrect-class"].decomposition.label,
                                                             t["incorrect-evidence"].decomposition.evidence)
        assert t["incorrect"].evidence_case == t["incorrect-evidence"].evidence_case in EVIDENCE_CASES


def test_wrong_class_is_uniform_over_the_others():
    ex = story(0, 3, (0,), "counting")
    counts = Counter(target_for(ex, "incorrect-class", LABELS, seed).decomposition.label for seed in range(2000))
    assert "counting" not in counts
    assert set(counts) == set(LABELS) - {"counting"}
    assert min(counts.values()) > 2000 / 10 * 0.6  # 200 expected each
    # case-insensitive: a label differing only in case is not "other"
    assert target_for(ex, "incorrect-class", ("COUNTING", "lists-sets"), 0).decomposition.label == "lists-sets"
    with pytest.raises(CannotCorrupt, match="no other class"):
        target_for(ex, "incorrect", ("counting",), 0)


def test_wrong_evidence_is_a_sorted_uniform_sample_of_non_gold():
    ex = story(1, 6, (1, 4))
    seen = Counter()
    for seed in range(600):
        t = target_for(ex, "incorrect-evidence", LABELS, seed)
        ev = t.decomposition.evidence
        assert t.evidence_case == "full" and len(ev) == 2 and list(ev) == sorted(ev)
        assert not set(ev) & {1, 4}
        seen[ev] += 1
    assert len(seen) == 6  # all C(4, 2) pairs of {0, 2, 3, 5}
    assert min(seen.values()) > 600 / 6 * 0.6


def test_evidence_cases():
    # fewer non-gold lines than gold
    ev, case = wrong_evidence(story(2, 3, (0, 1)), 0)
    assert (ev, case) == ((2,), "fewer")
    # no non-gold line at all (every positional-reasoning story): the empty list
    t = target_for(story(3, 2, (0, 1)), "incorrect", LABELS, 0)
    assert t.decomposition.evidence == () and t.evidence_case == "empty"
    # empty gold (MARCO "No Answer Present."): one wrong line
    ev, case = wrong_evidence(story(4, 5, ()), 0)
    assert len(ev) == 1 and case == "full"
    with pytest.raises(CannotCorrupt, match="no wrong evidence"):
        target_for(story(5, 0, ()), "incorrect-evidence", LABELS, 0)
    # the class-only corruption does not need wrong evidence
    assert target_for(story(5, 0, ()), "incorrect-class", LABELS, 0).decomposition.evidence == ()


def test_a_line_identical_to_gold_counts_as_gold():
    ctx = ("Mary went to the kitchen.", "John left.", "mary went to  the kitchen", "Sam ran.", "Mary went to the kitchen.")
    ex = Example("babi/qa1/train/9/6", "babi", "train", "Where is Mary?", ctx, ("kitchen",),
                 Decomposition("single-supporting-fact", (4,)))
    assert non_gold_lines(ex) == [1, 3]
    for seed in range(100):
        assert target_for(ex, "incorrect-evidence", LABELS, seed).decomposition.evidence in ((1,), (3,))
    only_copies = Example("babi/qa1/train/9/3", "babi", "train", "Where?", ctx[:1] + ctx[2:3], ("kitchen",),
                          Decomposition("single-supporting-fact", (1,)))
    assert target_for(only_copies, "incorrect", LABELS, 0).evidence_case == "empty"


def test_unknown_arm():
    with pytest.raises(ConfigError, match="did you mean 'incorrect-class'"):
        target_for(story(0, 2, (0,)), "incorect-class", LABELS, 0)


# --- no surface cue gives the arm away -----------------------------------------------------------

def _trace_shape(template):
    cpre, csuf = template.class_affixes
    epre, _ = template.evidence_affixes
    item = r'"(?:[^"\\\n]|\\.)*"'
    return re.compile(rf"<think>{re.escape(cpre)}[a-z-]+{re.escape(csuf)}\n{re.escape(epre)}"
                      rf"(\[(?:{item}(?:, {item})*)?\])</think> <answer>[^<>\n]+</answer>")


@pytest.mark.parametrize("name", ["reference-qa", "reference-cotemp"])
def test_every_arm_has_the_same_surface_format(name):
    template = get_template(name)
    shape = _trace_shape(template)
    exs = many() + [story(900, 2, (0, 1)), story(901, 4, (3,))]
    for ex in exs:
        for arm in ARMS:
            t = target_for(ex, arm, LABELS, 5)
            row = render_row(ex, arm, t, template)  # a Target is accepted too
            text = row.completion_text
            assert text == render_completion(ex, t.decomposition, template)
            if arm == "vanilla":
                assert "<" not in text and text == "two"
                continue
            m = shape.fullmatch(text)
            assert m, (arm, text)
            listed = m.group(1)
            assert json.dumps(json.loads(listed), ensure_ascii=False) == listed  # one canonical list syntax


def test_every_arm_is_registered_with_a_description():
    assert tuple(ARM_MAKERS.names()) == ALL_ARMS
    assert all(description for _, description in ARM_MAKERS.listing())
    with pytest.raises(ConfigError, match="unknown arm 'teacher-trace'"):
        target_for(story(0, 3, (0,)), "teacher-trace", LABELS, 0)  # teacher arms are made from teacher responses
