"""List the datasets (classes, sizes, loader options), the arms, templates, answer scorers, trace definitions
and built-in students.

  tracekd ls                         # everything, one line per arm, template and scorer
  tracekd ls babi                    # one dataset: its classes and every --option with type, default and help
  tracekd ls --data babi=../shared/data/babi/en-first-question   # also count the examples in a copy

Loader options are given to `tracekd build` as `--option KEY=VALUE` (and in an experiment config's
`options:`), e.g. `tracekd build --dataset babi --data DIR --option tasks=qa1,qa2`.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from ..datasets import DATASETS
from ..errors import ConfigError
from ..score.steps import TRACE_DEFINITIONS
from ..students import BUILTINS
from ..traces.corrupt import ARM_MAKERS
from ..traces.templates import shipped_templates

HELP = "list datasets (labels, sizes, loader options), arms, templates, scorers, trace definitions, students"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", nargs="?", metavar="DATASET", help="show only this dataset")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                        help="count the examples of dataset NAME in PATH (repeatable)")


def type_name(tp) -> str:
    """A field type as a user reads it.

    >>> type_name(int), type_name(tuple[str, ...]), type_name(float | None)
    ('int', 'list of str', 'float or none')
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (list, tuple):
        return f"list of {type_name(args[0])}" if args else "list"
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return " or ".join(type_name(a) for a in rest) + " or none"
    return getattr(tp, "__name__", str(tp))


def _shown(value) -> str:
    """A default as it would be typed after ``--option KEY=``.

    >>> _shown(("qa1", "qa2")), _shown(True), _shown(None), _shown("")
    ('qa1,qa2', 'true', 'none', 'unset')
    """
    if value == "":
        return "unset"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)


def option_lines(options_cls: type) -> list[str]:
    """One line per loader option: ``name (type, default ...): help``."""
    hints = typing.get_type_hints(options_cls)
    lines = []
    for f in dataclasses.fields(options_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"{f.name} ({type_name(hints[f.name])}, default {_shown(default)}): {f.metadata.get('help', '')}")
    return lines


def run(args: argparse.Namespace) -> int:
    from ..score.answer import SCORERS

    paths = {}
    for item in args.data:
        name, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--data expects NAME=PATH, got {item!r}")
        DATASETS.get(name)
        paths[name] = path
    names = [DATASETS.get(args.dataset).name] if args.dataset else DATASETS.names()
    for name in names:
        spec = DATASETS.get(name)
        print(f"{name}: {spec.description}")
        print(f"  classes ({len(spec.labels)}): {', '.join(spec.labels)}")
        print(f"  reference size: {spec.reference_size}")
        if name in paths:
            splits = spec.load_splits(paths[name])
            print("  here: " + ", ".join(f"{k} {len(v):,}" for k, v in splits.items()) + f"  ({paths[name]})")
        print(f"  template: {spec.template}   answer scorer: {spec.scorer}")
        print("  loader options (tracekd build --option KEY=VALUE):")
        for line in option_lines(spec.options):
            print(f"    {line}")
    if args.dataset:
        return 0
    listings = [("arms:", ARM_MAKERS.listing()),
                ("templates (--template NAME, or a YAML file):", shipped_templates().listing()),
                ("answer scorers (--scorer NAME):", sorted(SCORERS.listing())),
                ("trace definitions (--trace-definition NAME):", TRACE_DEFINITIONS.listing()),
                ("built-in students (a student is one of these, a local model folder or a Hugging Face id org/name):",
                 BUILTINS.listing())]
    width = max(len(name) for _, items in listings for name, _ in items)
    for title, items in listings:
        print(title)
        for name, description in items:
            print(f"  {name:<{width}}  {description}")
    return 0
