"""Scoring speed: parse + verify + score on >= 50,000 synthesised outputs of every parse status.

  python benchmarks/bench_score.py                 # 50,000 outputs per dataset, strict and cotemp-official
  python benchmarks/bench_score.py --n 10000

Outputs are rendered from synthetic bAbI and CoTemp examples (`tracekd synth`) in every shape the judge
meets: correct and corrupted traces (ok), bare answers (no_trace), traces without an answer (no_answer),
class or evidence sentences broken (unparseable_class / unparseable_evidence), cut-off outputs (truncated),
empty ones, and a Qwen3-style empty thinking block in front. Everything runs on one core (this process),
after one untimed warm-up pass. It prints judgements per second for each dataset x scorer, and the ratio
against the target of 20,000 judgements/s and against a baseline measured in the same run: reading the
same outputs as JSON lines (the I/O floor every scorer pays).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from tracekd.cli import main as cli
from tracekd.datasets import DATASETS
from tracekd.io import read_records
from tracekd.records import Example, Generation
from tracekd.score.judge import score_pairs, settings_for
from tracekd.traces.corrupt import target_for
from tracekd.traces.templates import get_template, render_completion

TARGET = 20_000.0


def shapes(ex: Example, template, rng: random.Random) -> list[tuple[str, str | None]]:
    """(text, finish_reason) of one example in every shape."""
    good = render_completion(ex, ex.gold, template)
    try:
        target = target_for(ex, "incorrect", DATASETS.get(ex.dataset).labels, rng.randrange(1 << 30))
        wrong = render_completion(ex, target.decomposition, template)
    except Exception:  # an example with nothing to corrupt
        wrong = good
    think, _, answer = good.partition("</think>")
    return [
        (good, "stop"),
        (wrong, "stop"),
        (render_completion(ex, None, template), "stop"),                     # no_trace
        (think + "</think>", "stop"),                                        # no_answer
        ("<think>" + think.split("\n", 1)[-1] + "</think>" + answer, "stop"),  # unparseable_class
        (good.replace('["', "['", 1), "stop"),                               # unparseable_evidence
        (good[: len(good) // 2], "length"),                                  # truncated
        ("", "stop"),                                                        # empty
        ("<think>\n\n</think>\n\n" + good, "stop"),                          # Qwen3 thinking off
    ]


def load(dataset: str, n: int, workdir: Path) -> list[tuple[Example, Generation]]:
    data, sft = workdir / f"{dataset}-data", workdir / f"{dataset}-sft"
    if not data.exists():
        cli(["synth", dataset, "--n", "400", "--seed", "0", "--out", str(data)])
        cli(["build", "--dataset", dataset, "--data", str(data), "--arms", "correct", "--out", str(sft), "--quiet"])
    examples = read_records(sft / "examples" / "test.jsonl", Example) + read_records(
        sft / "examples" / "train.jsonl", Example)
    template = get_template(settings_for(examples).template)
    rng = random.Random(0)
    pairs = []
    while len(pairs) < n:
        for ex in examples:
            for text, finish in shapes(ex, template, rng):
                pairs.append((ex, Generation(ex.id, text, finish)))
    return pairs[:n]


def rate(fn, n: int, repeat: int = 3) -> float:
    """Items per CPU second of this process (best of ``repeat``; CPU time, so other load on the machine
    does not count)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="outputs per dataset (default: %(default)s)")
    parser.add_argument("--workdir", default=None, help="where the synthetic data goes (default: a temporary folder)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        print(f"{'dataset':<8} {'scorer':<16} {'outputs':>8} {'judgements/s':>13} {'x target':>9} {'x I/O floor':>12}")
        for dataset, scorers in (("babi", ("strict",)), ("cotemp", ("strict", "cotemp-official"))):
            pairs = load(dataset, args.n, workdir)
            lines = [json.dumps({"id": g.id, "text": g.text, "finish_reason": g.finish_reason}) for _, g in pairs]
            floor = rate(lambda: [json.loads(x) for x in lines], len(lines))
            for scorer in scorers:
                settings = settings_for([ex for ex, _ in pairs[:1]], scorer=scorer)
                score_pairs(pairs[:2000], settings)  # warm-up (imports, pattern caches)
                statuses = {}
                for j in score_pairs(pairs[:5000], settings):
                    statuses[j.status] = statuses.get(j.status, 0) + 1
                r = rate(lambda: score_pairs(pairs, settings), len(pairs))
                print(f"{dataset:<8} {scorer:<16} {len(pairs):>8,} {r:>13,.0f} {r / TARGET:>9.2f} {r / floor:>12.3f}")
                print(f"         statuses in the mix: {dict(sorted(statuses.items()))}")


if __name__ == "__main__":
    main()
