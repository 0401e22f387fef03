"""Benchmark: where the memory of a training step goes, on CoTemp-length rows (issue 16).

Trains a few optimizer steps of the CoTemp CPU recipe's settings (default student, LoRA r 16 on the
seven projections, batch 4, no accumulation, float32) in a fresh process per variant, and reports
each process's peak RSS (``wait4``), the RSS before training (weights + runtime), tokens/s and the
loss of every step. Variants switch one lever at a time, so differences are what each lever costs:

    baseline         full-logits loss (the model's own), glibc's malloc defaults, no budget  (= before issue 16)
    +head            LM head only on completion positions                                    (logits)
    +malloc          freed blocks returned to the OS (fixed mmap threshold)                 (fragmentation)
    +ckpt            activation checkpointing on                                             (activations)
    tracekd          the defaults of `tracekd train` now (all of the above except ckpt, budget auto)
    budget-3.5GB     the defaults with --max-memory 3.5GB (the CoTemp CPU recipe's setting): the step is split
                     into micro-batches (same rows per optimizer step), checkpointing only if that is not enough
    micro-1          the step's 4 rows as 4 micro-batches of 1 (no padding, no checkpointing, no budget)
    *-keep-malloc    the same with glibc's malloc defaults (TRACEKD_KEEP_MALLOC=1): the speed the fixed mmap
                     threshold costs in page faults (system time) against the memory it saves

and prints the estimate of :mod:`tracekd.train.memory` (weights, LoRA + optimizer state,
activations, logits, attention) next to what was measured. Rows: the shared CoTemp files when
present (../shared/data/cotempqa), else `tracekd synth cotemp`.

    python benchmarks/bench_memory.py                     # 3 steps per variant (~5-10 min on 2 cores)
    python benchmarks/bench_memory.py --steps 2 --variants baseline,tracekd
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cotempqa"

VARIANTS = {
    "baseline": ({"loss_implementation": "model", "max_memory": "off"}, {"TRACEKD_KEEP_MALLOC": "1"}),
    "+head": ({"loss_implementation": "completion-head", "max_memory": "off"}, {"TRACEKD_KEEP_MALLOC": "1"}),
    "+malloc": ({"loss_implementation": "completion-head", "max_memory": "off"}, {}),
    "+ckpt": ({"loss_implementation": "completion-head", "max_memory": "off", "gradient_checkpointing": True}, {}),
    "tracekd": ({}, {}),
    "budget-3.5GB": ({"max_memory": "3.5GB"}, {}),
    "budget-3.5GB-keep-malloc": ({"max_memory": "3.5GB"}, {"TRACEKD_KEEP_MALLOC": "1"}),
    "micro-1": ({"per_device_train_batch_size": 1, "gradient_accumulation_steps": 4, "max_memory": "off"}, {}),
    "micro-1-keep-malloc": ({"per_device_train_batch_size": 1, "gradient_accumulation_steps": 4,
                             "max_memory": "off"}, {"TRACEKD_KEEP_MALLOC": "1"}),
}

CHILD = r"""
import json, sys
from tracekd.train import TrainConfig, train
cfg = json.loads(sys.argv[1])
out = train(TrainConfig(**cfg), log=lambda *a: print(*a, file=sys.stderr))
m = json.loads((out / "manifest.json").read_text())
print(json.dumps({"memory": m["memory"], "timing": m["timing"], "loss_curve": m["loss_curve"],
                  "resolved": m["resolved"]}))
"""


def cotemp_rows(n: int, tmp: Path) -> Path:
    """The correct arm's train rows of CoTemp (shared files, else synthetic), first ``n``."""
    from tracekd.cli import main

    data = SHARED
    if not (SHARED / "mix.json").is_file():
        data = tmp / "cotemp-synth"
        assert main(["synth", "cotemp", "--n", "400", "--seed", "0", "--out", str(data)]) == 0
    assert main(["build", "--dataset", "cotemp", "--data", str(data), "--arms", "correct", "--max-train", str(n),
                 "--max-test", "4", "--option", "split_seed=42", "--out", str(tmp / "sft"), "--quiet"]) == 0
    return tmp / "sft" / "correct" / "train.jsonl"


