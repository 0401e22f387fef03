"""Every text normaliser of tracekd, in one place (matching depends on them, so each is documented).

- :func:`normalize_text` (dataset text: CoTemp facts and answers, MARCO answer overlap): Unicode NFKC,
  lowercase, every punctuation character (Unicode category ``P*``) to a space, whitespace squeezed;
  :func:`mentions` finds a whole-word span in such text.
- :func:`normalize_line` (a context line's identity for the evidence verifier and the corruptions).
- :func:`normalize_label` (a class label for comparison).
- :func:`normalize_answer` (SQuAD normalisation for the answer scorers).
- :func:`normalize_official` (the CoTempQA benchmark's own normalisation, for its compatibility scorer).
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata

_PUNCT = frozenset(string.punctuation)
_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_TRAILING = ".!?;:,"


class _PunctToSpace(dict):
    """``str.translate`` table: punctuation -> space; filled lazily, one lookup per new character."""

    def __missing__(self, code: int) -> int:
        value = 32 if unicodedata.category(chr(code)).startswith("P") else code
        self[code] = value
        return value


_PUNCT_TO_SPACE = _PunctToSpace()
_ASCII_PUNCT_TO_SPACE = {c: 32 for c in range(128) if unicodedata.category(chr(c)).startswith("P")}


def normalize_text(text: str) -> str:
    """Dataset text for matching: NFKC, lowercase, punctuation to spaces, whitespace squeezed, ends stripped.

    >>> normalize_text("  Australian Labor Party (South Australian Branch).")
    'australian labor party south australian branch'
    >>> normalize_text("Director-General of the ＷＨＯ")
    'director general of the who'
    >>> normalize_text("Article 1 – Democratic and Progressive Movement")
    'article 1 democratic and progressive movement'
    >>> normalize_text("?!")
    ''
    """
    if text.isascii():  # fast path: NFKC changes no ASCII text
        return " ".join(text.lower().translate(_ASCII_PUNCT_TO_SPACE).split())
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCT_TO_SPACE)
    return " ".join(text.split())


def mentions(haystack: str, needle: str) -> bool:
    """Whether normalised ``haystack`` contains normalised ``needle`` as a whole-word span.

    Both arguments must already be normalised (see :func:`normalize_text`); an empty needle matches nothing.

    >>> mentions("john is a member of the red electoral alliance", "red")
    True
    >>> mentions("john is a member of the redwood party", "red")
    False
    >>> mentions("anything", "")
    False
    """
    return bool(needle) and f" {needle} " in f" {haystack} "


@functools.lru_cache(maxsize=1 << 16)
def normalize_line(s: str) -> str:
    """A context line's identity for matching: NFKC, casefolded, whitespace squeezed, ends
    stripped, trailing sentence punctuation (``.!?;:,``) removed.

    >>> normalize_line("  Mary  went to the\\tKitchen. ")
    'mary went to the kitchen'
    >>> normalize_line("ＮＹ, 2001!") == normalize_line("ny, 2001")
    True
    """
    s = " ".join(unicodedata.normalize("NFKC", s).casefold().split())
    return s.rstrip(_TRAILING + " ")


@functools.lru_cache(maxsize=4096)
def normalize_label(s: str) -> str:
    """A class label for comparison: casefolded, whitespace squeezed.

    >>> normalize_label("  Two-Supporting  fact ")
    'two-supporting fact'
    """
    return " ".join(unicodedata.normalize("NFKC", s).casefold().split())


@functools.lru_cache(maxsize=1 << 16)
def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and the articles a/an/the, squeeze spaces.

    >>> normalize_answer("  The  Kitchen! ")
    'kitchen'
    >>> normalize_answer("An apple, a pear")
    'apple pear'
    """
    s = s.lower().translate(_PUNCT_TABLE)
    return " ".join(_ARTICLES.sub(" ", s).split())


@functools.lru_cache(maxsize=1 << 16)
def normalize_official(s: str) -> str:
    """The CoTempQA benchmark's normalisation: lowercase, remove ASCII punctuation, squeeze whitespace.

    >>> normalize_official("  Durban City F.C. ")
    'durban city fc'
    >>> normalize_official("The Liberals")
    'the liberals'
    """
    return " ".join("".join(ch for ch in s.lower() if ch not in _PUNCT).split())
