"""The teacher client against a REAL OpenAI-compatible server: `transformers serve` on loopback.

One server (the tiny-random student) per module; a small in-process proxy in front of it counts
the requests that reach the server and injects faults on a schedule (429, 500, slow responses,
malformed JSON, 401). Real servers of reasoning models return the trace in ``reasoning_content``
(DeepSeek, vLLM's reasoning parsers); tiny-random cannot, so the proxy may add that field to the
real response (``proxy.reasoning``), or wrap the real content in a ``<think>`` block
(``proxy.think``), to test that the client captures either.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("openai")

from tracekd.cli import main  # noqa: E402
from tracekd.errors import ConfigError  # noqa: E402
from tracekd.io import read_json  # noqa: E402
from tracekd.records import Decomposition, Example  # noqa: E402
from tracekd.teacher.client import dry_run, read_responses, run_requests  # noqa: E402
from tracekd.teacher.config import TeacherConfig  # noqa: E402
from tracekd.teacher.records import TeacherRequest  # noqa: E402

MAX_TOKENS = 4


class Proxy:
    """A fault-injecting HTTP proxy for /v1/chat/completions, in a thread of this process."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.lock = threading.Lock()
        self.reset()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output quiet
                pass

            def do_POST(self):
                proxy.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def reset(self) -> None:
        self.faults: list[str | None] = []  # one per incoming request, in order; then `always`
        self.always: str | None = None
        self.delay = 0.0  # seconds every forwarded request waits (to keep requests in flight)
        self.slow = 2.0  # seconds a "slow" fault waits (longer than the client's timeout in tests)
        self.reasoning = False
        self.think = False
        self.received = 0  # chat requests that reached the proxy (incl. retries)
        self.forwarded: list[dict] = []  # request bodies forwarded to the real server
        self.auth: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0

    def _send(self, h, status: int, body: bytes, headers: dict | None = None) -> None:
        h.send_response(status)
        h.send_header("content-type", "application/json")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("content-length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h) -> None:
        body = h.rfile.read(int(h.headers.get("content-length", 0)))
        with self.lock:
            self.received += 1
            self.auth.add(h.headers.get("authorization", ""))
            fault = self.faults.pop(0) if self.faults else self.always
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if fault == "429":
                return self._send(h, 429, b'{"error": {"message": "rate limited"}}', {"retry-after-ms": "50"})
            if fault == "500":
                return self._send(h, 500, b'{"error": {"message": "boom"}}')
            if fault == "401":
                return self._send(h, 401, b'{"error": {"message": "bad key"}}')
            if fault == "malformed":
                return self._send(h, 200, b'{"id": "x", "choices": [{"message": ')
            time.sleep(self.slow if fault == "slow" else self.delay)
            req = urllib.request.Request(self.upstream + h.path, data=body,
                                         headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    status, payload = r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return self._send(h, e.code, e.read())
            with self.lock:
                self.forwarded.append(json.loads(body))
            message = payload["choices"][0]["message"]
            if self.think:
                message["content"] = "<think>Let me see. " + (message.get("content") or "") + "</think>\n\nFinal."
            if self.reasoning:  # what DeepSeek / vLLM's reasoning parsers return
                message["reasoning_content"] = "The question asks about " + str(len(body)) + " bytes."
                payload["usage"]["completion_tokens_details"] = {"reasoning_tokens": 7}
            self._send(h, status, json.dumps(payload).encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("fastapi", reason="`transformers serve` needs the teacher extra (transformers[serving])")
    from tracekd.teacher.server import serve_local

    try:
        ctx = serve_local("tiny-random", startup_timeout=180)
        srv = ctx.__enter__()
    except ConfigError as e:
        pytest.skip(f"`transformers serve` cannot start here: {e}")
    yield srv
    ctx.__exit__(None, None, None)


@pytest.fixture()
def proxy(server):
    p = Proxy(server.base_url.removesuffix("/v1"))
    yield p
    p.httpd.shutdown()
    p.httpd.server_close()


def settings(proxy, server, tmp_path, **kw) -> TeacherConfig:
    base = dict(base_url=proxy.base_url, model=server.model, temperature=0.0, max_tokens=MAX_TOKENS, seed=0,
                concurrency=2, max_retries=3, timeout=30.0, cache_dir=str(tmp_path / "cache"), progress=False)
    base.update(kw)
    return TeacherConfig(**base)


def requests(n: int, purpose: str = "answer", offset: int = 0) -> list[TeacherRequest]:
    return [TeacherRequest(f"q/{i}", purpose, [{"role": "user", "content": f"Where is item {i}?"}])
            for i in range(offset, offset + n)]


def ids(out) -> list[str]:
    return [r.id for r in read_responses(out)]


def test_every_item_once_in_order_and_a_rerun_sends_nothing_cached(server, proxy, tmp_path):
    cfg = settings(proxy, server, tmp_path, concurrency=3)
    proxy.delay = 0.2  # keep requests in flight long enough to overlap
    plan = dry_run(requests(6), tmp_path / "a", cfg)
    assert (plan["items"], plan["done"], plan["cached"], plan["requests"]) == (6, 0, 0, 6)
    path = run_requests(requests(6), tmp_path / "a", cfg, log=lambda s: None)
    assert ids(tmp_path / "a") == [f"q/{i}" for i in range(6)]
    assert proxy.received == 6 and len(proxy.forwarded) == 6
    assert 1 < proxy.max_in_flight <= 3  # bounded concurrency, and really concurrent
    first = path.read_bytes()
    r0 = read_responses(tmp_path / "a")[0]
    assert r0.model == server.model and r0.sampling == {"temperature": 0.0, "top_p": None,
                                                        "max_tokens": MAX_TOKENS, "seed": 0}
    assert r0.completion_tokens <= MAX_TOKENS and r0.prompt_tokens > 0 and r0.reasoning_source == "none"
    assert proxy.forwarded[0]["max_tokens"] == MAX_TOKENS and proxy.forwarded[0]["seed"] == 0
    m = read_json(tmp_path / "a" / "manifest.json")
    assert m["complete"] and m["run"]["answered"] == 6 and len(m["item_tokens"]) == 6
    assert m["totals"]["completion_tokens"] == sum(r.completion_tokens for r in read_responses(tmp_path / "a"))
    assert m["totals"]["prompt_tokens"] + m["totals"]["completion_tokens"] <= plan["tokens_max"]
    assert dry_run(requests(6), tmp_path / "b", cfg)["cached"] == 6  # another folder: all answered by the cache

    # the same call again: nothing is sent, the file is unchanged
    run_requests(requests(6), tmp_path / "a", cfg, log=lambda s: None)
    assert proxy.received == 6 and path.read_bytes() == first
    # another output folder, same cache: still nothing sent; the same bytes
    run_requests(requests(6), tmp_path / "b", cfg, log=lambda s: None)
    assert proxy.received == 6 and (tmp_path / "b" / "responses.jsonl").read_bytes() == first
    assert read_json(tmp_path / "b" / "manifest.json")["run"]["from_cache"] == 6
    # other sampling settings are another request: asked again
    run_requests(requests(2), tmp_path / "c", settings(proxy, server, tmp_path, max_tokens=3), log=lambda s: None)
    assert proxy.received == 8
    # and a folder holding answers made with other settings is not silently mixed
    with pytest.raises(ConfigError, match="other settings|another model"):
        run_requests(requests(2), tmp_path / "a", settings(proxy, server, tmp_path, max_tokens=3))


def test_retries_429_500_malformed_and_timeouts_lose_and_duplicate_nothing(server, proxy, tmp_path):
    proxy.faults = ["429", "500", "malformed", "slow", None, "500"]
    proxy.slow = 4.0
    cfg = settings(proxy, server, tmp_path, concurrency=1, timeout=3.0, max_retries=4)
    run_requests(requests(3), tmp_path / "out", cfg, log=lambda s: None)
    assert ids(tmp_path / "out") == ["q/0", "q/1", "q/2"]
    # 3 answers + 429, 500, malformed, timeout, 500 retried (more only if a busy machine made a normal
    # request time out too: also a retry, and still nothing lost or duplicated)
    assert proxy.faults == [] and proxy.received >= 3 + 5
    m = read_json(tmp_path / "out" / "manifest.json")
    assert m["complete"] and m["run"]["failed"] == [] and m["run"]["sent"] == 3


def test_a_request_failing_every_retry_is_left_out_and_asked_on_the_rerun(server, proxy, tmp_path):
    proxy.always = "500"
    logs: list[str] = []
    cfg = settings(proxy, server, tmp_path, concurrency=2, max_retries=1)
    run_requests(requests(2), tmp_path / "out", cfg, log=logs.append)
    m = read_json(tmp_path / "out" / "manifest.json")
    assert not m["complete"] and ids(tmp_path / "out") == []
    assert sorted(f["id"] for f in m["run"]["failed"]) == ["q/0", "q/1"]
    assert "HTTP 500" in m["run"]["failed"][0]["error"] and "failed after retries" in logs[-1]
    assert proxy.received == 4  # each request tried twice
    proxy.always = None
    run_requests(requests(2), tmp_path / "out", cfg, log=logs.append)
    assert ids(tmp_path / "out") == ["q/0", "q/1"] and read_json(tmp_path / "out" / "manifest.json")["complete"]


def test_an_unauthorised_key_stops_the_run_at_once(server, proxy, tmp_path):
    proxy.always = "401"
    with pytest.raises(ConfigError, match="refused the API key from \\$TRACEKD_TEST_NO_KEY, which is not set"):
        run_requests(requests(3), tmp_path / "out", settings(proxy, server, tmp_path, concurrency=1,
                                                               api_key_env="TRACEKD_TEST_NO_KEY"))
    assert proxy.received == 1  # a 401 is not retried


def test_request_and_token_budgets_stop_cleanly_and_a_rerun_continues(server, proxy, tmp_path):
    logs: list[str] = []
    cfg = settings(proxy, server, tmp_path, concurrency=2, max_requests=3)
    run_requests(requests(5), tmp_path / "out", cfg, log=logs.append)
    m = read_json(tmp_path / "out" / "manifest.json")
    assert proxy.received == 3 and len(ids(tmp_path / "out")) == 3
    assert not m["complete"] and "request budget of 3" in m["run"]["stopped"] and "stopped" in logs[-1]
    run_requests(requests(5), tmp_path / "out", settings(proxy, server, tmp_path), log=logs.append)
    assert proxy.received == 5 and ids(tmp_path / "out") == [f"q/{i}" for i in range(5)]  # input order at the end

    # token budget: one request uses more than 1 token, so with one in flight the run stops after it
    cfg = settings(proxy, server, tmp_path, concurrency=1, max_tokens_total=1, price_per_1m_input=1.0,
                   price_per_1m_output=2.0)
    run_requests(requests(3, offset=10), tmp_path / "tok", cfg, log=logs.append)
    m = read_json(tmp_path / "tok" / "manifest.json")
    assert proxy.received == 6 and "token budget of 1" in m["run"]["stopped"]
    r = read_responses(tmp_path / "tok")[0]
    assert m["run"]["cost"] == pytest.approx(r.prompt_tokens * 1e-6 + r.completion_tokens * 2e-6)


def test_reasoning_from_reasoning_content_or_a_think_block(server, proxy, tmp_path):
    proxy.reasoning = True
    run_requests(requests(2), tmp_path / "rc", settings(proxy, server, tmp_path), log=lambda s: None)
    rs = read_responses(tmp_path / "rc")
    assert {r.reasoning_source for r in rs} == {"reasoning_content"}
    assert rs[0].reasoning.startswith("The question asks about") and rs[0].reasoning_tokens == 7
    assert read_json(tmp_path / "rc" / "manifest.json")["totals"]["reasoning_tokens"] == 14
    proxy.reasoning, proxy.think = False, True
    run_requests(requests(1, offset=5), tmp_path / "tt", settings(proxy, server, tmp_path), log=lambda s: None)
    (r,) = read_responses(tmp_path / "tt")
    assert r.reasoning_source == "think_tag" and r.reasoning.startswith("Let me see.") and r.answer == "Final."


def test_the_api_key_reaches_the_server_and_is_written_nowhere(server, proxy, tmp_path, monkeypatch, capsys, caplog):
    secret = "sk-tracekd-test-0123456789abcdef"
    monkeypatch.setenv("TRACEKD_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    proxy.faults = ["500"]  # a retry, so the SDK's retry logging runs too
    cfg = settings(proxy, server, tmp_path, api_key_env="TRACEKD_TEST_KEY", progress=True)
    run_requests(requests(2), tmp_path / "out", cfg)
    assert main(["teacher", "--base-url", proxy.base_url, "--model", server.model, "--api-key-env",
                 "TRACEKD_TEST_KEY", "--input", str(_examples(tmp_path)), "--out", str(tmp_path / "cli"),
                 "--cache-dir", str(tmp_path / "cache"), "--max-tokens", str(MAX_TOKENS)]) == 0
    assert proxy.auth == {f"Bearer {secret}"}
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err and secret not in caplog.text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 6
    for p in files:
        assert secret.encode() not in p.read_bytes(), p


def _examples(tmp_path: Path, n: int = 2) -> Path:
    path = tmp_path / "examples.jsonl"
    rows = [Example(f"babi/qa1/test/{i}/1", "babi", "test", "Where is Mary?",
                    (f"Mary went to room {i}.", "John left."), (f"room {i}",), Decomposition("qa1", (0,))).to_dict()
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_dry_run_counts_requests_cached_and_bounds_tokens(server, proxy, tmp_path, capsys):
    examples = _examples(tmp_path, 3)
    common = ["teacher", "--base-url", proxy.base_url, "--model", server.model, "--input", str(examples),
              "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--max-tokens", "4",
              "--no-progress"]
    assert main([*common, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 item(s): 0 already in" in out and "0 answered by the cache, 3 request(s) to send" in out
    assert proxy.received == 0
    assert main([*common, "--max-examples", "1"]) == 0
    assert main([*common, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 already in" in out and "2 request(s) to send" in out and "completions <= 8" in out
    r = read_responses(tmp_path / "out")[0]
    assert [m["role"] for m in r.messages] == ["user"]  # the method's prompt in one user turn
    assert r.messages[0]["content"].startswith("Answer the question based on the context:\nMary went to room 0.")


def test_cli_names_file_line_and_field_of_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "prompt": [{"role": "user", "content": "x"}], "arm": "v",
                               "completion": []}) + "\n" + json.dumps({"id": "b", "text": "?"}) + "\n")
    assert main(["teacher", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--input", str(bad),
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2: field 'question'" in err and "Traceback" not in err
    assert main(["teacher", "--base-url", "127.0.0.1:9", "--model", "m", "--input", str(bad),
                 "--out", str(tmp_path / "out")]) == 1
    assert "base_url must start with http" in capsys.readouterr().err


def test_sigkill_mid_run_then_restart_gives_every_item_exactly_once(server, proxy, tmp_path):
    n = 8
    examples = _examples(tmp_path, n)
    proxy.delay = 0.3
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tracekd.cli", "teacher", "--base-url", proxy.base_url, "--model", server.model,
           "--input", str(examples), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
           "--max-tokens", str(MAX_TOKENS), "--temperature", "0", "--concurrency", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    lines = 0
    while time.monotonic() < deadline and proc.poll() is None:
        lines = (out / "responses.jsonl").read_text().count("\n") if (out / "responses.jsonl").exists() else 0
        if lines >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    killed_at = len(read_responses(out))
    assert 3 <= killed_at < n
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = ids(out)
    assert sorted(got) == sorted(f"babi/qa1/test/{i}/1" for i in range(n)) and len(got) == n
    assert got == [f"babi/qa1/test/{i}/1" for i in range(n)]  # rewritten in input order at the end
    # every item asked once, except the ones in flight when it was killed (at most `concurrency`)
    asked = [json.dumps(b["messages"]) for b in proxy.forwarded]
    assert set(asked) == {json.dumps(r.messages) for r in read_responses(out)}
    assert n <= len(asked) <= n + 2


def test_cli_config_yaml_and_sft_rows_without_their_system_message(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    prompt = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Q?"}]
    rows.write_text("".join(json.dumps({"id": f"r{i}", "arm": "vanilla", "prompt": prompt,
                                        "completion": [{"role": "assistant", "content": "A"}]}) + "\n"
                            for i in range(2)), encoding="utf-8")
    cfg = tmp_path / "teacher.yaml"
    cfg.write_text(f"base-url: http://127.0.0.1:9/v1\nmodel: some/model\nmax_tokens: 10\ninput_file: {rows}\n"
                   f"out: {tmp_path / 'out'}\ncache_dir: {tmp_path / 'cache'}\nprice_per_1m_input: 1.0\n",
                   encoding="utf-8")
    assert main(["teacher", "--config", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # the two rows are the same request (same messages): one request, its bound counted once
    assert "2 item(s)" in out and "1 request(s) to send" in out and "completions <= 10" in out and "cost: <=" in out
    from tracekd.teacher.inputs import read_requests

    assert [m["role"] for m in read_requests(rows)[0].messages] == ["user"]
    assert [m["role"] for m in read_requests(rows, system=True)[0].messages] == ["system", "user"]
    cfg.write_text(cfg.read_text() + "max_token: 3\n", encoding="utf-8")
    assert main(["teacher", "--config", str(cfg), "--dry-run"]) == 1
    assert "did you mean 'max_tokens'" in capsys.readouterr().err
