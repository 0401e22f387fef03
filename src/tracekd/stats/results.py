"""The typed results schema: what ``score`` (summary.json), ``analyze --out`` and ``run`` (analysis.json) write
and what the report reads.

Every record is a frozen dataclass with ``to_dict`` / ``from_dict`` (as :mod:`tracekd.records` does for the
data flow). Undefined numbers are ``None`` - JSON ``null`` - never NaN or infinity, and the record says why in
its ``note``. ``from_dict`` checks every field's type and names the dotted path of a bad one.

>>> a = Accuracy.of(3, 4)
>>> a.accuracy, Accuracy.from_dict(a.to_dict()) == a
(0.75, True)
>>> Accuracy.of(0, 0).to_dict()
{'correct': 0, 'n': 0, 'accuracy': None, 'ci95': [None, None], 'note': 'no items'}
>>> Accuracy.from_dict({"correct": 1, "n": "2", "accuracy": 0.5, "ci95": [0, 1]}, where="x")
Traceback (most recent call last):
...
tracekd.errors.DataError: x: field 'n': must be int, got str
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

from ..errors import DataError
from .contingency import wilson

#: the note of a step that outputs without a trace cannot be judged on (vanilla arms)
NO_TRACE = "n/a (no trace)"
#: a status with no trace to judge (every other status met means the outputs have traces)
TRACE_FREE_STATUSES = frozenset({"no_trace", "missing", "empty"})


def finite(x: Any) -> float | None:
    """``x`` as a float, or None when it is None, NaN or infinite.

    >>> finite(0.5), finite(float("nan")), finite(float("inf")), finite(None), finite(1)
    (0.5, None, None, None, 1.0)
    """
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------------- the codec

def _key(f: dataclasses.Field) -> str:
    return f.metadata.get("json", f.name)


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        out = {}
        for f in dataclasses.fields(value):
            field_value = getattr(value, f.name)
            if field_value is None and f.metadata.get("omit_none"):
                continue
            out[_key(f)] = _encode(field_value)
        return out
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _decode(tp: Any, value: Any, where: str, path: str) -> Any:
    def bad(what: str) -> DataError:
        return DataError(f"must be {what}, got {type(value).__name__}", field=path or None, source=where or None)

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        options = [o for o in options if o is not type(None)]
        if len(options) == 1:
            return _decode(options[0], value, where, path)
        for o in options:
            try:
                return _decode(o, value, where, path)
            except DataError:
                continue
        raise bad(" or ".join(_type_name(o) for o in options))
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad("an object")
        return tp.from_dict(value, where=where, path=path)
    if origin is dict:
        if not isinstance(value, dict):
            raise bad("an object")
        _, vt = typing.get_args(tp)
        return {str(k): _decode(vt, v, where, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise bad("a list")
        args = typing.get_args(tp)
        item_types = [args[0]] * len(value) if (origin is list or args[-1] is Ellipsis) else list(args)
        if len(item_types) != len(value):
            raise DataError(f"must be a list of {len(item_types)}, got {len(value)} items", field=path or None,
                            source=where or None)
        items = [_decode(t, v, where, f"{path}[{i}]") for i, (t, v) in enumerate(zip(item_types, value))]
        return tuple(items) if origin is tuple else items
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value) if isinstance(value, float) else value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("int")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise bad(tp.__name__)
        return value
    raise TypeError(f"unsupported schema type {tp!r}")  # pragma: no cover - the schema is written here


class Record:
    """``to_dict`` / ``from_dict`` for the frozen dataclasses below (field metadata ``json`` renames a key,
    ``omit_none`` leaves a None field out of the dict)."""

    def to_dict(self) -> dict:
        return _encode(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "", path: str = ""):
        if not isinstance(d, dict):
            raise DataError(f"must be an object, got {type(d).__name__}", field=path or None, source=where or None)
        hints = _hints(cls)
        kw = {}
        for f in dataclasses.fields(cls):
            key = _key(f)
            sub = f"{path}.{key}" if path else key
            if key not in d:
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                    continue
                raise DataError("missing", field=sub, source=where or None)
            kw[f.name] = _decode(hints[f.name], d[key], where, sub)
        return cls(**kw)


class Named(Record):
    """A record of same-typed members read by name too: ``x["class"]`` is the field ``class_``."""

    def __getitem__(self, name: str) -> Any:
        for f in dataclasses.fields(self):
            if _key(f) == name:
                return getattr(self, f.name)
        raise KeyError(name)

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((_key(f), getattr(self, f.name)) for f in dataclasses.fields(self))


def _class_field(**kw) -> Any:
    return field(metadata={"json": "class"}, **kw)


def _optional() -> Any:
    return field(default=None, metadata={"omit_none": True})


# ----------------------------------------------------------------------------------- summaries

@dataclass(frozen=True)
class Accuracy(Record):
    """``correct`` of ``n`` with its 95% Wilson interval; ``accuracy`` None (and ``note``) when undefined."""

    correct: int
    n: int
    accuracy: float | None
    ci95: tuple[float | None, float | None]
    note: str | None = _optional()

    @classmethod
    def of(cls, correct: int, n: int) -> "Accuracy":
        if n == 0:
            return cls(correct, n, None, (None, None), "no items")
        lo, hi = wilson(correct, n)
        return cls(correct, n, correct / n, (finite(lo), finite(hi)))

    @classmethod
    def not_applicable(cls, n: int, note: str = NO_TRACE) -> "Accuracy":
        return cls(0, n, None, (None, None), note)


@dataclass(frozen=True)
class Mean(Record):
    """A mean over all items (an unjudged item counts as 0) and over the ``n_judged`` judged ones."""

    mean: float | None
    mean_judged: float | None
    n_judged: int
    note: str | None = _optional()


@dataclass(frozen=True)
class Counts2x2(Record):
    """Step-correct x answer-correct counts (see :mod:`tracekd.stats.contingency`)."""

    both: int
    step_only: int
    answer_only: int
    neither: int


@dataclass(frozen=True)
class Association(Record):
    """One step x answer 2x2 table and its tests (:func:`tracekd.stats.contingency.association`)."""

    table: Counts2x2
    n: int
    chi2: float | None
    p: float | None
    chi2_yates: float | None
    p_yates: float | None
    phi: float | None
    fisher_p: float | None
    odds_ratio: float | None
    p_answer_given_step: float | None
    p_answer_given_not_step: float | None
    both_share: float | None
    min_expected: float | None
    note: str | None

    @classmethod
    def of(cls, stats: dict) -> "Association":
        """From ``association()``'s dict (NaN and infinity become None; an infinite odds ratio is noted)."""
        d = _encode(stats)
        if stats.get("odds_ratio") == math.inf and not d.get("note"):
            d["note"] = "odds ratio infinite: a zero off-diagonal cell"
        return cls.from_dict(d)


