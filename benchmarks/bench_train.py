"""Benchmark: `tracekd train` tokens/s vs a plain TRL `SFTTrainer` with the library's defaults, lever by lever.

Same student, same rows (bAbI correct-arm train rows), same LoRA adapter shape (the method's r 16,
alpha 32, dropout 0.05 on q,k,v,o,gate,up,down), one pass over the rows each, all measured in one run.
Tokens/s counts the non-padding tokens the trainer consumed per second of `trainer.train()`.

The plain run is what a user gets from the TRL docs: `SFTTrainer(model=<student>, train_dataset=rows,
peft_config=lora)` with `SFTConfig` defaults (plus `use_cpu=True`, without which they refuse a CPU):
bf16 autocast on, gradient checkpointing on, TRL's fused LM-head loss, batch 8. `tracekd train` runs the
method's batch 4 x grad-accum 4 with its defaults, then once per lever with that one lever reverted (or, with
--pairs N, N times each, every run paired with a tracekd run before or after it), so each line says what the lever
buys on this machine (the last three are no settings: the benchmark swaps tracekd's function back for that run):

    precision       auto (measured fp32 vs bf16 autocast)  vs  the other format
    checkpointing   off on CPU                              vs  on (TRL's default)
    loss            LM head on completion positions         vs  the model's full-logits loss, TRL's fused loss
    micro-batches   each step's rows grouped by length      vs  micro-batches as drawn (more padding)
    bit-dropout     LoRA dropout masks from 16-bit words    vs  torch's Bernoulli dropout (CPU)
    return-freed-memory  fixed 1 MiB mmap threshold, heap trimmed per micro-batch (CPU)  vs  glibc's malloc defaults
    cast-weights    bf16 (CPU): frozen projections stored in bf16 once  vs  autocast casting them every forward
    attention       auto (CPU: SDPA or eager_autocast, measured)  vs  SDPA (transformers' default)
    fused-adamw     AdamW as one fused kernel (transformers' default)  vs  the per-tensor loop (adamw_torch)
    head-chunks     LM head + cross-entropy a chunk of rows at a time, the head's bf16 cast kept  vs  full logits,
                    autocast casting the head every forward
    adapter-inputs  an adapter's bf16 input left bf16 (same bits)  vs  PEFT widening it to float32 first
    sfc64-dropout   dropout words from numpy's SFC64 (seeded from torch)  vs  torch's Mersenne Twister
    threads         torch threads = physical cores          vs  logical CPUs (the same on machines without SMT)

Before the trainings, the precision calibration runs --calibrations times on the loaded student (fresh
each time), printing each one's choice, paired speed-ups and wall time: is it short, is it stable?

Every run records the 1-minute load average, so disturbed figures can be recognised. glibc's malloc
settings are process-wide and `tracekd train` changes them (return_freed_memory), so the plain run goes
first, with glibc's defaults as a TRL user has them, then the return-freed-memory lever, then the rest.

    python benchmarks/bench_train.py                      # smollm2-135m, 32 rows (~10 min on 2 idle cores)
    python benchmarks/bench_train.py --levers none        # only plain vs tracekd
    python benchmarks/bench_train.py --levers precision,micro-batches --skip-plain   # levers only
    python benchmarks/bench_train.py --skip-plain --calibrations 0 --levers bit-dropout --pairs 3   # drift-proof
    python benchmarks/bench_train.py --student tiny-random --rows 16   # seconds, for a smoke check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import babi_rows  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def plain_sft(student_name: str, rows_path: Path, out: Path, seed: int) -> tuple[float, int, int]:
    """TRL SFTTrainer with library defaults; returns seconds, non-padding tokens, optimizer steps."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tracekd import students

    s = students.resolve(student_name)
    rows = [json.loads(x) for x in rows_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    data = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    args = SFTConfig(output_dir=str(out), num_train_epochs=1, report_to="none", save_strategy="no", seed=seed,
                     include_num_input_tokens_seen="non_padding", disable_tqdm=True,
                     use_cpu=not torch.cuda.is_available())  # the one flag TRL's defaults need on a CPU
    trainer = SFTTrainer(model=s.source, args=args, train_dataset=data,
                         peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS,
                                                task_type="CAUSAL_LM"))
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0, int(trainer.state.num_input_tokens_seen), trainer.state.global_step


