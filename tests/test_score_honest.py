"""`tracekd score` stays honest on other tools' outputs: every line gets a fate, every example stays in the
denominator, each step is judged on its own, and the `cotemp-official` compatibility mode reads the raw text
of every output as the reference scorer does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BABI, COTEMP as COTEMP_DATA, needs_babi, needs_cotemp
from tracekd.cli import main
from tracekd.datasets import DATASETS
from tracekd.errors import DataError
from tracekd.io import read_records, write_records
from tracekd.records import STATUSES, Decomposition, Example, Generation, Judgement
from tracekd.score.answer import get_scorer
from tracekd.score.judge import judge, read_generations, score_all, settings_for
from tracekd.stats.summary import format_summary, summarize
from tracekd.traces.parse import parse
from tracekd.traces.templates import get_template, render_completion

QA = get_template("reference-qa")
CONTEXT = ("Mary went to the kitchen.", "John took the milk.", "Mary travelled to the office.")


def ex(i: int, question: str = "Where is Mary?", context=CONTEXT, answers=("office",), label="single-supporting-fact",
       evidence=(2,)) -> Example:
    return Example(f"babi/qa1/test/{i}/3", "babi", "test", question, tuple(context), tuple(answers),
                   Decomposition(label, tuple(evidence)))


def write_lines(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def good_text(e: Example) -> str:
    return render_completion(e, e.gold, QA)


# ------------------------------------------------------------------------------------ joining

def test_duplicated_examples_with_the_same_gold_take_lines_in_file_order(tmp_path):
    a, b, c = ex(0), ex(1), ex(2, question="Where is John?", answers=("kitchen",))
    lines = [{"question": e.question, "context": list(e.context), "text": t}
             for e, t in ((a, "first"), (c, "other"), (a, "second"))]
    pairs, report = read_generations(write_lines(tmp_path / "g.jsonl", lines), [a, b, c], id_field=None)
    assert [(e.id, g.text) for e, g in pairs] == [(a.id, "first"), (c.id, "other"), (b.id, "second")]
    # a third line for the pair: both examples are taken, so it is reported, not judged
    pairs, report = read_generations(write_lines(tmp_path / "g.jsonl", [*lines, lines[0]]), [a, b, c], id_field=None)
    assert len(pairs) == 3 and [d["line"] for d in report.duplicates] == [4]


def test_duplicated_examples_with_different_gold_are_an_error_naming_line_and_ids(tmp_path):
    a, b = ex(0), ex(1, answers=("kitchen",))
    path = write_lines(tmp_path / "g.jsonl", [{"id": a.id, "text": "x"},
                                              {"question": a.question, "context": list(a.context), "text": "y"}])
    with pytest.raises(DataError) as e:
        read_generations(path, [a, b])
    assert f"{path}:2:" in str(e.value) and a.id in str(e.value) and b.id in str(e.value)


def test_malformed_lines_are_reported_and_the_rest_judged(tmp_path):
    es = [ex(i) for i in range(3)] + [Example("17", "babi", "test", "q?", CONTEXT, ("office",),
                                              Decomposition("counting", (0,)))]
    rows = [
        {"id": es[0].id, "text": good_text(es[0])},         # 1 judged
        {"text": "no id, no question"},                      # 2 neither id nor question/context
        {"id": None, "text": "x"},                           # 3 null id
        {"id": es[1].id, "text": None},                      # 4 null text
        {"id": es[1].id, "text": 42},                        # 5 non-string text
        {"id": 0, "text": "x"},                              # 6 integer id matching nothing
        {"id": 17, "text": "seventeen"},                     # 7 integer id compared as a string: judged
        {"id": [1], "text": "x"},                            # 8 id of another type
        {"question": "Who?", "context": ["x"], "text": "x"},  # 9 matches no example
        "[1, 2]",                                            # 10 not an object
    ]
    path = write_lines(tmp_path / "g.jsonl", rows)
    pairs, report = read_generations(path, es)
    assert [(e.id, g.text) for e, g in pairs] == [(es[0].id, good_text(es[0])), ("17", "seventeen")]
    invalid = {d["line"]: d["error"] for d in report.invalid}
    assert set(invalid) == {2, 3, 4, 5, 8, 10}
    assert "field 'question'" in invalid[2] and "the line has: text" in invalid[2]
    assert "field 'id': is null" in invalid[3]
    assert "must be a string, got null" in invalid[4] and "got int" in invalid[5]
    assert {d["line"]: d.get("id") for d in report.unknown} == {6: "0", 9: None}
    assert all(d["reason"] for d in report.unknown)
    for line in (2, 3, 4, 6, 9, 10):  # --strict fails on the first one instead
        with pytest.raises(DataError, match=":2:"):
            read_generations(write_lines(tmp_path / "s.jsonl", [rows[0], rows[line - 1]]), es, strict=True)


def test_nothing_joined_is_an_error_that_says_what_to_try(tmp_path, capsys):
    e = ex(0)
    examples = write_records(tmp_path / "examples.jsonl", [e]) and tmp_path / "examples.jsonl"
    other_ids = write_lines(tmp_path / "ids.jsonl", [{"id": "q-1", "text": "x"}, {"id": "q-2", "text": "y"}])
    assert main(["score", str(other_ids), "--examples", str(examples), "--out", str(tmp_path / "o1")]) == 1
    err = capsys.readouterr().err
    assert "no line joined" in err and "'q-1'" in err and e.id in err and "--id-field none" in err
    assert "examples/train.jsonl" in err
    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"id": e.id, "text": "x"}], indent=1), encoding="utf-8")
    assert main(["score", str(array), "--examples", str(examples), "--out", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err
    assert "JSON array" in err and "JSONL" in err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_nested_question_and_context_fields_and_missing_field_hints(tmp_path, capsys):
    e = ex(0)
    path = write_lines(tmp_path / "g.jsonl", [{"input": {"q": e.question, "ctx": list(e.context)},
                                                "output": {"text": good_text(e)}}])
    pairs, _ = read_generations(path, [e], id_field=None, text_field="output.text", question_field="input.q",
                                context_field="input.ctx")
    assert [p[0].id for p in pairs] == [e.id]
    sft = write_lines(tmp_path / "sft.jsonl", [{"id": e.id, "completion": [{"role": "assistant", "content": "x"}]}])
    with pytest.raises(DataError) as err:
        read_generations(sft, [e])
    assert "completion.0.content" in str(err.value) and "--text-field" in str(err.value)


@pytest.mark.parametrize("argv", [
    ["score", "{missing}", "--examples", "{examples}", "--out", "{tmp}/o"],
    ["score", "{gens}", "--examples", "{missing}", "--out", "{tmp}/o"],
    ["analyze", "{missing}"],
    ["report", "{tmp}", "--analysis", "{missing}"],
    ["validate", "--dataset", "babi", "{missing}"],
    ["build", "--dataset", "babi", "--data", "{missing}", "--out", "{tmp}/b"],
    ["run", "{missing}"],
    ["train", "--config", "{missing}"],
    ["generate", "--config", "{missing}"],
    ["generate", "--input-file", "{missing}", "--output-file", "{tmp}/g.jsonl"],
    ["audit", "cotemp", "{missing}"],
    ["teacher", "--config", "{missing}"],
])
def test_missing_files_are_one_line_errors(tmp_path, capsys, argv):
    e = ex(0)
    write_records(tmp_path / "examples.jsonl", [e])
    write_lines(tmp_path / "gens.jsonl", [{"id": e.id, "text": "office"}])
    names = {"missing": str(tmp_path / "nope.jsonl"), "examples": str(tmp_path / "examples.jsonl"),
             "gens": str(tmp_path / "gens.jsonl"), "tmp": str(tmp_path)}
    assert main([a.format(**names) for a in argv]) != 0
    captured = capsys.readouterr()
    err = (captured.err or captured.out).strip()
    assert "Traceback" not in err and "nope.jsonl" in err
    assert len(err.splitlines()) <= 2, err


# ------------------------------------------------------------------------------------ denominators

def test_an_example_without_generation_is_judged_missing(tmp_path):
    es = [ex(i, question=f"Where is Mary {i}?") for i in range(5)]
    pairs = [(e, Generation(e.id, good_text(e), "stop")) for e in es[:3]]
    js = score_all(es, pairs, settings_for(es))
    assert [j.status for j in js] == ["ok"] * 3 + ["missing"] * 2
    assert not any(j.answer_ok or j.trace_ok or j.label_ok for j in js[3:])
    s = summarize(js)
    assert s.n == 5 and s.status["missing"] == 2 and s.accuracy.answer.correct == 3 and s.accuracy.answer.n == 5
    assert "missing" in STATUSES and "missing=2" in format_summary(s)


def test_outputs_without_a_trace_show_steps_as_not_applicable():
    e = ex(0)
    js = [judge(e, Generation(e.id, "office", "stop"), QA, get_scorer("strict"), "class+evidence-exact")]
    s = summarize(js)
    assert not s.has_trace and s.accuracy.answer.accuracy == 1.0
    for step in ("class", "evidence_exact", "trace"):
        assert s.accuracy[step].accuracy is None and s.accuracy[step].note == "n/a (no trace)"
    text = format_summary(s)
    assert "n/a (no trace)" in text and "0/1" not in text


# ------------------------------------------------------------------------------------ parsing, steps

def test_each_step_is_judged_on_its_own():
    e = ex(0)
    no_colon_evidence = ('<think>The category of the question asked counting.\nI need to use the following text to '
                         'answer the question: ["Mary travelled to the office."]</think> <answer>office</answer>')
    j = judge(e, Generation(e.id, no_colon_evidence, "stop"), QA, get_scorer("strict"), "class+evidence-exact")
    assert j.status == "unparseable_class" and j.label_ok is False
    assert j.evidence_exact is True and j.evidence_recall == 1.0 and j.trace_ok is False and j.answer_ok
    bad_evidence = ("<think>The category of the question asked is: single-supporting-fact.\nI need to use the "
                    "following text to answer the question: ['unclosed</think> <answer>office</answer>")
    j = judge(e, Generation(e.id, bad_evidence, "stop"), QA, get_scorer("strict"), "class+evidence-exact")
    assert j.status == "unparseable_evidence" and j.label_ok is True and j.evidence_exact is False
    assert j.trace_ok is False


def _class_sentences(template, label: str) -> list[str]:
    cpre, csuf = template.class_affixes
    last = cpre.strip().split(". ")[-1]
    out = []
    for pre in (cpre.strip(), last, last.rstrip(":").rstrip()):
        for suffix in (csuf, ""):
            for case in (str, str.upper, str.lower):
                out.append(f"{case(pre)} {label}{suffix}")
    return out


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_rendering_of_every_label_parses_back(data):
    name = data.draw(st.sampled_from(DATASETS.names()))
    spec = DATASETS.get(name)
    template = get_template(spec.template)
    label = data.draw(st.sampled_from(spec.labels))
    sentence = data.draw(st.sampled_from(_class_sentences(template, label)))
    ev = template.evidence_sentence.replace("{evidence}", '["a fact."]')
    p = parse(f"<think>{sentence}\n{ev}</think> <answer>x</answer>", template)
    assert p.status == "ok", (sentence, p)
    assert p.label.casefold() == label.casefold()


def test_an_empty_thinking_block_in_front_is_skipped():
    e = ex(0)
    full = good_text(e)
    p = parse("<think>\n\n</think>\n\n" + full, QA)
    assert (p.status, p.label, p.answer) == ("ok", "single-supporting-fact", "office")
    p = parse("<think>\n\n</think>\n\noffice", QA)
    assert (p.status, p.answer) == ("no_trace", "office")
    assert parse("<think>The category of the question", QA).status == "no_answer"
    assert parse("<think>The category of the question", QA, finish_reason="length").status == "truncated"


# ------------------------------------------------------------------------------------ cotemp-official

COTEMP = Example(
    "cotemp/equal/0", "cotemp", "test",
    "While Jan Trøjborg was working for Billund Airport, which employer did Jan Trøjborg work for during the same "
    "time span?",
    ("Jan Trøjborg works for Billund Airport from January 2, 2007 to December 3, 2010.",
     "Jan Trøjborg works for NKT from March 25, 2010 to May 6, 2012.",
     "Jan Trøjborg works for Orange from 1998 to 2001."),
    ("NKT",), Decomposition("equal", (1,)), meta={"triple_element": "S1_R1_O2"})
TRACE = ("<think>The temporal relation between the event in question and the event in context is: equal.\n"
         "I need to use the following facts to answer the question: "
         '["Jan Trøjborg works for NKT from March 25, 2010 to May 6, 2012."]</think>')


@pytest.mark.parametrize("text, finish, status, compat", [
    (TRACE, "stop", "no_answer", True),
    (TRACE[:-8] + " so the employer is NKT", "length", "truncated", True),
    (TRACE + " <answer>Orange", "stop", "ok", False),
    (TRACE + " <answer>NKT", "length", "truncated", True),
    ("I am not sure. Maybe NKT.", "stop", "no_trace", True),
    ("", "stop", "empty", False),
])
def test_cotemp_official_reads_the_raw_text_of_every_output(text, finish, status, compat):
    """The reference scorer's verdict on each shape, step by step. Candidates here (triple S1_R1_O2: the
    facts' subjects, plus the gold): "jan trøjborg" (also in the question) and "nkt".

    1. Trace, no answer: lowercase; no ``<answer>``; no "answer the question based on"; " answer " is there
       ("facts to answer the question") -> the text after it: 'the question: ["jan trøjborg works for nkt
       ..."]</>' ("think" deleted); "jan trøjborg" is in the question: deleted, skipped once; "nkt" found ->
       ["nkt"] == ["nkt"]: right (the reference scorer's known leniency). Strict: no answer, wrong.
    2. Cut off inside the trace (``<think>`` never closed): the same " answer " branch finds "nkt": right.
    3. ``<answer>`` never closed: the text after ``<answer>`` to the end, "orange"; no candidate in it ->
       ["orange"]: wrong, although the trace names NKT.
    4. ``<answer>`` never closed, cut off: the text after it, "nkt": right. Strict: truncated, wrong.
    5. No trace, no tag, no "answer": the whole text "i am not sure. maybe nkt." -> ["nkt"]: right.
    6. Empty: nothing found, so the (empty) remaining text is the one candidate: [""] != ["nkt"]: wrong.
    """
    strict = judge(COTEMP, Generation(COTEMP.id, text, finish), get_template("reference-cotemp"),
                   get_scorer("strict"), "class+evidence-exact")
    official = judge(COTEMP, Generation(COTEMP.id, text, finish), get_template("reference-cotemp"),
                     get_scorer("cotemp-official"), "class+evidence-exact")
    assert strict.status == official.status == status
    assert official.answer_ok is compat
    if status != "ok":
        assert not strict.answer_ok  # only the strict scorer uses tracekd's parse statuses


# ------------------------------------------------------------------------------------ the shared test set

@needs_babi
def test_shared_babi_outputs_without_ids_score_with_the_duplicates_in(tmp_path):
    """376 outputs without ids (qa4 repeats two question+context pairs) score without error; with 2 lines
    removed, n is still 376, 2 of them `missing`."""
    examples = DATASETS.get("babi").load_splits(str(BABI))["test"]
    assert len(examples) == 376
    keys = [(e.question, e.context) for e in examples]
    assert len(set(keys)) < len(keys)  # the duplicated pairs are there
    write_records(tmp_path / "examples.jsonl", examples)
    rows = [{"question": e.question, "context": list(e.context), "text": good_text(e)} for e in examples]
    write_lines(tmp_path / "all.jsonl", rows)
    assert main(["score", str(tmp_path / "all.jsonl"), "--examples", str(tmp_path / "examples.jsonl"),
                 "--out", str(tmp_path / "all")]) == 0
    s = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert s["summary"]["n"] == 376 and s["summary"]["status"]["ok"] == 376
    assert s["summary"]["accuracy"]["answer"]["correct"] == 376
    write_lines(tmp_path / "less.jsonl", rows[:100] + rows[101:200] + rows[201:])
    assert main(["score", str(tmp_path / "less.jsonl"), "--examples", str(tmp_path / "examples.jsonl"),
                 "--out", str(tmp_path / "less")]) == 0
    s = json.loads((tmp_path / "less" / "summary.json").read_text())
    assert s["summary"]["n"] == 376 and s["summary"]["status"]["missing"] == 2
    assert sorted(s["missing"]) == sorted([examples[100].id, examples[200].id])
    js = read_records(tmp_path / "less" / "judgements.jsonl", Judgement)
    assert len(js) == len({j.id for j in js}) == 376


@needs_cotemp
def test_the_compat_scorer_rejects_six_gold_answers_of_the_cotemp_test_set():
    """The figure the README and `score --help` state: of the 538 CoTemp test items, the gold answer itself
    is wrong under `cotemp-official` for 6 (the gold also named in the question is deleted by its
    question-overlap rule; "assistant" is deleted from "assistant professor"); strict accepts all 538."""
    from tracekd.score.cotemp_official import score
    from tracekd.traces.templates import render_answer

    test = DATASETS.get("cotemp").load_splits(str(COTEMP_DATA))["test"]
    texts = {e.id: f"<answer>{render_answer(e.answers)}</answer>" for e in test}
    rejected = sorted(e.id for e in test if not score(texts[e.id], e).correct)
    assert len(test) == 538 and len(rejected) == 6, rejected
    assert "cotemp/during/755" in rejected  # assistant professor -> " professor"
    assert all(get_scorer("strict")(texts[e.id], e).correct for e in test)
