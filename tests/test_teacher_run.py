"""End to end through a real `transformers serve` on loopback: `tracekd run` with a `teacher:` section.

The runner starts the server itself (``serve: tiny-random``), asks every question, then summaries and
explanations, builds every arm on the subset, trains the tiny student, generates, scores and reports.
The tiny-random teacher answers noise, so the config keeps every answered item (``scorer: none``) and
takes its answer text as the trace (``trace: content``); the teacher-correct filter itself is tested
with hand-written responses in test_teacher_arms.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("fastapi")

from tracekd.cli import main  # noqa: E402

CONFIG = """
name: teacher-e2e
out: {out}
datasets:
  - name: babi
    synth: {{generator: babi, tasks: "qa1", n: 4, n_test: 2, seed: 0}}
students: [tiny-random]
arms: [correct, teacher-trace, teacher-summary, teacher-explanation, zero-shot]
seeds: [0]
train: {{max_steps: 1, per_device_train_batch_size: 4, gradient_accumulation_steps: 1, warmup_steps: 0,
        save_steps: 1, progress: false}}
generate: {{max_new_tokens: 8, batch_size: 8, progress: false}}
report_examples: 0
executor: {{name: local}}
teacher:
  serve: tiny-random
  settings: {{max_tokens: 6, temperature: 0.0, concurrency: 2, cache_dir: {cache}}}
  scorer: none
  trace: content
"""


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher-run")
    cfg = root / "exp.yaml"
    cfg.write_text(CONFIG.format(out=root / "run", cache=root / "cache"))
    assert main(["run", str(cfg)]) == 0
    return root, cfg


def test_teacher_stage_asks_every_question_then_follow_ups_through_the_real_server(run):
    root, _ = run
    [stage] = (root / "run" / "stages").glob("teacher-*")
    answers = _lines(stage / "answer" / "responses.jsonl")
    assert len(answers) == 6 and {a["purpose"] for a in answers} == {"answer"}
    assert all(a["completion_tokens"] > 0 and a["model"].endswith(tuple("0123456789abcdef")) for a in answers)
    assert answers[0]["messages"][0]["content"].startswith("Answer the question based on the context:")
    summaries = _lines(stage / "summary" / "responses.jsonl")
    explanations = _lines(stage / "explanation" / "responses.jsonl")
    assert sorted(s["id"] for s in summaries) == sorted(e["id"] for e in explanations) == sorted(a["id"] for a in answers)
    by_id = {a["id"]: a for a in answers}
    for e in explanations:  # a follow-up turn after the teacher's own answer
        assert [m["role"] for m in e["messages"]] == ["user", "assistant", "user"]
        assert e["messages"][1]["content"] == by_id[e["id"]]["answer"]
    for s in summaries:
        assert by_id[s["id"]]["answer"].strip() in s["messages"][-1]["content"]
        assert s["sampling"]["temperature"] == 0.0


def test_build_report_and_baselines(run):
    root, _ = run
    plan = json.loads((root / "run" / "plan.json").read_text())
    kinds = [(s["kind"], s["cell"].get("arm")) for s in plan["stages"]]
    assert ("train", "zero-shot") not in kinds and ("generate", "zero-shot") in kinds
    [build] = [s for s in plan["stages"] if s["kind"] == "build"]
    sets = root / "run" / build["dir"] / "sets"
    m = json.loads((sets / "manifest.json").read_text())
    assert m["teacher"]["subset"]["train"]["kept"] == 4 and m["teacher"]["scorer"] == "none"
    [stage] = (root / "run" / "stages").glob("teacher-*")
    answers = {a["id"]: a for a in _lines(stage / "answer" / "responses.jsonl")}
    for row in _lines(sets / "teacher-trace" / "train.jsonl"):
        assert row["completion"][0]["content"].startswith(f"<think>{answers[row['id']]['answer'].strip()}</think>")
    report = (root / "run" / "report.md").read_text()
    assert "## Teacher arms and free-form traces" in report
    assert "train: 4 of 4 kept" in report
    for arm in ("correct", "teacher-trace", "teacher-summary", "teacher-explanation", "zero-shot"):
        assert f"| {arm} |" in report


def test_a_rerun_of_the_teacher_stage_sends_nothing(run, capsys):
    root, cfg = run
    [stage] = (root / "run" / "stages").glob("teacher-*")
    shutil.rmtree(stage)
    assert main(["run", str(cfg), "--dry-run"]) == 0
    assert "0 request(s) to send" in capsys.readouterr().out
    assert main(["run", str(cfg)]) == 0
    for part in ("answer", "summary", "explanation"):
        m = json.loads((stage / part / "manifest.json").read_text())
        assert m["complete"] and m["run"]["sent"] == 0 and m["run"]["from_cache"] == 6


def test_responses_score_as_generations(run, tmp_path):
    from tracekd.io import read_records
    from tracekd.records import Example
    from tracekd.score.judge import read_generations, score_pairs, settings_for
    from tracekd.teacher.baselines import write_generations

    root, _ = run
    [stage] = (root / "run" / "stages").glob("teacher-*")
    assert write_generations(stage / "answer", tmp_path / "g.jsonl", purpose="answer") == 6
    plan = json.loads((root / "run" / "plan.json").read_text())
    [build] = [s for s in plan["stages"] if s["kind"] == "build"]
    examples = read_records(root / "run" / build["dir"] / "sets" / "examples" / "test.jsonl", Example)
    pairs, report = read_generations(tmp_path / "g.jsonl", examples)
    assert len(pairs) == 2 and len(report.unknown) == 4  # the train items are not in the test examples
    assert [j.id for j in score_pairs(pairs, settings_for(examples))] == [e.id for e, _ in pairs]
