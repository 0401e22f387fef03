"""Analyze a finished run: read every score stage's judgements and assemble them (:mod:`tracekd.stats.analysis`).

The JSON this writes (``RUN/analysis.json``) is the single source of every number in the report.
"""

from __future__ import annotations

from pathlib import Path

from ..io import read_records, write_json
from ..records import Example, Generation, Judgement
from ..report import write_report
from ..stats.analysis import assemble_analysis, off_diagonal_examples
from ..stats.results import Analysis
from .config import ExperimentConfig
from .plan import Stage

#: how to record off-diagonal examples in a run (the report names it when none were recorded)
EXAMPLES_HOW = "set `report_examples: K` in the experiment config"


def analyze_run(config: ExperimentConfig, stages: list[Stage], run_dir: Path) -> Analysis:
    """Everything the report shows, from the score stages' judgements."""
    judged: dict[tuple, list[Judgement]] = {}
    score_dirs: dict[tuple, str] = {}
    shown = []
    for s in stages:
        if s.kind != "score":
            continue
        gen_stage, build_stage = s.input("generate"), s.input("build")
        judgements = read_records(s.dir(run_dir) / "judgements.jsonl", Judgement)
        c = s.cell
        key = (c["dataset"], c["student"], c["arm"], c["seed"])
        judged[key] = judgements
        score_dirs[key] = str(s.dir(run_dir).relative_to(run_dir))
        if config.report_examples:
            examples = {e.id: e for e in read_records(build_stage.dir(run_dir) / "sets" / "examples" / "test.jsonl",
                                                      Example)}
            gens = {g.id: g for g in read_records(gen_stage.dir(run_dir) / "generations.jsonl", Generation)}
            shown += [{**c, **e} for e in off_diagonal_examples(judgements, gens, examples, config.report_examples)]
    return assemble_analysis(judged, experiment=config.name, arms=list(config.arms), seeds=list(config.seeds),
                             trace_definition=config.trace_definition, score_dirs=score_dirs, examples=shown,
                             examples_how=None if config.report_examples else EXAMPLES_HOW)


def finish_run(config: ExperimentConfig, stages: list[Stage], run_dir: Path, log=print) -> Path:
    """Analyze every cell and write ``analysis.json`` and the report; returns the report's path."""
    analysis = analyze_run(config, stages, run_dir)
    write_json(run_dir / "analysis.json", analysis.to_dict() if hasattr(analysis, "to_dict") else analysis)
    return write_report(run_dir, analysis)
