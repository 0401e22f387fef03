"""Step verification, and render -> parse -> verify round trips for every arm."""

from __future__ import annotations

import pytest

from tracekd.errors import ConfigError
from tracekd.records import STATUSES, Decomposition, Example
from tracekd.score.steps import TRACE_DEFINITIONS, StepVerdicts, evidence_verdicts, trace_ok, verify_steps
from tracekd.text import normalize_line
from tracekd.traces.corrupt import ARMS, target_for
from tracekd.traces.parse import ParsedOutput, parse
from tracekd.traces.templates import get_template, render_answer, render_row

BABI_LABELS = ("single-supporting-fact", "two-supporting-facts", "two-arg-relations", "counting", "lists-sets",
               "conjunction", "time-reasoning", "basic-deduction", "basic-induction", "positional-reasoning",
               "size-reasoning")
COTEMP_LABELS = ("equal", "overlap", "during", "mix")

EXAMPLES = [
    # a story that repeats its supporting sentence (the later copy is gold)
    (Example("babi/qa2/test/3/7", "babi", "test", "Where is the football?",
             ("John went to the garden.", "John picked up the football.", "Mary went to the office.",
              "John went to the garden.", "Sandra moved to the hallway.", "John went to the garden."),
             ("garden",), Decomposition("two-supporting-facts", (1, 5))), BABI_LABELS, "reference-qa"),
    # every line is gold (positional reasoning): wrong evidence is the empty list
    (Example("babi/qa17/test/0/3", "babi", "test", "Is the red sphere to the right of the pink rectangle?",
             ("The red square is below the red sphere.", "The red square is to the left of the pink rectangle."),
             ("no",), Decomposition("positional-reasoning", (0, 1))), BABI_LABELS, "reference-qa"),
    # several answers, quotes and unicode in the facts
    (Example("cotemp/mix/4", "cotemp", "test", "While Zoë was a member of “Les Verts”, which team did she play for?",
             ('Zoë is a member of "Les Verts" from 1990 to 1999.', "Zoë plays for FC [Nord] from 1991 to 1993.",
              "Zoë plays for Süd 04 from 1994 to 1996.", "Zoë works for Acme from 2001 to 2004."),
             ("FC [Nord]", "Süd 04"), Decomposition("mix", (1, 2))), COTEMP_LABELS, "reference-cotemp"),
    # empty gold evidence (MARCO "No Answer Present.")
    (Example("marco/dev/123", "marco", "test", "what is x", ("Passage one.\nWith a newline.", "Passage two."),
             ("No Answer Present.",), Decomposition("DESCRIPTION", ())),
     ("DESCRIPTION", "NUMERIC", "ENTITY", "LOCATION", "PERSON"), "reference-qa"),
]

#: (class right, evidence exact) each arm must verify as
EXPECT = {"correct": (True, True), "incorrect": (False, False), "incorrect-class": (False, True),
          "incorrect-evidence": (True, False)}


@pytest.mark.parametrize("example, labels, template_name", EXAMPLES, ids=[e[0].id for e in EXAMPLES])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_every_arm(example, labels, template_name, seed):
    template = get_template(template_name)
    for arm in ARMS:
        target = target_for(example, arm, labels, seed)
        row = render_row(example, arm, target.decomposition, template)
        parsed = parse(row.completion_text, template, finish_reason="stop")
        v = verify_steps(parsed, example)
        assert parsed.answer == render_answer(example.answers)
        if arm == "vanilla":
            assert parsed.status == "no_trace" and v == StepVerdicts()
            assert not trace_ok(parsed.status, v)
            continue
        assert parsed.status == "ok", row.completion_text
        assert (v.label_ok, v.evidence_exact) == EXPECT[arm], (arm, row.completion_text)
        assert trace_ok(parsed.status, v) == (arm == "correct")
        assert v.unmatched == 0
        if EXPECT[arm][1]:
            assert v.evidence == example.gold.evidence
            assert v.evidence_all and v.evidence_any and v.evidence_precision == v.evidence_recall == 1.0
        else:
            assert v.evidence == target.decomposition.evidence
            if example.gold.evidence:  # the wrong evidence shares no line with the gold
                assert not v.evidence_all and not v.evidence_any and v.evidence_recall == 0.0


