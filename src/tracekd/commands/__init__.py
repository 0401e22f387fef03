"""One module per ``tracekd`` subcommand (see ``tracekd.cli``)."""

from __future__ import annotations

import argparse

from ..registry import Registry


def add_subcommands(sub, registry: Registry, handler: str) -> None:
    """One sub-parser per module in ``registry`` (its ``HELP``, docstring and ``add_arguments``), each
    setting ``handler`` to the module's ``run`` on the parsed arguments."""
    for name in registry.names():
        module = registry.get(name)
        parser = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(parser)
        parser.set_defaults(**{handler: module.run})
