"""Ask a teacher model (any OpenAI-compatible chat endpoint) about every line of a file; cached, resumable.

  tracekd teacher --base-url https://api.deepseek.com --model deepseek-reasoner \\
      --api-key-env DEEPSEEK_API_KEY --input runs/cotemp-sft/examples/test.jsonl --out runs/teacher
  tracekd teacher --config teacher.yaml --dry-run

Examples are asked in the method's prompt (one user turn), SFT rows with their prompt messages.
Each answer is one line of OUT/responses.jsonl: the reasoning (the server's reasoning_content, else a
leading <think> block, else none), the answer without it, and token counts; OUT/manifest.json holds
the settings, totals and cost (with --price-per-1m-input/--price-per-1m-output). Answers are cached
by request (model + messages + sampling), so a rerun sends only what is missing; killed at any
point, the same command resumes. --max-requests / --max-tokens-total stop the run cleanly (exit
status 3, as when requests still fail after retries: rerun to continue).
The API key is read from the environment variable --api-key-env names and is never written.
"""

from __future__ import annotations

import argparse

from ..config import add_command_arguments, config_from_args
from ..io import read_json
from ..teacher.client import MANIFEST, dry_run, run_requests
from ..teacher.config import TeacherRunConfig
from ..teacher.inputs import read_requests

HELP = "ask a teacher endpoint (OpenAI-compatible) for reasoning traces; cached, resumable, budgeted"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="print how many requests are needed and cached, and an upper bound on tokens; send none")
    add_command_arguments(parser, TeacherRunConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args, TeacherRunConfig)
    if config is None:
        return 0
    requests = read_requests(config.input_file, config.purpose, config.template, config.system,
                             config.max_examples)
    settings = config.client_settings()
    if args.dry_run:
        d = dry_run(requests, config.out, settings)
        bound = "unknown (set --max-tokens)" if d["tokens_max"] is None else f"<= {d['tokens_max']:,}"
        print(f"{d['items']} item(s): {d['done']} already in {config.out}, {d['cached']} answered by the cache, "
              f"{d['requests']} request(s) to send")
        print(f"tokens: {bound} (prompts <= {d['prompt_tokens_max']:,}, completions "
              f"{'unbounded' if d['completion_tokens_max'] is None else '<= ' + format(d['completion_tokens_max'], ',')})")
        cost = None if d["tokens_max"] is None else settings.cost(d["prompt_tokens_max"], d["completion_tokens_max"])
        if cost is not None:
            print(f"cost: <= {cost}")
        return 0

    path = run_requests(requests, config.out, settings, manifest_extra={"input_file": config.input_file,
                                                                          "purpose": config.purpose})
    m = read_json(path.parent / MANIFEST)
    r, t = m["run"], m["totals"]
    print(f"teacher: {m['responses']}/{m['items']} item(s) in {path} ({r['already_done']} already there, "
          f"{r['from_cache']} from the cache, {r['answered']} asked now); tokens this run: "
          f"{r['prompt_tokens']:,} prompt + {r['completion_tokens']:,} completion"
          + (f", cost {r['cost']}" if r["cost"] is not None else "")
          + f"; all items: {t['prompt_tokens']:,} + {t['completion_tokens']:,}"
          + (f", cost {t['cost']}" if t["cost"] is not None else ""))
    return 0 if m["complete"] else 3
