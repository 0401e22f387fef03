"""The datasets tracekd reads: each is a :class:`DatasetSpec` (loader, validator, label set, template, answer
scorer) in its own module (``tracekd.datasets.<name>.SPEC``), named in :data:`DATASETS`, so looking one up
imports only that module.

>>> DATASETS.get("babi").name
'babi'
>>> DATASETS.get("babl")
Traceback (most recent call last):
...
tracekd.errors.ConfigError: unknown dataset 'babl'; did you mean 'babi'? (choices: babi, cotemp, marco)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, DataError, did_you_mean
from ..records import Example
from ..registry import Registry

#: split name -> examples, in a deterministic order
Splits = dict[str, list[Example]]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything tracekd needs to know about one dataset.

    - ``load(path, options) -> Splits``: read the raw files, decompose every question by rules.
    - ``validate(path) -> list[DataError]``: every problem in the raw files, without stopping.
    - ``options``: a dataclass of loader options (defaults = the method's); its field metadata
      ``help`` documents each.
    """

    name: str
    description: str
    labels: tuple[str, ...]
    load: Callable[[Path, Any], Splits]
    validate: Callable[[Path], list[DataError]]
    options: type
    template: str
    scorer: str
    reference_size: str
    download: str = ""
    #: ``notes(path) -> list[str]``: what ``build`` will need that is not a problem (``validate`` prints it)
    notes: Callable[[Path], list[str]] | None = None

    def make_options(self, **overrides: Any) -> Any:
        """Options with ``overrides`` applied; unknown keys are errors with did-you-mean."""
        names = {f.name for f in dataclasses.fields(self.options)}
        for key in overrides:
            if key not in names:
                raise ConfigError(did_you_mean(key, names, f"{self.name} option"))
        return self.options(**overrides)

    def load_splits(self, path: str | Path, **overrides: Any) -> Splits:
        path = Path(path)
        if not path.exists():
            hint = f"\n{self.download}" if self.download else ""
            raise DataError(f"no such file or folder{hint}", path=path)
        return self.load(path, self.make_options(**overrides))


#: dataset name -> its spec (did-you-mean on a typo)
DATASETS: Registry[DatasetSpec] = Registry("dataset")
DATASETS.add("babi", "tracekd.datasets.babi:SPEC")
DATASETS.add("cotemp", "tracekd.datasets.cotemp:SPEC")
DATASETS.add("marco", "tracekd.datasets.marco:SPEC")
