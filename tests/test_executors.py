"""Executors: the smoke config under subprocess and submitit (real processes) equals the in-process run;
a stage's process killed mid-run is reported and a re-submission finishes with the same numbers; the
SLURM submission of the reference grid checked as data (sbatch files, dependency chain) without a cluster;
locks, --status and honest dry runs."""

from __future__ import annotations

import json
import os
import re
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
from tracekd.experiment.locks import StageBusy, holder, stage_lock
from tracekd.experiment.plan import make_plan
from tracekd.experiment.state import stage_state, status_table

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs/experiments/smoke.yaml"
GRID = ROOT / "configs/experiments/reference-grid.yaml"


def numbers(run_dir: Path) -> dict:
    a = json.loads((run_dir / "analysis.json").read_text())
    for c in a["cells"]:
        c.pop("score_dir", None)
    return {k: a[k] for k in ("cells", "groups", "comparisons", "examples")}


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory) -> Path:
    """The smoke config with one seed: every kind of stage, independent arms, half the stage processes."""
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["seeds"] = [0]
    path = tmp_path_factory.mktemp("config") / "smoke-one-seed.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def in_process(one_seed, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "smoke"
    assert main(["run", str(one_seed), "--out", str(out), "--executor", "local"]) == 0
    return out


def test_subprocess_executor_runs_smoke_like_in_process(one_seed, in_process, tmp_path, capsys):
    out = tmp_path / "smoke"
    assert main(["run", str(one_seed), "--out", str(out), "--executor", "subprocess", "--max-parallel", "2"]) == 0
    assert numbers(out) == numbers(in_process)
    stages = make_plan(load_experiment(one_seed))
    assert all((out / "logs" / f"{s.dirname}.log").exists() for s in stages)  # one log per stage
    # the built-in student was materialised by a process of its own, started beside the first stages
    assert "tiny-random: " in (out / "logs" / "students.log").read_text()
    for s in stages:  # no GPU: model stages forked from the preloaded server, CPU stages fresh processes
        forked = "forked from the preloaded server" in (out / "logs" / f"{s.dirname}.log").read_text()
        assert forked == (s.kind in ("train", "generate")), s.label
    capsys.readouterr()
    assert main(["run", "--status", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{len(stages)} done" in text and "analysis and report: written" in text


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, parent pid, ...), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def test_forked_stages_die_with_the_runner(one_seed, tmp_path):
    """A model stage forked from the preloaded server runs in its own process, not the runner's child; when the
    runner is killed (SIGKILL: no cleanup of its own), the server and the stage go too."""
    out = tmp_path / "smoke"
    cmd = [sys.executable, "-m", "tracekd.cli", "run", str(one_seed), "--out", str(out), "--executor", "subprocess"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    stage_pid = stage = None
    deadline = time.monotonic() + 600
    while stage_pid is None and proc.poll() is None and time.monotonic() < deadline:
        for stage in _train_holders(out):
            try:
                stage_pid = json.loads((stage / "RUNNING.json").read_text())["pid"]
            except (OSError, ValueError):
                continue
            break
        time.sleep(0.02)
    assert stage_pid is not None, "no training was seen running:\n" + proc.communicate(timeout=60)[0][-2000:]
    server = int(_stat(stage_pid)[1])
    assert server != proc.pid and _alive(server)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while (_alive(stage_pid) or _alive(server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(stage_pid) and not _alive(server)
    assert not (stage / "DONE.json").exists()  # stopped, not finished (a training here takes seconds)


def test_which_stages_fork_from_the_preloaded_server(tmp_path, monkeypatch):
    """Only without GPU and only while executor.preload_model_stages is on; a GPU's stages start fresh processes
    (CUDA must not be initialized before a fork, and each stage gets its own CUDA_VISIBLE_DEVICES)."""
    from tracekd.experiment.executors import SubprocessRunner

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    config = load_experiment(SMOKE)
    assert SubprocessRunner(config, tmp_path, log=lambda *_: None).preload
    config.executor.preload_model_stages = False
    assert not SubprocessRunner(config, tmp_path, log=lambda *_: None).preload
    config.executor.preload_model_stages = True
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert not SubprocessRunner(config, tmp_path, log=lambda *_: None).preload


def _train_holders(run_dir: Path):
    for f in sorted(run_dir.glob("stages/train-*/RUNNING.json")):
        if not (f.parent / "DONE.json").exists():
            yield f.parent


def test_submitit_local_kill_one_stage_then_resubmit(one_seed, in_process, tmp_path):
    """submitit's LocalExecutor (real processes, SLURM's code path minus sbatch): kill a training's
    process mid-run; the runner reports it with its log, independent stages go on; re-submitting
    finishes with the numbers of the uninterrupted in-process run."""
    out = tmp_path / "smoke"
    cmd = [sys.executable, "-m", "tracekd.cli", "run", str(one_seed), "--out", str(out), "--executor", "submitit-local"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    killed = None
    deadline = time.monotonic() + 900  # generous: a loaded 2-core machine is many times slower
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        for stage_dir in _train_holders(out):
            seen = time.monotonic()
            while not (stage_dir / "DONE.json").exists():  # kill at a checkpoint if one appears soon, else now
                if any(stage_dir.glob("adapter/checkpoints/checkpoint-*")) or time.monotonic() - seen > 2:
                    try:
                        pid = json.loads((stage_dir / "RUNNING.json").read_text())["pid"]
                    except (OSError, ValueError):
                        break
                    os.kill(pid, signal.SIGKILL)
                    killed = stage_dir
                    break
                time.sleep(0.02)
            if killed:
                break
        time.sleep(0.02)
    output, _ = proc.communicate(timeout=1200)
    assert killed is not None, "no training could be killed mid-run:\n" + output[-2000:]
    assert proc.returncode == 1, output[-3000:]
    assert f"({killed.name}) failed" in output and "stage(s) failed" in output
    status = status_table(out)
    assert re.search(rf"train .*{killed.name.split('-')[1]}\s+failed", status), status
    assert not (out / "analysis.json").exists()
    # re-submission: finished stages are skipped, the killed one resumes, the rest run
    assert main(["run", str(one_seed), "--out", str(out), "--executor", "submitit-local"]) == 0
    assert numbers(out) == numbers(in_process)
    assert all(stage_state(s, out).state == "done" for s in make_plan(load_experiment(one_seed)))


FAKE_SBATCH = """#!/usr/bin/env bash
# records the submission file and answers like sbatch
n=$(( $(cat "$SBATCH_RECORD/count" 2>/dev/null || echo 1000) + 1 ))
echo $n > "$SBATCH_RECORD/count"
cp "$1" "$SBATCH_RECORD/$n.sh"
echo "Submitted batch job $n"
"""


def test_slurm_submission_of_the_reference_grid(tmp_path, monkeypatch, capsys):
    """The real submitit SlurmExecutor path with `sbatch`/`srun` replaced by recorders: one job per stage
    plus analyze+report, each with its kind's resources and `afterok` on exactly its inputs' jobs."""
    bindir, record = tmp_path / "bin", tmp_path / "sbatch"
    bindir.mkdir()
    record.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "srun").write_text("#!/usr/bin/env bash\nexit 0\n")
    for f in bindir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_RECORD", str(record))
    monkeypatch.chdir(tmp_path)
    for d in ("data/cotempqa", "data/msmarco", "data/babi/en-first-question"):  # submission reads no data
        (tmp_path / d).mkdir(parents=True)
    out = tmp_path / "grid"
    assert main(["run", str(GRID), "--out", str(out), "--executor", "slurm"]) == 0
    config = load_experiment(GRID)
    stages = make_plan(config)
    jobs = {}
    for f in record.glob("*.sh"):
        text = f.read_text()
        opts = dict(re.findall(r"^#SBATCH --([\w-]+)=?(.*)$", text, re.M))
        jobs[opts["job-name"]] = {"id": f.stem, "opts": opts, "text": text}
    assert len(jobs) == len(stages) + 1 == 172
    ids = {name: j["id"] for name, j in jobs.items()}
    for s in stages:
        opts = jobs[s.dirname]["opts"]
        res = config.executor.resources_for(s.kind)
        assert opts["time"] == str(res.time_min) and opts["cpus-per-task"] == str(res.cpus)
        assert opts["mem"] == f"{res.mem_gb:g}GB" and opts.get("partition") == res.partition
        assert opts.get("gpus-per-node") == (str(res.gpus) if res.gpus else None)
        want = sorted(ids[d.dirname] for d in s.deps)
        got = sorted(opts["dependency"].removeprefix("afterok:").split(":")) if "dependency" in opts else []
        assert got == want, s.label
        assert opts.get("kill-on-invalid-dep") == ("yes" if want else None)
        assert f"logs/{s.dirname}" in opts["output"]  # per-stage logs in the run folder
    train = next(s for s in stages if s.kind == "train")
    assert jobs[train.dirname]["opts"]["gpus-per-node"] == "1"
    assert "module load" in jobs[train.dirname]["text"]  # the config's setup lines
    last = jobs["analyze-reference-grid"]["opts"]["dependency"].removeprefix("afterok:").split(":")
    assert sorted(last) == sorted(ids[s.dirname] for s in stages)
    capsys.readouterr()
    assert main(["run", "--status", str(out)]) == 0
    assert f"{len(stages)} queued" in capsys.readouterr().out


def test_dry_run_without_data_prints_the_job_graph(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(GRID), "--dry-run", "--executor", "slurm"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert re.match(r"#\s+stage\s+key\s+status\s+estimate\s+after\s+resources", lines[1])
    assert "no data" in out and out.count("missing data:") == 3 and "HF dataset Warrieryes/CotempQA" in out
    build = next(x for x in lines if " build cotemp/seed0 " in x)
    train = next(x for x in lines if " train cotemp/" in x)
    assert "gpus=1" in train and "time=720m" in train and "gpus" not in build
    assert re.search(r"train throughput of Qwen/Qwen3-1.7B on cuda: unknown", out)
    assert "then: analyze + report" in out
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_run_checks_students_and_options_before_planning(tmp_path):
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["students"] = ["tiny-randm"]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="did you mean 'tiny-random'"):
        load_experiment(tmp_path / "a.yaml")
    cfg["students"] = ["tiny-random"]
    cfg["datasets"][0]["options"] = {"first_question_onl": False}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="did you mean 'first_question_only'"):
        load_experiment(tmp_path / "a.yaml")
    cfg["datasets"][0]["options"] = {}
    cfg["executor"] = {"resources": {"trian": {"gpus": 1}}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="did you mean 'train'"):
        load_experiment(tmp_path / "a.yaml")


@pytest.mark.parametrize("recipe,command", [("configs/train/cpu/smollm2-135m.yaml", "tracekd train"),
                                            ("configs/train/gpu/qwen3-1.7b.yaml", "tracekd train")])
def test_run_names_a_train_config(recipe, command, capsys):
    assert main(["run", str(ROOT / recipe)]) == 1
    err = capsys.readouterr().err
    assert f"is a `{command}` config" in err and f"{command} --config" in err


def test_generate_config_is_named(tmp_path, capsys):
    (tmp_path / "g.yaml").write_text("max_new_tokens: 40\nbatch_size: 8\n")
    assert main(["run", str(tmp_path / "g.yaml")]) == 1
    assert "is a `tracekd generate` config" in capsys.readouterr().err


HOLD = "import sys, time; from tracekd.experiment.locks import stage_lock\nwith stage_lock(sys.argv[1]):\n" \
       "    print('locked', flush=True); time.sleep(60)\n"


def test_stage_lock_is_exclusive_and_dies_with_its_holder(tmp_path):
    d = tmp_path / "stages" / "train-abc"
    with stage_lock(d):
        assert holder(d)["pid"] == os.getpid()
        with pytest.raises(StageBusy, match=f"pid {os.getpid()}"):
            with stage_lock(d):
                pass
    assert holder(d) is None
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    assert holder(d)["pid"] == proc.pid
    with pytest.raises(StageBusy):
        with stage_lock(d):
            pass
    proc.kill()  # SIGKILL: no cleanup runs, RUNNING.json stays
    proc.wait()
    assert (d / "RUNNING.json").exists() and holder(d) is None
    with stage_lock(d):  # a re-submission can take it over
        pass


def test_scheduler_gives_each_model_stage_its_own_gpu(tmp_path, monkeypatch):
    """With two GPUs visible (simulated), model stages run one per GPU, never two on one, CPU stages beside them."""
    from tracekd.experiment.executors import SubprocessRunner, schedule
    from tracekd.experiment.runner import is_model_stage

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    config = load_experiment(SMOKE)
    stages = make_plan(config)
    runner = SubprocessRunner(config, tmp_path, log=lambda *_: None, max_parallel=4)
    assert runner.slots.model == ["3", "5"] and runner.slots.total == 4
    running: dict[str, tuple] = {}
    seen = []

    def launch(stage, gpu):
        busy = [g for s, g in running.values() if is_model_stage(s)]
        assert (gpu is not None) == is_model_stage(stage) and gpu not in busy
        assert len(running) < 4
        running[stage.dirname] = (stage, gpu)
        seen.append((stage.kind, gpu, len(running)))
        return stage

    def poll(stage):  # every stage finishes on its second poll
        if stage.spec.setdefault("_polled", 0) < 1:
            stage.spec["_polled"] += 1
            return None
        stage.dir(tmp_path).mkdir(parents=True, exist_ok=True)
        (stage.dir(tmp_path) / "DONE.json").write_text("{}")
        del running[stage.dirname]
        return True, 0, ""

    assert schedule(stages, tmp_path, runner.slots, launch, poll, lambda s, h: None, lambda h: None,
                    log=lambda *_: None) == []
    assert all(s.done(tmp_path) for s in stages)
    assert {g for k, g, _ in seen if k in ("train", "generate")} == {"3", "5"}  # both GPUs used
    assert max(n for *_, n in seen) > 2  # CPU and model stages overlapped


def test_executors_are_looked_up_by_name(tmp_path, monkeypatch):
    """Every configurable executor but ``auto`` is registered; a typo gets a did-you-mean; submitit's absence
    is named with the extra that installs it."""
    from tracekd.experiment.config import EXECUTORS
    from tracekd.experiment.executors import RUNNERS, LocalRunner, make_executor

    assert RUNNERS.names() == [n for n in EXECUTORS if n != "auto"]
    config = load_experiment(SMOKE)
    assert isinstance(make_executor("local", config, tmp_path), LocalRunner)
    with pytest.raises(ConfigError, match="unknown executor 'slrum'; did you mean 'slurm'"):
        make_executor("slrum", config, tmp_path)
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    with pytest.raises(ConfigError, match=r"executor 'submitit-local' needs submitit: pip install 'tracekd\[cluster\]'"):
        make_executor("submitit-local", config, tmp_path)
