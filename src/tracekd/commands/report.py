"""Write the report of a run: report.md, a self-contained report.html and plots/*.png.

  tracekd report runs/demo                      # reads runs/demo/analysis.json, writes into runs/demo
  tracekd report runs/x --analysis a.json       # the --out file of `tracekd analyze` works too

The report shows answer and step accuracy per arm (mean over seeds, per-seed values, pooled 95%
Wilson intervals), the step x answer 2x2 tables with chi-square (with and without Yates), phi,
Fisher's exact p and the conditional accuracies, McNemar between arms, a per-class breakdown,
parse-status counts and concrete examples where trace and answer disagree. The header names the
command that reproduces the run (from RUN_DIR/plan.json) and the tracekd version.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..report import load_analysis, write_report

HELP = "write report.md, a self-contained report.html and PNG plots from a run's analysis.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (holds analysis.json; gets the report)")
    parser.add_argument("--analysis", metavar="PATH",
                        help="analysis JSON to read instead of RUN_DIR/analysis.json (also `tracekd analyze --out`)")
    parser.add_argument("--examples", type=int, default=3, metavar="K",
                        help="concrete examples shown per arm and off-diagonal cell (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing report (report.md, report.html and plots/ as a whole)")


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    path = Path(args.analysis) if args.analysis else run_dir / "analysis.json"
    if not path.is_file():
        raise ConfigError(f"no analysis at {path}: run `tracekd run CONFIG` first, or pass --analysis FILE")
    if args.examples < 0:
        raise ConfigError("--examples must be 0 or more")
    old = [p.name for p in (run_dir / "report.md", run_dir / "report.html", run_dir / "plots") if p.exists()]
    if old and not args.overwrite:
        raise ConfigError(f"{run_dir} already holds a report ({', '.join(old)}); pass --overwrite to replace it "
                          "(plots of the old report that the new one lacks are deleted)")
    analysis = load_analysis(path)
    html_path = write_report(run_dir, analysis, examples_per_cell=args.examples, source=str(path))
    print(f"wrote {run_dir / 'report.md'}")
    print(f"wrote {html_path}")
    for png in sorted((run_dir / "plots").glob("*.png")):
        print(f"wrote {png}")
    return 0
