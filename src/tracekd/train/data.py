"""SFT rows in, token ids and loss labels out, with a preflight that never truncates silently.

Tokenisation follows TRL's ``SFTTrainer`` for conversational prompt-completion rows: the prompt
goes through the chat template with the generation prompt, prompt + completion through the chat
template as one conversation, and the completion starts where the two token sequences diverge.
Only completion tokens carry a loss (the others are labelled -100). The rows handed to the
trainer are already tokenised, so what the preflight checks is exactly what is trained.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataError
from ..io import iter_jsonl
from ..records import SFTRow

IGNORE_INDEX = -100


@dataclass(frozen=True)
class LineRow:
    """An SFT row and the line of its file (for error messages)."""

    line: int
    row: SFTRow


def _check_messages(messages: Any, fld: str, path: Path, line: int) -> None:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise DataError("must be a non-empty list of messages", path=path, line=line, field=fld)
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"message {i} must be {{'role': str, 'content': str}}", path=path, line=line, field=fld)


def read_rows(path: str | Path, *, need_completion: bool = True) -> list[LineRow]:
    """Read and check an SFT JSONL: every row well-formed, ids unique."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    out: list[LineRow] = []
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        try:
            row = SFTRow.from_dict(obj)
        except DataError as e:
            raise e.located(path, line) from None
        _check_messages(row.prompt, "prompt", path, line)
        if need_completion:
            _check_messages(row.completion, "completion", path, line)
            if any(m["role"] != "assistant" for m in row.completion):
                raise DataError("completion messages must have role 'assistant'", path=path, line=line,
                                field="completion")
        if row.id in seen:
            raise DataError(f"duplicate id {row.id!r} (first on line {seen[row.id]})", path=path, line=line,
                            field="id")
        seen[row.id] = line
        out.append(LineRow(line, row))
    if not out:
        raise DataError("no rows", path=path)
    return out


def subset(rows: Sequence[Any], n: int | None, seed: int) -> list[Any]:
    """A seeded random subset of ``n`` rows, kept in file order (all rows when ``n`` is None or large).

    >>> subset(list(range(10)), 3, seed=0)
    [0, 6, 9]
    >>> subset(list(range(4)), None, seed=0)
    [0, 1, 2, 3]
    """
    if n is None or n >= len(rows):
        return list(rows)
    if n < 1:
        raise DataError(f"max_examples must be >= 1, got {n}")
    keep = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


def completion_labels(prompt_ids: Sequence[int], full_ids: Sequence[int]) -> tuple[list[int], int]:
    """Labels for ``full_ids`` with the prompt masked, and the prompt length used.

    The completion starts where the tokenised prompt and prompt + completion diverge (as in TRL:
    some chat templates render the prompt alone differently).

    >>> completion_labels([1, 2, 3], [1, 2, 3, 7, 8])
    ([-100, -100, -100, 7, 8], 3)
    >>> completion_labels([1, 2, 9], [1, 2, 3, 7])
    ([-100, -100, 3, 7], 2)
    """
    from trl.data_utils import common_prefix_length

    n = common_prefix_length(list(prompt_ids), list(full_ids))
    return [IGNORE_INDEX] * n + list(full_ids[n:]), n


def _ids(encoded: Any) -> list[int]:
    ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
    return list(ids)


def prompt_ids(tokenizer, messages: Sequence[dict], chat_template_kwargs: dict | None = None) -> list[int]:
    """Token ids of a prompt through the chat template, ending with the generation prompt."""
    return _ids(tokenizer.apply_chat_template(list(messages), tokenize=True, add_generation_prompt=True,
                                              return_dict=True, **(chat_template_kwargs or {})))


def tokenize_row(tokenizer, row: SFTRow, chat_template_kwargs: dict | None = None) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one row, labels -100 outside the completion."""
    p = prompt_ids(tokenizer, row.prompt, chat_template_kwargs)
    full = _ids(tokenizer.apply_chat_template(list(row.prompt) + list(row.completion), tokenize=True,
                                              return_dict=True, **(chat_template_kwargs or {})))
    labels, _ = completion_labels(p, full)
    return full, labels


@dataclass
class Tokenized:
    id: str
    line: int
    input_ids: list[int]
    labels: list[int]

    @property
    def trainable(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


@dataclass
class Preflight:
    """What the preflight found: over-long rows, rows with nothing to learn, token statistics."""

    path: str
    rows: int
    max_length: int
    overlong: list[dict] = field(default_factory=list)
    no_trainable: list[dict] = field(default_factory=list)
    dropped: int = 0
    longest: int = 0
    mean_tokens: float = 0.0
    trainable_tokens: int = 0

    @property
    def problems(self) -> int:
        return len(self.overlong) + len(self.no_trainable)

    def to_dict(self) -> dict:
        return {"path": self.path, "rows": self.rows, "max_length": self.max_length, "longest": self.longest,
                "mean_tokens": round(self.mean_tokens, 2), "trainable_tokens": self.trainable_tokens,
                "overlong": self.overlong, "no_trainable": self.no_trainable, "dropped": self.dropped}

    def error(self, limit: int = 10) -> DataError:
        items = [(d["line"], f"id {d['id']!r}: {d['tokens']} tokens > max_length {self.max_length}")
                 for d in self.overlong]
        items += [(d["line"], f"id {d['id']!r}: no trainable token (empty completion, or the prompt alone fills "
                              f"the sequence)") for d in self.no_trainable]
        items.sort()
        lines = [f"  {self.path}:{line}: {msg}" for line, msg in items[:limit]]
        more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
        return DataError(f"preflight: {len(self.overlong)} row(s) longer than max_length={self.max_length} and "
                         f"{len(self.no_trainable)} row(s) with no trainable token:\n" + "\n".join(lines) + more
                         + "\nraise --max-length, or pass --drop-overlong to leave them out (never truncated)")


def preflight(rows: Sequence[LineRow], tokenizer, max_length: int, *, path: str | Path = "",
              drop: bool = False, chat_template_kwargs: dict | None = None) -> tuple[list[Tokenized], Preflight]:
    """Tokenise every row; report (and with ``drop``, leave out) over-long and untrainable rows.

    Without ``drop`` any problem raises a :class:`DataError` listing the rows by file and line.
    """
    report = Preflight(path=str(path), rows=len(rows), max_length=max_length)
    kept: list[Tokenized] = []
    total = 0
    for lr in rows:
        ids, labels = tokenize_row(tokenizer, lr.row, chat_template_kwargs)
        t = Tokenized(lr.row.id, lr.line, ids, labels)
        total += len(ids)
        report.longest = max(report.longest, len(ids))
        if len(ids) > max_length:
            report.overlong.append({"id": t.id, "line": t.line, "tokens": len(ids)})
        elif t.trainable == 0:
            report.no_trainable.append({"id": t.id, "line": t.line, "tokens": len(ids)})
        else:
            kept.append(t)
            report.trainable_tokens += t.trainable
    report.mean_tokens = total / max(1, len(rows))
    if report.problems and not drop:
        raise report.error()
    report.dropped = report.problems
    if not kept:
        raise DataError("preflight: no row left to train on", path=path)
    return kept, report
