"""Check a dataset's raw files and report every problem, not only the first.

  tracekd validate --dataset babi ../shared/data/babi/en-first-question
  tracekd validate --dataset cotemp ../shared/data/cotempqa/mix.json ../shared/data/cotempqa/equal.json

Each problem is printed as ``file:line: field 'x': message``, then a summary line. The exit status
is 1 when there is any problem, 0 otherwise. A folder is checked as the dataset's loader reads it
(all of its data files; ``manifest.json``, which tracekd's writers add, is not a data file). Notes
(not problems) say what ``tracekd build`` will need, e.g. ``--option tasks=qa1,qa2`` for a bAbI
folder holding only some tasks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..datasets import DATASETS

HELP = "check a dataset's raw files; report every problem (file, line, field)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, metavar="NAME",
                        help=f"dataset format ({', '.join(DATASETS.names())})")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a data file or a folder of them")


def run(args: argparse.Namespace) -> int:
    spec = DATASETS.get(args.dataset)
    problems, notes = [], []
    for path in args.paths:
        problems.extend(spec.validate(Path(path)))
        if spec.notes is not None and Path(path).exists():
            notes.extend(spec.notes(Path(path)))
    for p in problems:
        print(p)
    for note in notes:
        print(f"note: {note}")
    where = ", ".join(args.paths)
    if problems:
        files = {p.path for p in problems}
        print(f"{spec.name}: {len(problems)} problem{'s' * (len(problems) != 1)} "
              f"in {len(files)} file{'s' * (len(files) != 1)} ({where})")
        return 1
    print(f"{spec.name}: no problems ({where})")
    return 0
