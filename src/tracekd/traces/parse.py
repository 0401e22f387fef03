"""Parse a generated text into its trace, class label, evidence lines and answer.

Tolerant of: surrounding whitespace; a leading role word (``assistant``, ``Assistant:``, chat
special tokens such as ``<|im_start|>assistant``); trailing special tokens (``<|eot_id|>``, ``</s>``);
tag case and spaces inside tags (``< THINK >``); a missing ``<think>`` when ``</think>`` is present
(chat templates that open the block in the prompt); missing closing tags (``</think>`` ends at
``<answer>`` or the end of text, ``</answer>`` at the end of text); an untagged answer after
``</think>``.

The class label is the text after the template's class sentence up to the end of that line (or the
start of the evidence sentence), with the sentence's fixed ending (``.``) removed once. The class
sentence is matched tolerantly: its last sentence only (the preamble, e.g. "The category of the question
represents what is being asked in that question.", may be there or not), in any case, with or without
its colon, with or without the full stop after the label. An empty thinking block before the output
(``<think>\n\n</think>``, as Qwen3-style chat templates emit with thinking off) is skipped.
The evidence is what follows the evidence-sentence prefix, read as a JSON list, a Python list
(:func:`ast.literal_eval`, never ``eval``), comma-separated quoted strings, or one item per line
(optionally bulleted ``-``/``*``/``1.``/``1)`` and/or quoted). List items must be strings.

Status precedence (the first that applies; every field is still filled as far as parsing got):

1. ``empty`` - nothing but whitespace / role word;
2. ``truncated`` - ``finish_reason == "length"`` and no closing ``</answer>``;
3. ``no_trace`` - no think block, or a blank one; ``answer`` is then the ``<answer>`` content if
   present, else the whole remaining text (so a vanilla bare answer is still scored);
4. ``no_answer`` - a trace, but no non-blank answer;
5. ``unparseable_class`` - the class sentence is missing or its label is blank;
6. ``unparseable_evidence`` - the evidence sentence is missing or its list cannot be read;
7. ``ok``.

``parse`` never raises on a ``str``.

>>> t = "assistant: <THINK> The category of the question represents what is being asked in that question. The category of the question asked is: counting.\\nI need to use the following text to answer the question: ['Mary took the milk.']</think><answer>one"
>>> p = parse(t, "reference-qa")
>>> p.status, p.label, p.evidence, p.answer
('ok', 'counting', ('Mary took the milk.',), 'one')
>>> parse("kitchen", "reference-qa")
ParsedOutput(status='no_trace', think=None, answer='kitchen', label=None, evidence=None)
>>> parse("<think>The category", "reference-qa", finish_reason="length").status
'truncated'
"""

from __future__ import annotations

import ast
import functools
import json
import re
import warnings
from dataclasses import dataclass

from .templates import Template, get_template

_SPECIAL = r"(?:<\|[^|<>\n]{1,40}\|>)"
_ROLE = re.compile(
    rf"\A\s*(?:{_SPECIAL}\s*)*assistant(?:[ \t]*{_SPECIAL})*(?:[ \t]*:|[ \t]*\r?\n|(?=\s*<)|\s*\Z)",
    re.IGNORECASE)
