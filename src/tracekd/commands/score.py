"""Judge a generations JSONL - from tracekd or any other tool - against the gold examples.

  tracekd score runs/gen.jsonl --examples runs/babi-sft/examples/test.jsonl --out runs/scored
  tracekd score other_tool.jsonl --examples ... --id-field qid --text-field output.text --finish-field stop_reason
  tracekd score runs/babi-sft/correct/test.jsonl --examples ... --text-field completion.0.content   # oracle check

Join: a line with the id field is joined by id (integer ids compared as strings); without it (or with
--id-field none) by exact (question, context) - examples that share both and have the same gold take the
lines in file order. A line that joins nothing or is malformed is reported in OUT/summary.json with its
line and reason and the rest is judged (--strict fails instead); no line joined at all is an error.

Every example gets a judgement: status ok, no_trace, no_answer, unparseable_class, unparseable_evidence,
truncated, empty, or missing (no generation for it). A non-ok output is never right on a step it could not
give (each step is judged on its own), and every status stays in every denominator.

Answer scorers: strict (default; normalised set equality on the <answer>), cotemp-official (compatibility
mode: the CoTempQA benchmark's lenient scorer applied to the raw text of every output, whatever its
status), marco[:CRITERION]. Where strict and cotemp-official differ, and why:
  - outputs without a final answer (no <answer>, cut off, unclosed <think>): strict counts them wrong;
    the compat scorer searches the whole text, so a trace that names the gold entity is counted right;
  - extra words: the compat scorer keeps only the known entities (gold answers and the facts' subjects or
    objects) it finds, so "NKT and some other firm" is right; strict needs exactly the gold set;
  - gold answers it rejects: 6 of the 538 CoTemp test items (a gold also named in the question is
    deleted by its question-overlap rule; "assistant" is deleted from "assistant professor").

Writes OUT/judgements.jsonl (one Judgement per example), OUT/summary.json (what was judged, every line's
fate, the dataset / student / arm / seed of the cell, the summary) and prints a summary.
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
                        help="fail on the first invalid/duplicate/unknown line instead of reporting it")
    parser.add_argument("--arm", default=None,
                        help="the arm these generations come from, recorded for analyze/report (default: the "
                             "lines' own 'arm' field, else the generations manifest's)")
    parser.add_argument("--student", default=None,
                        help="the student that wrote them (default: the generations manifest's)")
    parser.add_argument("--seed", type=int, default=None, help="the cell's seed (default: the generations manifest's)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from ..io import manifest, read_records, refuse_existing, replace_dir, sha256_file, write_json, write_records
    from ..records import Example
    from ..errors import DataError
    from ..score.judge import ReadOptions, read_generations, score_all, settings_for
    from ..stats.summary import format_summary, summarize

    none = lambda v: None if v in (None, "", "none") else v  # noqa: E731
    refuse_existing(args.out, args.overwrite, "score output folder")
    for what, p in (("generations", args.generations), ("examples", args.examples)):
        if not Path(p).is_file():
            raise DataError(f"no such {what} file", path=p)
    examples = read_records(args.examples, Example)
    settings = settings_for(examples, args.template, args.scorer, args.trace_definition)
    pairs, report = read_generations(
        args.generations, examples, id_field=none(args.id_field), text_field=args.text_field,
        finish_field=none(args.finish_field), question_field=args.question_field,
        context_field=args.context_field, strict=args.strict)
    missing = [ex.id for ex in examples if ex.id not in {e.id for e, _ in pairs}]
    judgements = score_all(examples, pairs, settings)
    out = Path(args.out)
    cell = recorded_cell(args, examples)
    summary = summarize(judgements, traced=None if cell["arm"] != "vanilla" else False)
    with replace_dir(out, args.overwrite, "score output folder") as tmp:  # replaced as a whole, never merged
        write_records(tmp / "judgements.jsonl", judgements)
        write_json(tmp / "summary.json", manifest(
            kind="score",
            config={"settings": asdict(settings),
                    "generations": args.generations, "examples": args.examples,
                    "read": asdict(ReadOptions(none(args.id_field), args.text_field, none(args.finish_field),
                                               args.question_field, args.context_field))},
            seed=cell["seed"], cell=cell,
            inputs={"generations": sha256_file(args.generations), "examples": sha256_file(args.examples)},
            lines=report.to_dict(), missing=missing, summary=summary.to_dict(),  # summary.status counts every status
            files={"judgements.jsonl": sha256_file(tmp / "judgements.jsonl")}))
    print(format_summary(summary))
    issues = [(len(report.blank), "blank lines"), (len(report.invalid), "invalid lines"),
              (len(report.duplicates), "duplicate lines (first kept)"), (len(report.unknown), "lines joining no example"),
              (len(missing), "examples with no generation (judged 'missing')")]
    for n, what in issues:
        if n:
            print(f"note: {n} {what} (listed in {out / 'summary.json'})")
    print(f"judged {len(judgements):,} examples ({len(pairs):,} with a generation, {len(missing):,} missing) "
          f"-> {out / 'judgements.jsonl'}")
    return 0


def recorded_cell(args: argparse.Namespace, examples: list) -> dict:
    """Dataset, student, arm and seed of what is scored: the flags, else the generations' own records
    (an ``arm`` field every line shares, as in SFT rows; the ``tracekd generate`` manifest beside them)."""
    from pathlib import Path

    from ..errors import DataError
    from ..generate.run import manifest_path
    from ..io import iter_jsonl, read_json

    cell = {"dataset": examples[0].dataset if examples else None, "student": args.student, "arm": args.arm,
            "seed": args.seed}
    if cell["arm"] is None:
        arms = set()
        try:
            for _, obj in iter_jsonl(args.generations):
                arms.add(obj.get("arm") if isinstance(obj.get("arm"), str) else None)
                if len(arms) > 1:
                    break
        except DataError:  # a malformed file: its lines are reported by the judge
            arms = set()
        if len(arms) == 1:
            cell["arm"] = arms.pop()
    mpath = manifest_path(args.generations)
    if Path(mpath).is_file():
        m = read_json(mpath)
        config = m.get("config") if isinstance(m, dict) and isinstance(m.get("config"), dict) else {}
        student = m.get("student") if isinstance(m.get("student"), dict) else {}
        if cell["student"] is None:
            cell["student"] = config.get("student") or student.get("name")
        if cell["seed"] is None and isinstance(config.get("seed"), int):
            cell["seed"] = config["seed"]
        if cell["arm"] is None and isinstance(config.get("input_file"), str) and Path(config["input_file"]).is_file():
            for _, row in iter_jsonl(config["input_file"]):  # the SFT rows it generated from name their arm
                cell["arm"] = row.get("arm") if isinstance(row.get("arm"), str) else None
                break
    return cell
