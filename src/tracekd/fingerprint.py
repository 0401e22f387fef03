"""Did the settings change? One answer for a resumed training, a resumed generation and an experiment stage.

A :class:`Fingerprint` holds the settings a result depends on, by name. A resume compares the
fingerprint saved with the result against the current one (:meth:`Fingerprint.changes`, one
``name: before -> now`` line per difference, for the error message); an experiment stage's folder
is named by the fingerprint's hash (:meth:`Fingerprint.key`), so changed settings give a new folder.

Which settings count is declared where the settings are: ``tracekd.train.run.RESUME_MAY_CHANGE``
(what a resumed training may change), ``tracekd.train.run.ALREADY_TRAINED_MAY_CHANGE`` (what may differ
from a finished training that is then not run again), ``tracekd.generate.run.RESULT_KEYS`` (what a generation
depends on) and, for a stage, its whole spec with its inputs' keys (:func:`tracekd.experiment.plan.stage_key`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .io import sha256_text


@dataclass(frozen=True)
class Fingerprint:
    """The settings a result depends on (a JSON-able mapping of name -> value)."""

    settings: Mapping[str, Any]

    @classmethod
    def of(cls, settings: Mapping[str, Any], *, only: Iterable[str] | None = None,
           ignore: Iterable[str] = ()) -> Fingerprint:
        """The part of ``settings`` a result depends on: the names in ``only`` (those present), else every
        name but those in ``ignore``.

        >>> Fingerprint.of({"lr": 1, "progress": True}, ignore={"progress"}).settings
        {'lr': 1}
        >>> Fingerprint.of({"lr": 1, "seed": 2}, only=("seed", "top_k")).settings
        {'seed': 2}
        """
        skip = set(ignore)
        names = [k for k in only if k in settings] if only is not None else [k for k in settings if k not in skip]
        return cls({k: settings[k] for k in names})

    def changes(self, before: Mapping[str, Any], *, removed: bool = False) -> list[str]:
        """``name: before -> now`` for every setting of this fingerprint whose value ``before`` differs.

        A name ``before`` lacks is a setting newer than that result: not a difference. With ``removed``, a name
        ``before`` has and this fingerprint lacks (a setting since removed) is one (``name: before -> (none)``).

        >>> Fingerprint({"lr": 2, "seed": 0, "new": 1}).changes({"lr": 1, "seed": 0})
        ['lr: 1 -> 2']
        >>> Fingerprint({"lr": 1}).changes({"lr": 1, "old": 3}, removed=True)
        ['old: 3 -> (none)']
        """
        found = [f"{k}: {before[k]!r} -> {v!r}" for k, v in self.settings.items() if k in before and before[k] != v]
        if removed:
            found += [f"{k}: {v!r} -> (none)" for k, v in before.items() if k not in self.settings]
        return found

    def key(self, length: int = 12) -> str:
        """A hash of the settings (key order does not matter): the name of what they produce.

        >>> Fingerprint({"a": 1, "b": [2]}).key() == Fingerprint({"b": [2], "a": 1}).key()
        True
        """
        return sha256_text(json.dumps(self.settings, sort_keys=True, ensure_ascii=False))[:length]
