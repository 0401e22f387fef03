"""The rule-based CoTemp relation classifier: time expressions, facts, questions, relations, audit."""

from __future__ import annotations

import json

import pytest

from tracekd.cli import main
from tracekd.datasets.cotemp_audit import audit, format_audit
from tracekd.datasets.cotemp_rules import (
    Date, classify_question, interval_relation, parse_date, parse_fact, parse_question, parse_time,
)
from tracekd.errors import ConfigError

from conftest import COTEMP, needs_cotemp


@pytest.mark.parametrize("text, start, end, grans, span", [
    ("in 2002", (2002, None, None), (2002, None, None), ("year", "year"), False),
    ("in December, 2019", (2019, 12, None), (2019, 12, None), ("month", "month"), False),
    ("in October 24, 2019", (2019, 10, 24), (2019, 10, 24), ("day", "day"), False),
    ("from January 2, 2007 to December 3, 2010", (2007, 1, 2), (2010, 12, 3), ("day", "day"), True),
    ("from 1997 to 2001", (1997, None, None), (2001, None, None), ("year", "year"), True),
    ("from 1970 to August 1, 1987", (1970, None, None), (1987, 8, 1), ("year", "day"), True),
])
def test_parse_time(text, start, end, grans, span):
    t = parse_time(text)
    assert t.start == Date(*start) and t.end == Date(*end) and t.span is span
    assert (t.start.granularity, t.end.granularity) == grans
    assert str(t) == text


def test_intervals_at_stated_granularity():
    t = parse_time("from 1997 to February, 2000")
    assert t.interval("calendar") == ((1997, 1, 1), (2000, 2, 29))  # leap year
    assert t.interval("wikidata") == ((1997, 0, 0), (2000, 2, 0))
    assert parse_time("in 2002").interval("calendar") == ((2002, 1, 1), (2002, 12, 31))
    with pytest.raises(ConfigError, match="did you mean 'calendar'"):
        t.interval("calender")


@pytest.mark.parametrize("bad", ["in 20O2", "since 1990", "from 1990", "in Smarch, 1990", "in February 30, 2001",
                                 "in 0", "from 1990 until 2000", "in 1990s"])
def test_bad_time_expressions(bad):
    with pytest.raises(ValueError):
        parse_time(bad)


@pytest.mark.parametrize("bad", ["20O2", "Smarch, 1990", "February 30, 2001", "0", "1990s", "March 4 1990", "12345"])
def test_bad_dates(bad):
    with pytest.raises(ValueError):
        parse_date(bad)


def test_parse_fact_surface_forms():
    f = parse_fact("John Russell, 1st Earl Russell holds the position of Lords of Appeal in Ordinary in September, 1945.")
    assert (f.subject, f.relation, f.object, str(f.time)) == \
        ("John Russell, 1st Earl Russell", "position", "Lords of Appeal in Ordinary", "in September, 1945")
    f = parse_fact("The Woman in the Waves is owned by Gustave Courbet from 1868 to 1873.")
    assert (f.subject, f.relation, f.object) == ("The Woman in the Waves", "owned", "Gustave Courbet")
    f = parse_fact("Jan Trøjborg worked for Royal Pioneer Corps in 2006.")
    assert (f.relation, f.object, f.time.span) == ("work", "Royal Pioneer Corps", False)
    f = parse_fact("Ann is a member of the Vox in July, 2019.")
    assert (f.relation, f.object) == ("member", "Vox")
    f = parse_fact("Ann works for Acme since the 1990s.")
    assert f.time is None and f.relation == "work"


