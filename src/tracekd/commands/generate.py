"""Generate one completion per SFT row with a student (+ LoRA adapter); append-only and resumable.

  tracekd generate --adapter runs/babi-correct --input-file runs/babi-sft/correct/test.jsonl \\
      --output-file runs/babi-correct/generations.jsonl --max-examples 50
  tracekd generate --student Qwen/Qwen3-1.7B --backend vllm --input-file ... --output-file ...

Prompts go through the student's chat template with its generation prompt; batches (left-padded,
sorted by prompt length) are decoded greedily unless --do-sample, up to --max-new-tokens (500) or
the end-of-sequence token. Each output line: id, text, finish_reason (stop|length), prompt_tokens,
completion_tokens. Killed at any point, the same command resumes and ends with every id exactly once.
Score the output with `tracekd score OUTPUT --examples BUILD/examples/test.jsonl --out DIR`.
"""

from __future__ import annotations

import argparse

from ..config import add_command_arguments, config_from_args
from ..generate import generate
from ..generate.config import GenerateConfig

HELP = "generate completions for an arm's test rows (batched, resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_command_arguments(parser, GenerateConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args, GenerateConfig)
    if config is not None:
        generate(config)
    return 0
