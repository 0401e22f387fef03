"""Teacher arms from hand-written teacher responses: subset, answer choice, derangement, short cut, baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracekd.cli import main
from tracekd.build import BuildConfig, build
from tracekd.datasets import DATASETS
from tracekd.errors import ConfigError, DataError
from tracekd.io import read_records
from tracekd.records import Example
from tracekd.score.freeform import tokens, trace_text
from tracekd.synth import generate_into
from tracekd.teacher.arms import derangement, load_responses
from tracekd.teacher.records import TeacherResponse

ARMS = ("vanilla,correct,incorrect,teacher-trace,teacher-summary,teacher-explanation,teacher-swapped,"
        "teacher-trace-short,zero-shot,zero-shot-format")


def response(ex: Example, purpose: str, answer: str, reasoning: str | None = None, finish: str = "stop"):
    return TeacherResponse(id=ex.id, purpose=purpose, key=f"{ex.id}/{purpose}", model="fixture-teacher",
                           messages=[{"role": "user", "content": ex.question}],
                           sampling={"temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "seed": 0},
                           reasoning=reasoning, reasoning_source="think_tag" if reasoning else "none",
                           answer=answer, finish_reason=finish, prompt_tokens=10, completion_tokens=20,
                           reasoning_tokens=None)


def long_reasoning(ex: Example) -> str:
    """A teacher-like trace: a long preamble, the evidence quoted, more talk (many sentences)."""
    return (f"Okay, let me think about {ex.question} carefully. " * 6
            + " ".join(ex.evidence_lines) + " So that settles it. " + "Let me double check once more. " * 6)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    generate_into({"generator": "babi", "n": 12, "n_test": 6, "seed": 3, "tasks": "qa1,qa2"}, root / "data")
    splits = DATASETS.get("babi").load_splits(str(root / "data"), tasks="qa1,qa2")
    # hand-chosen fates: per split, example 0 no response, 1 wrong, 2 truncated, 3 no summary; the rest correct
    fates: dict[str, str] = {}
    rows = []
    for split, exs in splits.items():
        for i, ex in enumerate(exs):
            fate = {0: "no_response", 1: "teacher_wrong", 2: "truncated", 3: "no_summary"}.get(i, "ok")
            fates[ex.id] = fate
            if fate == "no_response":
                continue
            answer = "nowhere-at-all" if fate == "teacher_wrong" else f"{ex.answers[0]}"
            rows.append(response(ex, "answer", answer, long_reasoning(ex), "length" if fate == "truncated" else "stop"))
            if fate != "no_summary":
                rows.append(response(ex, "summary", f"Summary: {ex.evidence_lines[0]}"))
            rows.append(response(ex, "explanation", f"Because {ex.evidence_lines[-1]}"))
    resp = root / "responses"
    resp.mkdir()
    (resp / "responses.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    return root, splits, fates


def _build(root: Path, out: str, **kw) -> Path:
    """Build into ``root/out`` once per module (later calls reuse it)."""
    if (root / out / "manifest.json").exists():
        return root / out
    cfg = BuildConfig(dataset="babi", data=str(root / "data"), out=str(root / out), arms=tuple(ARMS.split(",")),
                      seed=kw.pop("seed", 0), options={"tasks": "qa1,qa2"},
                      teacher_responses=(str(root / "responses"),), **kw)
    build(cfg, progress=False)
    return root / out


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_subset_is_the_teacher_correct_items_for_every_arm_and_drops_are_counted(data):
    root, splits, fates = data
    out = _build(root, "b0")
    m = json.loads((out / "manifest.json").read_text())
    for split, exs in splits.items():
        want = [ex.id for ex in exs if fates[ex.id] == "ok"]
        assert [e.id for e in read_records(out / "examples" / f"{split}.jsonl", Example)] == want
        for arm in ARMS.split(","):
            assert [r["id"] for r in _rows(out / arm / f"{split}.jsonl")] == want, arm
        sub = m["teacher"]["subset"][split]
        assert sub["dropped"] == {"no_response": 1, "no_summary": 1, "teacher_wrong": 1, "truncated": 1}
        assert sub["kept"] == len(want) and sub["before"] == len(exs)
    assert m["teacher"]["answer"] == "gold" and m["teacher"]["models"] == ["fixture-teacher"]


def test_teacher_trace_answer_is_gold_or_the_teachers_own_text(data):
    root, splits, _ = data
    resp = load_responses([root / "responses"])
    gold = _rows(_build(root, "b0") / "teacher-trace" / "train.jsonl")
    own = _rows(_build(root, "b-own", teacher_answer="teacher") / "teacher-trace" / "train.jsonl")
    by_id = {ex.id: ex for ex in splits["train"]}
    for g, o in zip(gold, own):
        ex = by_id[g["id"]]
        r = resp[(ex.id, "answer")]
        assert g["completion"][0]["content"] == f"<think>{r.reasoning.strip()}</think> <answer>{ex.answers[0]}</answer>"
        assert o["completion"][0]["content"].endswith(f"<answer>{r.answer}</answer>")
        assert g["prompt"] == _rows(root / "b0" / "vanilla" / "train.jsonl")[gold.index(g)]["prompt"]
    assert json.loads((root / "b-own" / "manifest.json").read_text())["teacher"]["answer"] == "teacher"


def test_swapped_pairs_each_answer_with_another_items_reasoning_within_class_and_seeded(data):
    root, splits, _ = data
    resp = load_responses([root / "responses"])
    out = root / "b0"
    m = json.loads((out / "manifest.json").read_text())
    pairs = m["teacher"]["arms"]["train"]["swaps"]["pairs"]
    by_id = {ex.id: ex for ex in splits["train"]}
    for row in _rows(out / "teacher-swapped" / "train.jsonl"):
        partner = pairs[row["id"]]
        assert partner != row["id"] and by_id[partner].gold.label == by_id[row["id"]].gold.label
        text = row["completion"][0]["content"]
        assert text == f"<think>{resp[(partner, 'answer')].reasoning.strip()}</think> <answer>{by_id[row['id']].answers[0]}</answer>"
    assert m["teacher"]["arms"]["train"]["swaps"]["same_class"] == len(pairs)
    again = _build(root, "b0-again")
    other = _build(root, "b1", seed=1)
    same = (out / "teacher-swapped" / "train.jsonl").read_bytes()
    assert (again / "teacher-swapped" / "train.jsonl").read_bytes() == same
    assert (other / "teacher-swapped" / "train.jsonl").read_bytes() != same


def test_derangement_crosses_classes_only_for_lone_items():
    items = [("a", "x"), ("b", "x"), ("c", "y"), ("d", "z")]
    for seed in range(20):
        d = derangement(items, seed)
        assert sorted(d) == sorted(d.values()) == ["a", "b", "c", "d"] and all(d[k] != k for k in d)
        assert {d["a"], d["b"]} <= {"a", "b", "c", "d"}
    assert derangement(list(reversed(items)), 5) == derangement(items, 5)


def test_short_trace_is_cut_at_a_sentence_to_the_correct_trace_length(data):
    root, splits, _ = data
    resp = load_responses([root / "responses"])
    by_id = {ex.id: ex for ex in splits["train"]}
    correct = {r["id"]: r for r in _rows(root / "b0" / "correct" / "train.jsonl")}
    for row in _rows(root / "b0" / "teacher-trace-short" / "train.jsonl"):
        short = trace_text(row["completion"][0]["content"])
        full = resp[(row["id"], "answer")].reasoning
        target = len(tokens(trace_text(correct[row["id"]]["completion"][0]["content"])))
        assert full.startswith(short) and short.endswith(".") and len(short) < len(full)
        assert len(tokens(short)) <= target
        # the next sentence would have crossed the target
        rest = full[len(short):].strip()
        nxt = rest[: rest.index(".") + 1]
        assert len(tokens(short + " " + nxt)) > target
        assert by_id[row["id"]].answers[0] in row["completion"][0]["content"]


def test_summary_explanation_and_zero_shot_rows(data):
    root, splits, _ = data
    resp = load_responses([root / "responses"])
    for row in _rows(root / "b0" / "teacher-summary" / "test.jsonl"):
        assert row["completion"][0]["content"].startswith(f"<think>{resp[(row['id'], 'summary')].answer}</think>")
    for row in _rows(root / "b0" / "teacher-explanation" / "test.jsonl"):
        assert row["completion"][0]["content"].startswith(f"<think>{resp[(row['id'], 'explanation')].answer}</think>")
    m = json.loads((root / "b0" / "manifest.json").read_text())
    worked = m["teacher"]["zero_shot_format_example"]
    zs = _rows(root / "b0" / "zero-shot" / "test.jsonl")
    zf = _rows(root / "b0" / "zero-shot-format" / "test.jsonl")
    van = _rows(root / "b0" / "vanilla" / "test.jsonl")
    assert [r["prompt"] for r in zs] == [r["prompt"] for r in van]
    worked_ex = next(ex for ex in splits["train"] if ex.id == worked)
    for r in zf:
        user = r["prompt"][-1]["content"]
        assert worked_ex.question in user and "<think>" in user and van[zf.index(r)]["prompt"][-1]["content"] in user
    # the free-form measures of the teacher's own traces: the fixture traces quote every gold line
    assert m["teacher"]["arms"]["test"]["teacher-trace"]["evidence_all"] == 1.0


def test_teacher_arms_without_responses_and_bad_response_lines_are_clear_errors(data, tmp_path):
    root, _, _ = data
    with pytest.raises(ConfigError, match="teacher arms need teacher responses"):
        BuildConfig(dataset="babi", data=str(root / "data"), out=str(tmp_path / "x"), arms=("teacher-trace",))
    bad = tmp_path / "bad"
    bad.mkdir()
    good = (root / "responses" / "responses.jsonl").read_text().splitlines()[0]
    broken = json.loads(good)
    broken["reasoning_source"] = "guess"
    (bad / "responses.jsonl").write_text(good + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(DataError, match=r"responses.jsonl:2: field 'reasoning_source'"):
        load_responses([bad])
    assert main(["build", "--dataset", "babi", "--data", str(root / "data"), "--option", "tasks=qa1,qa2",
                 "--arms", "teacher-trace", "--teacher-responses", str(bad), "--out", str(tmp_path / "o"),
                 "--quiet"]) != 0


def test_content_trace_without_filter_keeps_wrong_and_cut_answers_and_uses_the_answer_text(data):
    root, splits, fates = data
    out = _build(root, "b-content", teacher_trace="content", teacher_scorer="none")
    resp = load_responses([root / "responses"])
    m = json.loads((out / "manifest.json").read_text())
    assert m["teacher"]["scorer"] == "none" and m["teacher"]["trace"] == "content"
    for split, exs in splits.items():
        want = [ex.id for ex in exs if fates[ex.id] in ("ok", "teacher_wrong", "truncated")]  # all answered
        rows = _rows(out / "teacher-trace" / f"{split}.jsonl")
        assert [r["id"] for r in rows] == want
        for r in rows:
            assert r["completion"][0]["content"].startswith(f"<think>{resp[(r['id'], 'answer')].answer}</think>")


def test_a_lone_teacher_correct_item_has_no_swap_partner_and_is_dropped(data):
    from tracekd.teacher.arms import TeacherArms
    from tracekd.traces.templates import get_template

    root, splits, fates = data
    resp = load_responses([root / "responses"])
    lone = next(ex for ex in splits["test"] if fates[ex.id] == "ok")
    arms = TeacherArms(resp, get_template("reference-qa"))
    assert arms.subset([lone], ("teacher-trace",)) == ([lone], [])
    assert arms.subset([lone], ("teacher-swapped",)) == ([], [{"id": lone.id, "reason": "no_swap_partner"}])
