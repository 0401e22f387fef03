"""Shared helpers for the study tests: a real tracekd build folder with hand-written teacher arms, a
study built from it, and a uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

from tracekd.cli import main as tracekd

TEACHER_ARMS = ("teacher-trace", "teacher-summary", "teacher-explanation")
ADMIN_TOKEN = "admin-token-for-tests-0123456789"


def make_build(root: Path, n_test: int = 6) -> Path:
    """``tracekd synth babi`` + ``tracekd build`` (correct arm), then teacher arms written by hand in the
    same prompt-completion format for the same test ids."""
    data, out = root / "babi", root / "build"
    assert tracekd(["synth", "babi", "--tasks", "qa1,qa2,qa15", "--n", "2", "--n-test", str(n_test),
                    "--seed", "0", "--out", str(data)]) == 0
    assert tracekd(["build", "--dataset", "babi", "--data", str(data), "--arms", "correct", "--seed", "0", "--option", "tasks=qa1,qa2,qa15",
                    "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "correct" / "test.jsonl").read_text().splitlines()]
    examples = {e["id"]: e for e in map(json.loads, (out / "examples" / "test.jsonl").read_text().splitlines())}
    for arm in TEACHER_ARMS:
        lines = []
        for r in rows:
            ex = examples[r["id"]]
            answer = ", ".join(ex["answers"])
            text = {
                "teacher-trace": f"<think>Okay, let me think. The question is: {ex['question']} Looking at "
                                 f"the context line by line... so the answer should be {answer}.</think> "
                                 f"<answer>The answer is {answer}.</answer>",
                "teacher-summary": f"<think>Summary: the relevant fact gives {answer}.</think> <answer>{answer}</answer>",
                "teacher-explanation": f"<think>I answered {answer} because the text says so.</think> "
                                       f"<answer>{answer}</answer>",
            }[arm]
            lines.append(json.dumps({**r, "arm": arm, "completion": [{"role": "assistant", "content": text}],
                                     "target": None}))
        (out / arm).mkdir()
        (out / arm / "test.jsonl").write_text("\n".join(lines) + "\n")
    return out


def make_study(root: Path, **overrides) -> Path:
    from tracekd.study.build import build_study
    from tracekd.study.config import load_study_config

    build = make_build(root)
    cfg = load_study_config(overrides={"items_per_condition": 4, "items_per_participant": 2,
                                       "completion_code": "C0DE42", **overrides})
    build_study(cfg, build, root / "study")
    return root / "study"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app, timeout: float = 20.0, port: int | None = None):
    """Run ``app`` with uvicorn on 127.0.0.1 (``port``, default a free one) in a thread; yield its base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, limit_concurrency=200))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not t.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(timeout)
