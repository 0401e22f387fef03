"""Judge a generations JSONL - from tracekd or any other tool - against the gold examples.

  tracekd score runs/gen.jsonl --examples runs/babi-sft/examples/test.jsonl --out runs/scored
  tracekd score other_tool.jsonl --examples ... --id-field qid --text-field output.text --finish-field stop_reason
  tracekd score runs/babi-sft/correct/test.jsonl --examples ... --text-field completion.0.content   # oracle check

Without an id field, lines are joined to examples by exact (question, context). Writes
OUT/judgements.jsonl (one Judgement per item), OUT/summary.json and prints a summary.
Answer scorer `cotemp-official` reproduces the CoTempQA benchmark's lenient scorer (compatibility mode).
"""

from __future__ import annotations

import argparse

HELP = "parse, verify and score generations against gold examples (joined by id)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("generations", help="generations JSONL")
    parser.add_argument("--examples", required=True, help="gold examples JSONL (BUILD_DIR/examples/test.jsonl)")
    parser.add_argument("--out", required=True, help="output directory (refused when not empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT as a whole")
    parser.add_argument("--id-field", default="id", help="id field; 'none' joins by question+context")
    parser.add_argument("--text-field", default="text", help="generated text field (dots for nesting)")
    parser.add_argument("--finish-field", default="finish_reason", help="finish-reason field ('none' if absent)")
    parser.add_argument("--question-field", default="question", help="question field for the join without ids")
    parser.add_argument("--context-field", default="context", help="context field for the join without ids")
    parser.add_argument("--template", default=None, help="trace template (default: the dataset's)")
    parser.add_argument("--scorer", default=None,
                        help="answer scorer: strict (default), cotemp-official (compatibility), marco[:CRITERION]")
    parser.add_argument("--trace-definition", default="class+evidence-exact",
                        help="what makes a whole trace correct (default: %(default)s)")
    parser.add_argument("--strict", action="store_true",
                        help="fail on blank/invalid/duplicate/unknown lines instead of reporting them")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from ..io import manifest, read_records, refuse_existing, replace_dir, sha256_file, write_json, write_records
    from ..records import Example
    from ..score.judge import missing_ids, read_generations, score_pairs, settings_for
    from ..stats.summary import format_summary, summarize

    none = lambda v: None if v in (None, "", "none") else v  # noqa: E731
    refuse_existing(args.out, args.overwrite, "score output folder")
    examples = read_records(args.examples, Example)
    settings = settings_for(examples, args.template, args.scorer, args.trace_definition)
    pairs, report = read_generations(
        args.generations, examples, id_field=none(args.id_field), text_field=args.text_field,
        finish_field=none(args.finish_field), question_field=args.question_field,
        context_field=args.context_field, strict=args.strict)
    judgements = score_pairs(pairs, settings)
    out = Path(args.out)
    missing = missing_ids(examples, judgements)
    summary = summarize(judgements)
    with replace_dir(out, args.overwrite, "score output folder") as tmp:  # replaced as a whole, never merged
        write_records(tmp / "judgements.jsonl", judgements)
        write_json(tmp / "summary.json", manifest(
            kind="score",
            config={"settings": asdict(settings),
                    "generations": args.generations, "examples": args.examples},
            seed=None,
            inputs={"generations": sha256_file(args.generations), "examples": sha256_file(args.examples)},
            lines=report.to_dict(), missing=missing, summary=summary.to_dict(),  # summary.status counts every status
            files={"judgements.jsonl": sha256_file(tmp / "judgements.jsonl")}))
    print(format_summary(summary))
    issues = [(len(report.blank), "blank lines"), (len(report.invalid), "invalid JSON lines"),
              (len(report.duplicates), "duplicate ids (first kept)"), (len(report.unknown), "unknown ids"),
              (len(missing), "examples with no generation")]
    for n, what in issues:
        if n:
            print(f"note: {n} {what} (listed in {out / 'summary.json'})")
    print(f"judged {len(judgements):,} of {len(examples):,} examples -> {out / 'judgements.jsonl'}")
    return 0