@dataclass(frozen=True)
class Accuracies(Named):
    class_: Accuracy = _class_field()
    evidence_exact: Accuracy
    evidence_all: Accuracy
    evidence_any: Accuracy
    trace: Accuracy
    answer: Accuracy


@dataclass(frozen=True)
class Means(Named):
    evidence_precision: Mean
    evidence_recall: Mean
    answer_f1: Mean


@dataclass(frozen=True)
class StepTables(Named):
    """Each step crossed with the answer; the evidence step is the exact-set verdict."""

    class_: Association = _class_field()
    evidence: Association
    trace: Association


@dataclass(frozen=True)
class ClassAccuracy(Record):
    n: int
    answer_accuracy: float | None
    trace_accuracy: float | None
    class_accuracy: float | None
    evidence_exact_accuracy: float | None


@dataclass(frozen=True, kw_only=True)
class Summary(Record):
    """Statistics of one set of judgements (see :func:`tracekd.stats.summary.summarize`).

    ``has_trace`` is False when no output has a trace to judge (a vanilla arm): the step accuracies are
    then ``None`` with the note ``n/a (no trace)``.
    """

    n: int
    status: dict[str, int]
    has_trace: bool = True
    accuracy: Accuracies
    means: Means
    steps: StepTables
    per_class: dict[str, ClassAccuracy]
    group: str | None = _optional()
    groups: dict[str, "Summary"] | None = _optional()

    @classmethod
    def from_dict(cls, d: dict, where: str = "", path: str = "") -> "Summary":
        """A summary; one written before ``has_trace`` existed gets it from its status counts."""
        if isinstance(d, dict) and "has_trace" not in d and isinstance(d.get("status"), dict):
            d = {**d, "has_trace": any(c for s, c in d["status"].items() if s not in TRACE_FREE_STATUSES)}
        return super().from_dict(d, where, path)


# ----------------------------------------------------------------------------------- comparisons

