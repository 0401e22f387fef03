"""Build the SFT sets: one JSONL per arm and split, every corrupted trace verified wrong.

Layout of a build directory::

    OUT/examples/{train,test}.jsonl      the gold Examples (what `tracekd score` joins to by id)
    OUT/{arm}/{train,test}.jsonl         one SFTRow per kept example
    OUT/manifest.json                    config, seed, counts, evidence cases, exclusions, sha256 of every file

Every file is written atomically; with the same config and seed the data files are byte-identical.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .datasets import DATASETS
from .errors import ConfigError, TracekdError, did_you_mean
from .io import manifest, refuse_existing, replace_dir, sha256_file, sha256_text, write_json, write_records
from .records import Example, SFTRow
from .score.steps import verify_steps
from .teacher.arms import ExtraArms
from .traces.corrupt import ALL_ARMS, ARMS, TEACHER_ARMS, CannotCorrupt, Target, target_for
from .traces.parse import parse
from .traces.templates import Template, get_template, render_row


@dataclass
class BuildConfig:
    """What `tracekd build` does; every field is a CLI flag of the same name."""

    dataset: str = field(metadata={"help": "registered dataset name (see `tracekd ls`)"})
    data: str = field(metadata={"help": "path to the dataset's raw files (folder or file)"})
    out: str = field(metadata={"help": "output directory"})
    arms: tuple[str, ...] = field(default=("vanilla", "correct", "incorrect"),
                                  metadata={"help": f"arms to write, from {', '.join(ALL_ARMS)}"})
    seed: int = field(default=0, metadata={"help": "corruption seed (per example: seed + example id)"})
    template: str | None = field(default=None, metadata={
        "help": "trace template name or YAML file (default: the dataset's own)"})
    options: dict = field(default_factory=dict, metadata={
        "help": "dataset loader options: a mapping in YAML, KEY=VALUE flags (repeatable), e.g. --option "
                "split_seed=42 (see `tracekd ls`)", "aliases": ["--option"], "repeatable": True,
        "metavar": "KEY=VALUE"})
    max_train: int | None = field(default=None, metadata={
        "help": "keep a label-stratified, seeded subset of this many train examples"})
    max_test: int | None = field(default=None, metadata={"help": "the same for the test split"})
    subset_seed: int = field(default=0, metadata={"help": "seed of those subsets (independent of `seed`)"})
    teacher_responses: tuple[str, ...] = field(default=(), metadata={
        "help": "folders of `tracekd teacher` responses (answers, summaries, explanations; the flag is "
                "repeatable); given, every arm is restricted to the teacher-correct subset (the teacher arms "
                "need them)", "repeatable": True, "metavar": "DIR"})
    teacher_answer: str = field(default="gold", metadata={
        "help": "what the teacher arms put in <answer>: gold, or teacher (the teacher's own answer text)",
        "choices": ["gold", "teacher"]})
    teacher_prompts: str | None = field(default=None, metadata={
        "help": "YAML file overriding prompts / class synonyms of tracekd/templates/teacher.yaml",
        "metavar": "YAML"})
    teacher_scorer: str = field(default="strict", metadata={
        "help": "scorer deciding whether the teacher's answer is right (strict: the method's; any answer scorer "
                "of `tracekd ls`; contains: every gold answer occurs in it as whole words, lenient; none: keep "
                "every answered item; recorded)"})
    teacher_trace: str = field(default="reasoning", metadata={
        "help": "the teacher's trace: reasoning (what the server returned as reasoning_content or a <think> "
                "block; items without one are dropped) or content (the whole answer text: a non-reasoning "
                "teacher asked to think aloud)", "choices": ["reasoning", "content"]})

    def __post_init__(self) -> None:
        self.arms = tuple(self.arms)
        self.teacher_responses = tuple(self.teacher_responses)
        for arm in self.arms:
            if arm not in ALL_ARMS:
                raise ConfigError(did_you_mean(arm, ALL_ARMS, "arm"))
        if not self.teacher_responses and set(self.arms) & set(TEACHER_ARMS):
            raise ConfigError("teacher arms need teacher responses (--teacher-responses DIR)")
        if len(set(self.arms)) != len(self.arms):
            raise ConfigError(f"arms listed twice: {', '.join(self.arms)}")


#: what the words of a build's manifest and summary mean (written into the manifest as ``glossary``)
GLOSSARY = {
    "counts": {
        "loaded": "examples the dataset loader read for the split",
        "selected": "examples left after --max-train / --max-test (a label-stratified seeded subset)",
        "kept": "examples every arm applies to: the rows in each arm's file and in examples/",
        "excluded": "examples left out of every arm because some arm cannot apply (listed under 'excluded')",
    },
    "evidence_cases": {
        "full": "wrong evidence has as many non-gold context lines as the gold evidence has lines "
                "(one line when the gold evidence is empty)",
        "fewer": "the context has fewer non-gold lines than gold lines: all of them are used",
        "empty": "the context has no non-gold line: the evidence is the empty list "
                 "(still wrong, since the gold evidence is not)",
    },
    "loader_notes": "per split, how many examples the loader tagged with each note (see the dataset's docs)",
    "loader_excluded": "examples the loader left out before the build, with the reason",
}


class BuildError(TracekdError):
    """A corrupted trace that the verifier does not find wrong, or a correct one it does not find right."""


#: which steps each arm must get wrong (True) or right (False) when re-checked by the verifier
_EXPECT_WRONG = {
    "correct": {"class": False, "evidence": False},
    "incorrect": {"class": True, "evidence": True},
    "incorrect-class": {"class": True, "evidence": False},
    "incorrect-evidence": {"class": False, "evidence": True},
}


def check_row(example: Example, row: SFTRow, template: Template) -> None:
    """Re-parse a rendered trace and confirm each step is right or wrong exactly as its arm says."""
    expect = _EXPECT_WRONG.get(row.arm)
    if expect is None:
        return
    parsed = parse(row.completion_text, template, finish_reason="stop")
    verdicts = verify_steps(parsed, example)
    got = {"class": not verdicts.label_ok, "evidence": not verdicts.evidence_exact}
    if parsed.status != "ok" or got != expect:
        raise BuildError(
            f"{example.id}: the {row.arm} trace does not verify as intended "
            f"(status {parsed.status}, class wrong={got['class']}, evidence wrong={got['evidence']}; "
            f"expected {expect}):\n{row.completion_text}")


def build_rows(examples: list[Example], arms: tuple[str, ...], labels: tuple[str, ...], seed: int,
               template: Template, progress: bool = True):
    """Targets and rows for every example and arm; examples where some arm cannot apply are excluded.

    Returns ``(rows_by_arm, kept_examples, excluded, evidence_cases)``.
    """
    rows: dict[str, list[SFTRow]] = {arm: [] for arm in arms}
    kept: list[Example] = []
    excluded: list[dict] = []
    cases: dict[str, Counter] = {arm: Counter() for arm in arms}
    for ex in tqdm(examples, desc="render", unit="ex", disable=not progress, leave=False):
        targets: dict[str, Target] = {}
        try:
            for arm in arms:
                targets[arm] = target_for(ex, arm, labels, seed)
        except CannotCorrupt as e:
            excluded.append({"id": ex.id, "arm": arm, "reason": str(e)})
            continue
        kept.append(ex)
        for arm, t in targets.items():
            row = render_row(ex, arm, t.decomposition, template)
            check_row(ex, row, template)
            rows[arm].append(row)
            if t.evidence_case:
                cases[arm][t.evidence_case] += 1
    return rows, kept, excluded, {a: dict(sorted(c.items())) for a, c in cases.items() if c}


def stratified_subset(examples: list[Example], k: int | None, seed: int) -> list[Example]:
    """A seeded subset of ``k`` examples, spread as evenly as possible over gold labels, in input order.

    >>> from tracekd.records import Decomposition
    >>> exs = [Example(str(i), "d", "train", "q", ("c",), ("a",), Decomposition("AB"[i % 2], (0,)))
    ...        for i in range(10)]
    >>> sorted(e.gold.label for e in stratified_subset(exs, 4, seed=0))
    ['A', 'A', 'B', 'B']
    >>> len(stratified_subset(exs, None, seed=0)), len(stratified_subset(exs, 99, seed=0))
    (10, 10)
    """
    if k is None or k >= len(examples):
        return list(examples)
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        groups.setdefault(ex.gold.label, []).append(ex)
    for label, group in groups.items():
        group.sort(key=lambda e: sha256_text(f"{seed}/{e.id}"))
    chosen: set[str] = set()
    depth = 0
    while len(chosen) < k:
        for label in sorted(groups):
            if depth < len(groups[label]) and len(chosen) < k:
                chosen.add(groups[label][depth].id)
        depth += 1
    return [ex for ex in examples if ex.id in chosen]


@dataclass
class SplitSets:
    """One split of a build as rendered: what is written and what the manifest counts."""

    loaded: int  # examples the loader read
    selected: list[Example]  # after the stratified and the teacher-correct subsets
    kept: list[Example]  # the examples every arm applies to
    rows: dict[str, list[SFTRow]]  # arm -> its rows
    excluded: list[dict]
    evidence_cases: dict


def load_inputs(config: BuildConfig):
    """The dataset spec, the trace template and the loaded splits a build reads."""
    spec = DATASETS.get(config.dataset)
    template = get_template(config.template or spec.template)
    return spec, template, spec.load_splits(config.data, **config.options)


def render_split(config: BuildConfig, spec, template: Template, extra, split: str, examples: list[Example],
                 progress: bool = True) -> SplitSets:
    """Select one split's examples (``max_train`` / ``max_test`` subset, then the teacher-correct subset) and
    render every arm: the one row selection that ``tracekd build`` writes and ``tracekd run --dry-run`` counts.

    ``extra`` is the build's :class:`tracekd.teacher.arms.ExtraArms` (the arms beyond the decomposed ones).
    """
    limit = {"train": config.max_train, "test": config.max_test}.get(split)
    selected = extra.subset(split, stratified_subset(examples, limit, config.subset_seed))
    rows, kept, excluded, cases = build_rows(selected, tuple(a for a in config.arms if a in ARMS), spec.labels,
                                             config.seed, template, progress)
    rows.update(extra.rows(split, kept))
    return SplitSets(len(examples), selected, kept, rows, excluded, cases)


def render_sets(config: BuildConfig, progress: bool = False) -> dict[str, SplitSets]:
    """Every split of the build ``config`` describes, rendered in memory (nothing is written)."""
    spec, template, splits = load_inputs(config)
    extra = ExtraArms(config, template, splits)
    return {split: render_split(config, spec, template, extra, split, examples, progress)
            for split, examples in splits.items()}


def build(config: BuildConfig, progress: bool = True, overwrite: bool = False) -> dict:
    """Load, decompose, render every arm, verify, write; returns the manifest.

    An existing build folder is refused unless ``overwrite``; then the new build replaces it as a
    whole (written into a temporary sibling, then swapped in), so no old arm survives.
    """
    refuse_existing(config.out, overwrite, "build folder")
    spec, template, splits = load_inputs(config)
    with replace_dir(config.out, overwrite, "build folder") as out:
        return _write_build(config, spec, template, splits, out, progress)


def _write_build(config: BuildConfig, spec, template: Template, splits, out: Path, progress: bool) -> dict:
    files: list[Path] = []
    counts: dict = {}
    excluded_all: dict = {}
    cases_all: dict = {}
    loader_notes = {}
    from .teacher.arms import ExtraArms  # teacher-correct subset, teacher arms, baselines

    extra = ExtraArms(config, template, splits)
    for split, examples in splits.items():
        sets = render_split(config, spec, template, extra, split, examples, progress)
        path = out / "examples" / f"{split}.jsonl"
        write_records(path, sets.kept)
        files.append(path)
        for arm in config.arms:
            path = out / arm / f"{split}.jsonl"
            write_records(path, sets.rows[arm])
            files.append(path)
        counts[split] = {"loaded": sets.loaded, "selected": len(sets.selected), "kept": len(sets.kept),
                         "excluded": len(sets.excluded)}
        excluded_all[split] = sets.excluded
        cases_all[split] = sets.evidence_cases
        notes = Counter(k for ex in sets.selected for k in ex.meta.get("notes", ()))
        if notes:
            loader_notes[split] = dict(notes)
    m = manifest(
        kind="build",
        config={**asdict(config), "arms": list(config.arms), "template": template.name},
        seed=config.seed,
        dataset={"name": spec.name, "labels": list(spec.labels), "scorer": spec.scorer},
        glossary=GLOSSARY,
        counts=counts,
        evidence_cases=cases_all,
        excluded=excluded_all,
        loader_notes=loader_notes,
        loader_excluded=list(getattr(splits, "excluded", [])),
        teacher=extra.manifest(),
        files={str(p.relative_to(out)): sha256_file(p) for p in files},
    )
    write_json(out / "manifest.json", m)
    return m
