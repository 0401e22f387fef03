"""Two trainings' loss curves, step by step: the same rows per step, and how far the losses differ.

  python benchmarks/compare_loss_curves.py RUN/stages/train-KEY/adapter runs/unsplit-vanilla

Each argument is a `tracekd train` output folder (or its ``train_log.jsonl``). Prints one line per
optimizer step (both losses, the difference) and a summary: whether every step trained on the same
rows, the largest absolute and relative loss difference, and the two trainings' memory plans. Exit
status 1 when the steps' rows differ or a loss differs by more than ``--rtol`` (default 1e-4).

Used to check that splitting a step into micro-batches within a memory budget (packed by tokens,
activation checkpointing per micro-batch) trains the same curve as the whole batch at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_log(path: Path) -> tuple[list[dict], dict]:
    """(the step records of ``train_log.jsonl``, the folder's memory plan or {})."""
    folder = path if path.is_dir() else path.parent
    log = folder / "train_log.jsonl" if path.is_dir() else path
    steps = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    plan_file = folder / "memory_plan.json"
    plan = json.loads(plan_file.read_text(encoding="utf-8")) if plan_file.is_file() else {}
    return steps, plan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--rtol", type=float, default=1e-4, help="largest relative loss difference accepted")
    args = ap.parse_args(argv)
    (a, plan_a), (b, plan_b) = read_log(args.a), read_log(args.b)
    print(f"A: {args.a} ({len(a)} steps; {plan_a.get('reason', 'no memory plan')})")
    print(f"B: {args.b} ({len(b)} steps; {plan_b.get('reason', 'no memory plan')})")
    print(f"{'step':>4}  {'loss A':>12}  {'loss B':>12}  {'|A-B|':>10}  rows")
    worst_abs = worst_rel = 0.0
    same_rows, same_length = True, len(a) == len(b)
    for x, y in zip(a, b, strict=False):
        rows = sorted(x.get("ids", [])) == sorted(y.get("ids", []))
        same_rows &= rows and x["step"] == y["step"]
        diff = abs(x["loss"] - y["loss"])
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / max(abs(y["loss"]), 1e-12))
        print(f"{x['step']:>4}  {x['loss']:>12.8f}  {y['loss']:>12.8f}  {diff:>10.2e}  {'same' if rows else 'DIFFER'}")
    ok = same_length and same_rows and worst_rel <= args.rtol
    length = "" if same_length else f"NOT the same number of steps ({len(a)} vs {len(b)}; the first {min(len(a), len(b))} compared); "
    print(f"{length}same rows in every step: {same_rows}; largest difference {worst_abs:.2e} absolute, {worst_rel:.2e} "
          f"relative (tolerance {args.rtol:g}): {'same curve' if ok else 'DIFFERENT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
