"""The MS MARCO answer scorer: metrics against hand-computed values, criteria, alternatives."""

from __future__ import annotations

import pytest

from tracekd.errors import ConfigError
from tracekd.records import Decomposition, Example
from tracekd.score.answer import AnswerScore, get_scorer
from tracekd.score.marco import bleu1, make_scorer, metrics, parse_criterion, rouge_l, squad_f1


def _ex(*refs: str, meta: bool = True) -> Example:
    return Example("marco/test/1", "marco", "test", "q", ("p",), (refs[0],), Decomposition("ENTITY", (0,)),
                   meta={"references": list(refs)} if meta else {})


def test_rouge_l_hand_computed():
    # tokens after normalisation: [cat, was, found, under, bed] vs [cat, was, under, bed]
    # LCS = 4, P = 4/5, R = 4/4, F = 2PR/(P+R) = 8/9
    assert rouge_l("The cat was found under the bed", "the cat was under the bed") == pytest.approx(8 / 9)
    assert rouge_l("bed", "cat") == 0.0
    # non-ASCII tokens count (rouge-score's own tokenizer would drop them and score 0)
    assert rouge_l("円", "円") == 1.0
    assert rouge_l("Łódź", "Łódź, Poland") == pytest.approx(2 / 3)


def test_bleu1_hand_computed():
    # unigram precision 1/3 (one of three words in the reference), no brevity penalty (hyp longer)
    assert bleu1("paris france capital", ["paris"]) == pytest.approx(1 / 3)
    # precision 1, brevity penalty exp(1 - 2/1)
    assert bleu1("paris", ["paris france"]) == pytest.approx(0.36787944, abs=1e-6)
    # several references: clipped counts over all, closest reference length
    assert bleu1("paris france", ["paris", "in france"]) == pytest.approx(1.0)
    assert bleu1("", ["x"]) == 0.0


def test_em_and_f1():
    assert squad_f1("the Eiffel Tower", "Eiffel Tower, Paris") == pytest.approx(0.8)
    m = metrics("In Paris!", ["Paris, France", "in paris"])
    assert m["em"] == 1.0 and m["f1"] == 1.0 and m["best_reference"] == "in paris"


def test_best_of_alternatives_and_extra():
    ex = _ex("8,849 metres", "29,032 feet")
    s = make_scorer()("29,032 feet", ex)
    assert isinstance(s, AnswerScore) and s.correct and s.f1 == 1.0
    assert s.extra["criterion"] == "em" and s.extra["best_reference"] == "29,032 feet"
    assert set(s.extra) == {"criterion", "em", "f1", "rougeL", "bleu1", "best_reference"}
    # without meta["references"] the example's answers are the references
    assert make_scorer()("8,849 metres", _ex("8,849 metres", meta=False)).correct
    # a whole generation is scored on its <answer> text
    assert make_scorer()("<think>x\ny</think> <answer>29,032 feet</answer>", ex).correct


def test_criteria_change_the_binary_verdict_only():
    ex = _ex("The Eiffel Tower is in Paris, France.")
    pred = "The Eiffel Tower is in Paris."
    em, rl, f1, b1 = (make_scorer(c)(pred, ex) for c in ("em", "rougeL>=0.5", "f1>0.95", "bleu1>=0.3"))
    assert not em.correct and rl.correct and not f1.correct and b1.correct
    assert em.f1 == rl.f1 == f1.f1 == b1.f1 == pytest.approx(10 / 11)  # P = 5/5, R = 5/6
    assert [s.extra["criterion"] for s in (em, rl, f1, b1)] == ["em", "rougeL>=0.5", "f1>0.95", "bleu1>=0.3"]
    # thresholds are inclusive with >= and strict with >
    exact = make_scorer("f1>=1")(ex.answers[0], ex)
    strict = make_scorer("f1>1")(ex.answers[0], ex)
    assert exact.correct and not strict.correct


def test_get_scorer_names():
    assert get_scorer("marco").criterion == "em"
    assert get_scorer("marco:rougeL>=0.5").criterion == "rougeL>=0.5"
    assert get_scorer("marco:ROUGEL>=0.5")("paris", _ex("Paris")).correct


@pytest.mark.parametrize("bad, message", [
    ("rouge>=0.5", "did you mean 'rougeL'"),
    ("f1", "needs a threshold"),
    ("em>=0.5", "takes no threshold"),
    ("rougeL>=1.5", r"must be in \[0, 1\]"),
    ("rougeL=0.5", "bad MARCO criterion"),
])
def test_bad_criteria(bad, message):
    with pytest.raises(ConfigError, match=message):
        parse_criterion(bad)
    with pytest.raises(ConfigError, match=message):
        get_scorer(f"marco:{bad}")