def test_parse_question_forms():
    q = parse_question("While Frank Gaffney was holding the position of president, which position did "
                       "James Lighthill hold simultaneously?")
    assert (q.subject, q.relation, q.object, q.asks_subject, q.target_relation) == \
        ("Frank Gaffney", "position", "president", False, "position")
    q = parse_question("While Patrick Cabanel attended École Normale Supérieure, which school was Kathleen "
                       "Campbell attending at the same time?")
    assert (q.relation, q.object, q.target_relation) == ("attend", "École Normale Supérieure", "attend")
    q = parse_question("While Westfield Montgomery was owned by Westfield Corporation, who was also owned by "
                       "Westfield Corporation during the same time span?")
    assert q.asks_subject and q.relation == "owned"
    q = parse_question("While Yu Shyi-kun was a member of independent politician, which employer did "
                       "P. A. P. Moran work for at the same time?")
    assert (q.relation, q.object, q.target_relation) == ("member", "independent politician", "work")
    assert parse_question("Which position did Ann hold in 1990?") is None


def test_interval_relation_is_symmetric():
    pairs = [((1, 5), (1, 5)), ((2, 3), (1, 5)), ((1, 5), (1, 9)), ((1, 5), (4, 9)), ((1, 3), (4, 9))]
    for a, b in pairs:
        assert interval_relation(a, b) == interval_relation(b, a)


FACTS = [
    "Ann works for Acme from 1990 to 2000.",           # 0 anchor
    "Ann works for Bolt from 1990 to 2000.",           # 1 equal
    "Ann works for Cord from 1992 to 1995.",           # 2 during (inside)
    "Ann works for Dune from 1985 to 2005.",           # 3 during (contains)
    "Ann works for Ember from 1995 to 2008.",          # 4 overlap
    "Ann works for Flint from 1970 to 1980.",          # 5 disjoint
    "Ann attended Gale College from 1991 to 1993.",    # 6 other relation
    "Ann works for Helm in 2000.",                     # 7 during (a point inside, wikidata and calendar)
]
Q = "While Ann was working for Acme, which employer did Ann work for during the same time period?"


@pytest.mark.parametrize("answers, label", [
    (["Bolt"], "equal"), (["Cord"], "during"), (["Dune"], "during"), (["Cord", "Dune"], "during"),
    (["Ember"], "overlap"), (["Bolt", "Cord"], "mix"), (["Cord", "Ember"], "mix"), (["Helm"], "during"),
])
def test_classify_each_relation(answers, label):
    v = classify_question(Q, FACTS, answers, "S1_R1_O2")
    assert v.label == label, v.reason
    assert v.anchor == (0,)
    for a in answers:
        assert v.answer_facts[a] == (FACTS.index(next(f for f in FACTS if f" for {a} " in f)),)


def test_unclassifiable_questions_say_why():
    v = classify_question(Q, FACTS, ["Flint"], "S1_R1_O2")
    assert v.label is None and "not co-temporal" in v.reason
    v = classify_question(Q, FACTS, ["Zeta Corp"], "S1_R1_O2")
    assert v.label is None and "no fact states the answer 'Zeta Corp'" in v.reason
    v = classify_question(Q.replace("Acme", "Apex"), FACTS, ["Bolt"], "S1_R1_O2")
    assert v.label is None and "no fact matches the anchor" in v.reason
    facts = [FACTS[0].replace("from 1990 to 2000", "since 1990"), *FACTS[1:]]
    v = classify_question(Q, facts, ["Bolt"], "S1_R1_O2")
    assert v.label is None and "anchor time expression unparsed" in v.reason and v.unparsed == (0,)


def test_semantics_differ_at_year_precision_ends():
    # Wikidata order: "2000" (= 2000-00-00) is before "March, 2000", so the answer sticks out -> overlap;
    # read as whole periods, "2000" runs to December 31 and contains March -> during.
    facts = ["Ann works for Acme from 1990 to 2000.", "Ann works for Bolt from 1995 to March, 2000."]
    assert classify_question(Q, facts, ["Bolt"]).label == "overlap"
    assert classify_question(Q, facts, ["Bolt"], semantics="calendar").label == "during"


