"""Render report blocks as GitHub-flavoured Markdown; figures are linked by relative path."""

from __future__ import annotations

import re
from collections import Counter

from .document import Block, Contents, ExampleBlock, Facts, Figure, Heading, Paragraph, Table

_SPECIAL = re.compile(r"([\\`*_<>|#~]|\](?=[(\[:]))")


def escape(text: str) -> str:
    """Plain text as one line of Markdown: punctuation that means markup is backslash-escaped
    (``]`` only where it could close a link).

    >>> print(escape("P(a | b) <think>*x*</think> [0.1, 0.2] [a](b)"))
    P(a \\| b) \\<think\\>\\*x\\*\\</think\\> [0.1, 0.2] [a\\](b)
    """
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split("\n")))


def code_span(text: str) -> str:
    """Inline code whose delimiters are longer than any backtick run inside.

    >>> code_span("tracekd run a.yaml"), code_span("a`b")
    ('`tracekd run a.yaml`', '`` a`b ``')
    """
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (run + 1)
    pad = " " if run else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fence(text: str, info: str = "text") -> list[str]:
    """A fenced code block whose fence is longer than any backtick run inside."""
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, run + 1)
    return [f"{ticks}{info}", *text.split("\n"), ticks]


def github_anchor(text: str) -> str:
    """The anchor GitHub gives a heading.

    >>> github_anchor("babi / smollm2-135m")
    'babi--smollm2-135m'
    """
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def table(t: Table) -> list[str]:
    def row(cells) -> str:
        return "| " + " | ".join(escape(c) for c in cells) + " |"

    sep = "| " + " | ".join("---:" if n else "---" for n in t.numeric) + " |"
    out = [f"*{escape(t.caption)}*", "", row(t.header), sep, *(row(r) for r in t.rows)]
    if t.notes:
        out += ["", *(f"{escape(f'[{i}]')} {escape(note)}  " for i, note in enumerate(t.notes, 1))]
    return out


def render(blocks: list[Block]) -> str:
    """The whole report as Markdown text."""
    seen: Counter = Counter()
    anchors: dict[str, str] = {}
    for b in blocks:
        if isinstance(b, Heading):
            base = github_anchor(b.text)
            anchors[b.anchor] = base if not seen[base] else f"{base}-{seen[base]}"
            seen[base] += 1
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {escape(b.text)}")
        elif isinstance(b, Paragraph):
            out.append(f"> **Note:** {escape(b.text)}" if b.note else escape(b.text))
        elif isinstance(b, Facts):
            out += [f"- **{escape(k)}:** {code_span(v) if k in b.code else escape(v)}" for k, v in b.items]
        elif isinstance(b, Contents):
            out += [f"- [{escape(text)}](#{anchors.get(anchor, github_anchor(text))})" for text, anchor in b.entries]
        elif isinstance(b, Table):
            out += table(b)
        elif isinstance(b, Figure):
            out += [f"![{escape(b.alt)}]({b.path})", "", f"*{escape(b.caption)}*"]
        elif isinstance(b, ExampleBlock):
            out += _example(b)
        else:  # pragma: no cover - every block type is handled above
            raise TypeError(type(b).__name__)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _example(e: ExampleBlock) -> list[str]:
    out = [f"**{escape(e.title)}**", "", f"- Question: {escape(e.question)}"]
    out += [f"- {escape(what.capitalize())}: gold {escape(gold)}" + (f"; student {escape(student)}" if student else "")
            for what, gold, student in e.pairs]
    if e.context:
        width = len(str(len(e.context) - 1))
        lines = [f"{'*' if i in e.evidence else ' '} {i:>{width}}  {line}" for i, line in enumerate(e.context)]
        out += ["", f"Context ({len(e.context)} lines; * = gold evidence):", "", *fence("\n".join(lines))]
    out += ["", "Generated:", "", *fence(e.generated if e.generated else "(empty)")]
    return out
