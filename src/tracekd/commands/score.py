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
fate, the dataset / student / arm / seed of the cell, the summary) and prints a summary. Every setting is
also a key of a --config YAML file (flags override it; `tracekd score --explain` lists them).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from ..config import add_command_arguments, config_from_args
from ..errors import DataError
from ..generate.run import manifest_path
from ..io import (
    iter_jsonl,
    manifest,
    read_json,
    read_records,
    refuse_existing,
    replace_dir,
    sha256_file,
    write_json,
    write_records,
)
from ..records import Example
from ..score.config import ScoreConfig
from ..score.judge import ReadOptions, read_generations, score_all, settings_for
from ..stats.summary import format_summary, summarize

HELP = "parse, verify and score generations against gold examples (joined by id)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_command_arguments(parser, ScoreConfig)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT as a whole")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args, ScoreConfig)
    if config is not None:
        score(config, overwrite=args.overwrite)
    return 0


def score(config, overwrite: bool = False) -> None:
    """Judge ``config.generations`` (a :class:`~tracekd.score.config.ScoreConfig`) and write ``config.out``."""
    refuse_existing(config.out, overwrite, "score output folder")
    for what, p in (("generations", config.generations), ("examples", config.examples)):
        if not Path(p).is_file():
            raise DataError(f"no such {what} file", path=p)
    examples = read_records(config.examples, Example)
    settings = settings_for(examples, config.template, config.scorer, config.trace_definition)
    read = ReadOptions(config.id_field, config.text_field, config.finish_field, config.question_field, config.context_field)
    pairs, report = read_generations(config.generations, examples, **asdict(read), strict=config.strict)
    missing = [ex.id for ex in examples if ex.id not in {e.id for e, _ in pairs}]
    judgements = score_all(examples, pairs, settings)
    out = Path(config.out)
    cell = recorded_cell(config, examples)
    summary = summarize(judgements, traced=None if cell["arm"] != "vanilla" else False)
    with replace_dir(out, overwrite, "score output folder") as tmp:  # replaced as a whole, never merged
        write_records(tmp / "judgements.jsonl", judgements)
        write_json(tmp / "summary.json", manifest(
            kind="score",
            config={"settings": asdict(settings),
                    "generations": config.generations, "examples": config.examples, "read": asdict(read)},
            seed=cell["seed"], cell=cell,
            inputs={"generations": sha256_file(config.generations), "examples": sha256_file(config.examples)},
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


def recorded_cell(config, examples: list) -> dict:
    """Dataset, student, arm and seed of what is scored: the config's, else the generations' own records
    (an ``arm`` field every line shares, as in SFT rows; the ``tracekd generate`` manifest beside them)."""
    cell = {"dataset": examples[0].dataset if examples else None, "student": config.student, "arm": config.arm,
            "seed": config.seed}
    if cell["arm"] is None:
        arms = set()
        try:
            for _, obj in iter_jsonl(config.generations):
                arms.add(obj.get("arm") if isinstance(obj.get("arm"), str) else None)
                if len(arms) > 1:
                    break
        except DataError:  # a malformed file: its lines are reported by the judge
            arms = set()
        if len(arms) == 1:
            cell["arm"] = arms.pop()
    mpath = manifest_path(config.generations)
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
