"""Audit a dataset's labels against tracekd's own rules.

  tracekd audit cotemp ../shared/data/cotempqa
  tracekd audit cotemp ../shared/data/cotempqa --show 0 --json runs/cotemp-audit.json
  tracekd audit cotemp DATA_DIR --semantics calendar      # dates as whole periods instead

`cotemp`: the rule-based relation classifier (tracekd.datasets.cotemp_rules) labels every question
from its facts' dates; the agreement with the dataset's categories is printed overall and per
category (a confusion table), with the disagreements and their reasons, and the count of facts
whose time expression could not be parsed. --json writes everything, every disagreement included.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..datasets.cotemp_audit import audit, format_audit
from ..errors import DataError
from ..io import write_json

HELP = "check a dataset's labels against tracekd's rules (cotemp: relation from the facts' dates)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="target", metavar="DATASET", required=True)
    p = sub.add_parser("cotemp", help="CoTemp QA: categories vs the rule-based relation classifier",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="folder with equal.json, overlap.json, during.json, mix.json (or one of them)")
    p.add_argument("--semantics", default="wikidata", choices=("wikidata", "calendar"),
                   help="how dates compare: 'wikidata' (unknown month/day = 0, as the dataset was built; "
                        "default) or 'calendar' (a date is the whole year/month/day it names)")
    p.add_argument("--show", type=int, default=20, metavar="N",
                   help="list at most N disagreements (default: %(default)s; 0: none; -1: all)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the full audit as JSON to OUT")


def run(args: argparse.Namespace) -> int:
    path = Path(args.data)
    if not path.exists():
        raise DataError("no such file or folder", path=path)
    report = audit(path, semantics=args.semantics)
    print(format_audit(report, show=None if args.show < 0 else args.show))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0
