"""Generate synthetic data in a dataset's native format (no download needed).

  tracekd synth babi --tasks all --n 1000 --seed 0 --out data/babi-synth
  tracekd synth cotemp --n 1000 --seed 0 --out data/cotemp-synth
"""

from __future__ import annotations

import argparse

from ..synth import GENERATORS
from . import add_subcommands

HELP = "generate bAbI-style or CoTemp-style data by rule-based world simulation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="generator", metavar="GENERATOR", required=True)
    add_subcommands(sub, GENERATORS, "_generate")


def run(args: argparse.Namespace) -> int:
    return int(args._generate(args) or 0)
