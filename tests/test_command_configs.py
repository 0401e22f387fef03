"""`tracekd build` and `tracekd score` take their settings like train and generate do: a config dataclass
through the one loader, `--config YAML` (flags override it), `--explain`, did-you-mean on unknown keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tracekd.cli import main
from tracekd.config import load_config
from tracekd.errors import ConfigError
from tracekd.score.config import ScoreConfig


@pytest.fixture(scope="module")
def babi_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("babi-synth")
    assert main(["synth", "babi", "--n", "12", "--seed", "0", "--tasks", "qa1,qa2", "--out", str(out)]) == 0
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "manifest.json" and p.name != "summary.json"}


def _without_command(path: Path) -> dict:
    """A manifest but the command line and the output folder."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("command", None)
    data["config"].pop("out", None)
    return data


def test_build_from_a_config_file_equals_the_flags_and_flags_override_it(babi_data, tmp_path):
    flags = ["--dataset", "babi", "--data", str(babi_data), "--arms", "vanilla,incorrect-class",
             "--option", "tasks=qa1,qa2", "--option", "first_question_only=true", "--max-train", "8",
             "--max-test", "4", "--seed", "3", "--quiet"]
    assert main(["build", *flags, "--out", str(tmp_path / "by-flags")]) == 0
    config = tmp_path / "build.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": "babi", "data": str(babi_data), "arms": ["vanilla", "incorrect-class"],
        "options": {"first_question_only": True, "tasks": "qa1,qa2"}, "max_train": 8, "max_test": 4,
        "seed": 7, "out": str(tmp_path / "unused")}, sort_keys=False))
    assert main(["build", "--config", str(config), "--seed", "3", "--out", str(tmp_path / "by-file"),
                 "--quiet"]) == 0
    assert _files(tmp_path / "by-flags") == _files(tmp_path / "by-file")
    assert _without_command(tmp_path / "by-flags" / "manifest.json") == \
        _without_command(tmp_path / "by-file" / "manifest.json")
    assert not (tmp_path / "unused").exists()


def test_build_config_typos_and_missing_keys_are_errors(tmp_path, capsys):
    config = tmp_path / "build.yaml"
    config.write_text("dataset: babi\ndata: x\nout: y\nsubset_sed: 2\n")
    assert main(["build", "--config", str(config)]) != 0
    assert f"{config}: unknown BuildConfig key 'subset_sed'; did you mean 'subset_seed'" in capsys.readouterr().err
    assert main(["build", "--data", "x", "--out", str(tmp_path / "o")]) != 0
    assert "missing required key(s): dataset" in capsys.readouterr().err
    assert main(["build", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "teacher_answer: str = 'gold'" in out and "options: dict = {}" in out


def test_score_from_a_config_file_equals_the_flags(babi_data, tmp_path, capsys):
    build = tmp_path / "sets"
    assert main(["build", "--dataset", "babi", "--data", str(babi_data), "--arms", "incorrect",
                 "--option", "tasks=qa1,qa2", "--out", str(build), "--quiet"]) == 0
    rows, examples = build / "incorrect" / "test.jsonl", build / "examples" / "test.jsonl"
    assert main(["score", str(rows), "--examples", str(examples), "--text-field", "completion.0.content",
                 "--finish-field", "none", "--out", str(tmp_path / "by-flags")]) == 0
    config = tmp_path / "score.yaml"
    config.write_text(yaml.safe_dump({"generations": str(rows), "examples": str(examples),
                                      "text_field": "completion.0.content", "finish_field": None,
                                      "trace_definition": "class", "out": str(tmp_path / "by-file")}))
    assert main(["score", "--config", str(config), "--trace-definition", "class+evidence-exact"]) == 0
    assert _files(tmp_path / "by-flags") == _files(tmp_path / "by-file")
    a, b = (_without_command(tmp_path / d / "summary.json") for d in ("by-flags", "by-file"))
    assert a == b and a["config"]["read"]["finish_field"] is None
    assert a["config"]["settings"]["trace_definition"] == "class+evidence-exact"
    capsys.readouterr()
    assert main(["score", "--explain"]) == 0
    assert "trace_definition: str = 'class+evidence-exact'" in capsys.readouterr().out


def test_score_config_checks_its_keys_and_values():
    base = {"generations": "g.jsonl", "examples": "e.jsonl", "out": "o"}
    assert load_config(ScoreConfig, {**base, "id_field": "none"}).id_field is None
    with pytest.raises(ConfigError, match="did you mean 'text_field'"):
        load_config(ScoreConfig, {**base, "text_feild": "x"})
    with pytest.raises(ConfigError, match=re.escape("key 'trace_definition': unknown value 'class+evidence'; did you mean")):
        load_config(ScoreConfig, {**base, "trace_definition": "class+evidence"})
    with pytest.raises(ConfigError, match="missing required key"):
        load_config(ScoreConfig, {"examples": "e.jsonl", "out": "o"})
