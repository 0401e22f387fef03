"""``run_requests``: ask an OpenAI-compatible endpoint every request once; cached, resumable, budgeted.

Output folder::

    OUT/responses.jsonl   one TeacherResponse per (id, purpose), appended with fsync as answers arrive
    OUT/manifest.json     settings, counts, token totals (all items and this run), cost, what stopped it

A request whose key (model + messages + sampling) is in the response cache is answered from it and
never sent. Killed at any point (even SIGKILL), the same call resumes: items already in
responses.jsonl are kept, answers already cached are not asked again, and when every item is done
the file is rewritten (atomically) in request order, so it does not depend on the interruptions.
Retries: the openai SDK retries 429, 408/409, 5xx, timeouts and dropped connections with exponential
backoff (``max_retries``); a malformed body (bad JSON, no choices) is retried here the same way.
A request that still fails is left out (named in the manifest; a re-run asks it again); an
authentication or unknown-model error stops the run at once.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import to_dict
from ..errors import ConfigError, DataError
from ..io import JsonlAppender, manifest, sha256_file, write_json, write_jsonl
from .cache import ResponseCache, request_key
from .config import TeacherConfig
from .records import TeacherRequest, TeacherResponse, iter_responses, separate_reasoning, split_reasoning

RESPONSES = "responses.jsonl"
MANIFEST = "manifest.json"


class MalformedResponse(Exception):
    """The server answered 200 with something that is not a chat completion."""


@dataclass
class RunStats:
    """What a run did (the manifest's ``run`` block)."""

    items: int = 0
    already_done: int = 0
    from_cache: int = 0
    sent: int = 0
    answered: int = 0
    failed: list = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    stopped: str | None = None


def api_key(cfg: TeacherConfig) -> str:
    """The key from the environment variable the config names; local servers need none."""
    return os.environ.get(cfg.api_key_env) or "no-key"


def make_client(cfg: TeacherConfig):
    """The openai SDK client for ``cfg`` (its own retries and timeout)."""
    try:
        from openai import OpenAI
    except ImportError:
        raise ConfigError("the teacher client needs the openai SDK: pip install 'tracekd[teacher]'") from None

    return OpenAI(base_url=cfg.base_url, api_key=api_key(cfg), timeout=cfg.timeout, max_retries=cfg.max_retries)


def raw_response(completion: Any) -> dict:
    """The parts of a chat completion tracekd keeps (what the cache stores)."""
    if isinstance(completion, (str, bytes)) or not getattr(completion, "choices", None):
        raise MalformedResponse("the response has no choices")
    choice = completion.choices[0]
    message = choice.message
    if message is None:
        raise MalformedResponse("the first choice has no message")
    reasoning = separate_reasoning(message)
    usage = getattr(completion, "usage", None)
    details = getattr(usage, "completion_tokens_details", None) if usage else None
    rt = getattr(details, "reasoning_tokens", None) if details else None
    return {
        "model": completion.model or "",
        "content": message.content or "",
        "reasoning_content": reasoning,
        "finish_reason": choice.finish_reason or "",
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        "reasoning_tokens": int(rt) if rt is not None else None,
    }


def recorded_sampling(cfg: TeacherConfig) -> dict:
    """The sampling settings a response records: ``cfg.sampling()`` plus ``extra_body`` when set."""
    return {**cfg.sampling(), **({"extra_body": cfg.extra_body} if cfg.extra_body else {})}


def to_response(req: TeacherRequest, key: str, sampling: dict, raw: dict) -> TeacherResponse:
    """The output record of ``req`` from a raw (sent or cached) response."""
    reasoning, source, answer = split_reasoning({"content": raw["content"],
                                                 "reasoning_content": raw.get("reasoning_content")})
    return TeacherResponse(id=req.id, purpose=req.purpose, key=key, model=raw["model"],
                           messages=[dict(m) for m in req.messages], sampling=dict(sampling),
                           reasoning=reasoning, reasoning_source=source, answer=answer,
                           finish_reason=raw["finish_reason"], prompt_tokens=raw["prompt_tokens"],
                           completion_tokens=raw["completion_tokens"], reasoning_tokens=raw["reasoning_tokens"])


def backoff(attempt: int, base: float = 0.5, cap: float = 8.0) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): exponential with jitter, capped.

    >>> 0.375 <= backoff(0) <= 0.5 and 3.0 <= backoff(3) <= 4.0 and backoff(10) <= 8.0
    True
    """
    return min(cap, base * 2 ** attempt) * (1 - 0.25 * random.random())


class Fatal(ConfigError):
    """An error no retry can fix (bad key, unknown model): the run stops."""


def ask(client, cfg: TeacherConfig, messages: list[dict], sleep: Callable[[float], None] = time.sleep) -> dict:
    """Send one request; the raw response. HTTP-level retries are the SDK's, malformed bodies retried here."""
    import openai

    kwargs: dict[str, Any] = {k: v for k, v in cfg.sampling().items() if v is not None}
    if cfg.extra_body:
        kwargs["extra_body"] = cfg.extra_body
    for attempt in range(cfg.max_retries + 1):
        try:
            completion = client.chat.completions.create(model=cfg.model, messages=messages, **kwargs)
            return raw_response(completion)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            unset = "" if os.environ.get(cfg.api_key_env) else ", which is not set"
            raise Fatal(f"{cfg.base_url} refused the API key from ${cfg.api_key_env}{unset} "
                        f"(HTTP {e.status_code})") from None
        except openai.NotFoundError as e:
            raise Fatal(f"{cfg.base_url}: model {cfg.model!r} or the chat endpoint was not found "
                        f"(HTTP {e.status_code}): {_detail(e)}") from None
        except (MalformedResponse, json.JSONDecodeError, openai.APIResponseValidationError) as e:
            if attempt == cfg.max_retries:
                raise MalformedResponse(f"malformed response after {attempt + 1} tries: {e}") from None
            sleep(backoff(attempt))
    raise AssertionError("unreachable")


