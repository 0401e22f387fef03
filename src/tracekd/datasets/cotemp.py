"""CoTemp QA (Su et al., ACL 2024) in its native format -> Examples.

A path is a folder holding ``equal.json``, ``overlap.json``, ``during.json`` and ``mix.json``, or a
single one of them. Each file is JSON Lines despite its name: one object a line with ``index``
(int, unique in its file), ``triple_element`` (str), ``question`` (str), ``facts`` (list of str) and
``answer`` (list of str). The category is the file name.

Decomposition: class = the category; context = the facts; evidence rule ``answer-mention``
(recorded in ``meta["evidence_rule"]``): the facts whose normalised text
(:func:`tracekd.text.normalize_text`: NFKC, lowercase, punctuation to spaces, squeezed
spaces) contains a normalised gold answer as a whole-word span. Ids: ``cotemp/{category}/{index}``.

Split: per category, rows sorted by ``index`` are shuffled with
``random.Random(f"{split_seed}:{category}")``; the first ``round(test_fraction * n)`` are test, the
rest train (full data, seed 42: 4,748 -> 3,798 train / 950 test). Both splits are returned sorted by
category (equal, overlap, during, mix), then index. The split depends only on the indices, never on
the evidence rule.

What the rule finds in the shared data (2,685 rows, 3,978 gold answers): every answer is mentioned
by at least one fact; 130 answers (126 examples) are mentioned by several facts, mostly because one
answer is a whole-word part of another fact's object ("Republican Party" in "Catalan Republican
Party", "Liberal Party of Australia" in "... (South Australian Division)") or is the subject of every
fact ("Holy Roman Emperor" in "Frederick III, Holy Roman Emperor holds ..."): such evidence is a
superset of the facts that state the answer. Those examples are kept and tagged
``meta["notes"] = ["answer-in-several-facts"]`` so a build can count them.

An answer that no fact mentions: ``validate`` reports it as a problem (field ``answer``); ``load``
excludes the example (its gold evidence would be incomplete), after splitting, and lists it in
the returned mapping's ``excluded`` attribute (``{"id", "split", "reason", "detail", "source"}``).
Every other malformed row is an error in both.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError, did_you_mean
from ..io import MANIFEST, read_lines
from ..records import Decomposition, Example
from ..text import mentions, normalize_text
from . import DatasetSpec, Splits
from .cotemp_rules import classify_question

#: Categories = class labels, in the method's order.
CATEGORIES: tuple[str, ...] = ("equal", "overlap", "during", "mix")
EVIDENCE_RULE = "answer-mention"
NOTE_SEVERAL = "answer-in-several-facts"
REASON_UNMATCHED = "answer-in-no-fact"
LABEL_SOURCES = ("dataset", "rules")
_FIELDS: dict[str, type] = {"index": int, "triple_element": str, "question": str, "facts": list, "answer": list}


@dataclass(frozen=True)
class CotempOptions:
    """Options of the CoTemp QA loader (defaults = the method's)."""

    split_seed: int = field(default=42, metadata={"help": "seed of the per-category train/test shuffle"})
    test_fraction: float = field(default=0.2, metadata={
        "help": "share of each category put in test: round(test_fraction * n)"})
    labels: str = field(default="dataset", metadata={
        "help": "class labels: 'dataset' (the category) or 'rules' (relation derived from the facts' "
                "dates; provided by tracekd.datasets.cotemp_rules)"})

    def __post_init__(self) -> None:
        if not isinstance(self.split_seed, int) or isinstance(self.split_seed, bool):
            raise ConfigError(f"option 'split_seed' must be an integer, got {self.split_seed!r}")
        if (not isinstance(self.test_fraction, (int, float)) or isinstance(self.test_fraction, bool)
                or not 0 <= self.test_fraction <= 1):
            raise ConfigError(f"option 'test_fraction' must be a number in [0, 1], got {self.test_fraction!r}")
        if self.labels not in LABEL_SOURCES:
            raise ConfigError(did_you_mean(str(self.labels), LABEL_SOURCES, "value for option 'labels'"))


# ---------------------------------------------------------------------------------------------
# pure rules


def answer_evidence(answers: list[str] | tuple[str, ...], facts: list[str] | tuple[str, ...]) -> list[list[int]]:
    """For each answer, the indices of the facts that mention it (rule ``answer-mention``).

    >>> facts = ["Ann is a member of the Red Party from 1990 to 1995.",
    ...          "Ann is a member of the Green Party in 1993.",
    ...          "Ann works for Acme in 1991."]
    >>> answer_evidence(["green party", "Acme"], facts)
    [[1], [2]]
    >>> answer_evidence(["Party", "Ann"], facts)
    [[0, 1], [0, 1, 2]]
    >>> answer_evidence(["Red Army"], facts)
    [[]]
    """
    normed = [normalize_text(f) for f in facts]
    out = []
    for a in answers:
        na = normalize_text(a)
        out.append([i for i, f in enumerate(normed) if mentions(f, na)])
    return out


def n_test(n: int, test_fraction: float) -> int:
    """Test examples of a category of ``n``: ``round(test_fraction * n)`` (Python rounding).

    >>> sizes = [n_test(n, 0.2) for n in (436, 653, 3096, 563)]
    >>> sizes, sum(sizes)
    ([87, 131, 619, 113], 950)
    """
    return round(test_fraction * n)


def split_indices(indices: list[int], category: str, seed: int = 42,
                  test_fraction: float = 0.2) -> tuple[list[int], list[int]]:
    """``(train, test)`` indices of one category, each sorted; seeded per category.

    >>> train, test = split_indices(list(range(10)), "equal", seed=42)
    >>> len(train), len(test), sorted(train + test) == list(range(10))
    (8, 2, True)
    >>> split_indices(list(range(10)), "equal", seed=42) == (train, test)
    True
    """
    order = sorted(indices)
    random.Random(f"{seed}:{category}").shuffle(order)
    k = n_test(len(order), test_fraction)
    return sorted(order[k:]), sorted(order[:k])


# ---------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class Row:
    """One well-formed CoTemp row and where it came from."""

    line: int
    index: int
    triple_element: str
    question: str
    facts: tuple[str, ...]
    answer: tuple[str, ...]


def category_of(path: str | Path) -> str:
    """The category a file holds, from its name (``equal.json`` -> ``equal``).

    >>> category_of("data/cotempqa/during.json")
    'during'
    >>> category_of("before.json")
    Traceback (most recent call last):
    ...
    tracekd.errors.DataError: before.json: field 'file_name': unknown CoTemp file 'before.json' (expected one of equal.json, overlap.json, during.json, mix.json)
    """
    path = Path(path)
    if path.suffix in (".json", ".jsonl") and path.stem in CATEGORIES:
        return path.stem
    names = ", ".join(f"{c}.json" for c in CATEGORIES)
    raise DataError(f"unknown CoTemp file {path.name!r} (expected one of {names})", path=path, field="file_name")


def _check_row(obj: object, path: Path, line: int) -> tuple[Row | None, list[DataError]]:
    def err(message: str, fld: str | None) -> DataError:
        return DataError(message, path=path, line=line, field=fld)

    if not isinstance(obj, dict):
        return None, [err(f"expected a JSON object, got {type(obj).__name__}", None)]
    errors = []
    for name, typ in _FIELDS.items():
        if name not in obj:
            errors.append(err("missing", name))
        elif not isinstance(obj[name], typ) or isinstance(obj[name], bool):
            errors.append(err(f"must be {'a list' if typ is list else typ.__name__}, "
                              f"got {type(obj[name]).__name__}", name))
    for name in ("facts", "answer"):
        value = obj.get(name)
        if not isinstance(value, list):
            continue
        if not value:
            errors.append(err("empty list", name))
        for i, item in enumerate(value):
            if not isinstance(item, str):
                errors.append(err(f"item {i} must be str, got {type(item).__name__}", name))
            elif not item.strip():
                errors.append(err(f"item {i} is empty", name))
            elif name == "answer" and not normalize_text(item):
                errors.append(err(f"item {i} ({item!r}) is empty after normalisation, so it can match nothing", name))
    if isinstance(obj.get("question"), str) and not obj["question"].strip():
        errors.append(err("empty", "question"))
    if errors:
        return None, errors
    return Row(line, obj["index"], obj["triple_element"], obj["question"], tuple(obj["facts"]),
               tuple(obj["answer"])), []


def read_category_file(path: str | Path) -> tuple[list[Row], list[DataError]]:
    """The well-formed rows of one file and every problem in it (blank lines skipped)."""
    path = Path(path)
    try:
        lines = read_lines(path)
    except DataError as e:
        return [], [e]
    rows: list[Row] = []
    errors: list[DataError] = []
    first_line: dict[int, int] = {}
    for lineno, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            hint = " (the file must be JSON Lines: one object a line)" if lineno == 1 and text.strip() == "[" else ""
            errors.append(DataError(f"invalid JSON: {e.msg} (column {e.colno}){hint}", path=path, line=lineno))
            continue
        row, problems = _check_row(obj, path, lineno)
        errors.extend(problems)
        if row is None:
            continue
        if row.index in first_line:
            errors.append(DataError(f"duplicate index {row.index} (first on line {first_line[row.index]})",
                                    path=path, line=lineno, field="index"))
            continue
        first_line[row.index] = lineno
        rows.append(row)
    if not rows and not errors:
        errors.append(DataError("no rows", path=path))
    return rows, errors


def _unmatched(row: Row, evidence: list[list[int]]) -> list[str]:
    return [a for a, ev in zip(row.answer, evidence) if not ev]


def data_files(path: str | Path) -> list[tuple[str, Path]]:
    """``(category, file)`` pairs, in category order; a folder must hold all four files."""
    path = Path(path)
    if not path.is_dir():
        return [(category_of(path), path)]
    out, missing = [], []
    for c in CATEGORIES:
        found = [p for p in (path / f"{c}.json", path / f"{c}.jsonl") if p.is_file()]
        if len(found) > 1:
            raise DataError(f"both {c}.json and {c}.jsonl; keep one", path=path, field="file_name")
        if found:
            out.append((c, found[0]))
        else:
            missing.append(f"{c}.json")
    if missing:
        raise DataError(f"missing {', '.join(missing)} (pass a single file to load one category)",
                        path=path, field="file_name")
    return out


# ---------------------------------------------------------------------------------------------
# load / validate


class Loaded(dict):
    """The splits (``{"train": [...], "test": [...]}``) plus ``excluded``: the examples left out, with why."""

    def __init__(self, splits: Splits, excluded: list[dict] | None = None):
        super().__init__(splits)
        self.excluded: list[dict] = list(excluded or [])


def load(path: Path, options: CotempOptions) -> Loaded:
    """Train/test Examples of the file(s) at ``path`` (see the module docstring for every rule)."""
    splits: Splits = {"train": [], "test": []}
    excluded: list[dict] = []
    for category, f in data_files(path):
        rows, errors = read_category_file(f)
        if errors:
            raise errors[0]
        by_index = {r.index: r for r in rows}
        train, test = split_indices(list(by_index), category, options.split_seed, options.test_fraction)
        for split, indices in (("train", train), ("test", test)):
            for i in indices:
                row = by_index[i]
                ex_id = f"cotemp/{category}/{row.index}"
                evidence = answer_evidence(row.answer, row.facts)
                unmatched = _unmatched(row, evidence)
                if unmatched:
                    excluded.append({
                        "id": ex_id, "split": split, "reason": REASON_UNMATCHED,
                        "detail": f"gold answer(s) {unmatched!r} mentioned in no fact",
                        "source": f"{f.name}:{row.line}",
                    })
                    continue
                meta = {"category": category, "triple_element": row.triple_element,
                        "evidence_rule": EVIDENCE_RULE, "source": f.name, "line": row.line,
                        "label_source": options.labels}
                label = category
                if options.labels == "rules":
                    verdict = classify_question(row.question, row.facts, row.answer, row.triple_element)
                    if verdict.label is None:  # never fall back to the dataset's label silently
                        excluded.append({"id": ex_id, "split": split, "reason": "rules-unclassified",
                                         "detail": verdict.reason, "source": f"{f.name}:{row.line}"})
                        continue
                    label = verdict.label
                    meta["rule_reason"] = verdict.reason
                if any(len(ev) > 1 for ev in evidence):
                    meta["notes"] = [NOTE_SEVERAL]
                splits[split].append(Example(
                    id=ex_id, dataset="cotemp", split=split, question=row.question, context=row.facts,
                    answers=row.answer,
                    gold=Decomposition(label, tuple(sorted({i for ev in evidence for i in ev}))),
                    meta=meta,
                ))
    return Loaded(splits, excluded)


def validate(path: Path) -> list[DataError]:
    """Every problem in the CoTemp file(s) at ``path``, including gold answers no fact mentions."""
    path = Path(path)
    if not path.exists():
        return [DataError("no such file or folder", path=path)]
    if path.is_dir():
        files, errors = [], []
        for c in CATEGORIES:
            found = [p for p in (path / f"{c}.json", path / f"{c}.jsonl") if p.is_file()]
            files.extend(found)
            if not found:
                errors.append(DataError(f"missing {c}.json", path=path, field="file_name"))
        known = set(files)
        errors.extend(DataError(f"unknown CoTemp file {p.name!r} (expected {', '.join(f'{c}.json' for c in CATEGORIES)})",
                                path=p, field="file_name")
                      for p in sorted(path.iterdir())
                      if p.suffix in (".json", ".jsonl") and p not in known and p.name != MANIFEST)
    else:
        files, errors = [path], []
        try:
            category_of(path)
        except DataError as e:
            errors.append(e)
    for f in files:
        rows, problems = read_category_file(f)
        errors.extend(problems)
        for row in rows:
            for a in _unmatched(row, answer_evidence(row.answer, row.facts)):
                errors.append(DataError(f"gold answer {a!r} is mentioned in no fact (evidence rule {EVIDENCE_RULE})",
                                        path=f, line=row.line, field="answer"))
    return sorted(errors, key=lambda e: (e.path or "", e.line or 0))


SPEC = DatasetSpec(
    name="cotemp",
    description="CoTemp QA (Su et al., ACL 2024); class = temporal category, evidence = facts mentioning a gold answer",
    labels=CATEGORIES,
    load=load,
    validate=validate,
    options=CotempOptions,
    template="reference-cotemp",
    scorer="strict",
    reference_size="4,748 (equal 436, overlap 653, during 3,096, mix 563) -> 3,798 / 950",
    download=(
        "CoTemp QA: get the HF dataset Warrieryes/CotempQA or the authors' repository (Su et al., ACL 2024) "
        "and point tracekd at a folder holding equal.json, overlap.json, during.json and mix.json "
        "(JSON Lines: index, triple_element, question, facts, answer)."
    ),
)
