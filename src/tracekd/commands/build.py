"""Build the SFT sets of an experiment: one JSONL per arm and split (TRL prompt-completion format).

  tracekd build --dataset babi --data ../shared/data/babi/en-first-question \\
      --arms vanilla,correct,incorrect,incorrect-class,incorrect-evidence --seed 0 --out runs/babi-sft

  tracekd build --dataset babi --data data/babi-synth --option tasks=qa1,qa2 --out runs/b --overwrite
  tracekd build --dataset cotemp --data ../shared/data/cotempqa --option labels=rules --out runs/cotemp-sft
  tracekd build --dataset marco --data DIR --option evidence=is-selected --option n_per_type=100 --out runs/m

Writes OUT/examples/{train,test}.jsonl (gold), OUT/{arm}/{train,test}.jsonl and OUT/manifest.json.
Every corrupted trace is re-checked by the verifier; examples where an arm cannot apply are excluded
from every arm and listed in the manifest. An existing OUT is refused unless --overwrite; then the new
build replaces it as a whole. `tracekd ls DATASET` lists the --option keys of each dataset. Every setting
is also a key of a --config YAML file (flags override it; `tracekd build --explain` lists them).
"""

from __future__ import annotations

import argparse

from ..build import BuildConfig, build
from ..config import add_command_arguments, config_from_args

HELP = "write the SFT sets (vanilla / correct / incorrect ... arms) for a dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_command_arguments(parser, BuildConfig)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUT as a whole (the new build is written beside it, then swapped in)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args, BuildConfig)
    if config is None:
        return 0
    m = build(config, progress=not args.quiet, overwrite=args.overwrite)
    print(format_summary(m))
    for split, sub in ((m.get("teacher") or {}).get("subset") or {}).items():
        print(f"  {split}: teacher-correct subset {sub['kept']} of {sub['before']}; dropped: "
              + (", ".join(f"{k} {v}" for k, v in sub["dropped"].items()) or "none"))
    print(f"wrote {config.out} (manifest.json lists every file with its sha256 and explains these words)")
    return 0


def format_summary(m: dict) -> str:
    """The build summary in words that explain themselves (the manifest's ``glossary`` holds the same)."""
    cases_meaning = m["glossary"]["evidence_cases"]
    lines = []
    for split, c in m["counts"].items():
        line = (f"{split}: {c['kept']:,} rows in each arm's file ({c['loaded']:,} examples loaded, "
                f"{c['selected']:,} selected by --max-{split}")
        line += f", {c['excluded']:,} excluded because an arm cannot apply: see the manifest)" if c["excluded"] else ")"
        lines.append(line)
        by_counts: dict[tuple, list[str]] = {}
        for arm, cnt in m["evidence_cases"].get(split, {}).items():
            by_counts.setdefault(tuple(cnt.items()), []).append(arm)
        for cnt, arms in by_counts.items():
            lines.append(f"  wrong evidence in {', '.join(arms)}:")
            lines.extend(f"    {n:>7,} {case}: {cases_meaning.get(case, '')}" for case, n in cnt)
    return "\n".join(lines)
