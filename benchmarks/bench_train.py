"""Benchmark: `tracekd train` tokens/s vs a plain TRL `SFTTrainer` with the library's defaults.

Same student, same rows (bAbI correct-arm train rows), same LoRA adapter shape (the method's r 16,
alpha 32, dropout 0.05 on q,k,v,o,gate,up,down), one pass over the rows each, measured in one run.
Tokens/s counts the non-padding tokens the trainer consumed per second of `trainer.train()`.

The plain run is what a user gets from the TRL docs: `SFTTrainer(model=<student>, train_dataset=rows,
peft_config=lora)` with `SFTConfig` defaults (plus `use_cpu=True`, without which they refuse a CPU):
bf16 autocast on, gradient checkpointing on, TRL's fused LM-head loss, batch 8. `tracekd train` uses
the method's batch 4 x grad-accum 4 and picks float32 on CPUs without a bf16 matrix engine, no
activation recomputation on CPU, and the model's own cross-entropy where TRL's fused kernel has no
Triton to run on. Each side makes one pass over the same rows (default 32).

    python benchmarks/bench_train.py                      # smollm2-135m, 32 rows (~2 min on 2 cores)
    python benchmarks/bench_train.py --student tiny-random --rows 16   # seconds, for a smoke check
"""

from __future__ import annotations

import argparse
import json
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=32, help="train rows (one pass each)")
    ap.add_argument("--rows-file", help="SFT rows JSONL to use instead of building bAbI rows")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    a = ap.parse_args()

    from tracekd import students
    from tracekd.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = Path(a.rows_file) if a.rows_file else babi_rows("train", a.rows, tmp)
        rows_path = tmp / "rows.jsonl"
        lines = [x for x in src.read_text(encoding="utf-8").splitlines() if x.strip()][: a.rows]
        rows_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        students.load_tokenizer(students.resolve(a.student))  # materialise the cache outside the timings

        # tracekd train: the method's settings (batch 4 x grad-accum 4), one pass over the same rows
        out = train(TrainConfig(train_file=str(rows_path), output_dir=str(tmp / "tracekd"), student=a.student,
                                num_train_epochs=1, seed=a.seed, save_steps=10_000, progress=False),
                    log=lambda *_: None)
        m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        ours_s, ours_tokens = m["timing"]["train_seconds"], m["timing"]["tokens_seen"]

        plain_s, plain_tokens, plain_steps = plain_sft(a.student, rows_path, tmp / "plain", a.seed)

    ours_tps, plain_tps = ours_tokens / ours_s, plain_tokens / plain_s
    result = {
        "student": a.student, "rows": len(lines),
        "tracekd_train": {"seconds": round(ours_s, 2), "tokens": ours_tokens, "tok_per_s": round(ours_tps, 2),
                          "precision": m["resolved"]["precision"], "steps": m["global_step"],
                          "loss": m["resolved"]["loss_implementation"]},
        "plain_sfttrainer": {"seconds": round(plain_s, 2), "tokens": plain_tokens, "tok_per_s": round(plain_tps, 2),
                             "steps": plain_steps},
        "ratio": round(ours_tps / plain_tps, 2),
    }
    print(json.dumps(result, indent=2))
    print(f"tracekd train: {ours_tps:.1f} tok/s vs plain SFTTrainer defaults: {plain_tps:.1f} tok/s "
          f"-> {result['ratio']:.2f}x ({a.student}, {len(lines)} rows; target >= 1.0x)")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
