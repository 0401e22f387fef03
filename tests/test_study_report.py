"""A study linked to an experiment run: `tracekd report RUN_DIR` gains a "Human ratings" section with the
study's numbers and plots; without a link it has none."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pingouin")
extra = pytest.importorskip("tracekd.report.extra", reason="the report has no extension point for sections")

from report_fixture import make_analysis  # noqa: E402
from test_study_analyze import CLEAR, MUDDY, config, draw  # noqa: E402

from tracekd.cli import main as tracekd  # noqa: E402
from tracekd.study.analyze import analyze, write_analysis  # noqa: E402


def test_linked_study_joins_the_report(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "analysis.json").write_text(json.dumps(make_analysis(seeds=(0,), n=24)))
    assert tracekd(["report", str(run)]) == 0
    assert "Human ratings" not in (run / "report.md").read_text()

    responses, people = draw({"clear": CLEAR, "muddy": MUDDY}, n_people=12, n_items=2, seed=2)
    a = analyze(responses, people, config(), n_boot=200)
    exp = tmp_path / "export"
    exp.mkdir()
    (exp / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in responses))
    (exp / "participants.jsonl").write_text("".join(json.dumps(p) + "\n" for p in people))
    cfg_yaml = tmp_path / "study.yaml"
    cfg_yaml.write_text("conditions: [{name: clear}, {name: muddy}]\n")
    assert tracekd(["study", "analyze", str(exp), "--config", str(cfg_yaml), "--bootstrap", "200",
                    "--no-plots", "--link", str(run)]) == 0
    capsys.readouterr()
    assert tracekd(["report", str(run), "--overwrite"]) == 0
    md = (run / "report.md").read_text()
    assert "## Human ratings" in md
    section = md[md.index("## Human ratings"):]
    clear = next(r for r in a["scale_scores"] if r["condition"] == "clear" and r["scale"] == "interpretability")
    assert f"| interpretability | clear | 12 | {clear['mean']:.2f} |" in section
    assert "kruskal-wallis" in section and "clear vs muddy" in section
    for png in ("human-ratings-likert.png", "human-ratings-scales.png"):
        assert (run / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    assert "Human ratings" in (run / "report.html").read_text()
    # a link to an analysis that is gone is an error naming the link file, not a traceback
    (exp / "analysis" / "analysis.json").unlink()
    assert tracekd(["report", str(run), "--overwrite"]) == 1
    assert "human_study.json" in capsys.readouterr().err
