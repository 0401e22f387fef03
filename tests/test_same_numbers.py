"""The smoke experiment's numbers are pinned: build -> score -> analyze -> report, field by field.

No model runs: the synth and build stages run as they do in ``tracekd run``, each cell's "generations" are
its own arm's test targets (every fourth one cut in half, as if it hit max_new_tokens, so answers and steps
also come out wrong), then the score stages, the analysis and the report run as usual. The same generations
go through the CLI (``tracekd score`` / ``analyze`` / ``report``) too. Everything is compared with
tests/fixtures/smoke/, written by the code before the issue-9 refactor, so a refactor that changes a number,
a stage key or a line of the report fails here, naming the field.

Regenerate the fixtures (only for an intended change of the numbers, keys or report; review the diff):
``python tests/test_same_numbers.py --write``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from tracekd import __version__
from tracekd.cli import main
from tracekd.experiment import plan as plan_module
from tracekd.experiment.analysis import finish_run
from tracekd.experiment.config import load_experiment
from tracekd.experiment.estimate import planned_rows
from tracekd.experiment.plan import make_plan
from tracekd.experiment.runner import run_stage
from tracekd.io import sha256_text, write_json
from tracekd.records import Generation
from tracekd.traces.corrupt import ARMS

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "experiments" / "smoke.yaml"
FIXTURES = Path(__file__).parent / "fixtures" / "smoke"


def field_diffs(got, want, path: str = "") -> list[str]:
    """Every difference between two JSON values, as ``path: got != want`` lines.

    >>> field_diffs({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}], "c": 0})
    ['a[1].b: 2 != 3', 'c: missing != 0']
    """
    if isinstance(got, dict) and isinstance(want, dict):
        out = []
        for k in sorted(set(got) | set(want), key=str):
            where = f"{path}.{k}" if path else str(k)
            if k not in got:
                out.append(f"{where}: missing != {want[k]!r}")
            elif k not in want:
                out.append(f"{where}: {got[k]!r} != missing")
            else:
                out += field_diffs(got[k], want[k], where)
        return out
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} items != {len(want)} items"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in field_diffs(g, w, f"{path}[{i}]")]
    if type(got) is not type(want) or got != want:
        return [f"{path}: {got!r} != {want!r}"]
    return []


def oracle_generations(test_rows: list[dict], arm: str) -> list[dict]:
    """Each row's own target as the generation; every fourth one (by a hash of arm and id) cut in half."""
    out = []
    for row in test_rows:
        text = row["completion"][0]["content"]
        cut = int(sha256_text(f"{arm}/{row['id']}"), 16) % 4 == 0
        out.append(Generation(id=row["id"], text=text[: len(text) // 2] if cut else text,
                              finish_reason="length" if cut else "stop", prompt_tokens=None,
                              completion_tokens=None).to_dict())
    return out


def run_without_model(run_dir: Path) -> tuple:
    """The smoke experiment with every built-in arm, its train/generate stages replaced by the oracle."""
    config = dataclasses.replace(load_experiment(SMOKE), arms=list(ARMS), out=str(run_dir))
    stages = make_plan(config)
    for stage in stages:
        if stage.kind in ("synth", "build", "score"):
            run_stage(stage, run_dir)
        elif stage.kind == "generate":
            build = stage.input("build").dir(run_dir) / "sets" / stage.spec["arm"] / "test.jsonl"
            rows = [json.loads(x) for x in build.read_text(encoding="utf-8").splitlines()]
            out = stage.dir(run_dir) / "generations.jsonl"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("".join(json.dumps(g) + "\n" for g in oracle_generations(rows, stage.spec["arm"])),
                           encoding="utf-8")
    finish_run(config, stages, run_dir)
    return config, stages


def plan_keys(stages) -> list[list[str]]:
    return [[s.label, s.key, *(d.key for d in s.deps)] for s in stages]


def normalised_report(text: str) -> str:
    """The report without what may change between checkouts: the tracekd version."""
    return text.replace(__version__, "VERSION")


def cli_analysis(root: Path, stages, out: str) -> dict:
    """The same generations through ``tracekd score``, ``analyze --show-examples 2`` and ``report``.

    Run from ``root`` (the folder holding the run folder ``run``) with relative paths, so no absolute path
    lands in what is compared.
    """
    judgements = []
    for s in stages:
        if s.kind != "score":
            continue
        gen, build = s.input("generate"), s.input("build")
        scored = f"{out}/{s.dirname}"
        assert main(["score", str(gen.dir(Path("run")) / "generations.jsonl"),
                     "--examples", str(build.dir(Path("run")) / "sets" / "examples" / "test.jsonl"),
                     "--out", scored, "--strict", "--arm", s.cell["arm"], "--student", s.cell["student"],
                     "--seed", str(s.cell["seed"])]) == 0
        judgements.append(f"{scored}/judgements.jsonl")
    assert main(["analyze", *judgements, "--show-examples", "2", "--out", f"{out}/analysis.json"]) == 0
    assert main(["report", out, "--analysis", f"{out}/analysis.json"]) == 0
    return json.loads((root / out / "analysis.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    config, stages = run_without_model(run_dir)
    return run_dir, config, stages


def _fixture(name: str):
    path = FIXTURES / name
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if name.endswith(".json") else text


def test_stage_keys_are_pinned(smoke, monkeypatch):
    want = _fixture("plan_keys.json")
    _, config, _ = smoke
    monkeypatch.setattr(plan_module, "__version__", want["version"])  # keys hash the version too
    diffs = field_diffs(plan_keys(make_plan(config)), want["stages"])
    assert not diffs, "stage keys changed:\n" + "\n".join(diffs)


def test_run_analysis_is_pinned_field_by_field(smoke):
    run_dir, _, _ = smoke
    got = json.loads((run_dir / "analysis.json").read_text(encoding="utf-8"))
    diffs = field_diffs(got, _fixture("analysis.json"))
    assert not diffs, "analysis.json of the smoke run changed:\n" + "\n".join(diffs[:40])


def test_run_report_is_pinned(smoke):
    run_dir, _, _ = smoke
    got = normalised_report((run_dir / "report.md").read_text(encoding="utf-8")).splitlines()
    want = _fixture("report.md").splitlines()
    diffs = [f"line {i}: {g!r} != {w!r}" for i, (g, w) in enumerate(zip(got, want), 1) if g != w]
    if len(got) != len(want):
        diffs.append(f"{len(got)} lines != {len(want)} lines")
    assert not diffs, "report.md of the smoke run changed:\n" + "\n".join(diffs[:40])


def test_cli_score_analyze_report_are_pinned(smoke, monkeypatch):
    run_dir, _, stages = smoke
    monkeypatch.chdir(run_dir.parent)
    got = cli_analysis(run_dir.parent, stages, "cli")
    diffs = field_diffs(got, _fixture("cli_analysis.json"))
    assert not diffs, "the analysis of `tracekd score` + `analyze` changed:\n" + "\n".join(diffs[:40])
    report = normalised_report((run_dir.parent / "cli" / "report.md").read_text(encoding="utf-8"))
    assert report == _fixture("cli_report.md")


def test_planned_rows_are_the_rows_the_build_writes(smoke, tmp_path):
    run_dir, _, stages = smoke
    builds = [s for s in stages if s.kind == "build"]
    assert all(b.done(run_dir) for b in builds)
    for b in builds:  # rendered in memory (never built in tmp_path) vs read back from the build's files
        assert planned_rows(b, tmp_path, {}) == planned_rows(b, run_dir, {})


def write_fixtures() -> None:
    """Run everything once and store what the tests compare with (``--write``)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        stages = run_without_model(run_dir)[1]
        FIXTURES.mkdir(parents=True, exist_ok=True)
        write_json(FIXTURES / "plan_keys.json", {"version": __version__, "stages": plan_keys(stages)})
        write_json(FIXTURES / "analysis.json", json.loads((run_dir / "analysis.json").read_text(encoding="utf-8")))
        (FIXTURES / "report.md").write_text(normalised_report((run_dir / "report.md").read_text(encoding="utf-8")),
                                            encoding="utf-8")
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            write_json(FIXTURES / "cli_analysis.json", cli_analysis(Path(tmp), stages, "cli"))
        finally:
            os.chdir(cwd)
        report = normalised_report((Path(tmp) / "cli" / "report.md").read_text(encoding="utf-8"))
        (FIXTURES / "cli_report.md").write_text(report, encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    write_fixtures()
    print(f"wrote {FIXTURES}")
