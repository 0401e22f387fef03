"""Peak memory of one LoRA training pass: one long row vs a padded pair of rows with the same padded tokens.

  python benchmarks/bench_padded_pair.py                 # smollm2-135m: 960 vs 480+460 vs 480+480 vs 480
  python benchmarks/bench_padded_pair.py --student tiny-random --length 256

Each shape runs in a fresh process (peak RSS from ``ru_maxrss``): two forward+backward passes of the
student with a LoRA adapter on every linear layer, training's loss (the LM head on the last 80 positions
of each row), float32, glibc's allocator left alone. ``tracekd.train.memory.estimate`` gives the four
shapes' activations by padded tokens only; a padded pair makes transformers pass an attention mask,
and on CPU PyTorch's masked attention keeps attention weights, which the estimate does not count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def one(student: str, lengths: list[int]) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from tracekd import students
    from tracekd.train.loss import completion_loss

    torch.manual_seed(0)
    model = students.load_model(students.resolve(student))
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             target_modules="all-linear"))
    model.train()
    t = max(lengths)
    vocab = model.config.vocab_size
    ids = torch.randint(10, vocab - 1, (len(lengths), t))
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    labels = torch.full((len(lengths), t), -100)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        labels[i, max(0, n - 80):n] = ids[i, max(0, n - 80):n]
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    for _ in range(2):
        completion_loss(model, batch, None).backward()
        model.zero_grad(set_to_none=True)
    return {"rows": lengths, "padded_tokens": len(lengths) * t, "before_gib": round(before / 2**20, 3),
            "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "seconds_per_pass": round((time.monotonic() - started) / 2, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", default="smollm2-135m")
    ap.add_argument("--length", type=int, default=960, help="tokens of the long row; the pairs are half of it")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one shape (JSON list) and print JSON
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.student, json.loads(args.one))))
        return 0
    half = args.length // 2
    shapes = {"one row": [args.length], "padded pair": [half, half - 20], "unpadded pair": [half, half],
              "one half row": [half]}
    env = {**os.environ, "TRACEKD_KEEP_MALLOC": "1"}
    print(f"{args.student}, float32, LoRA r=16 on all linear layers, 2 forward+backward passes per fresh process")
    for name, lengths in shapes.items():
        out = subprocess.run([sys.executable, __file__, "--student", args.student, "--one", json.dumps(lengths)],
                             capture_output=True, text=True, env=env, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:<14} rows {r['rows']!s:<12} padded tokens {r['padded_tokens']:>5}  peak {r['peak_gib']:.2f} GiB "
              f"(model loaded: {r['before_gib']:.2f})  {r['seconds_per_pass']:.1f} s/pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