def _detail(e: Exception) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("message") or body.get("error") or body)[:300]
    return str(e)[:300]


def _describe(e: BaseException) -> str:
    import openai

    if isinstance(e, openai.APIStatusError):
        return f"HTTP {e.status_code}: {_detail(e)}"
    if isinstance(e, openai.APITimeoutError):
        return "timed out"
    if isinstance(e, openai.APIConnectionError):
        return f"connection failed: {e.__cause__ or e}"
    return f"{type(e).__name__}: {e}"


def read_responses(out_dir: str | Path) -> list[TeacherResponse]:
    """Every response in ``OUT/responses.jsonl`` (empty if none), in file order."""
    path = Path(out_dir) / RESPONSES
    if not path.is_file():
        return []
    return [r for _, r in iter_responses(path)]


def _existing(path: Path, keys: dict[tuple[str, str], str]) -> tuple[dict, list[TeacherResponse]]:
    """Responses already in the output: those of this call by (id, purpose), and the others."""
    mine: dict[tuple[str, str], TeacherResponse] = {}
    others: list[TeacherResponse] = []
    seen: set[tuple[str, str]] = set()
    if not path.is_file():
        return mine, others
    for line, r in iter_responses(path):
        item = (r.id, r.purpose)
        if item in seen:
            raise DataError(f"duplicate response for id {r.id!r}, purpose {r.purpose!r}", path=path, line=line,
                            field="id")
        seen.add(item)
        if item not in keys:
            others.append(r)
        elif r.key != keys[item]:
            raise ConfigError(f"{path}:{line}: id {r.id!r} ({r.purpose}) was asked with another model, prompt "
                              f"or sampling settings; rerun with the same settings to resume, or use another "
                              f"output folder")
        else:
            mine[item] = r
    return mine, others


def plan(requests: list[TeacherRequest], cfg: TeacherConfig) -> list[tuple[TeacherRequest, str]]:
    """Each request with its cache key; a repeated (id, purpose) is an error."""
    seen: set[tuple[str, str]] = set()
    out = []
    sampling = cfg.sampling()
    for r in requests:
        item = (r.id, r.purpose)
        if item in seen:
            raise DataError(f"request for id {r.id!r}, purpose {r.purpose!r} given twice", field="id")
        seen.add(item)
        out.append((r, request_key(cfg.model, [dict(m) for m in r.messages], sampling, cfg.extra_body)))
    return out


