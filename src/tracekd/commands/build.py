"""Build the SFT sets of an experiment: one JSONL per arm and split (TRL prompt-completion format).

  tracekd build --dataset babi --data ../shared/data/babi/en-first-question \\
      --arms vanilla,correct,incorrect,incorrect-class,incorrect-evidence --seed 0 --out runs/babi-sft

Writes OUT/examples/{train,test}.jsonl (gold), OUT/{arm}/{train,test}.jsonl and OUT/manifest.json.
Every corrupted trace is re-checked by the verifier; examples where an arm cannot apply are excluded
from every arm and listed in the manifest.
"""

from __future__ import annotations

import argparse

HELP = "write the SFT sets (vanilla / correct / incorrect ... arms) for a dataset"


def parse_options(items: list[str]) -> dict:
    """``["key=value", ...]`` -> dict, values read as YAML scalars.

    >>> parse_options(["split_seed=7", "first_question_only=false", "evidence=is-selected"])
    {'split_seed': 7, 'first_question_only': False, 'evidence': 'is-selected'}
    """
    import yaml

    from ..errors import ConfigError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset name (see `tracekd ls`)")
    parser.add_argument("--data", required=True, help="folder or file with the dataset's raw files")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--arms", default="vanilla,correct,incorrect",
                        help="comma-separated arms (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="corruption seed (default: %(default)s)")
    parser.add_argument("--template", default=None, help="trace template name or YAML file (default: the dataset's)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset loader option, e.g. split_seed=42 (repeatable; see `tracekd ls`)")
    parser.add_argument("--max-train", type=int, default=None, help="label-stratified seeded train subset size")
    parser.add_argument("--max-test", type=int, default=None, help="label-stratified seeded test subset size")
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of the subsets (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..build import BuildConfig, build

    config = BuildConfig(dataset=args.dataset, data=args.data, out=args.out,
                         arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()),
                         seed=args.seed, template=args.template, options=parse_options(args.option),
                         max_train=args.max_train, max_test=args.max_test, subset_seed=args.subset_seed)
    m = build(config, progress=not args.quiet)
    for split, c in m["counts"].items():
        line = f"{split}: {c['kept']:,} rows per arm"
        if c["excluded"]:
            line += f" ({c['excluded']} excluded: see manifest)"
        print(line)
    for split, cases in m["evidence_cases"].items():
        for arm, cnt in cases.items():
            print(f"  {split}/{arm} wrong-evidence cases: " + ", ".join(f"{k} {v}" for k, v in cnt.items()))
    print(f"wrote {args.out} (manifest.json lists every file with its sha256)")
    return 0
