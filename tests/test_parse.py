"""The parser: tolerant reading, explicit statuses, and fuzzing (it never raises)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracekd.records import STATUSES
from tracekd.traces.parse import ParsedOutput, parse, parse_evidence
from tracekd.traces.templates import get_template, render_answer, render_trace

QA = get_template("reference-qa")
CT = get_template("reference-cotemp")
CLS = "The category of the question represents what is being asked in that question. The category of the question asked is: "
EVI = "I need to use the following text to answer the question: "
GOOD = f'<think>{CLS}counting.\n{EVI}["Mary took the milk.", "Mary went home."]</think> <answer>one</answer>'
LINES = ("Mary took the milk.", "Mary went home.")


def test_reference_output_parses():
    p = parse(GOOD, QA)
    assert p == ParsedOutput("ok", f'{CLS}counting.\n{EVI}["Mary took the milk.", "Mary went home."]', "one",
                             "counting", LINES)
    assert parse(GOOD, "reference-qa", finish_reason="stop") == p
    # a closed answer is complete even when the generation hit its limit afterwards
    assert parse(GOOD, QA, finish_reason="length").status == "ok"


@pytest.mark.parametrize("prefix", ["assistant\n", "Assistant: ", "  ASSISTANT:\n\n", "assistant",
                                    "<|im_start|>assistant\n", "<|start_header_id|>assistant<|end_header_id|>\n\n"])
@pytest.mark.parametrize("suffix", ["", "\n", "<|eot_id|>", "<|im_end|>\n", "</s>"])
def test_role_word_and_special_tokens(prefix, suffix):
    p = parse(prefix + GOOD + suffix, QA)
    assert (p.status, p.label, p.evidence, p.answer) == ("ok", "counting", LINES, "one")


def test_role_word_is_not_stripped_from_a_real_answer():
    assert parse("Assistant managers earn more.", QA).answer == "Assistant managers earn more."
    assert parse("assistant\nkitchen", QA).answer == "kitchen"


@pytest.mark.parametrize("text", [
    GOOD.replace("</think>", ""),                      # think ends at <answer>
    GOOD.replace("</answer>", ""),                     # answer runs to the end
    GOOD.replace("</think>", "").replace("</answer>", ""),
    GOOD.replace("<think>", ""),                       # opened by the chat template in the prompt
    GOOD.replace("<think>", "< THINK >").replace("</answer>", "</ANSWER>"),
    GOOD.replace("<answer>one</answer>", "one"),        # untagged answer after the trace
    GOOD.replace(" <answer>", "\n\n<answer>\n").replace("</answer>", "\n</answer>\n"),
    GOOD.replace("counting.\n", "counting. "),          # both sentences on one line
    GOOD.replace("counting.", "counting"),              # no final period
    GOOD.replace(CLS, CLS.lower().replace(" ", "  ")),  # case and spacing of the fixed text
    GOOD.replace('["Mary took the milk.", "Mary went home."]', "['Mary took the milk.', 'Mary went home.']"),
    GOOD.replace('["Mary took the milk.", "Mary went home."]', '"Mary took the milk.", "Mary went home."'),
    GOOD.replace('["Mary took the milk.", "Mary went home."]', "\n- Mary took the milk.\n- Mary went home.\n"),
    GOOD.replace('["Mary took the milk.", "Mary went home."]', "\n1. 'Mary took the milk.'\n2) \"Mary went home.\"\n"),
    GOOD.replace('["Mary took the milk.", "Mary went home."]', '["Mary took the milk.", "Mary went home."] done.'),
    f"<think>{EVI}['Mary took the milk.', 'Mary went home.']\n{CLS}counting.</think><answer>one</answer>",
])
def test_tolerant_variants(text):
    p = parse(text, QA)
    assert (p.status, p.label, p.evidence, p.answer) == ("ok", "counting", LINES, "one"), text


def test_statuses_and_precedence():
    assert parse("", QA) == ParsedOutput("empty")
    assert parse(" \n\t ", QA, finish_reason="length").status == "empty"
    assert parse("assistant:\n", QA).status == "empty"
    half = GOOD[: GOOD.index("[") + 8]
    p = parse(half, QA, finish_reason="length")
    assert p.status == "truncated" and p.label == "counting" and p.answer is None
    assert parse("kitchen", QA, finish_reason="length").status == "truncated"  # a vanilla answer cut off
    assert parse(half, QA).status == "no_answer"  # same text, stopped on its own
    p = parse("<answer>kitchen</answer>", QA)
    assert (p.status, p.answer, p.think, p.label) == ("no_trace", "kitchen", None, None)
    p = parse("<think>\n\n</think>\n\nkitchen", QA)  # an empty think block (e.g. Qwen3 non-thinking)
    assert (p.status, p.answer) == ("no_trace", "kitchen")
    assert parse(GOOD.replace("<answer>one</answer>", "<answer> </answer>"), QA).status == "no_answer"
    p = parse(GOOD.replace("The category of the question asked is", "Kind"), QA)
    assert (p.status, p.label, p.evidence) == ("unparseable_class", None, LINES)
    assert parse(GOOD.replace("counting.", "."), QA).status == "unparseable_class"
    p = parse(GOOD.replace("I need to use", "I use"), QA)
    assert (p.status, p.label, p.evidence) == ("unparseable_evidence", "counting", None)
    assert parse(GOOD.replace('"Mary went home."]', '"Mary went home.'), QA).status == "unparseable_evidence"
    assert parse(GOOD.replace('["Mary took the milk.", "Mary went home."]', "[1, 2]"), QA).status == "unparseable_evidence"
    assert parse(GOOD.replace('["Mary took the milk.", "Mary went home."]', ""), QA).status == "unparseable_evidence"
    # precedence: no answer is reported before an unreadable class
    assert parse("<think>nothing useful</think>", QA).status == "no_answer"
    # the cotemp template does not read the qa sentences
    assert parse(GOOD, CT).status == "unparseable_class"


@pytest.mark.parametrize("text", ["@@@ garbage <think> <<<", "<think>" * 50, "</think></answer><answer>",
                                  "[" * 5000, f"<think>{CLS}x\n{EVI}" + "[" * 3000 + "]" * 3000 + "</think>a",
                                  f"<think>{CLS}x\n{EVI}[" + "'a'," * 2000 + "</think>a", "\x00\ud7ff\U0010ffff"])
def test_garbage_never_raises(text):
    assert parse(text, QA).status in STATUSES


def test_parse_evidence_forms():
    assert parse_evidence("[]") == ()
    assert parse_evidence('["a", "b"]') == ("a", "b")
    assert parse_evidence("['it\\'s', \"b\"]") == ("it's", "b")
    assert parse_evidence("* a\n* b") == ("a", "b")
    assert parse_evidence("“Mary left.”") == ("Mary left.",)
    assert parse_evidence("[['nested']]") is None
    assert parse_evidence("[__import__('os').system('echo no')]") is None  # literal_eval, never eval


# --- property-based ------------------------------------------------------------------------------

TAGS = ["<think>", "</think>", "<answer>", "</answer>", "<THINK >", "< /answer>", "assistant", "Assistant:",
        "<|im_end|>", CLS, EVI, "counting.", "[", "]", "'", '"', ",", "\n", " ", "- ", "1. ", "\\"]
soup = st.lists(st.one_of(st.sampled_from(TAGS), st.text(max_size=8)), max_size=30).map("".join)
finish = st.sampled_from([None, "stop", "length"])


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), soup), finish_reason=finish, template=st.sampled_from([QA, CT]))
def test_fuzz_parse_never_raises(text, finish_reason, template):
    p = parse(text, template, finish_reason=finish_reason)
    assert p.status in STATUSES
    if p.status == "ok":
        assert p.label and p.evidence is not None and p.answer and p.think
    if p.status in ("empty", "no_trace"):
        assert p.label is None and p.evidence is None
    assert p.evidence is None or all(isinstance(x, str) for x in p.evidence)


def _clean(s: str) -> bool:
    """Text a trace line or label can hold: no tag the parser splits on, no sentence prefix."""
    low = " ".join(s.lower().split())
    return not any(x in low for x in ("think>", "answer>", "/think", "/answer", "think >", "answer >",
                                      "i need to use the following", "the category of the question",
                                      "the temporal relation between"))


line_text = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=40)
labels = line_text.filter(lambda s: s and s.strip() == s and _clean(s))
lines = st.lists(line_text.filter(_clean), max_size=5)
answers = line_text.filter(lambda s: s.strip() and _clean(s))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(label=labels, evidence=lines, answer=st.lists(answers, min_size=1, max_size=3),
       template=st.sampled_from([QA, CT]))
def test_render_then_parse_round_trips(label, evidence, answer, template):
    text = f"{render_trace(label, evidence, template)} <answer>{render_answer(answer)}</answer>"
    p = parse(text, template, finish_reason="stop")
    assert p.status == "ok", text
    assert p.label == label
    assert p.evidence == tuple(evidence)
    assert p.answer == render_answer(answer).strip()


@settings(max_examples=200, deadline=None)
@given(answer=answers.filter(lambda s: "<" not in s and not s.lower().lstrip().startswith("assistant")))
def test_vanilla_answer_is_read_whole(answer):
    p = parse(answer, QA, finish_reason="stop")
    assert p.status == "no_trace" and p.answer == answer.strip()
