"""Statistics of judged generations: parse statuses, step and answer accuracy with Wilson 95%
intervals, step-vs-answer 2x2 tables (chi-square with and without Yates, phi, Fisher), per-class
accuracy, and McNemar's test between arms scored on the same dataset, student and seed (paired by
example id).

  tracekd analyze runs/correct/judgements.jsonl runs/incorrect/judgements.jsonl --out analysis.json
  tracekd report runs/rep --analysis analysis.json

Each file's dataset, student, arm and seed are the ones `tracekd score` recorded beside it (OUT/summary.json);
`--labels` names the arms instead. The JSON is the same format `tracekd run` writes (RUN/analysis.json),
so `tracekd report` reads either; undefined statistics are null with a note saying why.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__
from ..errors import ConfigError
from ..io import read_json, read_records, refuse_existing, sha256_file, write_json
from ..records import Example, Judgement
from ..score.judge import read_generations
from ..stats.analysis import assemble_analysis, off_diagonal_examples
from ..stats.results import Input
from ..stats.summary import format_compare, format_summary

HELP = "statistics of judgements: accuracies, step-vs-answer 2x2 tests, McNemar between arms"
#: the flag that records off-diagonal examples (the report names it when none were recorded)
EXAMPLES_HOW = "pass `--show-examples K` to `tracekd analyze`"
NOT_RECORDED = "(not recorded)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("judgements", nargs="+", metavar="JUDGEMENTS.jsonl",
                        help="judgement files written by `tracekd score` (its summary.json beside each names "
                             "the dataset, student, arm and seed)")
    parser.add_argument("--labels", nargs="+", metavar="NAME",
                        help="an arm name for each file, in order (default: the arm `tracekd score` recorded, "
                             "else the file's folder name)")
    parser.add_argument("--group", metavar="FIELD",
                        help="also break each summary down by this judgement field or extra key")
    parser.add_argument("--show-examples", type=int, default=0, metavar="K",
                        help="record up to K items of each off-diagonal cell (trace right / answer wrong and the "
                             "reverse) for the report, read from the generations and examples files that "
                             "`tracekd score` recorded (default: %(default)s)")
    parser.add_argument("--out", metavar="PATH",
                        help="write the analysis as JSON here (refused when it exists, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def _recorded(path: Path) -> dict:
    """What `tracekd score` recorded beside a judgements file (its summary.json), if it is that file's."""
    summary = path.parent / "summary.json"
    if not summary.is_file():
        return {}
    d = read_json(summary)
    if not isinstance(d, dict) or not isinstance(d.get("cell"), dict):
        return {}
    files = d.get("files") if isinstance(d.get("files"), dict) else {}
    if files.get(path.name) not in (None, sha256_file(path)):
        return {}  # the judgements were replaced after that summary was written
    return d


def _common_prefix_dataset(judgements) -> str | None:
    """The dataset named by every judgement's id (tracekd ids start with it: ``babi/qa1/test/0/2``)."""
    names = {j.id.split("/", 1)[0] for j in judgements if "/" in j.id}
    return names.pop() if len(names) == 1 and all("/" in j.id for j in judgements) else None


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.judgements]
    if args.out:
        refuse_existing(args.out, args.overwrite, "analysis file")
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"no such file: {p}")
    if args.labels is not None and len(args.labels) != len(paths):
        raise ConfigError(f"--labels gives {len(args.labels)} names for {len(paths)} files")
    if args.show_examples < 0:
        raise ConfigError("--show-examples must be 0 or more")
    judged: dict[tuple, list] = {}
    recorded_by_path = {p: _recorded(p) for p in paths}
    inputs = {}
    shown: list[dict] = []
    for i, p in enumerate(paths):
        judgements = read_records(p, Judgement)
        recorded = recorded_by_path[p]
        cell = recorded.get("cell", {})
        arm = (args.labels[i] if args.labels else None) or cell.get("arm") or (
            p.parent.name if p.stem == "judgements" and p.parent.name else p.stem)
        key = (cell.get("dataset") or _common_prefix_dataset(judgements) or NOT_RECORDED,
               cell.get("student") or NOT_RECORDED, str(arm), cell.get("seed"))
        if key in judged:
            raise ConfigError(f"{p} and an earlier file are both {key[0]} / {key[1]} / {key[2]} / seed "
                              f"{key[3]}: give each file its own name with --labels")
        judged[key] = judgements
        inputs[str(p)] = Input(path=str(p), sha256=sha256_file(p))
        if args.show_examples:
            shown += [{**dict(zip(("dataset", "student", "arm", "seed"), key)), **e}
                      for e in _examples_of(p, recorded, judgements, args.show_examples)]
    arms = list(dict.fromkeys(k[2] for k in judged))
    seeds = sorted({k[3] for k in judged}, key=lambda s: (s is None, s if s is not None else 0))
    analysis = assemble_analysis(
        judged, experiment="tracekd analyze: " + ", ".join(map(str, paths)), arms=arms, seeds=seeds,
        trace_definition=_one({(r.get("config") or {}).get("settings", {}).get("trace_definition")
                               for r in recorded_by_path.values()}),
        examples=shown, examples_how=None if args.show_examples else EXAMPLES_HOW, group=args.group,
        tracekd_version=__version__, inputs=inputs)

    for c in analysis.cells:
        seed = "" if c.seed is None else f" seed {c.seed}"
        print(format_summary(c.summary, f"{c.dataset} / {c.student} / {c.arm}{seed}"))
        print()
    for c in analysis.comparisons:
        print(format_compare(c.result, c.arm_a, c.arm_b))
        print()
    if args.out:
        write_json(args.out, analysis.to_dict())
        print(f"wrote {args.out}")
    return 0


def _one(values: set):
    values.discard(None)
    return values.pop() if len(values) == 1 else None


def _examples_of(path: Path, recorded: dict, judgements, k: int) -> list[dict]:
    """Off-diagonal examples of one judgements file, from the inputs its score recorded."""
    config = recorded.get("config") or {}
    gens_path, ex_path = config.get("generations"), config.get("examples")
    if not (gens_path and ex_path and Path(gens_path).is_file() and Path(ex_path).is_file()):
        raise ConfigError(f"--show-examples needs the generations and examples files `tracekd score` read for "
                          f"{path} (recorded in {path.parent / 'summary.json'}); they are not there")
    examples = read_records(ex_path, Example)
    pairs, _ = read_generations(gens_path, examples, **(config.get("read") or {}))
    gens = {ex.id: g for ex, g in pairs}
    return off_diagonal_examples(judgements, gens, {e.id: e for e in examples}, k)
