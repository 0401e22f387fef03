"""MS MARCO QA v2.1 -> Examples (class = ``query_type``, evidence = one or more passages).

A path is a folder holding the train and validation files in either distributed form:

- column-oriented JSON, as Microsoft distributes it: ``train_v2.1.json(.gz)`` and
  ``dev_v2.1.json(.gz)``; one object whose keys ``query``, ``query_id``, ``query_type``,
  ``passages`` (a list of ``{is_selected, passage_text, url}``), ``answers`` and
  ``wellFormedAnswers`` each map a row key (``"0"``, ``"1"``, ...) to that row's value;
- the parquet files of Hugging Face ``microsoft/ms_marco`` config ``v2.1``
  (``train-*.parquet`` / ``validation-*.parquet``, in the folder or its ``v2.1/`` subfolder), one
  row per query, ``passages`` = ``{is_selected: [...], passage_text: [...], url: [...]}``.

Other names: options ``train_files`` / ``test_files`` (comma-separated globs relative to the folder).
Files are streamed (``ijson`` for JSON, ``pyarrow`` batches for parquet; both in the ``marco``
extra): a first pass reads ``query_type`` / ``answers`` / ``query_id`` of every row and draws the
sample, a second reads the other columns of the sampled rows only.

Sampling (the method's): per query type, ``n_per_type`` rows of the train files (train split) and
``m_per_type`` of the validation files (test split), drawn with
``random.Random(f"{sample_seed}:{split}:{label}").sample`` from the candidate rows in file order;
all of them when fewer exist. Each split is returned in file order. Ids: ``marco/{split}/{query_id}``.

Example fields: class = ``query_type`` upper-cased (input is case-insensitive); context = the
passage texts (whitespace squeezed to single spaces so each passage is one line; empty passages
and passages repeating an earlier one - same text after the verifier's ``normalize_line`` - are
dropped, ``is_selected`` merged into the one kept); answers = ``(first answer,)``, the answer the
traces are trained on; ``meta["references"]`` = every answer, the alternatives the ``marco`` scorer
takes the best of; ``meta["well_formed"]`` = ``wellFormedAnswers``.

Evidence rule (option ``evidence``, recorded in ``meta["evidence_rule"]``):

- ``answer-overlap`` (the method's): the passage whose word set (:func:`tracekd.text.normalize_text`,
  split on spaces) shares most words with the first answer's; the first such passage on a tie;
  no passage (``[]``) when the best overlap is 0 (``meta["evidence_overlap"]`` records it).
- ``is-selected``: the passages the dataset marks ``is_selected``.

"No Answer Present." rows (first answer exactly that, ``meta["no_answer"] = True``): dropped
before sampling by default (``no_answer="drop"``), because the method's evidence rule ranks
passages by overlap with the answer and has nothing to rank by. With ``no_answer="keep"`` they are
sampled like the rest, and in every arm: the answer is the literal ``No Answer Present.``; gold
evidence is ``[]`` under ``answer-overlap`` (no passage supports a non-answer) and the marked
passages (normally none) under ``is-selected``; ``correct`` traces name ``[]``; the wrong-evidence
arms name one non-gold passage (the corruption rule for an empty gold, see
:mod:`tracekd.traces.corrupt`); ``vanilla`` is the bare literal. Answered rows whose answer shares
no word with any passage get ``[]`` the same way under ``answer-overlap``.

Malformed rows (unknown query type, empty or missing answers, missing or empty passages, wrong
types) are errors naming the file, the row and the field: for column JSON the field reads
``passages["17"]`` (the JSON path; no line numbers exist in a one-line file), for parquet the row
number (1-based) stands in the line place. ``load`` stops at the first problem it meets (pass one
checks every row's type and answers; pass two the sampled rows' passages), ``validate`` reports all.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError, DataError, did_you_mean
from ..records import Decomposition, Example
from ..text import normalize_line, normalize_text
from . import DatasetSpec, Splits

#: The five query types = class labels, upper case (the order of the method's table).
LABELS: tuple[str, ...] = ("DESCRIPTION", "NUMERIC", "ENTITY", "LOCATION", "PERSON")
NO_ANSWER = "No Answer Present."
EVIDENCE_RULES = ("answer-overlap", "is-selected")
NO_ANSWER_MODES = ("drop", "keep")
#: Columns every row must have; ``wellFormedAnswers`` is optional.
REQUIRED = ("query", "query_id", "query_type", "answers", "passages")
COLUMNS = (*REQUIRED, "wellFormedAnswers")
_FIRST_PASS = ("query_id", "query_type", "answers")
_AUTO = {
    "train": ("train_v2.1.json", "train_v2.1.json.gz", "train*.parquet", "v2.1/train*.parquet"),
    "test": ("dev_v2.1.json", "dev_v2.1.json.gz", "validation*.parquet", "v2.1/validation*.parquet"),
}


@dataclass(frozen=True)
class MarcoOptions:
    """Options of the MS MARCO loader (defaults = the method's)."""

    evidence: str = field(default="answer-overlap", metadata={
        "help": "evidence rule: 'answer-overlap' (passage sharing most words with the answer) or "
                "'is-selected' (passages the dataset marks)"})
    n_per_type: int = field(default=1000, metadata={"help": "train rows sampled per query type"})
    m_per_type: int = field(default=200, metadata={"help": "test rows sampled per query type (from validation)"})
    sample_seed: int = field(default=42, metadata={"help": "seed of the per-type sampling"})
    no_answer: str = field(default="drop", metadata={
        "help": "'No Answer Present.' rows: 'drop' before sampling, or 'keep' (gold evidence [] "
                "under answer-overlap)"})
    train_files: str = field(default="", metadata={
        "help": "train file(s): comma-separated globs relative to the folder (default: "
                "train_v2.1.json[.gz] or [v2.1/]train*.parquet)"})
    test_files: str = field(default="", metadata={
        "help": "test file(s) (validation split), as train_files (default: dev_v2.1.json[.gz] or "
                "[v2.1/]validation*.parquet)"})

    def __post_init__(self) -> None:
        if self.evidence not in EVIDENCE_RULES:
            raise ConfigError(did_you_mean(str(self.evidence), EVIDENCE_RULES, "value for option 'evidence'"))
        if self.no_answer not in NO_ANSWER_MODES:
            raise ConfigError(did_you_mean(str(self.no_answer), NO_ANSWER_MODES, "value for option 'no_answer'"))
        for name in ("n_per_type", "m_per_type", "sample_seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or (name != "sample_seed" and value < 0):
                raise ConfigError(f"option {name!r} must be a{' non-negative' if name != 'sample_seed' else 'n'} "
                                  f"integer, got {value!r}")
        for name in ("train_files", "test_files"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"option {name!r} must be a string of comma-separated globs")


# ---------------------------------------------------------------------------------------------
# pure rules


def word_set(text: str) -> set[str]:
    """The words of ``text`` after :func:`~tracekd.text.normalize_text`.

    >>> sorted(word_set("The Eiffel Tower, in Paris."))
    ['eiffel', 'in', 'paris', 'the', 'tower']
    """
    return set(normalize_text(text).split())


def overlap_evidence(answer: str, passages: list[str] | tuple[str, ...]) -> tuple[tuple[int, ...], int]:
    """Rule ``answer-overlap``: ``((index,), overlap)`` of the passage sharing most words with
    ``answer`` (the first on a tie), or ``((), 0)`` when none shares a word.

    >>> ps = ["Paris is the capital of France.", "The Eiffel Tower is in Paris, France.", "Berlin."]
    >>> overlap_evidence("Eiffel Tower, Paris", ps)
    ((1,), 3)
    >>> overlap_evidence("capital France", ps)
    ((0,), 2)
    >>> overlap_evidence("Rome", ps)
    ((), 0)
    """
    words = word_set(answer)
    best, best_i = 0, None
    for i, p in enumerate(passages):
        n = len(words & word_set(p))
        if n > best:
            best, best_i = n, i
    return ((best_i,), best) if best_i is not None else ((), 0)


def clean_passages(texts: list[str], selected: list[bool]) -> tuple[list[str], list[bool], int]:
    """Passages as context lines: whitespace squeezed, empty ones and repeats dropped (the first
    kept, ``is_selected`` OR-ed into it). Returns ``(texts, selected, n_dropped)``.

    >>> clean_passages(["A  b.\\nc", "", "a b. c", "D"], [False, False, True, False])
    (['A b. c', 'D'], [True, False], 2)
    """
    out: list[str] = []
    sel: list[bool] = []
    seen: dict[str, int] = {}
    for text, s in zip(texts, selected):
        text = " ".join(text.split())
        key = normalize_line(text)
        if not key:
            continue
        if key in seen:
            sel[seen[key]] = sel[seen[key]] or s
            continue
        seen[key] = len(out)
        out.append(text)
        sel.append(bool(s))
    return out, sel, len(texts) - len(out)


def is_no_answer(answers: list[str] | tuple[str, ...]) -> bool:
    """Whether a row's first answer is MARCO's ``No Answer Present.``

    >>> is_no_answer(["No Answer Present."]), is_no_answer(["42"])
    (True, False)
    """
    return bool(answers) and answers[0].strip() == NO_ANSWER


def sample_keys(candidates: dict[str, list[Any]], n: int, seed: int, split: str) -> set[Any]:
    """Per label, ``n`` of its candidates (all when fewer), ``random.Random(f"{seed}:{split}:{label}")``.

    >>> picked = sample_keys({"PERSON": list(range(10)), "NUMERIC": [20, 21]}, 3, 42, "train")
    >>> len(picked), {20, 21} <= picked
    (5, True)
    >>> picked == sample_keys({"PERSON": list(range(10)), "NUMERIC": [20, 21]}, 3, 42, "train")
    True
    """
    out: set[Any] = set()
    for label in sorted(candidates):
        keys = candidates[label]
        if len(keys) <= n:
            out.update(keys)
        else:
            out.update(random.Random(f"{seed}:{split}:{label}").sample(keys, n))
    return out


# ---------------------------------------------------------------------------------------------
# cell checks: one value of one column -> its clean form, or DataError(message)


def _type_name(value: Any) -> str:
    return type(value).__name__


def check_cell(column: str, value: Any) -> Any:
    """The clean value of one cell; a DataError (message only) when it is malformed.

    >>> check_cell("query_type", "numeric")
    'NUMERIC'
    >>> check_cell("passages", {"is_selected": [0, 1], "passage_text": ["a", "b"], "url": ["u", "v"]})
    (['a', 'b'], [False, True])
    >>> check_cell("wellFormedAnswers", "[]")
    []
    >>> check_cell("answers", [])
    Traceback (most recent call last):
    ...
    tracekd.errors.DataError: empty answers list (MARCO writes ['No Answer Present.'] for none)
    """
    if column == "query":
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"must be a non-empty string, got {value!r}")
        return " ".join(value.split())
    if column == "query_id":
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip():
            raise DataError(f"must be an integer or a string, got {value!r}")
        return str(value).strip()
    if column == "query_type":
        if not isinstance(value, str):
            raise DataError(f"must be a string, got {_type_name(value)}")
        label = value.strip().upper()
        if label not in LABELS:
            raise DataError(did_you_mean(value, LABELS, "query type"))
        return label
    if column in ("answers", "wellFormedAnswers"):
        if column == "wellFormedAnswers" and (value is None or value == "[]"):
            return []  # the distributed JSON writes "[]" (a string) for none
        if not isinstance(value, list):
            raise DataError(f"must be a list of strings, got {_type_name(value)}")
        if column == "answers" and not value:
            raise DataError(f"empty answers list (MARCO writes [{NO_ANSWER!r}] for none)")
        for i, a in enumerate(value):
            if not isinstance(a, str):
                raise DataError(f"item {i} must be a string, got {_type_name(a)}")
        answers = [a.strip() for a in value]
        if column == "answers" and not answers[0]:
            raise DataError("the first answer is empty")
        return answers
    if column == "passages":
        return _check_passages(value)
    raise DataError(f"unknown column {column!r}")


def _check_passages(value: Any) -> tuple[list[str], list[bool]]:
    if isinstance(value, dict):  # parquet / HF: parallel lists
        if "passage_text" not in value:
            raise DataError("missing 'passage_text'")
        texts = value["passage_text"]
        sel = value.get("is_selected")
        if not isinstance(texts, list):
            raise DataError(f"'passage_text' must be a list, got {_type_name(texts)}")
        if sel is None:
            sel = [0] * len(texts)
        if not isinstance(sel, list) or len(sel) != len(texts):
            raise DataError(f"'is_selected' must be a list as long as 'passage_text' ({len(texts)})")
        items = [{"passage_text": t, "is_selected": s} for t, s in zip(texts, sel)]
    elif isinstance(value, list):  # distributed JSON: list of passage objects
        items = value
    else:
        raise DataError(f"must be a list of passages, got {_type_name(value)}")
    if not items:
        raise DataError("no passages")
    texts_out, sel_out = [], []
    for i, p in enumerate(items):
        if not isinstance(p, dict):
            raise DataError(f"passage {i} must be an object, got {_type_name(p)}")
        text = p.get("passage_text")
        if not isinstance(text, str):
            raise DataError(f"passage {i}: 'passage_text' must be a string, got {_type_name(text)}")
        s = p.get("is_selected", 0)
        if s not in (0, 1) or (not isinstance(s, (int, bool))):
            raise DataError(f"passage {i}: 'is_selected' must be 0 or 1, got {s!r}")
        texts_out.append(text)
        sel_out.append(bool(s))
    if not any(t.strip() for t in texts_out):
        raise DataError("every passage is empty")
    return texts_out, sel_out


# ---------------------------------------------------------------------------------------------
# streaming readers: (file, key, location) + cells


@dataclass(frozen=True)
class Cell:
    """One value of one column of one row, and how to name where it is."""

    column: str
    key: str  # row key (column JSON) or 0-based row number (parquet)
    value: Any
    path: Path
    parquet: bool

    def error(self, e: DataError) -> DataError:
        return locate(e, self.path, self.column, self.key, self.parquet)


def locate(e: DataError, path: Path, column: str, key: str, parquet: bool) -> DataError:
    """``e`` with the file, row and field filled in."""
    if parquet:
        return DataError(e.message, path=path, line=int(key) + 1, field=column)
    return DataError(e.message, path=path, field=f'{column}["{key}"]')


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _skip_or_build(first: tuple[str, Any], events: Iterator, build: bool) -> Any:
    """The value starting with ``first`` (built with ijson's ObjectBuilder when ``build``)."""
    ev, val = first
    if ev not in ("start_map", "start_array"):
        return val
    builder = None
    if build:
        import ijson

        builder = ijson.ObjectBuilder()
        builder.event(ev, val)
    level = 1
    for ev, val in events:
        if builder is not None:
            builder.event(ev, val)
        if ev in ("start_map", "start_array"):
            level += 1
        elif ev in ("end_map", "end_array"):
            level -= 1
            if level == 0:
                break
    return builder.value if builder is not None else None


def iter_json_cells(path: Path, columns: tuple[str, ...], want: set[str] | None = None) -> Iterator[Cell]:
    """Stream the cells of a column-oriented MARCO JSON file, one pass, constant memory.

    Only ``columns`` are built, and only rows in ``want`` (all when None); a column absent from
    the file raises a DataError.
    """
    try:
        import ijson
    except ImportError:  # pragma: no cover - the marco extra
        raise ConfigError("reading MS MARCO JSON needs ijson: pip install 'tracekd[marco]'") from None
    seen_columns: set[str] = set()
    try:
        with _open_binary(path) as f:
            events = ijson.basic_parse(f, use_float=True)
            ev, _ = next(events, ("end", None))
            if ev != "start_map":
                raise DataError("expected one JSON object mapping column names to {row key: value} "
                                "(the distributed column-oriented form)", path=path)
            for ev, col in events:
                if ev == "end_map":
                    break
                first = next(events)
                if col not in columns:
                    _skip_or_build(first, events, build=False)
                    continue
                seen_columns.add(col)
                if first[0] != "start_map":
                    raise DataError("must be an object mapping row keys to values", path=path, field=col)
                for ev2, key in events:
                    if ev2 == "end_map":
                        break
                    wanted = want is None or key in want
                    value = _skip_or_build(next(events), events, build=wanted)
                    if wanted:
                        yield Cell(col, key, value, path, False)
    except (ijson.JSONError, EOFError, OSError, UnicodeDecodeError, StopIteration) as e:
        raise DataError(f"invalid JSON: {e}", path=path) from None
    missing = [c for c in columns if c not in seen_columns and c in REQUIRED]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} (have a MARCO v2.1 file?)", path=path)


