"""``TeacherResponse``: one line of ``RESPONSES_DIR/responses.jsonl``, and ``split_reasoning``.

A teacher response keeps the request (messages, sampling) beside the answer, so a later stage can
see exactly what was asked; ``key`` is the cache key of that request (see ``tracekd.teacher.cache``).

>>> r = TeacherResponse(id="x/1", purpose="answer", key="ab" * 32, model="m",
...                     messages=[{"role": "user", "content": "Q?"}],
...                     sampling={"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": 0},
...                     reasoning="think", reasoning_source="think_tag", answer="A",
...                     finish_reason="stop", prompt_tokens=3, completion_tokens=5, reasoning_tokens=None)
>>> TeacherResponse.from_dict(r.to_dict()) == r
True
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError
from ..io import iter_jsonl

#: where a response's reasoning came from
REASONING_SOURCES = ("reasoning_content", "think_tag", "none")

_THINK = re.compile(r"\A\s*<think>(.*?)</think>\s*", re.DOTALL)


def message_field(message: Any, name: str) -> Any:
    """A field of a chat message: dict key, attribute, or (openai SDK) ``model_extra`` entry.

    >>> message_field({"content": "hi"}, "content"), message_field({"content": "hi"}, "reasoning_content")
    ('hi', None)
    """
    if isinstance(message, dict):
        return message.get(name)
    value = getattr(message, name, None)
    if value is None:
        extra = getattr(message, "model_extra", None) or {}
        value = extra.get(name)
    return value


def separate_reasoning(message: Any) -> str | None:
    """The reasoning a server returned beside the content: ``reasoning_content`` (DeepSeek, vLLM), else
    ``reasoning`` (the newer name in vLLM and some gateways); None when neither holds text.

    >>> separate_reasoning({"reasoning": " r "}), separate_reasoning({"reasoning_content": ""})
    ('r', None)
    """
    for name in ("reasoning_content", "reasoning"):
        value = message_field(message, name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def split_reasoning(message: Any) -> tuple[str | None, str, str]:
    """``(reasoning, source, answer)`` of a chat completion message (dict or openai SDK object).

    The reasoning is ``reasoning_content`` where the server returns it (DeepSeek, vLLM's reasoning
    parsers; also read from a ``reasoning`` field, see :func:`separate_reasoning`), else a leading
    ``<think>...</think>`` block of the content, else none. The answer is the content without any
    think block.

    >>> split_reasoning({"content": "Paris.", "reasoning_content": "Capital of France."})
    ('Capital of France.', 'reasoning_content', 'Paris.')
    >>> split_reasoning({"content": "<think>\\nstep 1\\n</think>\\n\\nParis."})
    ('step 1', 'think_tag', 'Paris.')
    >>> split_reasoning({"content": "Paris."})
    (None, 'none', 'Paris.')
    >>> split_reasoning({"content": None})
    (None, 'none', '')

    A leading think block is removed from the answer even when ``reasoning_content`` was given:

    >>> split_reasoning({"content": "<think>x</think>Paris.", "reasoning_content": "r"})
    ('r', 'reasoning_content', 'Paris.')
    """
    content = message_field(message, "content") or ""
    if not isinstance(content, str):
        content = str(content)
    m = _THINK.match(content)
    answer = content[m.end():].strip() if m else content.strip()
    reasoning = separate_reasoning(message)
    if reasoning is not None:
        return reasoning, "reasoning_content", answer
    if m:
        return m.group(1).strip(), "think_tag", answer
    return None, "none", answer


def _need(d: dict, key: str, types, nullable: bool = False) -> Any:
    if key not in d:
        raise DataError("missing", field=key)
    value = d[key]
    if value is None and nullable:
        return None
    if not isinstance(value, types) or (isinstance(value, bool) and types in (int, (int,))):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise DataError(f"must be {names}{' or null' if nullable else ''}, got {type(value).__name__}", field=key)
    return value


@dataclass(frozen=True)
class TeacherResponse:
    """One teacher answer to one request, with the request itself and its token counts."""

    id: str  #: example id (the join key, as everywhere in tracekd)
    purpose: str  #: what the request was for: "answer", "summary", "explanation", "zero-shot", ...
    key: str  #: sha256 of the canonical request (base model id + messages + sampling)
    model: str  #: model id the server reported
    messages: list[dict]  #: the request's chat messages
    sampling: dict  #: temperature, top_p, max_tokens, seed
    reasoning: str | None  #: the trace (None when the teacher gave none)
    reasoning_source: str  #: "reasoning_content" | "think_tag" | "none"
    answer: str  #: final content without any think block
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int | None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TeacherResponse":
        """Read one JSONL object; a bad field raises DataError naming it (callers add file and line)."""
        if not isinstance(d, dict):
            raise DataError(f"expected a JSON object, got {type(d).__name__}")
        source = _need(d, "reasoning_source", str)
        if source not in REASONING_SOURCES:
            raise DataError(f"must be one of {', '.join(REASONING_SOURCES)}, got {source!r}",
                            field="reasoning_source")
        messages = _need(d, "messages", list)
        if not all(isinstance(m, dict) for m in messages):
            raise DataError("must be a list of objects", field="messages")
        return cls(
            id=_need(d, "id", str),
            purpose=_need(d, "purpose", str),
            key=_need(d, "key", str),
            model=_need(d, "model", str),
            messages=messages,
            sampling=_need(d, "sampling", dict),
            reasoning=_need(d, "reasoning", str, nullable=True),
            reasoning_source=source,
            answer=_need(d, "answer", str),
            finish_reason=_need(d, "finish_reason", str),
            prompt_tokens=_need(d, "prompt_tokens", int),
            completion_tokens=_need(d, "completion_tokens", int),
            reasoning_tokens=_need(d, "reasoning_tokens", int, nullable=True),
        )


@dataclass(frozen=True)
class TeacherRequest:
    """One question for the teacher: the chat ``messages`` to send, for example ``id`` and ``purpose``.

    ``(id, purpose)`` names the item in a run's output; the sampling settings come from the run's
    :class:`~tracekd.teacher.config.TeacherConfig`.

    >>> TeacherRequest("x/1", "answer", [{"role": "user", "content": "Q?"}]).to_dict()["purpose"]
    'answer'
    """

    id: str
    purpose: str
    messages: list[dict]

    def to_dict(self) -> dict:
        return {"id": self.id, "purpose": self.purpose, "messages": [dict(m) for m in self.messages]}

    @classmethod
    def from_dict(cls, d: dict) -> "TeacherRequest":
        messages = _need(d, "messages", list)
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise DataError("each message needs a string role and content", field="messages")
        return cls(id=_need(d, "id", str), purpose=_need(d, "purpose", str), messages=messages)


def iter_responses(path: str | Path) -> Iterator[tuple[int, TeacherResponse]]:
    """``(line number, response)`` for each line of a ``responses.jsonl``; a bad line is an error naming it."""
    path = Path(path)
    for line, obj in iter_jsonl(path):
        try:
            yield line, TeacherResponse.from_dict(obj)
        except DataError as e:
            raise e.located(path, line) from None
