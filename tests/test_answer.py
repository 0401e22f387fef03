"""Answer normalisation, list parsing, strict set match, token F1 and the scorer registry."""

from __future__ import annotations

import json
import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracekd.errors import ConfigError
from tracekd.records import Decomposition, Example
from tracekd.registry import Registry
from tracekd.score import answer as A
from tracekd.score.answer import AnswerScore, get_scorer, parse_answer_list, scorer_names, strict_correct, token_f1
from tracekd.text import normalize_answer


def ex(*answers: str) -> Example:
    return Example("babi/qa8/test/0/5", "babi", "test", "What is Mary carrying?",
                   ("Mary took the apple.", "Mary got the football."), tuple(answers),
                   Decomposition("lists-sets", (0, 1)))


@pytest.mark.parametrize("raw, norm", [
    ("The Kitchen", "kitchen"),
    ("  an   apple. ", "apple"),
    ("Durban City F.C.", "durban city fc"),
    ("theatre", "theatre"),          # articles only as whole words
    ("A, an, the", ""),
    ("Sinn Féin", "sinn féin"),
])
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


@pytest.mark.parametrize("raw, items", [
    ('["apple", "football"]', ["apple", "football"]),
    ("['apple', 'football']", ["apple", "football"]),
    ("('apple', 'football')", ["('apple'", "'football')"]),  # tuples are not lists: split at comma
    ("[]", []),
    ('[" apple ", 3]', ["apple", "3"]),
    ("apple and football", ["apple", "football"]),
    ("apple, football", ["apple", "football"]),
    ("apple,football", ["apple", "football"]),
    ("milk, apple and football", ["milk", "apple", "football"]),
    ("milk, apple, and football", ["milk", "apple", "football"]),
    ("Apple AND football", ["Apple", "football"]),
    ("kitchen", ["kitchen"]),
    ("  kitchen \n", ["kitchen"]),
    ("[apple, football]", ["apple", "football"]),
    ("[apple", ["[apple"]),
    ("1,000", ["1,000"]),
    ("apple,, football,", ["apple", "football"]),
    ("", []),
])
def test_parse_answer_list(raw, items):
    assert parse_answer_list(raw) == items


@pytest.mark.parametrize("pred, golds, ok", [
    ("kitchen", ["kitchen"], True),
    ("The kitchen.", ["kitchen"], True),
    ("bedroom", ["kitchen"], False),
    ("kitchen bedroom", ["kitchen"], False),
    ('["football", "apple"]', ["apple", "football"], True),
    ("['football', 'apple']", ["apple", "football"], True),
    ("football and apple", ["apple", "football"], True),
    ("apple, football", ["apple", "football"], True),
    ("apple, apple and football", ["apple", "football"], True),   # repeats do not matter
    ("apple", ["apple", "football"], False),                       # a missing answer
    ("apple, football and milk", ["apple", "football"], False),    # an extra answer
    ('["apple"]', ["apple", "football"], False),
    ("nothing", ["nothing"], True),
    ("", ["nothing"], False),
    # an answer that itself contains a separator stays one answer when the gold says so
    ("Bosnia and Herzegovina", ["Bosnia and Herzegovina"], True),
    ("Bosnia and Herzegovina", ["Bosnia", "Herzegovina"], True),
    ("Bosnia and Herzegovina", ["Bosnia"], False),
    ("Minister for Housing, Planning and Local Government and Lord Chancellor",
     ["Minister for Housing, Planning and Local Government", "Lord Chancellor"], True),
    ("Minister for Housing, Planning and Local Government",
     ["Minister for Housing, Planning and Local Government", "Lord Chancellor"], False),
    ('["Minister for Housing, Planning and Local Government"]',
     ["Minister for Housing, Planning and Local Government"], True),
])
def test_strict_correct(pred, golds, ok):
    assert strict_correct(pred, golds) is ok