def prompt_token_bound(messages: list[dict]) -> int:
    """An upper bound on a chat prompt's tokens: its UTF-8 bytes, plus 8 a message and 64 for the template.

    >>> prompt_token_bound([{"role": "user", "content": "Where is Mary?"}])
    86
    """
    return sum(len(str(m.get("content", "")).encode("utf-8")) + 8 for m in messages) + 64


def dry_run(requests: list[TeacherRequest], out_dir: str | Path, settings: TeacherConfig) -> dict:
    """What a run would do: items, how many are done or cached, requests to send and a token upper bound.

    The bound counts each prompt at one token per UTF-8 byte of its messages (byte-level BPE never
    makes more) plus 8 per message and 64 per request for the chat template's markup and default
    system text, and ``max_tokens`` per request (unknown when it is unset).
    """
    planned = plan(requests, settings)
    keys = {(r.id, r.purpose): k for r, k in planned}
    done, _ = _existing(Path(out_dir) / RESPONSES, keys)
    cache = ResponseCache(settings.cache_dir)
    todo = [(r, k) for r, k in planned if (r.id, r.purpose) not in done]
    cached = sum(1 for _, k in todo if k in cache)
    to_send: dict[str, TeacherRequest] = {}  # one request per key, in order
    for r, k in todo:
        if k not in cache:
            to_send.setdefault(k, r)
    sends = list(to_send.values())[:settings.max_requests]  # a request budget stops the run there
    unique = len(sends)
    prompt_bound = sum(prompt_token_bound(r.messages) for r in sends)
    completion_bound = settings.max_tokens * unique if settings.max_tokens is not None else None
    return {"items": len(planned), "done": len(done), "cached": cached, "requests": unique,
            "prompt_tokens_max": prompt_bound,
            "completion_tokens_max": completion_bound,
            "tokens_max": prompt_bound + completion_bound if completion_bound is not None else None}


def run_requests(requests: list[TeacherRequest], out_dir: str | Path, settings: TeacherConfig, *,
                 progress: bool | None = None, log: Callable[[str], None] = print,
                 manifest_extra: dict | None = None) -> Path:
    """Answer every request (cache first, then the endpoint); returns ``OUT/responses.jsonl``.

    ``OUT/manifest.json`` says whether the run is ``complete``; when a budget stopped it or some
    requests failed, rerunning the same call continues.
    """
    from tqdm.auto import tqdm

    cfg = settings
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESPONSES
    planned = plan(requests, cfg)
    keys = {(r.id, r.purpose): k for r, k in planned}
    done, others = _existing(path, keys)
    cache = ResponseCache(cfg.cache_dir)
    sampling = recorded_sampling(cfg)
    stats = RunStats(items=len(planned), already_done=len(done))
    todo = [(r, k) for r, k in planned if (r.id, r.purpose) not in done]
    show = cfg.progress if progress is None else progress

    with JsonlAppender(path) as sink, tqdm(total=len(planned), initial=len(done), unit="item", desc="teacher",
                                           disable=not show) as bar:
        def finish(req: TeacherRequest, key: str, raw: dict) -> None:
            resp = to_response(req, key, sampling, raw)
            sink.write(resp.to_dict())
            done[(req.id, req.purpose)] = resp
            bar.update(1)

        waiting: dict[str, list[TeacherRequest]] = {}  # key -> requests it answers (same request, many items)
        for req, key in todo:
            raw = cache.get(key)
            if raw is not None:
                stats.from_cache += 1
                finish(req, key, raw)
            else:
                waiting.setdefault(key, []).append(req)
        if waiting:
            _send(waiting, cfg, cache, stats, finish, bar)

    complete = len(done) == len(planned)
    if complete:  # every item done: one canonical file, independent of how the run was interrupted
        write_jsonl(path, [r.to_dict() for r in others] + [done[(r.id, r.purpose)].to_dict() for r, _ in planned])
    _write_manifest(out, cfg, stats, [done[(r.id, r.purpose)] for r, _ in planned if (r.id, r.purpose) in done],
                    complete, manifest_extra)
    if stats.stopped:
        log(f"teacher: stopped ({stats.stopped}): {len(done)} of {len(planned)} items done; "
            "rerun with a larger budget to continue")
    if stats.failed:
        log(f"teacher: {len(stats.failed)} request(s) failed after retries (listed in {out / MANIFEST}); "
            "rerun to ask them again")
    return path


