"""Free-form trace measures on a hand-checked, R1-style CoTemp trace."""

from __future__ import annotations

from tracekd.records import Decomposition, Example
from tracekd.score.freeform import cut_at_sentence, line_overlap, measure, mentions_class, tokens, trace_text
from tracekd.teacher.prompts import load_prompts

CONTEXT = (
    "Jan Trøjborg works for Billund Airport from January 2, 2007 to December 3, 2010.",   # 0: anchor
    "Jan Trøjborg works for NKT from March 25, 2010 to May 6, 2012.",                    # 1: gold
    "Jan Trøjborg works for Vestas from 2013 to 2015.",                                   # 2
    "Jan Trøjborg works for Danfoss from March 25, 2010 to May 6, 2012.",                 # 3: gold
)
EX = Example("cotemp/overlap/7", "cotemp", "test",
             "While Jan Trøjborg was working for Billund Airport, which employer did Jan Trøjborg work for "
             "within the same time interval?", CONTEXT, ("NKT", "Danfoss"), Decomposition("overlap", (1, 3)))

TRACE = ("Okay, so the question asks about the period when Jan worked at Billund Airport, which is 2007 to 2010. "
         "Looking at the facts: Jan Trøjborg works for NKT from March 25, 2010 to May 6, 2012. "
         "That overlaps with the airport years at the end of 2010. "
         "Vestas was later, 2013 to 2015, so no. "
         "Hmm, what else? The employer was Danfoss in 2010 too.")


def test_hand_checked_measures_of_a_reasoning_trace():
    m = measure(TRACE, EX, load_prompts().class_synonyms)
    # sentence 2 quotes line 1 word for word (own word "nkt"); line 3 differs from it only in "danfoss", which
    # sentence 2 lacks, and the sentence naming Danfoss shares 2 of its 13 words: not mentioned; line 0 shares
    # 6 of 14 words with sentence 1 ("2007 to 2010"), line 2 4 of 9 with the Vestas sentence: not mentioned
    assert m.evidence_mentioned == (1,)
    assert (m.evidence_recall, m.evidence_precision, m.evidence_all) == (0.5, 1.0, False)
    assert m.class_mentioned  # "overlaps" is a listed synonym of overlap
    assert not measure(TRACE, EX).class_mentioned  # without synonyms: "overlap" itself never occurs
    assert m.tokens == len(tokens(TRACE))


def test_overlap_alone_would_take_a_fact_that_differs_only_in_its_entity():
    assert round(line_overlap(CONTEXT[3], TRACE), 4) == round(12 / 13, 4)  # all but "danfoss", in sentence 2
    assert round(line_overlap(CONTEXT[1], TRACE), 4) == 1.0
    both = TRACE + " Jan Trøjborg works for Danfoss from March 25, 2010 to May 6, 2012."
    assert measure(both, EX).evidence_mentioned == (1, 3) and measure(both, EX).evidence_all


def test_class_mentions_are_whole_words_and_synonyms_are_optional():
    assert not mentions_class("They are equally long.", "equal")
    assert mentions_class("At the same time as the anchor.", "equal", ["same time"])
    assert not mentions_class("At the same time as the anchor.", "equal")


def test_trace_text_and_cut():
    assert trace_text(f"<think>{TRACE}</think> <answer>NKT, Danfoss</answer>") == TRACE
    first_two = TRACE[: TRACE.index("2012.") + 5]
    n = len(tokens(first_two))
    assert cut_at_sentence(TRACE, n) == first_two and cut_at_sentence(TRACE, n + 5) == first_two
    assert cut_at_sentence(TRACE, n - 1) == TRACE[: TRACE.index("2010.") + 5]
