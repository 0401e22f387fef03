"""A local OpenAI-compatible teacher: ``transformers serve`` on loopback, serving a student folder.

Used by the offline recipes, the tests and the benchmark; it needs the ``teacher`` extra
(``transformers[serving]``) and no network (``HF_HUB_OFFLINE=1`` is set for the server).

    with serve_local("tiny-random") as server:
        cfg = TeacherConfig(base_url=server.base_url, model=server.model)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .. import students
from ..errors import ConfigError


@dataclass(frozen=True)
class LocalServer:
    """A running server: its ``base_url`` (with ``/v1``) and the ``model`` id it answers to."""

    base_url: str
    model: str
    pid: int
    log: Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command() -> list[str]:
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if not exe:
        raise ConfigError("`transformers serve` is not installed; pip install 'tracekd[teacher]'")
    return [exe, "serve"]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def serve_local(student: str, *, port: int | None = None, device: str = "auto", startup_timeout: float = 120.0,
                extra_args: tuple[str, ...] = ()) -> Iterator[LocalServer]:
    """Serve ``student`` (a built-in name or a model folder) on 127.0.0.1 until the block ends.

    ``device`` is the server's (``auto``: a GPU where there is one, else the CPU); ``extra_args``
    go to ``transformers serve`` as they are (e.g. ``("--continuous-batching",)``).

    Waits for ``/health`` at most ``startup_timeout`` seconds; a server that exits or never gets
    ready raises ConfigError with the end of its log. The server is stopped (SIGTERM, then SIGKILL)
    on the way out.
    """
    folder = students.resolve(student).source
    if not Path(folder).is_dir():
        raise ConfigError(f"serve_local needs a local model folder; {student!r} resolves to {folder!r}")
    port = port or free_port()
    log = Path(tempfile.mkstemp(prefix="tracekd-serve-", suffix=".log")[1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [*_command(), folder, "--host", "127.0.0.1", "--port", str(port), "--device", device,
           "--log-level", "warning", *extra_args]
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                why = f"exited with {proc.returncode}" if proc.poll() is not None else \
                    f"not ready after {startup_timeout:.0f} s"
                raise ConfigError(f"`transformers serve` {why}; its log ends:\n{tail}")
            time.sleep(0.2)
        yield LocalServer(base_url=url + "/v1", model=folder, pid=proc.pid, log=log)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            log.unlink()
