"""Acceptance of the core: build every arm, feed the targets back, score them.

bAbI: the shared copy when it is present (its counts are pinned), else `tracekd synth babi` (same format,
same 11 tasks). CoTemp: the shared copy (skipped without it; tests/test_synth_cotemp.py builds synthetic data).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tracekd.cli import main
from tracekd.io import read_records, sha256_file
from tracekd.records import Example, Judgement

from conftest import BABI, COTEMP, needs_cotemp

ALL_ARMS = "vanilla,correct,incorrect,incorrect-class,incorrect-evidence"


#: (train, test) examples of the shared copy; a synthetic copy has SYNTH_N train and SYNTH_N // 10 test stories a task
SHARED_COUNTS = (3773, 376)
SYNTH_N = 60


@pytest.fixture(scope="module")
def babi_data(tmp_path_factory) -> Path:
    if BABI.is_dir():
        return BABI
    out = tmp_path_factory.mktemp("babi-synth")
    assert main(["synth", "babi", "--n", str(SYNTH_N), "--seed", "0", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def counts(babi_data) -> tuple[int, int]:
    return SHARED_COUNTS if babi_data == BABI else (11 * SYNTH_N, 11 * (SYNTH_N // 10))


@pytest.fixture(scope="module")
def babi_build(tmp_path_factory, babi_data):
    out = tmp_path_factory.mktemp("babi") / "seed0"
    assert main(["build", "--dataset", "babi", "--data", str(babi_data), "--arms", ALL_ARMS,
                 "--seed", "0", "--out", str(out), "--quiet"]) == 0
    return out


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_babi_counts_per_arm(babi_build, counts):
    n_train, n_test = counts
    m = json.loads((babi_build / "manifest.json").read_text())
    for arm in ALL_ARMS.split(","):
        assert len(_lines(babi_build / arm / "train.jsonl")) == n_train
        assert len(_lines(babi_build / arm / "test.jsonl")) == n_test
    assert m["counts"]["train"]["kept"] == n_train and m["counts"]["test"]["kept"] == n_test
    # every file is listed with its hash
    for rel, digest in m["files"].items():
        assert sha256_file(babi_build / rel) == digest
    # positional-reasoning stories have no non-gold line: the empty-list case is counted
    assert m["evidence_cases"]["train"]["incorrect"].get("empty", 0) > 0


def test_babi_same_seed_same_bytes_other_seed_other_incorrect(babi_build, babi_data, tmp_path):
    same = tmp_path / "again"
    other = tmp_path / "seed1"
    for out, seed in ((same, "0"), (other, "1")):
        assert main(["build", "--dataset", "babi", "--data", str(babi_data), "--arms", "correct,incorrect",
                     "--seed", seed, "--out", str(out), "--quiet"]) == 0
    for arm in ("correct", "incorrect"):
        for split in ("train", "test"):
            assert sha256_file(same / arm / f"{split}.jsonl") == sha256_file(babi_build / arm / f"{split}.jsonl")
    assert sha256_file(other / "correct" / "train.jsonl") == sha256_file(babi_build / "correct" / "train.jsonl")
    assert sha256_file(other / "incorrect" / "train.jsonl") != sha256_file(babi_build / "incorrect" / "train.jsonl")


def test_rows_are_trl_prompt_completion(babi_build):
    row = _lines(babi_build / "correct" / "test.jsonl")[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert [m["role"] for m in row["completion"]] == ["assistant"]
    assert row["completion"][0]["content"].startswith("<think>")
    vanilla = _lines(babi_build / "vanilla" / "test.jsonl")[0]
    assert "<think>" not in vanilla["completion"][0]["content"]


def _oracle(build: Path, arm: str, tmp_path: Path) -> dict:
    out = tmp_path / f"scored-{arm}"
    assert main(["score", str(build / arm / "test.jsonl"), "--examples", str(build / "examples" / "test.jsonl"),
                 "--text-field", "completion.0.content", "--finish-field", "none", "--out", str(out)]) == 0
    judgements = read_records(out / "judgements.jsonl", Judgement)
    return {"n": len(judgements), "statuses": Counter(j.status for j in judgements),
            "class": sum(bool(j.label_ok) for j in judgements) / len(judgements),
            "evidence": sum(bool(j.evidence_exact) for j in judgements) / len(judgements),
            "trace": sum(j.trace_ok for j in judgements) / len(judgements),
            "answer": sum(j.answer_ok for j in judgements) / len(judgements)}


def test_oracle_babi(babi_build, counts, tmp_path):
    n = counts[1]
    r = _oracle(babi_build, "correct", tmp_path)
    assert r["n"] == n and r["statuses"]["ok"] == n
    assert r["class"] == r["evidence"] == r["trace"] == r["answer"] == 1.0
    r = _oracle(babi_build, "incorrect", tmp_path)
    assert r["statuses"]["ok"] == n
    assert r["class"] == 0.0 and r["evidence"] == 0.0 and r["answer"] == 1.0
    r = _oracle(babi_build, "incorrect-class", tmp_path)
    assert r["class"] == 0.0 and r["evidence"] == 1.0 and r["answer"] == 1.0
    r = _oracle(babi_build, "incorrect-evidence", tmp_path)
    assert r["class"] == 1.0 and r["evidence"] == 0.0 and r["answer"] == 1.0
    r = _oracle(babi_build, "vanilla", tmp_path)
    assert r["statuses"]["no_trace"] == n and r["answer"] == 1.0 and r["trace"] == 0.0


@needs_cotemp
def test_cotemp_build_splits_each_category_and_oracle(tmp_path):
    out = tmp_path / "cotemp"
    assert main(["build", "--dataset", "cotemp", "--data", str(COTEMP), "--arms", "vanilla,correct,incorrect",
                 "--out", str(out), "--quiet"]) == 0
    examples = {s: read_records(out / "examples" / f"{s}.jsonl", Example) for s in ("train", "test")}
    m = json.loads((out / "manifest.json").read_text())
    for cat in ("equal", "overlap", "during", "mix"):
        n_train = sum(e.gold.label == cat for e in examples["train"])
        n_test = sum(e.gold.label == cat for e in examples["test"])
        n = n_train + n_test
        assert n > 0
        assert abs(n_test - 0.2 * n) <= 1 + m["counts"]["test"]["excluded"], cat
    r = _oracle(out, "correct", tmp_path)
    assert r["class"] == r["evidence"] == r["answer"] == 1.0
    r = _oracle(out, "incorrect", tmp_path)
    assert r["class"] == 0.0 and r["evidence"] == 0.0 and r["answer"] == 1.0


def test_score_messy_generations_file(babi_build, counts, tmp_path):
    examples = read_records(babi_build / "examples" / "test.jsonl", Example)
    rows = {r["id"]: r for r in _lines(babi_build / "correct" / "test.jsonl")}
    e0, e1, e2, e3, e4 = examples[:5]
    good = rows[e0.id]["completion"][0]["content"]
    lines = [
        json.dumps({"id": e0.id, "text": good, "finish_reason": "stop"}),
        "",
        json.dumps({"id": e1.id, "text": good[: len(good) // 2], "finish_reason": "length"}),
        "{not json",
        json.dumps({"id": e2.id, "text": "@@@ garbage <think> <<<", "finish_reason": "stop"}),
        json.dumps({"id": e0.id, "text": "duplicate", "finish_reason": "stop"}),
        json.dumps({"id": e3.id, "text": "", "finish_reason": "stop"}),
        # no id: joined by exact question + context
        json.dumps({"question": e4.question, "context": list(e4.context), "text": rows[e4.id]["completion"][0]["content"]}),
        json.dumps({"id": "nope/1", "text": "x"}),
    ]
    gen = tmp_path / "gen.jsonl"
    gen.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "scored"
    assert main(["score", str(gen), "--examples", str(babi_build / "examples" / "test.jsonl"),
                 "--out", str(out)]) == 0
    by_id = {j.id: j for j in read_records(out / "judgements.jsonl", Judgement)}
    assert by_id[e0.id].status == "ok" and by_id[e0.id].trace_ok and by_id[e0.id].answer_ok
    assert by_id[e1.id].status == "truncated" and not by_id[e1.id].answer_ok and not by_id[e1.id].trace_ok
    assert by_id[e2.id].status != "ok" and not by_id[e2.id].trace_ok
    assert by_id[e3.id].status == "empty" and not by_id[e3.id].answer_ok
    assert by_id[e4.id].status == "ok" and by_id[e4.id].answer_ok
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lines"]["blank"] == [2]
    assert [x["line"] for x in summary["lines"]["invalid"]] == [4]
    assert summary["lines"]["duplicates"] == [{"line": 6, "id": e0.id}]
    assert [(x["line"], x["id"]) for x in summary["lines"]["unknown"]] == [(9, "nope/1")]
    assert "unknown id 'nope/1'" in summary["lines"]["unknown"][0]["reason"]
    assert len(summary["missing"]) == counts[1] - 5
    # examples without a generation are judged `missing` and stay in every denominator
    assert summary["summary"]["n"] == counts[1] and summary["summary"]["status"]["missing"] == counts[1] - 5
    assert by_id[examples[-1].id].status == "missing" and not by_id[examples[-1].id].answer_ok


def test_score_join_without_id_fails_clearly_on_a_miss(babi_build, tmp_path):
    gen = tmp_path / "gen.jsonl"
    gen.write_text(json.dumps({"question": "Where is nobody?", "context": ["x"], "text": "y"}) + "\n")
    rc = main(["score", str(gen), "--examples", str(babi_build / "examples" / "test.jsonl"), "--out",
               str(tmp_path / "o")])
    assert rc == 1
