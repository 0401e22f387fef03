"""The CoTemp-style generator: the rules agree with it, answers re-derive independently, it builds."""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tracekd.cli import main
from tracekd.datasets import DATASETS
from tracekd.datasets.cotemp_rules import classify_question
from tracekd.io import read_records, sha256_file
from tracekd.records import Judgement
from tracekd.synth.cotemp import CATEGORIES, TRIPLE_ELEMENTS, generate

N = 2500  # per category: the property tests run over 10,000 generated questions
N_BUILD = 250  # per category for the build + oracle check


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    return generate(N, seed=0)


# ---------------------------------------------------------------------------------------------
# an independent reading of the text: own regexes, datetime periods (each date = the whole
# year/month/day it names), own relation logic


_REL = {"holds the position of": "position", "is a member of the": "member", "works for": "work",
        "worked for": "work", "attended": "attend", "plays for": "play"}
_FACT = re.compile(r"^(.+?) (" + "|".join(_REL) + r") (.+) (?:in (.+?)|from (.+?) to (.+?))\.$")
_Q_WHILE = re.compile(r"^While (.+?) (was working for|was holding the position of|was a member of|attended|"
                      r"was playing for) (.+?), (.+)$")
_Q_WHICH = re.compile(r"^which (employer|position|political party|school|team) (?:did|was) (.+?) "
                      r"(?:work for|hold|belong to|attend|attending|play for) ")
_NOUN = {"employer": "work", "position": "position", "political party": "member", "school": "attend", "team": "play"}
_WHILE_REL = {"was working for": "work", "was holding the position of": "position", "was a member of": "member",
              "attended": "attend", "was playing for": "play"}


def _period(text: str) -> tuple[dt.date, dt.date]:
    for fmt, unit in (("%B %d, %Y", "day"), ("%B, %Y", "month"), ("%Y", "year")):
        try:
            d = dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        if unit == "day":
            return d, d
        if unit == "month":
            return d, d.replace(day=calendar.monthrange(d.year, d.month)[1])
        return d, d.replace(month=12, day=31)
    raise AssertionError(f"unparseable date {text!r}")


def _wikidata(text: str) -> tuple[int, int, int]:
    """A date as (year, month, day) with an unstated part = 0 (the order CoTemp's dates follow)."""
    for fmt, parts in (("%B %d, %Y", 3), ("%B, %Y", 2), ("%Y", 1)):
        try:
            d = dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        return (d.year, d.month if parts > 1 else 0, d.day if parts > 2 else 0)
    raise AssertionError(f"unparseable date {text!r}")


def _fact(text: str) -> dict:
    m = _FACT.match(text)
    assert m, text
    s, rel, o, at, a, b = m.groups()
    lo, hi = (_period(at) if at else (_period(a)[0], _period(b)[1]))
    return {"s": s, "rel": _REL[rel], "o": o, "lo": lo, "hi": hi}


def _relation(x: dict, y: dict) -> str:
    if (x["lo"], x["hi"]) == (y["lo"], y["hi"]):
        return "equal"
    if x["hi"] < y["lo"] or y["hi"] < x["lo"]:
        return "disjoint"
    if (y["lo"] <= x["lo"] and x["hi"] <= y["hi"]) or (x["lo"] <= y["lo"] and y["hi"] <= x["hi"]):
        return "during"
    return "overlap"


def rederive(row: dict) -> tuple[list[str], str]:
    """Gold answers and category from the question and facts alone."""
    m = _Q_WHILE.match(row["question"])
    assert m, row["question"]
    s, rel_text, o, rest = m.groups()
    rel = _WHILE_REL[rel_text]
    facts = [_fact(f) for f in row["facts"]]
    anchors = [f for f in facts if f["s"] == s and f["rel"] == rel and f["o"] == o]
    assert len(anchors) == 1, row
    anchor = anchors[0]
    if rest.startswith("who"):
        asked = [f for f in facts if f is not anchor and f["rel"] == rel and f["o"] == o]
        key = "s"
    else:
        w = _Q_WHICH.match(rest)
        assert w, rest
        asked = [f for f in facts if f["s"] == w.group(2) and f["rel"] == _NOUN[w.group(1)] and f is not anchor]
        key = "o"
    rels = {f[key]: _relation(f, anchor) for f in asked}
    gold = [k for k, r in rels.items() if r != "disjoint"]
    kinds = {r for r in rels.values() if r != "disjoint"}
    return gold, (kinds.pop() if len(kinds) == 1 else "mix")


# ---------------------------------------------------------------------------------------------


def test_shape(rows):
    assert {c: len(v) for c, v in rows.items()} == {c: N for c in CATEGORIES}
    for c, items in rows.items():
        assert [r["index"] for r in items] == list(range(N))
        assert {r["triple_element"] for r in items} == set(TRIPLE_ELEMENTS)
        for r in items:
            assert sorted(r) == ["answer", "facts", "index", "question", "triple_element"]
            assert 8 <= len(r["facts"]) <= 14 and len(set(r["facts"])) == len(r["facts"])
            assert r["answer"] and len(set(r["answer"])) == len(r["answer"])
    assert all(len(r["answer"]) >= 2 for r in rows["mix"])
    assert Counter(len(r["answer"]) for r in rows["equal"])[1] > N / 2