LEVERS = {
    "precision": lambda chosen: {"precision": "bf16" if chosen == "fp32" else "fp32"},
    "checkpointing": lambda chosen: {"gradient_checkpointing": True},
    "loss-model": lambda chosen: {"loss_implementation": "model"},
    "loss-trl": lambda chosen: {"loss_implementation": "trl"},
    "micro-batches": lambda chosen: {"micro_batches_by_length": False},
    "bit-dropout": lambda chosen: {"bit_dropout": False},
    "return-freed-memory": lambda chosen: {"return_freed_memory": False},
    "cast-weights": lambda chosen: {"cast_frozen_weights": False},
    "attention": lambda chosen: {"attention": "sdpa"},
    "fused-adamw": lambda chosen: {"optim": "adamw_torch"},
}
#: levers that need glibc's malloc defaults, i.e. must run before any tracekd run changed them
BEFORE_OURS = ("return-freed-memory",)


@contextlib.contextmanager
def _swapped(module, name: str, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


@contextlib.contextmanager
def _full_logits():
    """the head's full logits, then the cross-entropy (autocast casts the head each forward)"""
    import torch.nn.functional as F

    from tracekd.train import loss

    def full(hidden, weight, targets, *, per=1):
        return F.cross_entropy(F.linear(hidden, weight).float(), targets, reduction="sum")

    with _swapped(loss, "head_cross_entropy", full), \
            _swapped(loss, "compute_weight", lambda head, hidden: head.weight):
        yield


def _widened_adapter_inputs():
    """PEFT widens each adapter's input to float32"""
    from tracekd.train import run

    return _swapped(run, "keep_adapter_inputs", lambda model: 0)


def _mersenne_twister_words():
    """dropout words from torch's own generator"""
    import torch

    from tracekd.train import dropout

    return _swapped(dropout, "random_words", lambda count, device=None: torch.empty(
        count, dtype=torch.int64, device=device).random_(-(1 << 63), None))


#: levers that are no setting: the benchmark swaps tracekd's function for the former one during that run
SWAPS = {"head-chunks": _full_logits, "adapter-inputs": _widened_adapter_inputs,
         "sfc64-dropout": _mersenne_twister_words}
LEVERS.update({name: (lambda chosen: {}) for name in SWAPS})


def calibrations(student_name: str, rows_path: Path, n: int) -> list[dict]:
    """Run the training precision calibration ``n`` times on one loaded student + LoRA (as `tracekd train` does)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tracekd import students
    from tracekd.calibration import calibrate_training
    from tracekd.train.loss import completion_loss, supports
    from tracekd.train.weights import frozen_linears, keep_adapter_inputs

    s = students.resolve(student_name)
    tok = students.load_tokenizer(s)
    rows = [json.loads(x) for x in rows_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    lengths = [len(tok(tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False))["input_ids"])
               for r in rows]  # the rows' token counts (the probe takes their median)
    model = get_peft_model(students.load_model(s, dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS,
                                      task_type="CAUSAL_LM"))
    keep_adapter_inputs(model)  # as training does
    loss = completion_loss if supports(model) else None
    out = []
    for _ in range(n):
        load = os.getloadavg()[0]
        # training's micro-batch: TrainConfig's default 4 rows (no memory budget splits bAbI's short rows)
        cal = calibrate_training(model, student_name, lengths, rows=4, refresh=True, loss=loss,
                                 bf16_modules=frozen_linears(model))
        out.append({"precision": cal.precision, "seconds": cal.seconds, "bf16_speedups": cal.bf16_speedups,
                    "attention": cal.attention, "attention_ms": cal.attention_ms,
                    "fp32_tokens_per_s": cal.fp32_tokens_per_s, "bf16_tokens_per_s": cal.bf16_tokens_per_s,
                    "tokens_per_pass": cal.tokens_per_pass, "probe": cal.probe, "decode_step_s": cal.decode_step_s,
                    "load_avg_1min": round(max(load, os.getloadavg()[0]), 2)})
    del model
    return out


def tracekd_run(student: str, rows_path: Path, out: Path, seed: int, swap: str | None = None, **settings) -> dict:
    """One pass of `tracekd train` with the method's batch (4 x 4); tok/s, precision, calibration from its manifest.
    ``swap``: a lever of :data:`SWAPS` reverted for this run."""
    from tracekd.train import TrainConfig, train

    t_load = os.getloadavg()[0]
    with SWAPS[swap]() if swap else contextlib.nullcontext():
        path = train(TrainConfig(train_file=str(rows_path), output_dir=str(out), student=student, num_train_epochs=1,
                                 seed=seed, save_steps=10_000, progress=False, **settings), log=lambda *_: None)
    m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    t = m["timing"]
    return {"seconds": t["train_seconds"], "tokens": t["tokens_seen"], "tok_per_s": round(t["tokens_seen"]
            / t["train_seconds"], 2), "precision": m["resolved"]["precision"], "steps": m["global_step"],
            "loss": m["resolved"]["loss_implementation"], "checkpointing": m["resolved"]["gradient_checkpointing"],
            "calibration": m["resolved"].get("calibration"), "threads": m["resolved"].get("torch_threads"),
            "attention": m["resolved"].get("attention"),
            "peak_rss_gb": t.get("peak_rss_gb"), "load_avg_1min": round(max(t_load, os.getloadavg()[0]), 2),
            "settings": settings or ({"swapped": SWAPS[swap].__doc__} if swap else {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=32, help="train rows (one pass each)")
    ap.add_argument("--rows-file", help="SFT rows JSONL to use instead of building bAbI rows")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--levers", default=",".join(LEVERS), help=f"levers to revert one at a time ({', '.join(LEVERS)}"
                                                               ", threads) or none")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    ap.add_argument("--calibrations", type=int, default=3,
                    help="fresh precision calibrations to time first (0: none; the trainings use the last one)")
    ap.add_argument("--skip-plain", action="store_true", help="leave out the plain SFTTrainer run (levers only)")
    ap.add_argument("--pairs", type=int, default=1,
                    help="time each lever (but return-freed-memory and threads) this many times, each run paired with "
                         "a tracekd run right before or after it (the order alternates); the lever's figure is the "
                         "median of the pairs' ratios, which cancels the machine's drift (default 1: one run per "
                         "lever, after tracekd's)")
    a = ap.parse_args()
    levers = [] if a.levers == "none" else [x.strip() for x in a.levers.split(",") if x.strip()]
    load_start = round(os.getloadavg()[0], 2)

    from tracekd import students
    from tracekd.runtime import physical_cores
    from tracekd.calibration import bf16_flags, cpu_identity

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = Path(a.rows_file) if a.rows_file else babi_rows("train", a.rows, tmp)
        rows_path = tmp / "rows.jsonl"
        lines = [x for x in src.read_text(encoding="utf-8").splitlines() if x.strip()][: a.rows]
        rows_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        students.load_tokenizer(students.resolve(a.student))  # materialise the cache outside the timings
        cals = calibrations(a.student, rows_path, a.calibrations) if a.calibrations > 0 else []

        plain = None
        if not a.skip_plain:
            t_load = os.getloadavg()[0]
            plain_s, plain_tokens, plain_steps = plain_sft(a.student, rows_path, tmp / "plain", a.seed)
            plain = {"seconds": round(plain_s, 2), "tokens": plain_tokens,
                     "tok_per_s": round(plain_tokens / plain_s, 2), "steps": plain_steps,
                     "load_avg_1min": round(max(t_load, os.getloadavg()[0]), 2)}
        reverted = {}
        for lever in (x for x in levers if x in BEFORE_OURS):
            reverted[lever] = tracekd_run(a.student, rows_path, tmp / f"lever-{lever}", a.seed, **LEVERS[lever](None))
        ours = tracekd_run(a.student, rows_path, tmp / "tracekd", a.seed)
        for i, lever in enumerate(x for x in levers if x not in BEFORE_OURS):
            if lever == "threads":
                import torch

                logical = len(os.sched_getaffinity(0))
                if logical == physical_cores():
                    reverted[lever] = {"skipped": f"{logical} logical CPUs = {logical} physical cores here"}
                    continue
                os.environ["OMP_NUM_THREADS"] = str(logical)  # tracekd then leaves torch's threads alone
                torch.set_num_threads(logical)
                reverted[lever] = tracekd_run(a.student, rows_path, tmp / f"lever-{i}", a.seed)
                del os.environ["OMP_NUM_THREADS"]
                continue
            if lever == "cast-weights" and ours["precision"] != "bf16":
                reverted[lever] = {"skipped": f"tracekd trained in {ours['precision']}: nothing is cast"}
                continue
            if lever == "attention" and ours.get("attention") == "sdpa":
                reverted[lever] = {"skipped": "tracekd's calibration kept SDPA here: nothing to revert"}
                continue
            if a.pairs <= 1:
                reverted[lever] = tracekd_run(a.student, rows_path, tmp / f"lever-{i}", a.seed,
                                              swap=lever if lever in SWAPS else None,
                                              **LEVERS[lever](ours["precision"]))
                continue
            runs, ratios = [], []
            for k in range(a.pairs):  # tracekd then the lever reverted, then the other way round, ...
                pair = {}
                for side in (("ours", "lever") if k % 2 == 0 else ("lever", "ours")):
                    settings = LEVERS[lever](ours["precision"]) if side == "lever" else {}
                    swap = lever if side == "lever" and lever in SWAPS else None
                    pair[side] = tracekd_run(a.student, rows_path, tmp / f"lever-{i}-{k}-{side}", a.seed, swap=swap,
                                             **settings)
                runs.append(pair)
                ratios.append(pair["ours"]["tok_per_s"] / pair["lever"]["tok_per_s"])
            reverted[lever] = {**runs[0]["lever"], "paired_ratios": [round(r, 3) for r in ratios],
                               "tok_per_s": round(statistics.median(r["lever"]["tok_per_s"] for r in runs), 2),
                               "tracekd_tok_per_s": [r["ours"]["tok_per_s"] for r in runs],
                               "load_avg_1min": max(r["lever"]["load_avg_1min"] for r in runs)}

    cal = ours["calibration"] or {}
    result = {
        "student": a.student, "rows": len(lines), "cpu": cpu_identity()["cpu_model"], "cpus": os.cpu_count(),
        "bf16_flags": bf16_flags(), "load_avg_1min_at_start": load_start, "calibrations": cals,
        "tracekd_train": ours, "plain_sfttrainer": plain,
        "ratio": round(ours["tok_per_s"] / plain["tok_per_s"], 2) if plain else None,
        "levers": {k: ({"tok_per_s": v["tok_per_s"], "settings": v["settings"],
                        "tracekd_over_reverted": round(statistics.median(v["paired_ratios"]) if "paired_ratios" in v
                                                       else ours["tok_per_s"] / v["tok_per_s"], 2),
                        **{k2: v[k2] for k2 in ("paired_ratios", "tracekd_tok_per_s") if k2 in v},
                        "load_avg_1min": v["load_avg_1min"]} if "tok_per_s" in v else v)
                   for k, v in reverted.items()},
    }
    print(json.dumps(result, indent=2))
    print(f"CPU: {result['cpu']} ({result['cpus']} CPUs; bf16 flags: {' '.join(result['bf16_flags']) or '-'})")
    print(f"load average (1 min) at start: {load_start}")
    for i, c in enumerate(cals, 1):
        print(f"calibration {i}/{len(cals)}: {c['precision']} in {c['seconds']:.2f} s (bf16 speed-ups per pair "
              f"{', '.join(f'{r:.2f}' for r in c['bf16_speedups'])}; fp32 {c['fp32_tokens_per_s']:.0f} vs bf16 "
              f"{c['bf16_tokens_per_s']:.0f} tok/s, {c['tokens_per_pass']} tokens per pass, attention "
              f"{c['attention']}, load {c['load_avg_1min']})")
    if cal:
        print(f"calibration used by the trainings: fp32 {cal['fp32_tokens_per_s']} vs bf16 "
              f"{cal['bf16_tokens_per_s']} tok/s -> {cal['precision']} ({cal['seconds']} s)")
    ours_line = (f"tracekd train: {ours['tok_per_s']:.1f} tok/s ({ours['precision']}, attention {ours['attention']}, "
                 f"{ours['loss']}, load {ours['load_avg_1min']})")
    if plain:
        print(f"{ours_line} vs plain SFTTrainer defaults: {plain['tok_per_s']:.1f} tok/s (load "
              f"{plain['load_avg_1min']}) -> {result['ratio']:.2f}x ({a.student}, {len(lines)} rows; target >= 1.5x)")
    else:
        print(ours_line)
    for k, v in result["levers"].items():
        if "tok_per_s" in v:
            paired = (f"; median of {len(v['paired_ratios'])} paired runs, ratios "
                      f"{', '.join(f'{r:.2f}' for r in v['paired_ratios'])}" if "paired_ratios" in v else "")
            print(f"  lever {k:<14} reverted ({v['settings']}): {v['tok_per_s']:.1f} tok/s -> the lever buys "
                  f"{v['tracekd_over_reverted']:.2f}x (load {v['load_avg_1min']}{paired})")
        else:
            print(f"  lever {k:<14} {v['skipped']}")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
