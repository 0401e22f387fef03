"""Teacher requests from a file: gold examples (asked in the method's prompt) or SFT rows (their prompt)."""

from __future__ import annotations

from pathlib import Path

from ..datasets import DATASETS
from ..errors import DataError
from ..io import iter_jsonl
from ..records import Example, SFTRow
from ..traces.templates import get_template, render_prompt
from .records import TeacherRequest


def example_messages(example: Example, template=None, system: bool = False) -> list[dict]:
    """The method's prompt for ``example`` (the dataset's template unless ``template`` is given).

    The reference asked the teacher in one user turn; ``system=True`` sends the template's system
    message before it.

    >>> from tracekd.records import Decomposition
    >>> ex = Example("x/1", "babi", "test", "Where is Mary?", ("Mary went home.",), ("home",),
    ...              Decomposition("qa1", (0,)))
    >>> example_messages(ex)
    [{'role': 'user', 'content': 'Answer the question based on the context:\\nMary went home.\\nQuestion: Where is Mary? Only return the answer.'}]
    """
    tpl = get_template(template or DATASETS.get(example.dataset).template)
    messages = [dict(m) for m in render_prompt(example, tpl)]
    return messages if system else [m for m in messages if m["role"] != "system"]


def read_requests(path: str | Path, purpose: str = "answer", template=None, system: bool = False,
                  limit: int | None = None) -> list[TeacherRequest]:
    """One request per line of ``path``: an Example (JSONL of `tracekd build`'s examples/) or an SFTRow.

    SFT rows are sent with their prompt messages (their system message only when ``system``).
    Ids must be unique; a line that is neither record is an error naming file, line and field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    out: list[TeacherRequest] = []
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        try:
            if "prompt" in obj:
                row = SFTRow.from_dict(obj)
                messages = [dict(m) for m in row.prompt if system or m.get("role") != "system"]
                for m in messages:
                    if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                        raise DataError("each message needs a string content", field="prompt")
                rid = row.id
            elif "question" in obj:
                ex = Example.from_dict(obj)
                messages, rid = example_messages(ex, template, system), ex.id
            else:
                raise DataError("neither an example (id, question, context, ...) nor an SFT row (id, prompt, ...)",
                                field="question")
        except DataError as e:
            raise e.located(path, line) from None
        if rid in seen:
            raise DataError(f"duplicate id {rid!r} (first on line {seen[rid]})", path=path, line=line, field="id")
        seen[rid] = line
        out.append(TeacherRequest(rid, purpose, messages))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise DataError("no requests (the file is empty)", path=path)
    return out