@dataclass(frozen=True)
class McNemar(Record):
    """McNemar's test between two arms on one verdict (:func:`tracekd.stats.contingency.mcnemar`)."""

    n: int
    both: int
    neither: int
    b01: int
    b10: int
    accuracy_a: float | None
    accuracy_b: float | None
    difference: float | None
    p_exact: float | None
    chi2: float | None
    p: float | None
    note: str | None


@dataclass(frozen=True)
class Comparison(Record):
    """Two arms paired by example id: answer and trace verdicts."""

    n_paired: int
    unpaired_a: int
    unpaired_b: int
    answer: McNemar
    trace: McNemar


# ----------------------------------------------------------------------------------- an analysis

@dataclass(frozen=True)
class Spread(Record):
    """A per-seed measure over seeds: the values, mean, sample SD (None for one value), min, max."""

    values: tuple[float | None, ...]
    mean: float | None
    sd: float | None
    min: float | None
    max: float | None
    note: str | None = _optional()


@dataclass(frozen=True)
class Metrics(Named):
    """The per-seed measures aggregated over seeds."""

    answer: Spread
    class_: Spread = _class_field()
    evidence: Spread
    trace: Spread
    answer_f1: Spread


@dataclass(frozen=True, kw_only=True)
class Cell(Record):
    """One dataset x student x arm x seed: the summary of its judgements."""

    dataset: str
    student: str
    arm: str
    seed: int | None
    score_dir: str | None = _optional()
    summary: Summary


@dataclass(frozen=True, kw_only=True)
class Group(Record):
    """One dataset x student x arm over its seeds: per-seed metrics and the summary of all seeds pooled."""

    dataset: str
    student: str
    arm: str
    seeds: tuple[int | None, ...]
    n_per_seed: tuple[int, ...]
    metrics: Metrics
    pooled: Summary


@dataclass(frozen=True, kw_only=True)
class ArmComparison(Record):
    dataset: str
    student: str
    seed: int | None
    arm_a: str
    arm_b: str
    result: Comparison


@dataclass(frozen=True, kw_only=True)
class ShownExample(Record):
    """An item of an off-diagonal cell (trace right and answer wrong, or the reverse), as the report shows it."""

    dataset: str
    student: str
    arm: str
    seed: int | None
    kind: str
    id: str
    question: str
    context: tuple[str, ...]
    gold_answers: tuple[str, ...]
    gold_label: str | None
    gold_evidence: tuple[str, ...]
    text: str
    status: str
    label: str | None
    answer: str | None


@dataclass(frozen=True, kw_only=True)
class Input(Record):
    """A judgements file an analysis read."""

    path: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class Analysis(Record):
    """Everything the report shows (``RUN/analysis.json`` of ``tracekd run``, ``--out`` of ``tracekd analyze``).

    ``examples_how`` says how to record off-diagonal examples when none were (the flag or config key).
    """

    kind: str = "analysis"
    experiment: str
    arms: tuple[str, ...]
    seeds: tuple[int | None, ...]
    trace_definition: str | None
    cells: tuple[Cell, ...]
    groups: tuple[Group, ...]
    comparisons: tuple[ArmComparison, ...]
    examples: tuple[ShownExample, ...] = ()
    examples_how: str | None = _optional()
    tracekd_version: str | None = _optional()
    inputs: dict[str, Input] | None = _optional()

    KIND: ClassVar[str] = "analysis"

    @classmethod
    def from_dict(cls, d: dict, where: str = "", path: str = "") -> "Analysis":
        a = super().from_dict(d, where, path)
        if a.kind != cls.KIND:
            raise DataError(f"must be {cls.KIND!r}, got {a.kind!r}", field="kind", source=where or None)
        return a

    def section_keys(self) -> list[tuple[str, str]]:
        """``(dataset, student)`` pairs in the order of the groups."""
        keys: list[tuple[str, str]] = []
        for g in self.groups:
            if (g.dataset, g.student) not in keys:
                keys.append((g.dataset, g.student))
        return keys

    def groups_of(self, dataset: str, student: str) -> list[Group]:
        """The groups of one dataset x student in arm order."""
        arms = list(self.arms)
        gs = [g for g in self.groups if (g.dataset, g.student) == (dataset, student)]
        return sorted(gs, key=lambda g: arms.index(g.arm) if g.arm in arms else len(arms))

    def cells_of(self, dataset: str, student: str, arm: str) -> list[Cell]:
        """The cells of one dataset x student x arm in seed order."""
        cs = [c for c in self.cells if (c.dataset, c.student, c.arm) == (dataset, student, arm)]
        return sorted(cs, key=lambda c: (c.seed is None, c.seed if c.seed is not None else 0))
