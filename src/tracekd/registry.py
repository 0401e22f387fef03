"""One lookup type for every named thing: datasets, answer scorers, trace definitions, templates, synthetic
generators, generation backends, built-in students and CLI commands.

A :class:`Registry` maps a name to an object and a one-line description. The object is given either as
itself or, as a string, by its import path ``"module:attribute"`` (``"module"`` alone: the module), imported on
the first :meth:`Registry.get` - so listing the names, or checking one, imports nothing.

>>> colours = Registry("colour")
>>> colours.add("red", (255, 0, 0), "the colour of stop signs")
>>> colours.add("join", "os.path:join", "imported on first use")
>>> colours.names()
['red', 'join']
>>> colours.get("join").__name__
'join'
>>> colours.get("rde")
Traceback (most recent call last):
...
tracekd.errors.ConfigError: unknown colour 'rde'; did you mean 'red'? (choices: join, red)
>>> colours.listing()
[('red', 'the colour of stop signs'), ('join', 'imported on first use')]
>>> "red" in colours, colours.check("join")
(True, 'join')
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Generic, Iterator, TypeVar

from .errors import ConfigError, did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """A registered name: ``target`` (the object, or its ``"module:attribute"`` path) and its description."""

    target: Any
    description: str = ""


class Registry(Generic[T]):
    """Name -> lazily imported object; ``what`` names the kind in messages (``unknown <what> 'x'``)."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, target: T | str, description: str = "") -> None:
        """Register ``target`` (an object, or a string: its import path) under ``name``; a name is registered once."""
        if name in self._entries:
            raise ConfigError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = Entry(target, description)

    def check(self, name: str) -> str:
        """``name`` when it is registered, else a ConfigError with did-you-mean; imports nothing."""
        if name not in self._entries:
            raise ConfigError(did_you_mean(str(name), self._entries, self.what))
        return name

    def get(self, name: str) -> T:
        """The object registered as ``name`` (did-you-mean on a miss); a path is imported when first asked for
        (and then found in ``sys.modules``, so nothing is held here that a test's stand-in module could not replace)."""
        target = self._entries[self.check(name)].target
        if not isinstance(target, str):
            return target
        module, _, attribute = target.partition(":")
        try:
            found = importlib.import_module(module)
            return getattr(found, attribute) if attribute else found
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"{self.what} {name!r} is not available: {e}") from None

    def describe(self, name: str) -> str:
        """The one-line description of ``name``."""
        return self._entries[self.check(name)].description

    def names(self) -> list[str]:
        """The registered names, in the order they were added."""
        return list(self._entries)

    def listing(self) -> list[tuple[str, str]]:
        """``(name, description)`` for every name, in order (`tracekd ls`)."""
        return [(name, entry.description) for name, entry in self._entries.items()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"