def iter_parquet_cells(path: Path, columns: tuple[str, ...], want: set[str] | None = None) -> Iterator[Cell]:
    """Stream the cells of a HF MARCO parquet file in record batches (row number as key)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the marco extra
        raise ConfigError("reading MS MARCO parquet needs pyarrow: pip install 'tracekd[marco]'") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise DataError(f"not a readable parquet file: {e}", path=path) from None
    have = set(pf.schema_arrow.names)
    missing = [c for c in columns if c not in have and c in REQUIRED]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} (have a MARCO v2.1 file?)", path=path)
    cols = [c for c in columns if c in have]
    row = 0
    for batch in pf.iter_batches(columns=cols, batch_size=2048):
        data = batch.to_pydict()
        for i in range(batch.num_rows):
            key = str(row + i)
            if want is None or key in want:
                for c in cols:
                    yield Cell(c, key, data[c][i], path, True)
        row += batch.num_rows


def iter_cells(path: Path, columns: tuple[str, ...], want: set[str] | None = None) -> Iterator[Cell]:
    if path.suffix == ".parquet":
        return iter_parquet_cells(path, columns, want)
    return iter_json_cells(path, columns, want)


def _row_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def read_marco_rows(path: Path, columns: tuple[str, ...], want: set[str] | None = None,
              ) -> list[tuple[str, dict[str, Any]]]:
    """``[(key, {column: clean value})]`` of the rows in ``want`` (all when None), in row order;
    the first malformed cell or a row missing a required column raises a located DataError."""
    rows: dict[str, dict[str, Any]] = {}
    for cell in iter_cells(path, columns, want):
        if cell.value is None and cell.column in REQUIRED:
            raise cell.error(DataError("missing (null)"))
        try:
            rows.setdefault(cell.key, {})[cell.column] = check_cell(cell.column, cell.value)
        except DataError as e:
            raise cell.error(e) from None
    parquet = path.suffix == ".parquet"
    for key, row in rows.items():
        for c in columns:
            if c in REQUIRED and c not in row:
                raise locate(DataError("missing"), path, c, key, parquet)
    if want is not None:
        for key in sorted(want - rows.keys(), key=_row_order):
            raise locate(DataError("missing"), path, columns[0], key, parquet)
    return sorted(rows.items(), key=lambda kv: _row_order(kv[0]))


# ---------------------------------------------------------------------------------------------
# files


def split_files(folder: Path, split: str, patterns: str = "") -> list[Path]:
    """The files of ``split`` ("train" or "test") in ``folder``: the given comma-separated globs,
    else the first default name or glob that exists (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("expected a folder holding the MS MARCO v2.1 train and dev/validation files", path=folder)
    if patterns.strip():
        found: list[Path] = []
        for pat in (p.strip() for p in patterns.split(",") if p.strip()):
            hits = sorted(p for p in folder.glob(pat) if p.is_file())
            if not hits:
                raise DataError(f"no file matches {pat!r}", path=folder,
                                field="train_files" if split == "train" else "test_files")
            found.extend(h for h in hits if h not in found)
        return found
    for pat in _AUTO[split]:
        hits = sorted(p for p in folder.glob(pat) if p.is_file())
        if hits:
            return hits
    raise DataError(f"no {split} file: looked for {', '.join(_AUTO[split])} "
                    f"(or name them with the option {'train_files' if split == 'train' else 'test_files'})",
                    path=folder)


# ---------------------------------------------------------------------------------------------
# load / validate


def scan(path: Path) -> list[tuple[str, str, str, bool]]:
    """Pass one over a file: ``(row key, query_id, label, no_answer)`` of every row, in row order.

    Only these are kept (a few bytes a row), so the multi-GB train file fits in memory; every
    row's ``query_type`` and ``answers`` are checked here.
    """
    info: dict[str, list] = {}
    for cell in iter_cells(path, _FIRST_PASS):
        if cell.value is None:
            raise cell.error(DataError("missing (null)"))
        try:
            value = check_cell(cell.column, cell.value)
        except DataError as e:
            raise cell.error(e) from None
        slot = info.setdefault(cell.key, [None, None, None])
        if cell.column == "query_id":
            slot[0] = value
        elif cell.column == "query_type":
            slot[1] = LABELS[LABELS.index(value)]  # one shared string per label
        else:
            slot[2] = is_no_answer(value)
    parquet = path.suffix == ".parquet"
    out = []
    for key in sorted(info, key=_row_order):
        slot = info[key]
        for column, value in zip(_FIRST_PASS, slot):
            if value is None:
                raise locate(DataError("missing"), path, column, key, parquet)
        out.append((key, slot[0], slot[1], slot[2]))
    return out


def _load_split(files: list[Path], split: str, n: int, options: MarcoOptions) -> list[Example]:
    # pass 1: id, type and no-answer flag of every row -> candidates per type
    order: dict[int, list[str]] = {}
    candidates: dict[str, list[tuple[int, str]]] = {label: [] for label in LABELS}
    seen_ids: dict[str, tuple[int, str]] = {}
    for fi, f in enumerate(files):
        order[fi] = []
        for key, qid, label, no_answer in scan(f):
            if qid in seen_ids:
                pi, pkey = seen_ids[qid]
                raise locate(DataError(f"duplicate query_id {qid} (first in {files[pi].name}, row {pkey})"),
                             f, "query_id", key, f.suffix == ".parquet")
            seen_ids[qid] = (fi, key)
            if options.no_answer == "drop" and no_answer:
                continue
            candidates[label].append((fi, key))
    picked = sample_keys(candidates, n, options.sample_seed, split)
    # pass 2: every column of the sampled rows only
    examples: list[Example] = []
    for fi, f in enumerate(files):
        want = {key for (i, key) in picked if i == fi}
        if want:
            examples.extend(_example(split, f, key, row, options) for key, row in read_marco_rows(f, COLUMNS, want))
    return examples


def _example(split: str, path: Path, key: str, row: dict, options: MarcoOptions) -> Example:
    texts, selected = row["passages"]
    context, selected, dropped = clean_passages(texts, selected)
    answers = row["answers"]
    no_answer = is_no_answer(answers)
    meta: dict[str, Any] = {
        "query_id": row["query_id"], "query_type": row["query_type"], "evidence_rule": options.evidence,
        "references": list(answers), "well_formed": list(row.get("wellFormedAnswers") or []),
        "is_selected": [int(s) for s in selected], "no_answer": no_answer,
        "source": path.name, "row": key,
    }
    if dropped:
        meta["passages_dropped"] = dropped
    if options.evidence == "is-selected":
        evidence = tuple(i for i, s in enumerate(selected) if s)
    elif no_answer:
        evidence = ()
    else:
        evidence, meta["evidence_overlap"] = overlap_evidence(answers[0], context)
    return Example(
        id=f"marco/{split}/{row['query_id']}", dataset="marco", split=split, question=row["query"],
        context=tuple(context), answers=(answers[0],), gold=Decomposition(row["query_type"], evidence),
        meta=meta,
    )


def load(path: Path, options: MarcoOptions) -> Splits:
    """Sampled train/test Examples of the MARCO files in the folder ``path`` (see module docstring)."""
    path = Path(path)
    train = split_files(path, "train", options.train_files)
    test = split_files(path, "test", options.test_files)
    return {"train": _load_split(train, "train", options.n_per_type, options),
            "test": _load_split(test, "test", options.m_per_type, options)}


def validate(path: Path) -> list[DataError]:
    """Every problem in the MARCO files of the folder ``path`` (default names), without stopping."""
    path = Path(path)
    errors: list[DataError] = []
    files: list[Path] = []
    if path.is_file():
        files = [path]
    else:
        for split in ("train", "test"):
            try:
                files.extend(split_files(path, split))
            except DataError as e:
                errors.append(e)
    for f in files:
        errors.extend(validate_file(f))
    return errors


def validate_file(path: Path) -> list[DataError]:
    """Every problem in one MARCO file (column JSON or parquet)."""
    errors: list[DataError] = []
    keys: dict[str, set[str]] = {c: set() for c in COLUMNS}
    ids: dict[str, str] = {}
    parquet = path.suffix == ".parquet"
    try:
        for cell in iter_cells(path, COLUMNS):
            keys[cell.column].add(cell.key)
            if cell.value is None:
                if cell.column in REQUIRED:
                    errors.append(cell.error(DataError("missing (null)")))
                continue
            try:
                clean = check_cell(cell.column, cell.value)
            except DataError as e:
                errors.append(cell.error(e))
                continue
            if cell.column == "query_id":
                if clean in ids:
                    errors.append(cell.error(DataError(f"duplicate query_id {clean} (first at row {ids[clean]})")))
                else:
                    ids[clean] = cell.key
    except DataError as e:
        errors.append(e)
        return errors
    everyone = set().union(*(keys[c] for c in REQUIRED))
    for c in REQUIRED:
        for key in sorted(everyone - keys[c], key=_row_order):
            errors.append(locate(DataError("missing"), path, c, key, parquet))
    return errors


SPEC = DatasetSpec(
    name="marco",
    description="MS MARCO QA v2.1; class = query type, evidence = passage sharing most words with the "
                "answer (or the is_selected passages)",
    labels=LABELS,
    load=load,
    validate=validate,
    options=MarcoOptions,
    template="reference-qa",
    scorer="marco",
    reference_size="6,000: 1,000 train per query type (5,000) + 200 test per type from validation (1,000)",
    download=(
        "MS MARCO QA v2.1 cannot be redistributed: download train_v2.1.json.gz and dev_v2.1.json.gz from "
        "https://microsoft.github.io/msmarco/ (or the parquet files of the Hugging Face dataset "
        "microsoft/ms_marco, config v2.1) into one folder and pass that folder."
    ),
)
