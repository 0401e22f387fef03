"""SFT rows in, token ids and loss labels out, with a preflight that never truncates silently.

Tokenisation follows TRL's ``SFTTrainer`` for conversational prompt-completion rows: the prompt
goes through the chat template with the generation prompt, prompt + completion through the chat
template as one conversation, and the completion is what follows the prompt. Only completion
tokens carry a loss (the others are labelled -100). The rows handed to the trainer are already
tokenised, so what the preflight checks is exactly what is trained.

Unlike TRL (which only warns), the preflight requires the generation prompt to be an exact prefix
of prompt + completion for every row: otherwise the model would be trained on a context it never
sees at generation, with a wrong loss mask. A template setting can break this (Qwen3 with
``enable_thinking: false`` closes an empty ``<think>`` block in the generation prompt, while a
completion with a ``<think>`` trace is rendered inside the template's own block); such rows fail,
naming the row and the setting. Where the texts agree and only the tokens merge across the
boundary (a tokenizer whose pre-tokenizer joins the prompt's last newline with the completion),
the completion is tokenised after the prompt's own tokens, so the prefix holds token for token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from ..records import SFTRow
from ..runtime import LineRow, prompt_ids, token_ids

IGNORE_INDEX = -100


def text_divergence(prompt_text: str, full_text: str) -> int | None:
    """Where ``prompt_text`` stops being a prefix of ``full_text`` (None: it is one).

    >>> text_divergence("<s>user\\nhi", "<s>user\\nhi ok") is None
    True
    >>> text_divergence("a<think></think>", "a<think>trace</think>")
    8
    """
    if full_text.startswith(prompt_text):
        return None
    n = 0
    for a, b in zip(prompt_text, full_text):
        if a != b:
            break
        n += 1
    return n


class TemplateMismatch(ValueError):
    """The generation prompt is not a prefix of prompt + completion as the chat template renders them."""

    def __init__(self, prompt_text: str, full_text: str, at: int):
        self.prompt_end = prompt_text[max(0, at - 30):at + 30]
        self.full_at = full_text[max(0, at - 30):at + 30]
        super().__init__(f"the generation prompt has {self.prompt_end!r} where prompt + completion has "
                         f"{self.full_at!r}")


def tokenize_row(tokenizer, row: SFTRow, chat_template_kwargs: dict | None = None) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one row, labels -100 on the generation prompt, which ``input_ids`` starts with.

    Raises :class:`TemplateMismatch` when the rendered generation prompt is not a prefix of the
    rendered prompt + completion.
    """
    template_kwargs = chat_template_kwargs or {}
    prompt_tokens = prompt_ids(tokenizer, row.prompt, template_kwargs)
    full = token_ids(tokenizer.apply_chat_template(list(row.prompt) + list(row.completion), tokenize=True,
                                              return_dict=True, **template_kwargs))
    if full[:len(prompt_tokens)] != prompt_tokens:
        prompt_text = tokenizer.apply_chat_template(list(row.prompt), tokenize=False, add_generation_prompt=True,
                                                    **template_kwargs)
        full_text = tokenizer.apply_chat_template(list(row.prompt) + list(row.completion), tokenize=False,
                                                  **template_kwargs)
        at = text_divergence(prompt_text, full_text)
        if at is not None:
            raise TemplateMismatch(prompt_text, full_text, at)
        # same text, tokens merged across the boundary: the completion goes after the prompt's own tokens
        full = prompt_tokens + token_ids(tokenizer(full_text[len(prompt_text):], add_special_tokens=False))
    return full, [IGNORE_INDEX] * len(prompt_tokens) + full[len(prompt_tokens):]


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


def template_mismatch_error(mismatched: Sequence[tuple[int, str, TemplateMismatch]], path: str | Path,
                            chat_template_kwargs: dict | None, limit: int = 5) -> DataError:
    """The preflight's error for rows whose generation prompt is not a prefix of prompt + completion."""
    setting = f"chat_template_kwargs {chat_template_kwargs!r}" if chat_template_kwargs else \
        "the student's chat template with no extra settings (chat_template_kwargs {})"
    lines = [f"  {path}:{line}: id {rid!r}: {e}" for line, rid, e in list(mismatched)[:limit]]
    more = f"\n  ... and {len(mismatched) - limit} more" if len(mismatched) > limit else ""
    hint = ("leave enable_thinking unset for arms whose completions carry a <think> trace (Qwen3's "
            "enable_thinking: false closes an empty <think> block in the generation prompt)"
            if (chat_template_kwargs or {}).get("enable_thinking") is False else
            "change the chat template setting, or use a student whose template renders a prompt the same alone "
            "and followed by its completion")
    return DataError(f"preflight: for {len(mismatched)} row(s) the generation prompt is not a prefix of prompt + "
                     f"completion under {setting}, so training would see a context generation never shows and "
                     f"mask the wrong tokens:\n" + "\n".join(lines) + more + f"\n{hint}", path=path)


def preflight(rows: Sequence[LineRow], tokenizer, max_length: int, *, path: str | Path = "",
              drop: bool = False, chat_template_kwargs: dict | None = None) -> tuple[list[Tokenized], Preflight]:
    """Tokenise every row; report (and with ``drop``, leave out) over-long and untrainable rows.

    Without ``drop`` any problem raises a :class:`DataError` listing the rows by file and line. Rows whose
    generation prompt is not a prefix of prompt + completion always raise (naming the template setting).
    """
    report = Preflight(path=str(path), rows=len(rows), max_length=max_length)
    kept: list[Tokenized] = []
    total = 0
    mismatched: list[tuple[int, str, TemplateMismatch]] = []
    for lr in rows:
        try:
            ids, labels = tokenize_row(tokenizer, lr.row, chat_template_kwargs)
        except TemplateMismatch as e:
            mismatched.append((lr.line, lr.row.id, e))
            continue
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
    if mismatched:  # never dropped: the template setting is wrong for the whole arm
        raise template_mismatch_error(mismatched, path, chat_template_kwargs)
    if report.problems and not drop:
        raise report.error()
    report.dropped = report.problems
    if not kept:
        raise DataError("preflight: no row left to train on", path=path)
    return kept, report