@pytest.mark.parametrize("pred, golds, f1", [
    ("the kitchen", ["kitchen"], 1.0),
    ("kitchen garden", ["kitchen"], 2 * 0.5 * 1.0 / 1.5),                 # P 1/2, R 1
    ("bedroom", ["kitchen"], 0.0),
    ("apple", ["apple", "football"], 2 * 1.0 * 0.5 / 1.5),                # P 1, R 1/2
    ("apple football milk", ["apple", "football"], 2 * (2 / 3) * 1.0 / (5 / 3)),  # P 2/3, R 1
    ("football and apple", ["apple", "football"], 1.0),                   # "and" is a separator
    ('["apple", "milk"]', ["apple", "football"], 0.5),                    # P 1/2, R 1/2
    ("Bosnia and Herzegovina", ["Bosnia and Herzegovina"], 1.0),
    ("the", ["kitchen"], 0.0),
    ("", [""], 1.0),
])
def test_token_f1(pred, golds, f1):
    assert token_f1(pred, golds) == pytest.approx(f1, abs=1e-12)


def test_strict_scorer_reads_answer_tag_and_reports_predicted_set():
    s = A.strict('<think>x</think> <answer>["football", "The apple"]</answer>', ex("apple", "football"))
    assert s == AnswerScore(True, 1.0)
    assert s.extra == {"predicted": ["apple", "football"]}
    s = A.strict("apple", ex("apple", "football"))
    assert not s.correct and s.f1 == pytest.approx(2 / 3)


def test_answer_score_is_frozen():
    s = AnswerScore(True, 1.0)
    assert s.extra == {}
    with pytest.raises(AttributeError):
        s.correct = False  # type: ignore[misc]


def test_registry_names_and_plain_scorers():
    assert scorer_names() == ["cotemp-official", "marco", "strict"]
    assert get_scorer("strict") is A.strict
    from tracekd.score import cotemp_official
    assert get_scorer("cotemp-official") is cotemp_official.score


def test_registry_unknown_name_suggests():
    with pytest.raises(ConfigError, match=r"unknown answer scorer 'stirct'; did you mean 'strict'"):
        get_scorer("stirct")
    with pytest.raises(ConfigError, match="takes no argument"):
        get_scorer("cotemp-official:x")


def test_registry_marco_factory_gets_the_argument(monkeypatch):
    calls = []

    def make_scorer(criterion=None):
        calls.append(criterion)
        return lambda prediction, example: AnswerScore(False, 0.0, {"criterion": criterion})

    fake = types.ModuleType("tracekd.score.marco")
    fake.make_scorer = make_scorer
    monkeypatch.setitem(sys.modules, "tracekd.score.marco", fake)
    assert get_scorer("marco:rougeL>=0.5")("x", ex("y")).extra == {"criterion": "rougeL>=0.5"}
    get_scorer("marco")
    assert calls == ["rougeL>=0.5", None]


def test_registry_missing_module_is_a_config_error(monkeypatch):
    scorers = Registry("answer scorer")
    scorers.add("nowhere", "tracekd.score.no_such_module:make")
    monkeypatch.setattr(A, "SCORERS", scorers)
    with pytest.raises(ConfigError, match="'nowhere' is not available"):
        get_scorer("nowhere")


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8).filter(
    lambda w: w not in {"a", "an", "the", "and"})


@settings(max_examples=200, deadline=None)
@given(st.lists(words, min_size=1, max_size=5, unique=True), st.randoms())
def test_any_rendering_of_the_gold_set_is_correct_and_a_missing_one_is_not(golds, rnd):
    shuffled = golds[:]
    rnd.shuffle(shuffled)
    renderings = [json.dumps(shuffled), repr(shuffled), ", ".join(shuffled),
                  " and ".join(shuffled)]
    if len(shuffled) > 1:
        renderings.append(", ".join(shuffled[:-1]) + " and " + shuffled[-1])
    for text in renderings:
        assert strict_correct(text, golds), text
        assert token_f1(text, golds) == 1.0
        assert parse_answer_list(text) == shuffled
    if len(golds) > 1:
        assert not strict_correct(json.dumps(shuffled[1:]), golds)
        assert token_f1(json.dumps(shuffled[1:]), golds) < 1.0
    assert not strict_correct(json.dumps(shuffled + ["zzzzzzzzz"]), golds)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.lists(st.text(max_size=20), max_size=4))
def test_scorers_never_crash_and_f1_is_bounded(pred, golds):
    f1 = token_f1(pred, golds)
    assert 0.0 <= f1 <= 1.0
    s = A.strict(pred, ex(*golds))
    assert s.correct == strict_correct(pred, golds)
    if s.correct:  # a correct answer names every gold answer and nothing else
        assert set(s.extra["predicted"]) == {normalize_answer(g) for g in golds} - {""}
