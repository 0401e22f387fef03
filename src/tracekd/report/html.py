"""Render report blocks as one self-contained HTML page: inline CSS, figures as base64 data URIs,
no scripts and no external resources."""

from __future__ import annotations

import base64
from html import escape

from .document import Block, Contents, ExampleBlock, Facts, Figure, Heading, Paragraph, Table

CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d9dce1; --bg-alt: #f6f7f9; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 1.9em; margin: 0.2em 0 0.4em; }
h2 { font-size: 1.45em; margin: 2.2em 0 0.6em; padding-bottom: 0.25em; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.15em; margin: 1.8em 0 0.5em; }
h4 { font-size: 1em; margin: 1.4em 0 0.4em; color: var(--accent); }
a { color: var(--accent); }
p.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 12px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0 0 1em;
           padding: 12px 16px; background: var(--bg-alt); border: 1px solid var(--line); border-radius: 6px; }
dl.facts dt { font-weight: 600; color: var(--muted); }
dl.facts dd { margin: 0; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
            font-size: 0.9em; }
dd code { background: #fff; border: 1px solid var(--line); padding: 1px 6px; border-radius: 4px; }
nav.toc ul { margin: 0.2em 0; padding-left: 1.4em; }
.table-wrap { overflow-x: auto; margin: 0.4em 0 1.2em; }
table { border-collapse: collapse; font-size: 0.84em; min-width: 40%; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0 0 6px; font-size: 1.05em; }
th, td { border: 1px solid var(--line); padding: 3px 7px; vertical-align: top; }
th { background: #eef1f5; text-align: left; font-weight: 600; vertical-align: bottom; }
th.num { text-align: right; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--bg-alt); }
p.footnote { margin: 2px 0; font-size: 0.84em; color: var(--muted); }
figure { margin: 0.8em 0 1.4em; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 0.9em; margin-top: 4px; }
.examples { display: grid; grid-template-columns: repeat(auto-fill, minmax(500px, 1fr)); gap: 12px;
            margin: 0.4em 0 1em; align-items: start; }
article.example { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 0; }
article.example h5 { margin: 0.1em 0 0.4em; font-size: 0.88em; color: var(--muted); font-weight: 600;
                     font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
p.question { margin: 0 0 0.4em; }
p.question span { color: var(--muted); margin-right: 6px; }
table.pairs { font-size: 0.85em; width: 100%; margin: 0 0 0.3em; table-layout: fixed; }
table.pairs th, table.pairs td { padding: 2px 6px; overflow-wrap: anywhere; }
table.pairs thead th:first-child { width: 5.5em; }
table.pairs tbody th { background: none; color: var(--muted); font-weight: normal; vertical-align: top; }
pre.generated { white-space: pre-wrap; word-break: break-word; background: #f3f4f6; padding: 8px 10px;
                border-radius: 4px; margin: 0.5em 0 0.2em; }
details { margin: 0.4em 0; }
details ol { margin: 0.3em 0; padding-left: 2.6em; font-size: 0.92em; }
details li mark { background: #d7f5e5; }
"""


def data_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI.

    >>> data_uri(b"\\x89PNG")
    'data:image/png;base64,iVBORw=='
    """
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def table(t: Table) -> str:
    def cell(tag: str, text: str, numeric: bool) -> str:
        attr = ' class="num"' if numeric else ""
        return f"<{tag}{attr}>{escape(text)}</{tag}>"

    head = "".join(cell("th", h, n) for h, n in zip(t.header, t.numeric))
    body = "\n".join("<tr>" + "".join(cell("td", c, n) for c, n in zip(r, t.numeric)) + "</tr>" for r in t.rows)
    notes = "".join(f'<p class="footnote">[{i}] {escape(note)}</p>' for i, note in enumerate(t.notes, 1))
    return (f'<div class="table-wrap"><table>\n<caption>{escape(t.caption)}</caption>\n'
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>{notes}</div>")


def _example(e: ExampleBlock) -> str:
    rows = "".join(f"<tr><th>{escape(what)}</th><td>{escape(gold)}</td>"
                   f"<td>{escape(student) if student else '<em>in the trace below</em>'}</td></tr>"
                   for what, gold, student in e.pairs)
    parts = [f'<article class="example"><h5>{escape(e.title)}</h5>',
             f'<p class="question"><span>Question</span> {escape(e.question)}</p>',
             f'<table class="pairs"><thead><tr><th></th><th>gold</th><th>student</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>"]
    if e.context:
        items = "".join(f"<li>{'<mark>' if i in e.evidence else ''}{escape(line)}"
                        f"{'</mark>' if i in e.evidence else ''}</li>" for i, line in enumerate(e.context))
        parts.append(f"<details><summary>Context ({len(e.context)} lines; gold evidence highlighted)</summary>"
                     f'<ol start="0">{items}</ol></details>')
    parts.append(f'<pre class="generated">{escape(e.generated) if e.generated else "(empty)"}</pre></article>')
    return "".join(parts)


def render(blocks: list[Block], title: str) -> str:
    """The whole report as one HTML document."""
    out: list[str] = []
    for i, b in enumerate(blocks):
        if isinstance(b, ExampleBlock) and (i == 0 or not isinstance(blocks[i - 1], ExampleBlock)):
            out.append('<div class="examples">')
        if isinstance(b, Heading):
            out.append(f'<h{b.level} id="{escape(b.anchor)}">{escape(b.text)}</h{b.level}>')
        elif isinstance(b, Paragraph):
            out.append(f'<p class="note">{escape(b.text)}</p>' if b.note else f"<p>{escape(b.text)}</p>")
        elif isinstance(b, Facts):
            out.append('<dl class="facts">' + "".join(
                f"<dt>{escape(k)}</dt><dd>{f'<code>{escape(v)}</code>' if k in b.code else escape(v)}</dd>"
                for k, v in b.items) + "</dl>")
        elif isinstance(b, Contents):
            out.append('<nav class="toc"><strong>Contents</strong><ul>' + "".join(
                f'<li><a href="#{escape(anchor)}">{escape(text)}</a></li>' for text, anchor in b.entries)
                + "</ul></nav>")
        elif isinstance(b, Table):
            out.append(table(b))
        elif isinstance(b, Figure):
            out.append(f'<figure><img src="{data_uri(b.png)}" alt="{escape(b.alt)}">'
                       f"<figcaption>{escape(b.caption)}</figcaption></figure>")
        elif isinstance(b, ExampleBlock):
            out.append(_example(b))
        else:  # pragma: no cover - every block type is handled above
            raise TypeError(type(b).__name__)
        if isinstance(b, ExampleBlock) and (i == len(blocks) - 1 or not isinstance(blocks[i + 1], ExampleBlock)):
            out.append("</div>")
    body = "\n".join(out)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n"
            f"</main>\n</body>\n</html>\n")
