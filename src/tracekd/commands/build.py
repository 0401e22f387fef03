"""Build the SFT sets of an experiment: one JSONL per arm and split (TRL prompt-completion format).

  tracekd build --dataset babi --data ../shared/data/babi/en-first-question \\
      --arms vanilla,correct,incorrect,incorrect-class,incorrect-evidence --seed 0 --out runs/babi-sft

  tracekd build --dataset babi --data data/babi-synth --option tasks=qa1,qa2 --out runs/b --overwrite
  tracekd build --dataset cotemp --data ../shared/data/cotempqa --option labels=rules --out runs/cotemp-sft
  tracekd build --dataset marco --data DIR --option evidence=is-selected --option n_per_type=100 --out runs/m

Writes OUT/examples/{train,test}.jsonl (gold), OUT/{arm}/{train,test}.jsonl and OUT/manifest.json.
Every corrupted trace is re-checked by the verifier; examples where an arm cannot apply are excluded
from every arm and listed in the manifest. An existing OUT is refused unless --overwrite; then the new
build replaces it as a whole. `tracekd ls DATASET` lists the --option keys of each dataset.
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
    parser.add_argument("--out", required=True, help="output directory (refused when it exists, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUT as a whole (the new build is written beside it, then swapped in)")
    parser.add_argument("--arms", default="vanilla,correct,incorrect",
                        help="comma-separated arms (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="corruption seed (default: %(default)s)")
    parser.add_argument("--template", default=None, help="trace template name or YAML file (default: the dataset's)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset loader option, e.g. split_seed=42 (repeatable; see `tracekd ls`)")
    parser.add_argument("--max-train", type=int, default=None, help="label-stratified seeded train subset size")
    parser.add_argument("--max-test", type=int, default=None, help="label-stratified seeded test subset size")
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of the subsets (default: %(default)s)")
    parser.add_argument("--teacher-responses", action="append", default=[], metavar="DIR",
                        help="folder of `tracekd teacher` responses (repeatable: answers, summaries, explanations); "
                             "every arm is then restricted to the teacher-correct subset")
    parser.add_argument("--teacher-answer", default="gold", choices=("gold", "teacher"),
                        help="<answer> of the teacher arms: the gold answer or the teacher's own text (default: %(default)s)")
    parser.add_argument("--teacher-prompts", default=None, metavar="YAML",
                        help="override tracekd/templates/teacher.yaml (prompts, class synonyms)")
    parser.add_argument("--teacher-scorer", default="strict",
                        help="scorer deciding whether the teacher's answer is right; none keeps every answered item "
                             "(default: %(default)s, the method's)")
    parser.add_argument("--teacher-trace", default="reasoning", choices=("reasoning", "content"),
                        help="the teacher's trace: its returned reasoning, or its whole answer text (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..build import BuildConfig, build

    config = BuildConfig(dataset=args.dataset, data=args.data, out=args.out,
                         arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()),
                         seed=args.seed, template=args.template, options=parse_options(args.option),
                         max_train=args.max_train, max_test=args.max_test, subset_seed=args.subset_seed,
                         teacher_responses=tuple(args.teacher_responses), teacher_answer=args.teacher_answer,
                         teacher_prompts=args.teacher_prompts, teacher_scorer=args.teacher_scorer,
                         teacher_trace=args.teacher_trace)
    m = build(config, progress=not args.quiet, overwrite=args.overwrite)
    print(format_summary(m))
    for split, sub in ((m.get("teacher") or {}).get("subset") or {}).items():
        print(f"  {split}: teacher-correct subset {sub['kept']} of {sub['before']}; dropped: "
              + (", ".join(f"{k} {v}" for k, v in sub["dropped"].items()) or "none"))
    print(f"wrote {args.out} (manifest.json lists every file with its sha256 and explains these words)")
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
