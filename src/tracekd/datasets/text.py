"""Text normalisation shared by the dataset loaders for matching answers and lines.

``normalize`` is deliberately simple and documented, because gold evidence depends on it:
Unicode NFKC, lowercase, every punctuation character (Unicode category ``P*``) to a space,
runs of whitespace squeezed to one space, ends stripped.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from ..errors import DataError


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (a leading BOM dropped, line ends removed).

    Undecodable bytes raise a DataError naming the file and the line they are on.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path, line=line) from None
    return text.splitlines()


def normalize(text: str) -> str:
    """Normalised text for matching.

    >>> normalize("  Australian Labor Party (South Australian Branch).")
    'australian labor party south australian branch'
    >>> normalize("Director-General of the ＷＨＯ")
    'director general of the who'
    >>> normalize("Article 1 – Democratic and Progressive Movement")
    'article 1 democratic and progressive movement'
    >>> normalize("?!")
    ''
    """
    if text.isascii():  # fast path: NFKC changes no ASCII text
        return " ".join(text.lower().translate(_ASCII_PUNCT_TO_SPACE).split())
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCT_TO_SPACE)
    return " ".join(text.split())


class _PunctToSpace(dict):
    """``str.translate`` table: punctuation -> space; filled lazily, one lookup per new character."""

    def __missing__(self, code: int) -> int:
        value = 32 if unicodedata.category(chr(code)).startswith("P") else code
        self[code] = value
        return value


_PUNCT_TO_SPACE = _PunctToSpace()
_ASCII_PUNCT_TO_SPACE = {c: 32 for c in range(128) if unicodedata.category(chr(c)).startswith("P")}


def mentions(haystack: str, needle: str) -> bool:
    """Whether normalised ``haystack`` contains normalised ``needle`` as a whole-word span.

    Both arguments must already be normalised (see :func:`normalize`); an empty needle matches nothing.

    >>> mentions("john is a member of the red electoral alliance", "red")
    True
    >>> mentions("john is a member of the redwood party", "red")
    False
    >>> mentions("anything", "")
    False
    """
    return bool(needle) and f" {needle} " in f" {haystack} "
