"""The records of tracekd's one data flow, and the only place that knows their field names.

raw files -> Example -> SFTRow (per arm) -> Generation -> Judgement; every stage joins by ``id``.

Each record is a frozen dataclass with ``to_dict`` / ``from_dict`` so it round-trips through JSONL.

>>> ex = Example(id="babi/qa1/test/0/2", dataset="babi", split="test",
...              question="Where is Mary?", context=("Mary went to the kitchen.",),
...              answers=("kitchen",), gold=Decomposition("single-supporting-fact", (0,)))
>>> Example.from_dict(ex.to_dict()) == ex
True
>>> ex.evidence_lines
('Mary went to the kitchen.',)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import DataError

Split = Literal["train", "test"]
FinishReason = Literal["stop", "length"]

#: Parse statuses of a generated text (``missing``: the example has no generation). Only ``ok`` can ever
#: be judged correct on the trace; every status stays in every denominator.
STATUSES = (
    "ok",
    "no_trace",
    "no_answer",
    "unparseable_class",
    "unparseable_evidence",
    "truncated",
    "empty",
    "missing",
)


def _require(d: dict, key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise DataError("missing", field=key, source=where)
    value = d[key]
    if not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise DataError(f"must be {names}, got {type(value).__name__}", field=key, source=where)
    return value


@dataclass(frozen=True)
class Decomposition:
    """Gold (or predicted) value of the two verifiable sub-steps.

    ``label`` is the classification step; ``evidence`` the 0-based indices of the context lines
    the information-retrieval step must name.
    """

    label: str
    evidence: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"label": self.label, "evidence": list(self.evidence)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> "Decomposition":
        label = _require(d, "label", str, where)
        evidence = _require(d, "evidence", list, where)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in evidence):
            raise DataError("must be a list of ints", field="evidence", source=where)
        return cls(label, tuple(evidence))


@dataclass(frozen=True)
class Example:
    """One open-book QA problem with its gold decomposition."""

    id: str
    dataset: str
    split: str
    question: str
    context: tuple[str, ...]
    answers: tuple[str, ...]
    gold: Decomposition
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def evidence_lines(self) -> tuple[str, ...]:
        return tuple(self.context[i] for i in self.gold.evidence)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "dataset": self.dataset,
            "split": self.split,
            "question": self.question,
            "context": list(self.context),
            "answers": list(self.answers),
            "gold": self.gold.to_dict(),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> "Example":
        gold = _require(d, "gold", dict, where)
        return cls(
            id=_require(d, "id", str, where),
            dataset=_require(d, "dataset", str, where),
            split=_require(d, "split", str, where),
            question=_require(d, "question", str, where),
            context=tuple(_require(d, "context", list, where)),
            answers=tuple(_require(d, "answers", list, where)),
            gold=Decomposition.from_dict(gold, where),
            meta=dict(d.get("meta") or {}),
        )


Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class SFTRow:
    """One training/test row in TRL's conversational prompt-completion format.

    ``prompt`` holds the system and user messages, ``completion`` the single assistant message.
    ``arm`` names the SFT set; ``target`` records the decomposition the completion encodes
    (``None`` for the vanilla arm, which has no trace).
    """

    id: str
    arm: str
    prompt: tuple[Message, ...]
    completion: tuple[Message, ...]
    target: Decomposition | None = None

    @property
    def completion_text(self) -> str:
        return "".join(m["content"] for m in self.completion)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "arm": self.arm,
            "prompt": [dict(m) for m in self.prompt],
            "completion": [dict(m) for m in self.completion],
            "target": self.target.to_dict() if self.target else None,
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> "SFTRow":
        target = d.get("target")
        return cls(
            id=_require(d, "id", str, where),
            arm=_require(d, "arm", str, where),
            prompt=tuple(_require(d, "prompt", list, where)),
            completion=tuple(_require(d, "completion", list, where)),
            target=Decomposition.from_dict(target, where) if target else None,
        )


@dataclass(frozen=True)
class Generation:
    """A model's output for one example. ``finish_reason`` is ``length`` when it hit its limit."""

    id: str
    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> "Generation":
        fr = d.get("finish_reason")
        if fr is not None and fr not in ("stop", "length"):
            raise DataError(f"must be 'stop' or 'length', got {fr!r}", field="finish_reason", source=where)
        return cls(
            id=_require(d, "id", str, where),
            text=_require(d, "text", str, where),
            finish_reason=fr,
            prompt_tokens=d.get("prompt_tokens"),
            completion_tokens=d.get("completion_tokens"),
        )


