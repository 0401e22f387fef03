"""The cotemp-official compatibility scorer, on CoTemp rows worked through by hand."""

from __future__ import annotations

import pytest

from tracekd.errors import DataError
from tracekd.records import Decomposition, Example
from tracekd.score.answer import get_scorer
from tracekd.score.cotemp_official import (candidates, collect, compare, extract_prediction,
                                           fact_entity, score, score_text)

# mix.json row 0 (S1_R1_O2): two gold answers
MIX0 = dict(
    question="While Louis-Albert Vachon was holding the position of auxiliary bishop, which position "
             "did Louis-Albert Vachon concurrently?",
    facts=[
        "Louis-Albert Vachon holds the position of High Representative of the Union for Foreign "
        "Affairs and Security Policy from January 13, 2005 to June 20, 2006.",
        "Louis-Albert Vachon holds the position of OSCE Representative on Freedom of the Media from "
        "1997 to 2001.",
        "Louis-Albert Vachon holds the position of Holy Roman Emperor in September, 2004.",
        "Louis-Albert Vachon holds the position of titular bishop from April 4, 1977 to March 20, 1981.",
        "Louis-Albert Vachon holds the position of auxiliary bishop from April 4, 1977 to March 20, 1981.",
        "Louis-Albert Vachon holds the position of Catholic bishop from May 14, 1977 to September 29, "
        "2006.",
    ],
    golds=["titular bishop", "Catholic bishop"],
    triple="S1_R1_O2",
)

# equal.json row 369 (S2_R1_O1): the answer is another subject of the same relation and object
EQ369 = dict(
    question="While Ifeoma Mabel Onyemelukwe attended University of Nigeria, who also attended "
             "University of Nigeria during the same time period?",
    facts=[
        "Ifeoma Mabel Onyemelukwe attended University of Nigeria from 1972 to 1976.",
        "William Boone attended University of Nigeria from February 10, 1987 to November 10, 1987.",
        "Sidney Hemming attended University of Nigeria in October, 1982.",
        "Mads Tofte works for University of Nigeria from 1989 to 1990.",
        "Mary Odili attended University of Nigeria from 1972 to 1976.",
    ],
    golds=["Mary Odili"],
    triple="S2_R1_O1",
)

# during.json row 0 (S2_R2_O2): both subjects occur in the question
DUR0 = dict(
    question="While Charles III of the United Kingdom attended Britannia Royal Naval College, which "
             "position did Éamon de Valera hold during the same time period?",
    facts=[
        "Charles III of the United Kingdom holds the position of Duke of Lancaster in September 8, 2022.",
        "Éamon de Valera holds the position of President of Dáil Éireann from April 1, 1919 to "
        "January 9, 1922.",
        "Charles III of the United Kingdom attended Trinity College from October, 1967 to June 23, 1970.",
        "Éamon de Valera is a member of the Sinn Féin in 1926.",
        "Charles III of the United Kingdom attended Britannia Royal Naval College in 1971.",
        "Éamon de Valera holds the position of President of Ireland from June 25, 1959 to June 24, 1973.",
    ],
    golds=["President of Ireland"],
    triple="S2_R2_O2",
)


def run(row: dict, text: str):
    return score_text(text, row["question"], row["facts"], row["golds"], row["triple"])


# ------------------------------------------------------------------ step 1-3: answer extraction

@pytest.mark.parametrize("text, expected", [
    ("<think>It is X</think> <answer>Titular Bishop</answer>", "titular bishop"),
    ("<ANSWER>A</ANSWER> and <answer>b</answer>", "a"),                       # first tag, any case
    ("Mary Odili\nAnswer the question based on the context: ...", "mary odili\n"),
    ("The answer is Mary Odili", "is mary odili"),
    ("so the answer is x and the answer is y", "is x and the"),              # split(...)[1]
    ("Answer: Mary Odili", " mary odili"),
    ("assistant\nI think Mary Odili", "\ni  mary odili"),
    ("<think>hmm</think> Mary Odili", "<>hmm</> mary odili"),               # no answer tag
    ("<answer>Mary Odili", "mary odili"),                                   # unclosed: to the end of the text
])
def test_extract_prediction(text, expected):
    assert extract_prediction(text) == expected


# ------------------------------------------------------------------ step 4: candidates from facts

@pytest.mark.parametrize("fact, subject, obj", [
    ("Louis-Albert Vachon holds the position of titular bishop from April 4, 1977 to March 20, 1981.",
     "louis-albert vachon", "titular bishop"),
    ("Éamon de Valera is a member of the Sinn Féin in 1926.", "éamon de valera", "sinn féin"),
    ("Emma Lofdahl was a member of the Liberals in March 11, 2019.", "emma lofdahl", "liberals"),
    ("Jan Trøjborg worked for Federal Reserve Bank of New York in 2002.", "jan trøjborg",
     "federal reserve bank of new york"),
    ("Neill Roberts played for Durban City F.C. from 1977 to 1978.", "neill roberts", "durban city f.c."),
    ("Ann held the position of mayor from 1999.", "ann", "mayor"),             # pattern 3: no period
    ("Ann holds the position of mayor.", "ann", "mayor"),                     # pattern 4
    ("Ann attended School in Town from 1990 to 1995.", "ann", "school in town"),  # pattern 1 first
    ("Ann attended School in Town in 1990.", "ann", "school"),               # non-greedy group 2
    ("Acme is owned by Bob Corp from 2001 to 2003.", "acme", "bob corp"),
    ("Ann is the chair of Acme in 2001.", "ann", "acme"),
    ("Ann is the head of Acme from 2001 to 2002.", "ann", "acme"),
    # the first keyword in the list decides the relation, even when "work" occurs too
    ("Ann holds the position of Head of Network Security in 2001.", "ann", "head of network security"),
])
def test_fact_entity(fact, subject, obj):
    assert fact_entity(fact, use_subject=True) == subject
    assert fact_entity(fact, use_subject=False) == obj