_SPECIAL_TOKEN = re.compile(_SPECIAL)
_OPEN_THINK = re.compile(r"<\s*think\s*>", re.IGNORECASE)
_CLOSE_THINK = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
_OPEN_ANSWER = re.compile(r"<\s*answer\s*>", re.IGNORECASE)
_CLOSE_ANSWER = re.compile(r"<\s*/\s*answer\s*>", re.IGNORECASE)
_EOL = re.compile(r"[\r\n]")
_BULLET = re.compile(r"\A(?:[-*•‣◦·]|\d{1,3}[.)]|\(\d{1,3}\))\s+")
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`"}
_MAX_LITERAL_TRIES = 200
_JSON = json.JSONDecoder()


@dataclass(frozen=True)
class ParsedOutput:
    """What a generated text says. Fields the parse did not reach are ``None``."""

    status: str
    think: str | None = None
    answer: str | None = None
    label: str | None = None
    evidence: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Patterns:
    class_prefix: re.Pattern
    class_suffix: str
    evidence_prefix: re.Pattern
    evidence_suffix: str


def _words(fixed: str) -> re.Pattern:
    """A case-insensitive pattern for ``fixed`` with any run of whitespace between its words."""
    return re.compile(r"\s+".join(re.escape(w) for w in fixed.split()), re.IGNORECASE)


def _class_words(prefix: str) -> re.Pattern:
    """The tolerant pattern of a class sentence's fixed text before the label: its last sentence only,
    any case, any whitespace, the final colon optional (a word boundary then).

    >>> p = _class_words("Preamble here. The category of the question asked is: ")
    >>> [bool(p.search(t)) for t in ("the CATEGORY of the question asked is counting",
    ...                              "The category of the question asked is: x", "asked isolated")]
    [True, True, False]
    """
    text = prefix.strip()
    colon = text.endswith(":")
    text = text[:-1].rstrip() if colon else text
    last = re.split(r"(?<=[.!?])\s+", text)[-1]
    words = r"\s+".join(re.escape(w) for w in last.split())
    return re.compile(words + (r"(?:\s*:|\b)" if colon else r"\b"), re.IGNORECASE)


@functools.lru_cache(maxsize=64)
def _patterns(template: Template) -> _Patterns:
    cpre, csuf = template.class_affixes
    epre, esuf = template.evidence_affixes
    return _Patterns(_class_words(cpre), csuf.strip(), _words(epre), esuf.strip())


def _unwrap(text: str) -> str:
    """Remove a leading role word and trailing special tokens.

    >>> _unwrap("<|im_start|>assistant\\n<think>x</think> y<|im_end|>")
    '<think>x</think> y'
    >>> _unwrap("Assistant managers earn more.")
    'Assistant managers earn more.'
    """
    m = _ROLE.match(text)
    if m:
        text = text[m.end():]
    while True:  # trailing special tokens, read from the end (a regex search from the front is costly)
        text = text.rstrip()
        if text.endswith("</s>"):
            text = text[:-4]
            continue
        start = text.rfind("<|", max(0, len(text) - 44)) if text.endswith("|>") else -1
        if start < 0 or not _SPECIAL_TOKEN.fullmatch(text, start):
            return text.strip()
        text = text[:start]


def _literal_list(body: str) -> tuple[str, ...] | None:
    """A list of strings at the start of ``body`` (JSON first, then a Python literal); else None.

    >>> _literal_list('["a", "b"] and then')
    ('a', 'b')
    >>> _literal_list("['x]', \\"y's\\"].")
    ('x]', "y's")
    >>> _literal_list("[1, 2]") is None, _literal_list("['open") is None
    (True, True)
    """
    value = None
    try:
        value, _ = _JSON.raw_decode(body)
    except (ValueError, RecursionError):
        pass
    if not isinstance(value, list):
        value = None
        ends = [m.start() for m in re.finditer(r"\]", body)][:_MAX_LITERAL_TRIES]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for end in ends:
                try:
                    value = ast.literal_eval(body[:end + 1])
                except Exception:  # SyntaxError, ValueError, MemoryError, RecursionError, ...
                    continue
                break
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        return None
    return tuple(value)


def _unquote(s: str) -> str:
    if len(s) >= 2 and _QUOTES.get(s[0]) == s[-1]:
        return s[1:-1].strip()
    return s


def parse_evidence(body: str) -> tuple[str, ...] | None:
    """The evidence lines written after the evidence prefix, or None when unreadable.

    >>> parse_evidence('[]')
    ()
    >>> parse_evidence('"Mary left.", "John came."')
    ('Mary left.', 'John came.')
    >>> parse_evidence('\\n- "Mary left."\\n2) John came.\\n')
    ('Mary left.', 'John came.')
    >>> parse_evidence('["unclosed') is None, parse_evidence('  ') is None
    (True, True)
    """
    body = body.strip()
    if not body:
        return None
    if body[0] == "[":
        return _literal_list(body)
    if body[0] in _QUOTES:
        items = _literal_list("[" + body + "]")
        if items is not None:
            return items
    lines = []
    for raw in body.split("\n"):
        s = _BULLET.sub("", raw.strip(), count=1).strip()
        if s.endswith(",") and s[:1] in _QUOTES:
            s = s[:-1].rstrip()
        s = _unquote(s)
        if s:
            lines.append(s)
    return tuple(lines) or None


def _label(think: str, p: _Patterns) -> tuple[str | None, re.Match | None, int]:
    """``(label, class prefix match, end of the label)``."""
    m = p.class_prefix.search(think)
    if m is None:
        return None, None, 0
    start = m.end()
    while start < len(think) and think[start] in " \t":
        start += 1
    eol = _EOL.search(think, start)
    end = eol.start() if eol else len(think)
    ev = p.evidence_prefix.search(think, start, end)
    if ev:
        end = ev.start()
    label = think[start:end].strip()
    if p.class_suffix and label.endswith(p.class_suffix):
        label = label[: -len(p.class_suffix)].strip()
    return label or None, m, end


def _evidence(think: str, p: _Patterns, class_match: re.Match | None, label_end: int) -> tuple[str, ...] | None:
    m = p.evidence_prefix.search(think, label_end) or p.evidence_prefix.search(think)
    if m is None:
        return None
    end = len(think)
    if class_match is not None and class_match.start() >= m.end():
        end = class_match.start()  # evidence sentence written before the class sentence
    body = think[m.end():end].strip()
    if p.evidence_suffix and body.endswith(p.evidence_suffix) and not body.startswith("["):
        body = body[: -len(p.evidence_suffix)]
    return parse_evidence(body)


def parse(text: str, template: Template | str, finish_reason: str | None = None) -> ParsedOutput:
    """Parse one generated ``text`` with ``template``'s sentences; see the module doc for statuses."""
    p = _patterns(get_template(template))
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    t = _unwrap(text)
    if not t:
        return ParsedOutput("empty")

    # the think block; empty ones in front (a chat template's "thinking off") are skipped
    think: str | None = None
    rest = 0
    open_think = _OPEN_THINK.search(t)
    close_think = _CLOSE_THINK.search(t, open_think.end() if open_think else 0)
    while open_think and close_think and not t[open_think.end():close_think.start()].strip():
        following = _OPEN_THINK.search(t, close_think.end())
        if following is None:
            break
        t = t[close_think.end():].lstrip()
        open_think = _OPEN_THINK.search(t)
        close_think = _CLOSE_THINK.search(t, open_think.end())
    if open_think or close_think:
        start = open_think.end() if open_think else 0
        if close_think:
            end, rest = close_think.start(), close_think.end()
        else:
            open_answer = _OPEN_ANSWER.search(t, start)
            end = rest = open_answer.start() if open_answer else len(t)
        think = t[start:end].strip() or None

    # the answer: <answer> content, else the text after the think block
    open_answer = _OPEN_ANSWER.search(t, rest)
    answer_start = open_answer.end() if open_answer else rest
    close_answer = _CLOSE_ANSWER.search(t, answer_start)
    answer = t[answer_start: close_answer.start() if close_answer else len(t)].strip() or None

    label = evidence = None
    if think is not None:
        label, class_match, label_end = _label(think, p)
        evidence = _evidence(think, p, class_match, label_end)

    if finish_reason == "length" and close_answer is None:
        status = "truncated"
    elif think is None:
        status = "no_trace"
    elif answer is None:
        status = "no_answer"
    elif label is None:
        status = "unparseable_class"
    elif evidence is None:
        status = "unparseable_evidence"
    else:
        status = "ok"
    return ParsedOutput(status, think, answer, label, evidence)
