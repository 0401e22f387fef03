"""List the registered datasets with their label sets and sizes, the arms, templates and answer scorers.

  tracekd ls
  tracekd ls --data babi=../shared/data/babi/en-first-question   # also count the examples in a copy
"""

from __future__ import annotations

import argparse

HELP = "list datasets (labels, sizes), arms, templates and answer scorers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                        help="count the examples of dataset NAME in PATH (repeatable)")


def run(args: argparse.Namespace) -> int:
    from .. import registry
    from ..errors import ConfigError
    from ..score.answer import scorer_names
    from ..traces.corrupt import ARMS
    from ..traces.templates import template_names

    paths = {}
    for item in args.data:
        name, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--data expects NAME=PATH, got {item!r}")
        registry.get(name)
        paths[name] = path
    for name in registry.names():
        spec = registry.get(name)
        print(f"{name}: {spec.description}")
        print(f"  classes ({len(spec.labels)}): {', '.join(spec.labels)}")
        print(f"  reference size: {spec.reference_size}")
        if name in paths:
            splits = spec.load_splits(paths[name])
            print("  here: " + ", ".join(f"{k} {len(v):,}" for k, v in splits.items()) + f"  ({paths[name]})")
        print(f"  template: {spec.template}   answer scorer: {spec.scorer}")
    print(f"arms: {', '.join(ARMS)}")
    print(f"templates: {', '.join(template_names())}")
    print(f"answer scorers: {', '.join(scorer_names())}")
    return 0
