"""Errors that name where bad input is: file, line and field."""

from __future__ import annotations

import difflib
from pathlib import Path


class TracekdError(Exception):
    """Base class for every error tracekd raises on purpose (the CLI prints these without a traceback)."""


class DataError(TracekdError, ValueError):
    """Bad input data.

    >>> str(DataError("missing", path="equal.json", line=3, field="answer"))
    "equal.json:3: field 'answer': missing"
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None, source: str = ""):
        self.message = message
        self.path = str(path) if path is not None else (source or None)
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    def located(self, path: str | Path, line: int | None) -> "DataError":
        """A copy of this error with the file and line filled in."""
        return DataError(self.message, path=path, line=line, field=self.field)

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        fld = f"field {self.field!r}: " if self.field else ""
        return f"{where}{fld}{self.message}"


class ConfigError(TracekdError, ValueError):
    """Bad configuration: unknown keys, wrong types, unknown names."""


def did_you_mean(name: str, choices, what: str = "name") -> str:
    """An error message for an unknown ``name`` with the closest ``choices``.

    >>> did_you_mean("babl", ["babi", "cotemp"], "dataset")
    "unknown dataset 'babl'; did you mean 'babi'? (choices: babi, cotemp)"
    """
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}{hint} (choices: {', '.join(choices)})"
