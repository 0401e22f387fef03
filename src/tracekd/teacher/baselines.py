"""API models as "students": their responses to built rows as generations that ``tracekd score`` judges.

``tracekd teacher --input BUILD/zero-shot-format/test.jsonl --system`` asks an endpoint with the rows' prompts;
:func:`write_generations` turns its responses into generations: the text the model wrote, with a ``<think>``
block it wrote in its content put back in front of the answer (the client keeps it apart as ``reasoning``), so
its class and evidence steps are verified like any student's. Reasoning a server returns separately
(``reasoning_content``) is not part of the output and is left out.

>>> from tracekd.teacher.records import TeacherResponse
>>> r = TeacherResponse("x/1", "zero-shot-format", "k", "m", [], {}, "The category ... is: counting.", "think_tag",
...                     "<answer>two</answer>", "stop", 5, 9, None)
>>> as_generation(r).text
'<think>The category ... is: counting.</think> <answer>two</answer>'
"""

from __future__ import annotations

from pathlib import Path

from ..io import write_records
from ..records import Generation
from .arms import load_responses
from .records import TeacherResponse


def as_generation(r: TeacherResponse) -> Generation:
    """One response as the generation a student would have written."""
    text = f"<think>{r.reasoning}</think> {r.answer}" if r.reasoning_source == "think_tag" and r.reasoning else r.answer
    finish = "length" if r.finish_reason == "length" else "stop"
    return Generation(id=r.id, text=text, finish_reason=finish, prompt_tokens=r.prompt_tokens,
                      completion_tokens=r.completion_tokens)


def write_generations(responses_dir: str | Path, out_file: str | Path, purpose: str | None = None) -> int:
    """Write the responses in ``responses_dir`` (of ``purpose``, if given) as a generations JSONL; returns the count."""
    gens = [as_generation(r) for (_, p), r in load_responses([responses_dir]).items() if purpose in (None, p)]
    return write_records(out_file, gens)
