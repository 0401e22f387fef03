"""Statistics of judged generations: parse statuses, step and answer accuracy with Wilson 95%
intervals, step-vs-answer 2x2 tables (chi-square with and without Yates, phi, Fisher), per-class
accuracy, and McNemar's test between every pair of files (paired by example id).

  tracekd analyze runs/correct/judgements.jsonl runs/incorrect/judgements.jsonl \\
      --labels correct incorrect --out analysis.json

The JSON holds one summary per file and one comparison per pair; undefined statistics are null.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

HELP = "statistics of judgements: accuracies, step-vs-answer 2x2 tests, McNemar between files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("judgements", nargs="+", metavar="JUDGEMENTS.jsonl",
                        help="judgement files written by `tracekd score`")
    parser.add_argument("--labels", nargs="+", metavar="NAME",
                        help="a name for each file, in order (default: the file names)")
    parser.add_argument("--group", metavar="FIELD",
                        help="also break each summary down by this judgement field or extra key")
    parser.add_argument("--out", metavar="PATH",
                        help="write the analysis as JSON here (refused when it exists, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def _labels(paths: list[Path], labels: list[str] | None) -> list[str]:
    from ..errors import ConfigError

    if labels is not None:
        if len(labels) != len(paths):
            raise ConfigError(f"--labels gives {len(labels)} names for {len(paths)} files")
    else:
        labels = [p.stem for p in paths]
        if len(set(labels)) < len(labels):
            labels = [str(p) for p in paths]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ConfigError(f"labels must differ; repeated: {', '.join(dupes)}")
    return labels


class _CheckedJudgement:
    """``Judgement.from_dict`` with the types checked, so a bad row is a DataError, not a crash."""

    _BOOL = ("trace_ok", "answer_ok")
    _OPT_BOOL = ("label_ok", "evidence_exact", "evidence_all", "evidence_any")
    _OPT_NUM = ("evidence_precision", "evidence_recall")

    @classmethod
    def from_dict(cls, d: dict):
        from ..errors import DataError
        from ..records import Judgement

        if not isinstance(d.get("id"), str):
            raise DataError("missing" if "id" not in d else "must be a string", field="id")
        if not isinstance(d.get("status"), str):
            raise DataError("missing" if "status" not in d else "must be a string", field="status")
        for k in cls._BOOL:
            if not isinstance(d.get(k), bool):
                raise DataError("missing" if k not in d else "must be true or false", field=k)
        for k in cls._OPT_BOOL:
            if d.get(k) is not None and not isinstance(d[k], bool):
                raise DataError("must be true, false or null", field=k)
        for k in (*cls._OPT_NUM, "answer_f1"):
            v = d.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise DataError("must be a number or null", field=k)
        if d.get("gold_label") is not None and not isinstance(d["gold_label"], str):
            raise DataError("must be a string", field="gold_label")
        full = {"label": None, "label_ok": None, "evidence": None, "evidence_exact": None,
                "evidence_all": None, "evidence_any": None, "evidence_precision": None,
                "evidence_recall": None, "answer": None, "answer_f1": 0.0, "gold_label": "",
                "extra": {}}
        if d.get("extra") is not None and not isinstance(d["extra"], dict):
            raise DataError("must be an object", field="extra")
        full.update({k: v for k, v in d.items() if v is not None})
        return Judgement.from_dict(full)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..io import read_records, refuse_existing, sha256_file, write_json
    from ..stats.summary import compare, format_compare, format_summary, json_safe, summarize

    paths = [Path(p) for p in args.judgements]
    if args.out:
        refuse_existing(args.out, args.overwrite, "analysis file")
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"no such file: {p}")
    labels = _labels(paths, args.labels)
    loaded = {label: read_records(p, _CheckedJudgement) for label, p in zip(labels, paths)}
    summaries = {label: summarize(js, group=args.group) for label, js in loaded.items()}
    comparisons = []
    for a, b in itertools.combinations(labels, 2):
        comparisons.append({"a": a, "b": b, **compare(loaded[a], loaded[b])})

    for label in labels:
        print(format_summary(summaries[label], label))
        print()
    for c in comparisons:
        print(format_compare(c, c["a"], c["b"]))
        print()

    if args.out:
        from .. import __version__

        result = {
            "kind": "analysis",
            "tracekd_version": __version__,
            "inputs": {label: {"path": str(p), "sha256": sha256_file(p)}
                       for label, p in zip(labels, paths)},
            "summaries": summaries,
            "comparisons": comparisons,
        }
        write_json(args.out, json_safe(result))
        print(f"wrote {args.out}")
    return 0
