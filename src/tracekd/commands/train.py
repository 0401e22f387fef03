"""Fine-tune a student with LoRA (or QLoRA on CUDA) on one arm's SFT rows; write the adapter.

  tracekd train --train-file runs/babi-sft/correct/train.jsonl --output-dir runs/babi-correct \\
      --student smollm2-135m --max-examples 200 --epochs 1 --lr 1e-3 --grad-accum 1
  tracekd train --config configs/train/cpu/smollm2-135m.yaml --train-file ... --output-dir ...

Defaults are the method's GPU settings (LoRA r 16, alpha 32, dropout 0.05 on q,k,v,o,gate,up,down;
3 epochs; lr 2e-4 cosine, warm-up 0.1; batch 4 x grad-accum 4). configs/train/cpu/ holds the CPU-scale
recipe, configs/train/gpu/ the method's. Precedence: defaults < --config YAML < flags. On CPU, precision auto
measures float32 vs bf16 autocast on the student (cached per machine) and keeps the faster. Loss on the completion only; a preflight
tokenises every row and fails on over-long rows (or drops them with --drop-overlong). Interrupted?
Run the same command with --resume. Several GPUs: `accelerate launch -m tracekd.cli train ...`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..calibration import explain
from ..config import add_command_arguments, config_from_args
from ..errors import DataError
from ..io import iter_jsonl
from ..records import kind_of
from ..runtime import read_rows
from ..train import train
from ..train.config import TrainConfig

HELP = "fine-tune a student (LoRA/QLoRA) on an arm's SFT rows"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_command_arguments(parser, TrainConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args, TrainConfig)
    if config is None and args.explain:
        print("\n" + explain())
    if config is not None:
        check_inputs(config)  # before torch and the student are loaded

        train(config)
    return 0


#: what a file of each other record kind is, for the error when one is passed as the train file
_OTHER_FILES = {"Example": "gold examples (BUILD_DIR/examples/*.jsonl, what `tracekd score` joins to)",
                "Generation": "generations (`tracekd generate`)", "Judgement": "judgements (`tracekd score`)"}


def check_inputs(config) -> None:
    """The train file exists and every row is an SFT row with its fields (a file of another tracekd
    record is named as such); the output folder is not a file. Imports neither torch nor a model."""
    path = Path(config.train_file)
    hint = "pass an arm's SFT rows: BUILD_DIR/ARM/train.jsonl written by `tracekd build`"
    if not path.is_file():
        raise DataError(f"{'is a folder' if path.is_dir() else 'no such file'}; {hint}", path=path,
                        field="train_file")
    for line, obj in iter_jsonl(path):
        kind = kind_of(obj)
        if kind in _OTHER_FILES:
            raise DataError(f"this is a file of {_OTHER_FILES[kind]}, not SFT rows; {hint}", path=path, line=line,
                            field="train_file")
        break
    read_rows(path)  # every row: id, arm, prompt and completion messages; ids unique
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise DataError("exists and is not a folder", path=out, field="output_dir")