def test_every_span_is_ordered(rows):
    spans = 0
    backwards = []
    for items in rows.values():
        for r in items:
            for text in r["facts"]:
                m = _FACT.match(text)
                assert m, text
                a, b = m.group(5), m.group(6)
                if a is None:
                    continue
                spans += 1
                # neither reading may end before it starts: whole periods, nor unknown parts = 0
                if _period(b)[1] < _period(a)[0] or _wikidata(b) < _wikidata(a):
                    backwards.append(text)
    assert spans > 4 * N * 3
    assert backwards == []


def test_the_span_check_can_fail():
    assert _period("June, 1905")[1] < _period("October 1, 1905")[0]
    assert _wikidata("1905") < _wikidata("June, 1905") and not _period("1905")[1] < _period("June, 1905")[0]


def test_gold_answers_rederived_independently(rows):
    for category, items in rows.items():
        for r in items:
            gold, label = rederive(r)
            assert sorted(gold) == sorted(r["answer"]), r
            assert label == category, r


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory, rows) -> Path:
    out = tmp_path_factory.mktemp("synth")
    assert main(["synth", "cotemp", "--n", str(N), "--seed", "0", "--out", str(out)]) == 0
    first = json.loads((out / "mix.json").read_text(encoding="utf-8").splitlines()[0])
    assert first == rows["mix"][0]
    return out


def test_validate_and_audit_find_no_problem_and_full_agreement(synth_dir, tmp_path, capsys):
    assert main(["validate", "--dataset", "cotemp", str(synth_dir)]) == 0  # manifest.json is not a data file
    assert capsys.readouterr().out.splitlines() == [f"cotemp: no problems ({synth_dir})"]
    report = tmp_path / "audit.json"
    assert main(["audit", "cotemp", str(synth_dir), "--show", "0", "--json", str(report)]) == 0
    a = json.loads(report.read_text())
    assert (a["n"], a["agree"], a["unclassified"]) == (4 * N, 4 * N, 0)
    assert a["other_semantics"]["calendar"]["agree"] == 4 * N
    assert a["unparsed_time_expressions"] == 0 and a["inverted_spans"] == []


def test_rule_classifier_sees_every_fact(rows):
    sample = [r for items in rows.values() for r in items[:100]]
    for r in sample:
        v = classify_question(r["question"], r["facts"], r["answer"], r["triple_element"])
        assert not v.unparsed and not v.inverted, r


def test_rederive_can_fail():
    row = generate(1, seed=5)["during"][0]
    gold, _ = rederive(row)
    assert sorted(gold) == sorted(row["answer"])
    broken = dict(row, answer=row["answer"] + ["Somebody Else"])
    assert sorted(rederive(broken)[0]) != sorted(broken["answer"])


def test_same_seed_same_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, "3"), (b, "3"), (c, "4")):
        assert main(["synth", "cotemp", "--n", "40", "--seed", seed, "--out", str(out)]) == 0
    for cat in CATEGORIES:
        assert sha256_file(a / f"{cat}.json") == sha256_file(b / f"{cat}.json")
        assert sha256_file(a / f"{cat}.json") != sha256_file(c / f"{cat}.json")
    # a row does not depend on how many are asked for
    assert generate(3, seed=3)["mix"] == generate(40, seed=3)["mix"][:3]


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth-small")
    assert main(["synth", "cotemp", "--n", str(N_BUILD), "--seed", "0", "--out", str(out)]) == 0
    return out


def test_loads_through_the_cotemp_loader(synth_dir):
    splits = DATASETS.get("cotemp").load_splits(synth_dir)
    assert len(splits["train"]) == 4 * N * 4 // 5 and len(splits["test"]) == 4 * N // 5
    assert not getattr(splits, "excluded", [])
    for ex in splits["test"][:50]:
        assert ex.gold.evidence  # every answer is mentioned by a fact
        assert ex.meta["category"] == ex.gold.label


def test_builds_all_arms_and_passes_the_oracle(small_dir, tmp_path):
    build = tmp_path / "build"
    assert main(["build", "--dataset", "cotemp", "--data", str(small_dir), "--arms",
                 "vanilla,correct,incorrect,incorrect-class,incorrect-evidence", "--seed", "0",
                 "--out", str(build), "--quiet"]) == 0
    m = json.loads((build / "manifest.json").read_text())
    assert m["counts"]["train"]["kept"] == 4 * N_BUILD * 4 // 5 and m["counts"]["test"]["kept"] == 4 * N_BUILD // 5
    expected = {"correct": (1.0, 1.0), "incorrect": (0.0, 0.0), "incorrect-class": (0.0, 1.0),
                "incorrect-evidence": (1.0, 0.0)}
    for arm, (cls, ev) in expected.items():
        out = tmp_path / f"scored-{arm}"
        assert main(["score", str(build / arm / "test.jsonl"), "--examples", str(build / "examples" / "test.jsonl"),
                     "--text-field", "completion.0.content", "--finish-field", "none", "--out", str(out)]) == 0
        js = read_records(out / "judgements.jsonl", Judgement)
        n = len(js)
        assert n == 4 * N_BUILD // 5
        assert sum(bool(j.label_ok) for j in js) / n == cls, arm
        assert sum(bool(j.evidence_exact) for j in js) / n == ev, arm
        assert all(j.answer_ok for j in js), arm
