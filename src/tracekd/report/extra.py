"""Extra report sections: the extension point for parts of tracekd that add to the report.

A section builder is a function ``builder(analysis, run_dir) -> Section | None``: it takes the typed
analysis (:class:`tracekd.stats.results.Analysis`) and the run folder the report is written into (None
when the report is rendered in memory without one) and returns a :class:`Section`, or None when it has
nothing to show (then the report has no heading for it). Register a builder by adding its
``"module:function"`` path to the :data:`SECTIONS` registry; it is imported only when a report is built, so a
builder may use optional libraries. The report places the sections, in this order, after the per-dataset
ones, each under its own level-2 heading and in the contents.

>>> import sys, types
>>> mod = types.ModuleType("demo_sections")
>>> mod.nothing = lambda analysis, run_dir: None
>>> mod.hello = lambda analysis, run_dir: Section("Hello", (Paragraph("hi"),))
>>> sys.modules["demo_sections"] = mod
>>> demo = Registry("report section")
>>> demo.add("nothing", "demo_sections:nothing")
>>> demo.add("hello", "demo_sections:hello")
>>> [s.title for s in build_sections(None, None, demo)]
['Hello']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..registry import Registry
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

#: the section builders, in report order
SECTIONS: Registry[SectionBuilder] = Registry("report section")
SECTIONS.add("teacher", "tracekd.teacher.report:section",
             "teacher arms and free-form traces: measures per arm, the teacher-correct subset (runs with a teacher)")
SECTIONS.add("human-ratings", "tracekd.study.report:human_ratings",
             "scale scores, tests between conditions and rater agreement (runs a study is linked to)")


def build_sections(analysis: "Analysis", run_dir: Path | None,
                   sections: Registry[SectionBuilder] | None = None) -> list[Section]:
    """The sections the builders in ``sections`` (default :data:`SECTIONS`) return, Nones left out."""
    sections = SECTIONS if sections is None else sections
    out = []
    for name in sections:
        section = sections.get(name)(analysis, run_dir)
        if section is not None:
            out.append(section)
    return out