def run_variant(name: str, rows: Path, out: Path, steps: int, student: str, precision: str, batch: int) -> dict:
    settings, env = VARIANTS[name]
    cfg = {"train_file": str(rows), "output_dir": str(out), "student": student, "num_train_epochs": 1,
           "max_steps": steps, "learning_rate": 1e-3, "warmup_steps": 0.1, "per_device_train_batch_size": batch,
           "gradient_accumulation_steps": 1, "max_length": 2048, "save_steps": 10_000, "progress": False,
           "precision": precision, "seed": 0, **settings}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    _, status, usage = os.wait4(proc.pid, 0)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"variant {name} failed:\n{stderr[-3000:]}")
    res = json.loads(stdout.strip().splitlines()[-1])
    return {"variant": name, "peak_rss_gb": round(usage.ru_maxrss / 1024 ** 2, 3),
            "rss_before_train_gb": res["memory"].get("rss_before_train_gb"), "wall_s": round(wall, 1),
            "user_s": round(usage.ru_utime, 1), "system_s": round(usage.ru_stime, 1),
            "tok_per_s": res["timing"]["tokens_per_second"], "loss_curve": res["loss_curve"],
            "plan": {k: res["memory"].get(k) for k in ("per_device_train_batch_size", "gradient_accumulation_steps",
                                                        "gradient_checkpointing", "reason")},
            "loss_implementation": res["resolved"]["loss_implementation"], "precision": res["resolved"]["precision"],
            "load_avg_1min": round(os.getloadavg()[0], 2)}


def estimates(rows: Path, student: str, batch: int) -> dict:
    """:mod:`tracekd.train.memory`'s breakdown for the ``batch`` longest rows, with and without the levers."""
    from tracekd import students
    from tracekd.runtime import read_rows
    from tracekd.train import memory
    from tracekd.train.config import METHOD_TARGET_MODULES
    from tracekd.train.data import preflight

    s = students.resolve(student)
    kept, _ = preflight(read_rows(rows), students.load_tokenizer(s), 2048)
    shape = memory.Shape.from_folder(s.source)
    worst = sorted(((len(t.input_ids), t.trainable) for t in kept), reverse=True)[:batch]
    lora = memory.lora_parameters(shape, 16, METHOD_TARGET_MODULES)
    out = {"rows": len(kept), "mean_tokens": round(sum(len(t.input_ids) for t in kept) / len(kept), 1),
           "mean_completion_tokens": round(sum(t.trainable for t in kept) / len(kept), 1),
           "longest_batch": worst}
    for name, head, gc in (("full logits", False, False), ("head on completion", True, False),
                           ("head + checkpointing", True, True)):
        out[name] = memory.estimate(shape, worst, trainable_params=lora, checkpointing=gc,
                                    head_on_completion=head).to_dict()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=32, help="CoTemp train rows (steps x 4 are used)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--precision", default="fp32", help="fixed, so variants differ by one lever only")
    ap.add_argument("--batch", type=int, default=4, help="rows per step (the recipe's 4; the baseline at 4 needs ~15 GB)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    names = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")

    from tracekd.calibration import bf16_flags, cpu_identity

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = cotemp_rows(a.rows, tmp)
        est = estimates(rows, a.student, a.batch)
        results = [run_variant(v, rows, tmp / f"run-{i}", a.steps, a.student, a.precision, a.batch)
                   for i, v in enumerate(names)]
    base = next((r for r in results if r["variant"] == "baseline"), results[0])
    print(f"CPU: {cpu_identity()['cpu_model']} ({os.cpu_count()} CPUs; bf16 flags: {' '.join(bf16_flags()) or '-'})")
    print(f"rows: {est['rows']} CoTemp rows, mean {est['mean_tokens']} tokens "
          f"({est['mean_completion_tokens']} completion); longest batch {est['longest_batch']}")
    w = max(10, *(len(r["variant"]) for r in results))
    print(f"{'variant':<{w}} {'peak GB':>8} {'vs base':>8} {'before train':>12} {'tok/s':>7} {'vs base':>8} "
          f"{'user s':>7} {'sys s':>6}  losses")
    for r in results:
        print(f"{r['variant']:<{w}} {r['peak_rss_gb']:>8.2f} {r['peak_rss_gb'] / base['peak_rss_gb']:>7.2f}x "
              f"{r['rss_before_train_gb'] or 0:>12.2f} {r['tok_per_s']:>7.1f} "
              f"{r['tok_per_s'] / base['tok_per_s']:>7.2f}x {r['user_s']:>7.1f} {r['system_s']:>6.1f}  "
              f"{[round(x, 4) for _, x in r['loss_curve']]}")
    print(f"estimate (GB) for the {a.batch} longest rows:")
    for k in ("full logits", "head on completion", "head + checkpointing"):
        print(f"  {k:<22} " + ", ".join(f"{n} {v}" for n, v in est[k].items() if n != "unit"))
    by = {r["variant"]: r for r in results}
    if "baseline" in by and "+head" in by:
        print(f"measured: logits cost {by['baseline']['peak_rss_gb'] - by['+head']['peak_rss_gb']:.2f} GB of peak")
    if "+head" in by and "+malloc" in by:
        print(f"measured: allocator fragmentation {by['+head']['peak_rss_gb'] - by['+malloc']['peak_rss_gb']:.2f} GB")
    if "+malloc" in by and "+ckpt" in by:
        print(f"measured: activations beyond checkpoints {by['+malloc']['peak_rss_gb'] - by['+ckpt']['peak_rss_gb']:.2f} GB")
    if a.json:
        Path(a.json).write_text(json.dumps({"estimate": est, "results": results}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