@dataclass(frozen=True)
class Judgement:
    """The verdicts on one generation: parse status, each sub-step, the trace and the answer.

    Step fields are ``None`` when the step could not be judged (e.g. no trace); ``None`` counts as
    not correct in every table.
    """

    id: str
    status: str
    label: str | None
    label_ok: bool | None
    evidence: tuple[int, ...] | None
    evidence_exact: bool | None
    evidence_all: bool | None
    evidence_any: bool | None
    evidence_precision: float | None
    evidence_recall: float | None
    trace_ok: bool
    answer: str | None
    answer_ok: bool
    answer_f1: float
    gold_label: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["evidence"] = list(self.evidence) if self.evidence is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> "Judgement":
        """Read one judgement, its types checked (a bad field is a DataError naming it). Optional verdicts
        absent from a hand-made or older file default to null (``answer_f1`` to 0, ``gold_label`` to "")."""
        for k in ("id", "status"):
            _require(d, k, str, where)
        for k in ("trace_ok", "answer_ok"):
            if not isinstance(d.get(k), bool):
                raise DataError("missing" if k not in d else "must be true or false", field=k, source=where)
        for k in ("label_ok", "evidence_exact", "evidence_all", "evidence_any"):
            if d.get(k) is not None and not isinstance(d[k], bool):
                raise DataError("must be true, false or null", field=k, source=where)
        for k in ("evidence_precision", "evidence_recall", "answer_f1"):
            number = d.get(k)
            if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))):
                raise DataError("must be a number or null", field=k, source=where)
        for k in ("label", "answer", "gold_label"):
            if d.get(k) is not None and not isinstance(d[k], str):
                raise DataError("must be a string or null", field=k, source=where)
        if d.get("evidence") is not None and not (isinstance(d["evidence"], list) and all(
                isinstance(i, int) and not isinstance(i, bool) for i in d["evidence"])):
            raise DataError("must be a list of ints or null", field="evidence", source=where)
        if d.get("extra") is not None and not isinstance(d["extra"], dict):
            raise DataError("must be an object", field="extra", source=where)
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for name in names:  # optional verdicts absent (or null) in a hand-made or older file
            if kw.get(name) is None and name in ("answer_f1", "gold_label", "extra"):
                kw[name] = {"answer_f1": 0.0, "gold_label": "", "extra": {}}[name]
            kw.setdefault(name, None)
        if kw["evidence"] is not None:
            kw["evidence"] = tuple(kw["evidence"])
        return cls(**kw)


def kind_of(obj: dict) -> str | None:
    """Which tracekd record a JSON object looks like, by its fields (None: none of them), so an error can
    say that a file of one kind was passed where another was expected.

    >>> kind_of({"id": "x", "arm": "correct", "prompt": [], "completion": []})
    'SFTRow'
    >>> kind_of({"id": "x", "question": "q", "context": [], "answers": ["a"], "gold": {}})
    'Example'
    >>> kind_of({"id": "x", "status": "ok", "trace_ok": True, "answer_ok": True}), kind_of({"text": "hi"})
    ('Judgement', 'Generation')
    """
    if "prompt" in obj and "completion" in obj:
        return "SFTRow"
    if "gold" in obj and "question" in obj:
        return "Example"
    if "status" in obj and "answer_ok" in obj:
        return "Judgement"
    if "text" in obj:
        return "Generation"
    return None
