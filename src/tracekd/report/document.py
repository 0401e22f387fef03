"""The report as a list of plain blocks, rendered the same way to Markdown and to HTML.

Block text is plain (never markup): each renderer escapes it for its own format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    level: int  # 1 = title
    text: str
    anchor: str


@dataclass(frozen=True)
class Paragraph:
    text: str
    note: bool = False  # a caveat, set apart


@dataclass(frozen=True)
class Facts:
    """Key-value lines (the report header); values named in ``code`` are shown as code."""

    items: tuple[tuple[str, str], ...]
    code: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Table:
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]  # right-align this column
    notes: tuple[str, ...] = ()  # footnotes; cells refer to note i as "[i]" (1-based)


@dataclass(frozen=True)
class Figure:
    path: str  # relative to the run directory, e.g. "plots/babi--smollm2-135m--answer.png"
    png: bytes = field(repr=False)
    alt: str
    caption: str


@dataclass(frozen=True)
class ExampleBlock:
    """One concrete item of an off-diagonal cell: gold next to what the student wrote."""

    title: str
    question: str
    pairs: tuple[tuple[str, str, str], ...]  # (what, gold, student); student "" = only in the generated text
    context: tuple[str, ...]
    evidence: frozenset[int]  # context lines that are gold evidence
    generated: str


@dataclass(frozen=True)
class Contents:
    """Links to the level-2 headings."""

    entries: tuple[tuple[str, str], ...]  # (text, anchor)


class Footnotes:
    """Numbered notes for a table column: :meth:`mark` gives the cell text, :attr:`texts` the notes.

    >>> f = Footnotes()
    >>> f.mark("empty row"), f.mark(""), f.mark("no items"), f.mark("empty row"), f.texts
    ('[1]', '', '[2]', '[1]', ('empty row', 'no items'))
    """

    def __init__(self) -> None:
        self._index: dict[str, int] = {}

    def mark(self, *notes: str) -> str:
        marks = []
        for note in notes:
            if note:
                self._index.setdefault(note, len(self._index) + 1)
                marks.append(f"[{self._index[note]}]")
        return " ".join(marks)

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(self._index)


Block = Heading | Paragraph | Facts | Table | Figure | ExampleBlock | Contents


def slug(*parts: str) -> str:
    """A file- and anchor-safe name.

    >>> slug("babi", "meta-llama/Llama-3.2-1B-Instruct", "answer")
    'babi--meta-llama-llama-3.2-1b-instruct--answer'
    """
    return "--".join(re.sub(r"[^a-z0-9._]+", "-", p.lower()).strip("-") or "x" for p in parts)