def _send(waiting: dict[str, list[TeacherRequest]], cfg: TeacherConfig, cache: ResponseCache, stats: RunStats,
          finish, bar) -> None:
    """Send the uncached requests, ``concurrency`` at a time, until done or a budget is reached."""
    client = make_client(cfg)
    queue = deque(waiting.items())
    pending: dict[Future, str] = {}
    pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="teacher")
    try:
        while queue or pending:
            while queue and len(pending) < cfg.concurrency and not stats.stopped:
                if cfg.max_requests is not None and stats.sent >= cfg.max_requests:
                    stats.stopped = f"request budget of {cfg.max_requests} reached"
                    break
                if cfg.max_tokens_total is not None and \
                        stats.prompt_tokens + stats.completion_tokens >= cfg.max_tokens_total:
                    stats.stopped = f"token budget of {cfg.max_tokens_total} reached"
                    break
                key, reqs = queue.popleft()
                stats.sent += 1
                pending[pool.submit(ask, client, cfg, [dict(m) for m in reqs[0].messages])] = key
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                key = pending.pop(fut)
                reqs = waiting[key]
                try:
                    raw = fut.result()
                except Fatal:
                    raise
                except Exception as e:  # noqa: BLE001 - one request failed after retries; the rest go on
                    stats.failed.append({"id": reqs[0].id, "purpose": reqs[0].purpose, "key": key,
                                         "error": _describe(e)})
                    bar.update(len(reqs))
                    continue
                cache.put(key, {"model": cfg.model, "messages": reqs[0].messages, "sampling": cfg.sampling(),
                                **({"extra_body": cfg.extra_body} if cfg.extra_body else {})}, raw)
                stats.answered += 1
                stats.prompt_tokens += raw["prompt_tokens"]
                stats.completion_tokens += raw["completion_tokens"]
                stats.reasoning_tokens += raw["reasoning_tokens"] or 0
                for req in reqs:
                    finish(req, key, raw)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        client.close()


def _write_manifest(out: Path, cfg: TeacherConfig, stats: RunStats, responses: list[TeacherResponse],
                    complete: bool, extra: dict | None) -> None:
    prompt = sum(r.prompt_tokens for r in responses)
    completion = sum(r.completion_tokens for r in responses)
    reasoning = [r.reasoning_tokens for r in responses if r.reasoning_tokens is not None]
    sources: dict[str, int] = {}
    for r in responses:
        sources[r.reasoning_source] = sources.get(r.reasoning_source, 0) + 1
    run = {k: v for k, v in stats.__dict__.items()}
    run["cost"] = cfg.cost(stats.prompt_tokens, stats.completion_tokens)
    m = manifest(kind="teacher", config=to_dict(cfg), seed=cfg.seed, complete=complete,
                 items=stats.items, responses=len(responses),
                 totals={"prompt_tokens": prompt, "completion_tokens": completion,
                         "reasoning_tokens": sum(reasoning) if reasoning else None,
                         "cost": cfg.cost(prompt, completion)},
                 reasoning_sources=dict(sorted(sources.items())),
                 run=run,
                 item_tokens=[{"id": r.id, "purpose": r.purpose, "prompt_tokens": r.prompt_tokens,
                               "completion_tokens": r.completion_tokens, "reasoning_tokens": r.reasoning_tokens}
                              for r in responses],
                 files={RESPONSES: sha256_file(out / RESPONSES)} if complete else None,
                 **(extra or {}))
    write_json(out / MANIFEST, m)