def _ex(context, gold, label="qa1"):
    return Example("x/1", "babi", "test", "q?", tuple(context), ("a",), Decomposition(label, tuple(gold)))


def test_normalize_line():
    assert normalize_line("Mary went to the Kitchen.") == normalize_line("  mary went   to the kitchen ")
    assert normalize_line("Ｍａｒｙ went.") == "mary went"
    assert normalize_line("Mary went.") != normalize_line("Mary left.")
    assert normalize_line("") == ""


def test_label_match_is_case_and_space_insensitive():
    ex = _ex(["a."], [0], "Two-Supporting-Facts")
    ok = lambda label: verify_steps(ParsedOutput("ok", "t", "a", label, ("a.",)), ex).label_ok  # noqa: E731
    assert ok("two-supporting-facts") and ok("  TWO-supporting-FACTS ")
    assert not ok("two supporting facts") and not ok("two-supporting-fact")


def test_evidence_verdicts_edge_cases():
    ex = _ex(["A one.", "B two.", "C three.", "B two."], [0, 3])
    v = evidence_verdicts(["a one", "b two", "b two.", "B TWO"], ex)  # duplicates count once
    assert (v.evidence, v.evidence_exact, v.evidence_precision, v.evidence_recall) == ((0, 3), True, 1.0, 1.0)
    v = evidence_verdicts(["b two", "c three", "nowhere"], ex)
    assert v.evidence == (2, 3) and v.unmatched == 1 and not v.evidence_exact and not v.evidence_all
    assert v.evidence_any and v.evidence_precision == pytest.approx(1 / 3) and v.evidence_recall == 0.5
    v = evidence_verdicts([], ex)
    assert (v.evidence_exact, v.evidence_any, v.evidence_precision, v.evidence_recall) == (False, False, 0.0, 0.0)
    v = evidence_verdicts(["C three"], _ex(["A one.", "C three.", "C three."], [2]))
    assert v.evidence == (2,) and v.evidence_exact  # the gold copy of a repeated line
    v = evidence_verdicts(["A one"], _ex(["A one.", "A one."], []))
    assert v.evidence == (0,) and not v.evidence_exact and v.evidence_all and not v.evidence_any
    assert v.evidence_precision == 0.0 and v.evidence_recall == 1.0


def test_steps_not_reached_are_none():
    ex = _ex(["a."], [0])
    assert verify_steps(parse("a", "reference-qa"), ex) == StepVerdicts()
    v = verify_steps(ParsedOutput("unparseable_evidence", "t", "a", "qa1", None), ex)
    assert v.label_ok is True and v.evidence is None and v.evidence_exact is None and v.evidence_precision is None
    v = verify_steps(ParsedOutput("unparseable_class", "t", "a", None, ("a.",)), ex)
    assert v.label_ok is None and v.evidence_exact is True
    assert StepVerdicts().to_dict()["evidence"] is None and v.to_dict()["evidence"] == [0]


def test_trace_definitions():
    assert set(TRACE_DEFINITIONS) == {"class+evidence-exact", "class+evidence-all", "class", "evidence-exact"}
    both = StepVerdicts(True, (0,), True, True, True, 1.0, 1.0, 0)
    superset = StepVerdicts(True, (0, 1), False, True, True, 0.5, 1.0, 0)
    wrong_class = StepVerdicts(False, (0,), True, True, True, 1.0, 1.0, 0)
    assert [trace_ok("ok", superset, d) for d in sorted(TRACE_DEFINITIONS)] == [True, True, False, False]
    assert [trace_ok("ok", wrong_class, d) for d in sorted(TRACE_DEFINITIONS)] == [False, False, False, True]
    assert trace_ok("ok", both)  # default: class + exact evidence
    for status in STATUSES:
        if status != "ok":
            assert not any(trace_ok(status, both, d) for d in TRACE_DEFINITIONS)
    assert not any(trace_ok("ok", StepVerdicts(), d) for d in TRACE_DEFINITIONS)
    with pytest.raises(ConfigError, match="did you mean"):
        trace_ok("ok", both, "class+evidence-exakt")