@pytest.mark.parametrize("fact", [
    "Éamon de Valera is a member of Sinn Féin in 1926.",     # relation needs "is a member of the"
    "Ann plays for the position of Z in 2001.",              # first keyword's patterns fail: no fallback
    "Ann lives in Paris from 2001 to 2002.",                 # no keyword
    "Ann holds the position of mayor",                       # no period, no from/in
])
def test_fact_entity_no_candidate(fact):
    assert fact_entity(fact, use_subject=True) is None


def test_candidates_subject_vs_object_and_order():
    # S1_R1_O2 is not S2_R1_O1 -> subjects: all facts give the same subject
    assert candidates(MIX0["facts"], MIX0["golds"], use_subject=True) == [
        "louis-albert vachon", "catholic bishop", "titular bishop"]
    # S2_R1_O1 -> objects
    assert candidates(EQ369["facts"], EQ369["golds"], use_subject=False) == [
        "university of nigeria", "mary odili"]
    # equal length: alphabetical, so the result never depends on hashing
    assert candidates([], ["bb", "aa", "cc", "aa"], use_subject=True) == ["aa", "bb", "cc"]


# ------------------------------------------------------------------ steps 5-7, whole rows

def test_mix_row_both_answers_in_a_json_list_is_correct():
    s = run(MIX0, '<think>...</think> <answer>["titular bishop", "Catholic bishop"]</answer>')
    assert (s.correct, s.f1) == (True, 1.0)
    assert s.extra["collected"] == ["catholic bishop", "titular bishop"]


def test_mix_row_one_of_two_answers():
    # candidates: "louis-albert vachon" (in question and prediction: removed, skipped),
    # "catholic bishop" (absent), "titular bishop" (collected) -> P 1, R 1/2
    s = run(MIX0, "Louis-Albert Vachon held the position of titular bishop.")
    assert s.extra["collected"] == ["titular bishop"]
    assert not s.correct
    assert s.f1 == pytest.approx(2 / 3)
    assert (s.extra["precision"], s.extra["recall"]) == (1.0, 0.5)


def test_mix_row_objects_are_not_candidates_so_extra_positions_go_unnoticed():
    # with subjects as candidates, "auxiliary bishop" is no candidate and is silently ignored
    s = run(MIX0, "auxiliary bishop, titular bishop and Catholic bishop")
    assert s.correct


def test_think_word_is_deleted_without_answer_tag():
    s = run(MIX0, "<think>the position is titular bishop</think> catholic bishop")
    assert s.correct


def test_s2_r1_o1_row_object_in_question_is_skipped():
    s = run(EQ369, "Mary Odili attended University of Nigeria from 1972 to 1976.")
    assert s.correct and s.extra["collected"] == ["mary odili"]


def test_nothing_found_falls_back_to_the_whole_prediction():
    s = run(EQ369, "Sidney  Hemming!")
    assert s.extra["collected"] == ["sidney  hemming!"]
    assert (s.correct, s.f1) == (False, 0.0)


def test_fallback_is_the_prediction_after_the_skipped_candidate_is_removed():
    # "university of nigeria" is in the question: removed; nothing collected -> the rest
    s = run(EQ369, "University of Nigeria")
    assert s.extra["collected"] == [""]
    assert not s.correct


def test_only_the_first_question_candidate_is_skipped():
    # both subjects are in the question; the longest is skipped, the next one is collected
    s = run(DUR0, "Charles III of the United Kingdom and Éamon de Valera")
    assert s.extra["collected"] == ["éamon de valera"]
    assert (s.correct, s.f1) == (False, 0.0)
    s = run(DUR0, "Éamon de Valera held the position of President of Ireland.")
    assert s.correct and s.extra["collected"] == ["president of ireland"]


def test_collect_removes_every_occurrence():
    assert collect("nkt nkt orange", "q", ["orange", "nkt"]) == ["orange", "nkt"]
    assert collect("abc", "q", ["abc", "b"]) == ["abc"]       # "b" went with "abc"


def test_compare_deduplicates_before_normalising_like_the_benchmark():
    assert compare(["u.s.", "u.s."], ["U.S."]) == (True, 1.0, 1.0, 1.0)
    # two raw spellings of one answer stay two after normalisation: P 1/2, R 1
    correct, f1, p, r = compare(["u.s.", "us"], ["U.S."])
    assert (correct, p, r) == (False, 0.5, 1.0)
    assert f1 == pytest.approx(2 / 3)


def test_score_reads_the_example_and_is_registered():
    e = Example("cotemp/equal/369", "cotemp", "test", EQ369["question"], tuple(EQ369["facts"]),
                tuple(EQ369["golds"]), Decomposition("equal", (4,)),
                meta={"triple_element": "S2_R1_O1", "category": "equal"})
    scorer = get_scorer("cotemp-official")
    assert scorer is score
    assert scorer("<answer>Mary Odili</answer>", e).correct
    assert not scorer("<answer>William Boone</answer>", e).correct


def test_score_needs_triple_element():
    e = Example("cotemp/equal/1", "cotemp", "test", "q?", ("f.",), ("a",), Decomposition("equal", ()))
    with pytest.raises(DataError, match="triple_element"):
        score("a", e)
