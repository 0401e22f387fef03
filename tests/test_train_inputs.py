"""`tracekd train` checks its inputs before it imports torch or loads a model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tracekd.cli import main

#: runs `tracekd train ARGS` in a fresh interpreter; prints the exit status and whether torch was imported
_PROBE = """
import sys
from tracekd.cli import main
rc = main(sys.argv[1:])
print("rc", rc, "torch", "torch" in sys.modules, "transformers" in sys.modules)
"""


def _train(*args: str) -> tuple[str, str]:
    r = subprocess.run([sys.executable, "-c", _PROBE, "train", *args], capture_output=True, text=True, timeout=60)
    return r.stdout.strip(), r.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("train-inputs")
    assert main(["synth", "babi", "--tasks", "qa1", "--n", "4", "--out", str(tmp / "babi")]) == 0
    assert main(["build", "--dataset", "babi", "--data", str(tmp / "babi"), "--option", "tasks=qa1",
                 "--arms", "correct", "--out", str(tmp / "b"), "--quiet"]) == 0
    return tmp / "b"


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_bad_inputs_fail_before_torch_is_imported(built, tmp_path):
    no_completion = tmp_path / "no_completion.jsonl"
    rows = _rows(built / "correct" / "train.jsonl")
    del rows[1]["completion"]
    no_completion.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cases = [
        (tmp_path / "missing.jsonl", "missing.jsonl: field 'train_file': no such file; pass an arm's SFT rows"),
        (built / "examples" / "train.jsonl", "train.jsonl:1: field 'train_file': this is a file of gold examples"),
        (no_completion, "no_completion.jsonl:2: field 'completion': missing"),
    ]
    for path, message in cases:
        out, err = _train("--train-file", str(path), "--output-dir", str(tmp_path / "adapter"))
        assert out == "rc 1 torch False False", (path, err)
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "adapter").exists()


def test_a_generations_file_is_named_as_such(built, tmp_path):
    gens = tmp_path / "generations.jsonl"
    gens.write_text(json.dumps({"id": "x", "text": "y", "finish_reason": "stop"}) + "\n")
    out, err = _train("--train-file", str(gens), "--output-dir", str(tmp_path / "a"))
    assert out == "rc 1 torch False False" and "this is a file of generations (`tracekd generate`)" in err


def test_good_inputs_pass_the_check(built, tmp_path):
    from tracekd.commands.train import check_inputs
    from tracekd.train.config import TrainConfig

    check_inputs(TrainConfig(train_file=str(built / "correct" / "train.jsonl"), output_dir=str(tmp_path / "a")))
    (tmp_path / "file").write_text("x")
    with pytest.raises(Exception, match="field 'output_dir': exists and is not a folder"):
        check_inputs(TrainConfig(train_file=str(built / "correct" / "train.jsonl"), output_dir=str(tmp_path / "file")))
