"""Generate synthetic data in a dataset's native format (no download needed).

  tracekd synth babi --tasks all --n 1000 --seed 0 --out data/babi-synth
  tracekd synth cotemp --n 1000 --seed 0 --out data/cotemp-synth
"""

from __future__ import annotations

import argparse

from ..synth import GENERATORS

HELP = "generate bAbI-style or CoTemp-style data by rule-based world simulation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="generator", metavar="GENERATOR", required=True)
    for name in GENERATORS.names():
        module = GENERATORS.get(name)
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_generate=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args._generate(args) or 0)