def test_who_questions_and_several_anchor_terms():
    facts = ["Bo plays for Reds from 1990 to 1994.", "Cy plays for Reds from 1992 to 1993.",
             "Di plays for Reds from 1993 to 1999.", "Cy plays for Blues from 1990 to 1994.",
             "Bo plays for Reds from 2001 to 2003.", "Ed plays for Reds from 2002 to 2009."]
    q = "While Bo was playing for Reds, who was also playing for Reds simultaneously?"
    v = classify_question(q, facts, ["Cy", "Di", "Ed"], "S2_R1_O1")
    assert v.anchor == (0, 4)  # two terms: each answer relates to whichever it meets
    assert v.relations == {"Cy": ("during",), "Di": ("overlap",), "Ed": ("overlap",)} and v.label == "mix"
    assert v.answer_facts["Cy"] == (1,)  # not Cy's Blues fact


def test_point_fact_restating_a_span_is_ignored():
    facts = ["Ann works for Acme from 2016 to 2019.", "Ann is a member of the Reds from September, 2015 to 2017.",
             "Ann is a member of the Reds in 2017."]
    q = "While Ann was working for Acme, which political party did Ann belong to at the same time?"
    v = classify_question(q, facts, ["Reds"], "S1_R2_O2")
    assert v.answer_facts == {"Reds": (1,)} and v.label == "overlap"


def test_classifier_does_not_need_the_triple_element():
    v = classify_question(Q, FACTS, ["Cord", "Ember"])
    assert v.label == "mix"


# ---------------------------------------------------------------------------------------------
# the audit on the shared data (numbers pinned: they are the ones the README reports)


@pytest.fixture(scope="module")
def report():
    return audit(COTEMP)


@needs_cotemp
def test_audit_agreement_on_shared_data(report):
    assert report["n"] == 2685 and report["facts"] == 50535
    assert report["agree"] == 2670  # 99.4%
    assert {c: (s["agree"], s["n"]) for c, s in report["per_category"].items()} == {
        "equal": (436, 436), "overlap": (651, 653), "during": (1032, 1033), "mix": (551, 563)}
    assert report["unclassified"] == 0 and report["unparsed_time_expressions"] == 0
    assert len(report["inverted_spans"]) == 2
    assert report["other_semantics"]["calendar"]["agree"] == 2584
    assert len(report["disagreements"]) == 15
    d = report["disagreements"][0]
    assert set(d) >= {"id", "category", "predicted", "reason", "question", "source"}
    assert d["reason"].startswith("answers relate to the anchor as")


@needs_cotemp
def test_format_audit(report):
    text = format_audit(report, show=3)
    assert "2,670 / 2,685 = 99.4% agree" in text and "disagreements (15, showing 3)" in text
    assert text.count("    why: ") == 3
    assert format_audit(report, show=None).count("    why: ") == 15


@needs_cotemp
def test_audit_command(tmp_path, capsys):
    out = tmp_path / "audit.json"
    assert main(["audit", "cotemp", str(COTEMP), "--show", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dataset \\ rules" in printed and "time expressions not parsed: 0" in printed
    assert printed.count("    why: ") == 1
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["agree"] == 2670 and len(saved["disagreements"]) == 15
    assert main(["audit", "cotemp", str(tmp_path / "nope")]) == 1


def test_audit_counts_unparsed_and_lists_disagreements(tmp_path):
    row = {"index": 0, "triple_element": "S1_R1_O2", "question": Q, "facts": FACTS + ["Ann works for Kilo circa 1990."],
           "answer": ["Cord"]}
    for cat in ("equal", "overlap", "during", "mix"):
        (tmp_path / f"{cat}.json").write_text(json.dumps(row) + "\n", encoding="utf-8")
    r = audit(tmp_path)
    assert r["n"] == 4 and r["agree"] == 1 and r["unparsed_time_expressions"] == 4
    assert {d["category"] for d in r["disagreements"]} == {"equal", "overlap", "mix"}
    assert all(d["predicted"] == "during" for d in r["disagreements"])
