"""Extra report sections: the extension point for parts of tracekd that add to the report.

A section builder is a function ``builder(analysis, run_dir) -> Section | None``: it takes the typed
analysis (:class:`tracekd.stats.results.Analysis`) and the run folder the report is written into (None
when the report is rendered in memory without one) and returns a :class:`Section`, or None when it has
nothing to show (then the report has no heading for it). Register a builder by adding its
``"module:function"`` path to :data:`SECTIONS`; it is imported only when a report is built, so a builder
may use optional libraries. The report places the sections, in this order, after the per-dataset ones,
each under its own level-2 heading and in the contents.

>>> import sys, types
>>> mod = types.ModuleType("demo_sections")
>>> mod.nothing = lambda analysis, run_dir: None
>>> mod.hello = lambda analysis, run_dir: Section("Hello", (Paragraph("hi"),))
>>> sys.modules["demo_sections"] = mod
>>> [s.title for s in build_sections(None, None, ("demo_sections:nothing", "demo_sections:hello"))]
['Hello']
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import ConfigError
from .document import Block, Paragraph, slug

if TYPE_CHECKING:
    from ..stats.results import Analysis

__all__ = ["SECTIONS", "Section", "SectionBuilder", "build_sections", "Paragraph"]


@dataclass(frozen=True)
class Section:
    """One extra section: its heading and its blocks (tables, figures, paragraphs of ``report.document``)."""

    title: str
    blocks: tuple[Block, ...]

    @property
    def anchor(self) -> str:
        return slug("extra", self.title)


SectionBuilder = Callable[["Analysis", "Path | None"], "Section | None"]

#: the registered builders, ``"module:function"``, in report order
SECTIONS: list[str] = ["tracekd.teacher.report:section", "tracekd.study.report:human_ratings"]


def load_builder(path: str) -> SectionBuilder:
    """The builder named ``"module:function"``."""
    module, _, name = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"report section {path!r} cannot be loaded: {e}") from None
    return fn


def build_sections(analysis: "Analysis", run_dir: Path | None,
                   paths: Sequence[str] | None = None) -> list[Section]:
    """The sections the builders in ``paths`` (default :data:`SECTIONS`) return, Nones left out."""
    out = []
    for path in SECTIONS if paths is None else paths:
        section = load_builder(path)(analysis, run_dir)
        if section is not None:
            out.append(section)
    return out
