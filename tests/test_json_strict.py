"""Every JSON tracekd writes parses with a strict parser (no NaN / Infinity), and a report made from
`tracekd analyze --out` names each cell by what `tracekd score` recorded, never by a file name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tracekd.cli import main
from tracekd.io import dumps, write_json


def strict_load(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def strict_check_tree(root: Path) -> int:
    """Parse every .json and every line of every .jsonl under ``root`` strictly; the number of files."""
    n = 0
    for path in sorted(root.rglob("*.json*")):
        if path.suffix == ".json":
            strict_load(path.read_text(encoding="utf-8"))
        elif path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    strict_load(line)
        else:
            continue
        n += 1
    return n


def test_the_writer_never_writes_nan(tmp_path):
    write_json(tmp_path / "x.json", {"chi2": float("nan"), "odds": float("inf"), "ok": [1.5, float("-inf")]})
    assert strict_load((tmp_path / "x.json").read_text()) == {"chi2": None, "odds": None, "ok": [1.5, None]}
    with pytest.raises(ValueError):
        strict_load('{"p": NaN}')  # the check itself can fail
    assert dumps({"a": 1.0}) == '{"a": 1.0}'


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """synth -> build -> score (the arms' own targets, as a model would have written them) -> analyze -> report."""
    root = tmp_path_factory.mktemp("pipeline")
    assert main(["synth", "babi", "--tasks", "qa1,qa2", "--n", "20", "--seed", "0", "--out", str(root / "data")]) == 0
    assert main(["build", "--dataset", "babi", "--data", str(root / "data"), "--option", "tasks=qa1,qa2",
                 "--arms", "vanilla,correct,incorrect", "--seed", "0", "--out", str(root / "sft"), "--quiet"]) == 0
    for arm in ("vanilla", "correct", "incorrect"):
        flags = ["--student", "tiny-random", "--seed", "0"] if arm != "incorrect" else []
        assert main(["score", str(root / "sft" / arm / "test.jsonl"), "--examples",
                     str(root / "sft" / "examples" / "test.jsonl"), "--text-field", "completion.0.content",
                     "--out", str(root / "scored" / arm), *flags]) == 0
    judgements = [str(root / "scored" / arm / "judgements.jsonl") for arm in ("vanilla", "correct", "incorrect")]
    assert main(["analyze", *judgements, "--out", str(root / "analysis.json")]) == 0
    assert main(["analyze", *judgements, "--show-examples", "2", "--out", str(root / "with-examples.json")]) == 0
    assert main(["report", str(root / "report"), "--analysis", str(root / "analysis.json")]) == 0
    assert main(["report", str(root / "report-examples"), "--analysis", str(root / "with-examples.json")]) == 0
    return root


def test_every_json_of_the_pipeline_is_strict_json(pipeline):
    assert strict_check_tree(pipeline) >= 12
    # an undefined statistic is there, as null with the reason beside it
    a = strict_load((pipeline / "analysis.json").read_text())
    steps = next(c for c in a["cells"] if c["arm"] == "correct")["summary"]["steps"]["trace"]
    assert steps["chi2"] is None and steps["note"]


def test_report_from_analyze_names_cells_by_what_score_recorded(pipeline):
    a = strict_load((pipeline / "analysis.json").read_text())
    cells = {c["arm"]: c for c in a["cells"]}
    assert set(cells) == {"vanilla", "correct", "incorrect"}  # the SFT rows' own arm, not the file name
    assert all(c["dataset"] == "babi" for c in cells.values())
    assert (cells["correct"]["student"], cells["correct"]["seed"]) == ("tiny-random", 0)
    assert cells["incorrect"]["student"] == "(not recorded)" and cells["incorrect"]["seed"] is None
    md = (pipeline / "report" / "report.md").read_text(encoding="utf-8")
    plots = sorted(p.name for p in (pipeline / "report" / "plots").glob("*.png"))
    assert plots and not any("judgements" in p or p.startswith("-") for p in plots)
    assert "judgements /" not in md and not re.search(r"^## - /", md, re.M)
    assert "## babi / tiny-random" in md
    # no examples recorded: the report names the flag that records them
    assert "pass \\`--show-examples K\\` to \\`tracekd analyze\\`" in md
    md = (pipeline / "report-examples" / "report.md").read_text(encoding="utf-8")
    assert "--show-examples" not in md and " shown of " in md
    # vanilla: no trace, so its steps are n/a, not 0.000
    row = next(line for line in md.splitlines() if line.startswith("| babi | tiny-random | vanilla |"))
    assert "n/a (no trace)" in row
