"""`tracekd run`: a tiny grid end to end, resumed after a kill, equal to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tracekd.cli import main
from tracekd.errors import ConfigError
from tracekd.experiment.config import load_experiment
from tracekd.experiment.plan import make_plan

TINY = {
    "name": "tiny",
    "datasets": [{"name": "babi", "synth": {"generator": "babi", "n": 20, "n_test": 3, "seed": 0,
                                            "tasks": "qa1,qa2"},
                  "max_train": 16, "max_test": 6}],
    "students": ["tiny-random"],
    "arms": ["vanilla", "correct"],
    "seeds": [0, 1],
    "train": {"max_steps": 4, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
              "learning_rate": 0.005, "save_steps": 1, "progress": False},
    "generate": {"max_new_tokens": 24, "batch_size": 2, "progress": False},
    "report_examples": 2,
}


def write_config(tmp_path: Path, name: str, **changes) -> Path:
    cfg = {**TINY, **changes, "out": str(tmp_path / name)}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def numbers(run_dir: Path) -> dict:
    """Everything numeric of an analysis, without paths."""
    a = json.loads((run_dir / "analysis.json").read_text())
    for c in a["cells"]:
        c.pop("score_dir")
    return {k: a[k] for k in ("cells", "groups", "comparisons", "examples")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    cfg = write_config(tmp, "straight")
    assert main(["run", str(cfg), "--executor", "local"]) == 0
    return tmp / "straight"


def test_run_writes_analysis_and_report(uninterrupted):
    a = json.loads((uninterrupted / "analysis.json").read_text())
    assert len(a["cells"]) == 2 * 2  # arms x seeds
    assert all(c["summary"]["n"] == 6 for c in a["cells"])
    assert (uninterrupted / "report.md").exists() and (uninterrupted / "report.html").exists()
    plan = json.loads((uninterrupted / "plan.json").read_text())
    assert plan["command"].startswith("tracekd run ")


def test_rerun_skips_everything(uninterrupted, capsys):
    cfg = load_experiment(uninterrupted.parent / "straight.yaml")
    assert all(s.done(uninterrupted) for s in make_plan(cfg))
    assert main(["run", str(uninterrupted.parent / "straight.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "to run" not in out and out.count("cached") == len(make_plan(cfg))


def test_killed_run_resumes_to_the_same_numbers(uninterrupted, tmp_path):
    cfg = write_config(tmp_path, "killed")
    run_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tracekd.cli", "run", str(cfg), "--executor", "local"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # kill it in the middle of the second seed's training, once a checkpoint exists there
    deadline = time.monotonic() + 240
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(run_dir.glob("stages/train-*/DONE.json"))) >= 2:
            ckpts = run_dir.glob("stages/train-*/adapter/checkpoints/checkpoint-*")
            if any(not (c.parents[2] / "DONE.json").exists() for c in ckpts):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed, "the run finished before it could be killed; make the tiny config slower"
    assert not (run_dir / "analysis.json").exists()
    assert main(["run", str(cfg), "--executor", "local"]) == 0
    assert numbers(run_dir) == numbers(uninterrupted)


def test_config_typos_are_errors_with_did_you_mean(tmp_path):
    bad = write_config(tmp_path, "bad", seeds=[0])
    data = yaml.safe_load(bad.read_text())
    data["studens"] = data.pop("students")
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="did you mean 'students'"):
        load_experiment(bad)
    data["students"] = data.pop("studens")
    data["datasets"][0]["max_trian"] = 3
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="did you mean 'max_train'"):
        load_experiment(bad)
    data["datasets"][0].pop("max_trian")
    data["arms"] = ["vanilla", "corect"]
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="did you mean 'correct'"):
        load_experiment(bad)
    data["arms"] = ["vanilla", "correct"]
    data["train"] = {**data["train"], "learning_rat": 0.1}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=f"{bad}: key 'train': unknown TrainSettings key 'learning_rat'; "
                                          "did you mean 'learning_rate'"):
        load_experiment(bad)
    data["train"].pop("learning_rat")
    bad.write_text(yaml.safe_dump({**data, "train": {**data["train"], "learning_rate": "fast"}}))
    with pytest.raises(ConfigError, match=f"{bad}: key 'train': key 'learning_rate': expected a number"):
        load_experiment(bad)
    data["generate"] = {**data["generate"], "seed": 3}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="generate.seed: set by the experiment"):
        load_experiment(bad)


def test_changing_a_setting_rekeys_only_downstream_stages(tmp_path):
    a = load_experiment(write_config(tmp_path, "a"))
    b = load_experiment(write_config(tmp_path, "b", generate={**TINY["generate"], "max_new_tokens": 30}))
    ka = {s.label: s.key for s in make_plan(a)}
    kb = {s.label: s.key for s in make_plan(b)}
    for label in ka:
        same = ka[label] == kb[label]
        assert same == (label.split()[0] in ("synth", "build", "train")), label


def test_every_json_the_run_writes_is_strict_json(uninterrupted):
    """No NaN / Infinity in any JSON or JSONL of a run (jq, JavaScript and strict parsers reject them)."""
    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")

    checked = 0
    for path in sorted(uninterrupted.rglob("*.json*")):
        if path.suffix not in (".json", ".jsonl"):
            continue
        for line in ([path.read_text(encoding="utf-8")] if path.suffix == ".json"
                     else path.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                json.loads(line, parse_constant=refuse)
        checked += 1
    assert checked >= 10


def test_every_stage_name_of_the_config_has_a_stage_kind():
    from tracekd.experiment.config import STAGE_NAMES
    from tracekd.experiment.runner import STAGE_KINDS, stage_kind

    assert [*STAGE_KINDS, "analyze"] == list(STAGE_NAMES)  # analyze runs after the plan (analysis.finish_run)
    with pytest.raises(ValueError, match="not one of"):
        stage_kind("evaluate")
