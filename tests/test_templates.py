"""Templates are data: the shipped reference sentences, user template files, and rendering."""

from __future__ import annotations

import json

import pytest

from tracekd.errors import ConfigError, DataError
from tracekd.records import Decomposition, Example, SFTRow
from tracekd.traces.templates import (Template, get_template, load_template_file, render_answer,
                                      render_completion, render_prompt, render_row, render_trace,
                                      template_names)

QA_CLASS = ("The category of the question represents what is being asked in that question. "
            "The category of the question asked is: {label}.")
QA_EVIDENCE = "I need to use the following text to answer the question: {evidence}"
COTEMP_CLASS = "The temporal relation between the event in question and the event in context is: {label}."
COTEMP_EVIDENCE = "I need to use the following facts to answer the question: {evidence}"
PROMPT = "Answer the question based on the context:\n{context}\nQuestion: {question} Only return the answer."

EX = Example(
    id="babi/qa2/test/0/5", dataset="babi", split="test", question="Where is the milk?",
    context=("Mary went to the kitchen.", "Mary took the milk.", 'John said "hi" to Zoë.'),
    answers=("kitchen",), gold=Decomposition("two-supporting-facts", (0, 1)))


def test_reference_sentences_are_verbatim():
    assert template_names() == ["reference-cotemp", "reference-qa"]
    qa, ct = get_template("reference-qa"), get_template("reference-cotemp")
    assert (qa.class_sentence, qa.evidence_sentence, qa.prompt) == (QA_CLASS, QA_EVIDENCE, PROMPT)
    assert (ct.class_sentence, ct.evidence_sentence, ct.prompt) == (COTEMP_CLASS, COTEMP_EVIDENCE, PROMPT)
    assert qa.system and ct.system
    assert get_template(qa) is qa


def test_unknown_template_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'reference-cotemp'"):
        get_template("reference-cotmep")
    with pytest.raises(ConfigError, match="cannot read"):
        get_template("no/such/template.yaml")


def _write(tmp_path, text, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_user_template_file_flat_and_named(tmp_path):
    flat = _write(tmp_path, 'system: "Be brief."\nprompt: "{context}\\nQ: {question}"\n'
                            'class: "Kind: {label}."\nevidence: "Facts: {evidence}"\n')
    t = get_template(str(flat))
    assert t == Template("mine", "Be brief.", "{context}\nQ: {question}", "Kind: {label}.", "Facts: {evidence}")
    assert t.class_affixes == ("Kind: ", ".") and t.evidence_affixes == ("Facts: ", "")
    named = _write(tmp_path, "short:\n  system: s\n  prompt: '{question} {context}'\n"
                             "  class: 'Kind {{x}}: {label}'\n  evidence: 'Facts: {evidence}'\n", "other.yml")
    t = load_template_file(named)
    assert t.name == "short" and t.class_affixes == ("Kind {x}: ", "")
    assert render_trace("a", ["b"], t) == '<think>Kind {x}: a\nFacts: ["b"]</think>'


@pytest.mark.parametrize("body, message", [
    ("system: s\nprompt: '{context} {question}'\nclass: 'K: {label}'\n", "key 'evidence': missing"),
    ("system: s\nprompt: '{context} {question}'\nclass: 'K: {label}'\nevidence: 'E: {evidence}'\nextra: 1\n",
     "unknown key 'extra'"),
    ("system: s\nprompt: '{context} {questoin}'\nclass: 'K: {label}'\nevidence: 'E: {evidence}'\n",
     "unknown placeholder {questoin}"),
    ("system: s\nprompt: '{context}'\nclass: 'K: {label}'\nevidence: 'E: {evidence}'\n", "must contain {question}"),
    ("system: s\nprompt: '{context} {question}'\nclass: '{label}'\nevidence: 'E: {evidence}'\n", "fixed text before"),
    ("system: s\nprompt: '{context} {question}'\nclass: 'K: {label} {label}'\nevidence: 'E: {evidence}'\n",
     "exactly once"),
    ("system: s\nprompt: '{context} {question}'\nclass: 'K: {label!r}'\nevidence: 'E: {evidence}'\n",
     "format spec or conversion"),
    ("system: s\nprompt: '{context} {question}'\nclass: 'K: {label'\nevidence: 'E: {evidence}'\n",
     "bad placeholder syntax"),
    ("system: 3\nprompt: '{context} {question}'\nclass: 'K: {label}'\nevidence: 'E: {evidence}'\n",
     "key 'system': must be a string"),
    ("system: s\nprompt: [unclosed\n", r"mine.yaml:\d+: invalid YAML"),
    ("- a\n- b\n", "must hold one template"),
])
def test_bad_user_templates_are_clear(tmp_path, body, message):
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError, match=message):
        get_template(str(path))


def test_render_prompt_fills_context_and_question():
    system, user = render_prompt(EX, get_template("reference-qa"))
    assert system == {"role": "system", "content": get_template("reference-qa").system}
    assert user["role"] == "user"
    assert user["content"] == ("Answer the question based on the context:\nMary went to the kitchen.\n"
                               'Mary took the milk.\nJohn said "hi" to Zoë.\nQuestion: Where is the milk? '
                               "Only return the answer.")


def test_render_completion_exact_format():
    t = get_template("reference-qa")
    target = Decomposition("counting", (2, 0))  # rendered in the target's order
    text = render_completion(EX, target, t)
    assert text == ("<think>" + QA_CLASS.format(label="counting") + "\n"
                    + QA_EVIDENCE.format(evidence='["John said \\"hi\\" to Zoë.", "Mary went to the kitchen."]')
                    + "</think> <answer>kitchen</answer>")
    assert render_completion(EX, Decomposition("x", ()), t).endswith("question: []</think> <answer>kitchen</answer>")
    assert render_completion(EX, None, t) == "kitchen"


def test_render_answer_lists_are_json():
    assert render_answer(["apple", "football"]) == '["apple", "football"]'
    assert json.loads(render_answer(["Zoë", 'a "b"'])) == ["Zoë", 'a "b"']
    assert render_answer(("nothing",)) == "nothing"
    with pytest.raises(DataError):
        render_answer(())


def test_render_row_is_trl_prompt_completion():
    t = get_template("reference-cotemp")
    row = render_row(EX, "correct", EX.gold, t)
    assert isinstance(row, SFTRow) and row.target == EX.gold and row.arm == "correct"
    d = row.to_dict()
    assert [m["role"] for m in d["prompt"]] == ["system", "user"]
    assert [m["role"] for m in d["completion"]] == ["assistant"]
    assert d["target"] == {"label": "two-supporting-facts", "evidence": [0, 1]}
    assert SFTRow.from_dict(json.loads(json.dumps(d))) == row
    vanilla = render_row(EX, "vanilla", None, t)
    assert vanilla.target is None and vanilla.completion_text == "kitchen"
    with pytest.raises(ValueError, match="takes no target"):
        render_row(EX, "vanilla", EX.gold, t)
    with pytest.raises(ValueError, match="needs a target"):
        render_row(EX, "incorrect", None, t)
    with pytest.raises(DataError, match="out of range"):
        render_row(EX, "incorrect", Decomposition("x", (3,)), t)
