"""One process per stage folder: an ``fcntl`` lock that dies with its holder, plus who holds it.

A stage runs inside :func:`stage_lock`: an exclusive, non-blocking ``flock`` on ``STAGE/.lock``.
The kernel releases the lock when the holding process ends in any way (SIGKILL, OOM kill, a
SLURM job cancelled), so a killed job never leaves a stage locked; a second runner of the same
stage - a re-submission while the first is still running - is refused with who holds it.
``RUNNING.json`` beside the lock records the holder (host, pid, job id, start time) for
``tracekd run --status``; it is only trusted while the lock is actually held.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from ..errors import TracekdError
from ..io import write_json

LOCK_NAME = ".lock"
HOLDER_NAME = "RUNNING.json"


class StageBusy(TracekdError):
    """The stage is being run by another process."""


def job_id() -> str | None:
    """The scheduler's id of this process's job (SLURM, submitit), if any."""
    for var in ("SLURM_JOB_ID", "SUBMITIT_LOCAL_JOB_ID"):
        if os.environ.get(var):
            return os.environ[var]
    return None


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextlib.contextmanager
def stage_lock(stage_dir: Path) -> Iterator[None]:
    """Hold the stage folder's lock while the body runs; raise :class:`StageBusy` if another process has it."""
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(stage_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_flock(fd):
            who = holder(stage_dir) or {}
            raise StageBusy(f"{stage_dir} is being run by pid {who.get('pid', '?')} on {who.get('host', '?')}"
                            + (f" (job {who['job_id']})" if who.get("job_id") else ""))
        write_json(stage_dir / HOLDER_NAME, {"pid": os.getpid(), "host": socket.gethostname(), "job_id": job_id(),
                                             "started": time.time()})
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                (stage_dir / HOLDER_NAME).unlink()
    finally:
        os.close(fd)  # releases the flock


def pid_alive(pid: int) -> bool:
    """Whether a process with this id lives on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(stage_dir: Path) -> dict | None:
    """Who runs the stage now (``RUNNING.json``), or None when nobody holds its lock.

    Decided by trying the lock (the kernel's answer, also across NFS clients); a holder file left by
    a killed process is therefore never read as running. On the same host, a dead pid in the file
    also counts as not running (a lock taken over by an unrelated process cannot be ours).
    """
    stage_dir = Path(stage_dir)
    lock = stage_dir / LOCK_NAME
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDWR)
    try:
        if _try_flock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
    finally:
        os.close(fd)
    try:
        info = json.loads((stage_dir / HOLDER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"pid": None, "host": None, "job_id": None}
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int) and not pid_alive(info["pid"]):
        return None
    return info
