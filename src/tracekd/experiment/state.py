"""Every stage's state, read from the run folder alone (``tracekd run --status RUN``).

A stage is **done** when its ``DONE.json`` exists; **running** while a process holds its folder's
lock (:mod:`.locks`); **failed** when its job record ``RUN/jobs/<stage>.json`` says so (written by
the stage's own process on an error, or by the runner when the process died); **queued** when a job
was submitted and has not started (the stage's process clears the record when it starts); **partial**
when its folder holds work from an interrupted run (a re-run resumes it); **missing** otherwise.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..io import write_json
from .locks import holder, pid_alive
from .plan import Stage, stages_from_dicts

STATES = ("done", "running", "failed", "partial", "queued", "missing")


@dataclass(frozen=True)
class StageState:
    state: str
    detail: str = ""


def job_record_path(run_dir: Path, stage: Stage) -> Path:
    return Path(run_dir) / "jobs" / f"{stage.dirname}.json"


def log_path(run_dir: Path, stage: Stage) -> Path:
    """Where the subprocess executor writes a stage's output (submitit keeps its own beside it)."""
    return Path(run_dir) / "logs" / f"{stage.dirname}.log"


def read_job_record(run_dir: Path, stage: Stage) -> dict | None:
    try:
        return json.loads(job_record_path(run_dir, stage).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def record_job(run_dir: Path, stage: Stage, state: str, **info) -> None:
    """Write the stage's job record (queued / failed), with where and when."""
    write_json(job_record_path(run_dir, stage), {"state": state, "stage": stage.label, "time": time.time(),
                                                 "host": socket.gethostname(), **info})


def clear_job(run_dir: Path, stage: Stage) -> None:
    job_record_path(run_dir, stage).unlink(missing_ok=True)


def tail(path: str | Path | None, n: int = 20) -> str:
    """The last ``n`` lines of a log file ('' when it does not exist).

    >>> tail(None)
    ''
    """
    if not path:
        return ""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _alive_here(rec: dict) -> bool:
    """A local submitter's queue is only real while the submitting process lives."""
    pid = rec.get("submitter_pid")
    if rec.get("executor") == "slurm" or not isinstance(pid, int) or rec.get("host") != socket.gethostname():
        return True
    return pid_alive(pid)


def stage_state(stage: Stage, run_dir: Path) -> StageState:
    """The state of one stage from its folder, its lock and its job record."""
    folder = stage.dir(run_dir)
    if (folder / "DONE.json").exists():
        return StageState("done")
    who = holder(folder)
    if who is not None:
        job = f" job {who['job_id']}" if who.get("job_id") else ""
        return StageState("running", f"pid {who.get('pid')} on {who.get('host')}{job}")
    rec = read_job_record(run_dir, stage) or {}
    if rec.get("state") == "failed":
        return StageState("failed", rec.get("error", "") or f"exit code {rec.get('returncode')}")
    started = folder.exists() and any(p.name != ".lock" for p in folder.iterdir())
    if rec.get("state") == "queued" and _alive_here(rec):  # the stage's process clears this when it starts
        return StageState("queued", (f"{rec.get('executor')} job {rec.get('job_id')}" if rec.get("job_id")
                                     else str(rec.get("executor", ""))) + ("; resumes earlier work" if started else ""))
    if started:
        return StageState("partial", "interrupted; a re-run resumes it")
    return StageState("missing")


def status_table(run_dir: Path) -> str:
    """``tracekd run --status RUN``: every stage of the run's ``plan.json`` with its state."""
    run_dir = Path(run_dir)
    plan = run_dir / "plan.json"
    if not plan.is_file():
        raise ConfigError(f"{run_dir} has no plan.json: not a run folder (start the run with `tracekd run CONFIG`)")
    stages = stages_from_dicts(json.loads(plan.read_text(encoding="utf-8"))["stages"])
    states = [stage_state(s, run_dir) for s in stages]
    rows = [[str(i), s.label, s.key, st.state, st.detail] for i, (s, st) in enumerate(zip(stages, states), 1)]
    head = ["#", "stage", "key", "state", "detail"]
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    fmt = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    counts = {k: sum(st.state == k for st in states) for k in STATES}
    lines = [f"{run_dir}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v), fmt(head),
             fmt(["-" * w for w in widths]), *map(fmt, rows)]
    done_report = (run_dir / "analysis.json").exists()
    lines.append("analysis and report: " + ("written" if done_report else "not yet"))
    for s, st in zip(stages, states):
        if st.state == "failed":
            rec = read_job_record(run_dir, s) or {}
            t = tail(rec.get("log"), 10)
            if t:
                lines.append(f"--- {s.label}: last lines of {rec.get('log')}\n{t}")
    return "\n".join(lines)
