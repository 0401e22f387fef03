"""Benchmark: the teacher client's items/s with --concurrency 1 vs 8 against a local OpenAI-compatible server.

The server is `transformers serve` on loopback serving a built-in student (tracekd.teacher.server);
both runs ask the same questions (bAbI-style prompts with the method's wording) with the same
sampling, each into an empty cache, so every item is a real request. The ratio is items/s at
concurrency 8 / items/s at concurrency 1, measured in one run after one warm-up request.

    python benchmarks/bench_teacher.py                                # smollm2-135m, 24 items, 32 tokens
    python benchmarks/bench_teacher.py --student tiny-random --n 16   # seconds, a smoke check
    python benchmarks/bench_teacher.py --n 8 --max-tokens 16 --continuous-batching   # the server batches requests
    python benchmarks/bench_teacher.py --base-url URL --model M      # any endpoint instead (key: --api-key-env)

Measured on the project's 2-core machine (busy with other jobs): 4.07x with continuous batching (smollm2-135m,
8 items, 16 tokens), 0.99x without (the server then answers one request at a time). A remote API, where each
request mostly waits on the network, gains close to the concurrency.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from tracekd.teacher.client import run_requests
from tracekd.teacher.config import TeacherConfig
from tracekd.teacher.records import TeacherRequest

PEOPLE = ("Mary", "John", "Sandra", "Daniel")
PLACES = ("kitchen", "garden", "office", "hallway", "bathroom", "bedroom")


def questions(n: int) -> list[TeacherRequest]:
    """``n`` distinct bAbI-style questions in the method's prompt (one user turn)."""
    out = []
    for i in range(n):
        who, where, other = PEOPLE[i % 4], PLACES[i % 6], PLACES[(i * 5 + 1) % 6]
        context = f"{who} went to the {other}.\n{who} travelled to the {where}.\n{PEOPLE[(i + 1) % 4]} left."
        prompt = f"Answer the question based on the context:\n{context}\nQuestion: Where is {who}? " \
                 f"Only return the answer. (item {i})"
        out.append(TeacherRequest(f"bench/{i}", "answer", [{"role": "user", "content": prompt}]))
    return out


def measure(reqs: list[TeacherRequest], base: TeacherConfig, concurrency: int, workdir: Path) -> float:
    """Seconds to answer every request at ``concurrency`` with an empty cache."""
    cfg = TeacherConfig(**{**base.__dict__, "concurrency": concurrency,
                           "cache_dir": str(workdir / f"cache-{concurrency}")})
    t = time.perf_counter()
    run_requests(reqs, workdir / f"out-{concurrency}", cfg, log=lambda s: None)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="smollm2-135m", help="built-in or folder served locally")
    ap.add_argument("--n", type=int, default=24, help="items per run")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--high", type=int, default=8, help="the concurrency compared with 1")
    ap.add_argument("--continuous-batching", action="store_true", help="start the server with it")
    ap.add_argument("--cb-blocks", type=int, default=128, help="KV cache blocks (32 tokens) with --continuous-batching")
    ap.add_argument("--base-url", help="an existing endpoint instead of a local server")
    ap.add_argument("--model", help="model id at --base-url")
    ap.add_argument("--api-key-env", default="OPENAI_API_KEY")
    args = ap.parse_args()

    with contextlib.ExitStack() as stack:
        if args.base_url:
            base_url, model, where = args.base_url, args.model, args.base_url
        else:
            from tracekd.teacher.server import serve_local

            # continuous batching sizes its paged KV cache from free memory unless told (13 GB for
            # smollm2-135m on a 24 GB CPU machine); 128 blocks of 32 tokens hold 8 requests here
            extra = ("--continuous-batching", "--cb-block-size", "32", "--cb-num-blocks", str(args.cb_blocks)) \
                if args.continuous_batching else ()
            t = time.perf_counter()
            srv = stack.enter_context(serve_local(args.student, extra_args=extra))
            base_url, model = srv.base_url, srv.model
            where = f"transformers serve {args.student}{' --continuous-batching' if extra else ''} " \
                    f"(ready in {time.perf_counter() - t:.1f} s)"
        base = TeacherConfig(base_url=base_url, model=model, api_key_env=args.api_key_env, temperature=0.0,
                             max_tokens=args.max_tokens, seed=0, progress=False)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-teacher-")))
        reqs = questions(args.n)
        measure(questions(1), base, 1, work / "warmup")
        s1 = measure(reqs, base, 1, work)
        sh = measure(reqs, base, args.high, work)
        print(f"server: {where}; {args.n} items, max_tokens {args.max_tokens}, greedy")
        print(f"concurrency 1:  {s1:7.2f} s  {args.n / s1:7.2f} items/s")
        print(f"concurrency {args.high}:  {sh:7.2f} s  {args.n / sh:7.2f} items/s")
        print(f"ratio (items/s at {args.high} / at 1): {s1 / sh:.2f}x")


if __name__ == "__main__":
    main()
