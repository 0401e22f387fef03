"""The experiment report: ``report.md``, a self-contained ``report.html`` and ``plots/*.png``.

Everything shown comes from the typed analysis (``RUN/analysis.json`` or ``tracekd analyze --out``,
:class:`tracekd.stats.results.Analysis`), plus the extra sections registered in :mod:`tracekd.report.extra`.
matplotlib is imported only when figures are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..io import atomic_write, write_text
from ..stats.results import Analysis
from . import html, markdown, sections
from .document import Figure
from .inputs import load_analysis, reproduce_command

__all__ = ["Rendered", "load_analysis", "render", "reproduce_command", "write_report"]


@dataclass(frozen=True)
class Rendered:
    markdown: str
    html: str
    plots: dict[str, bytes] = field(repr=False)  # path relative to the run directory -> PNG


def render(analysis: Analysis, *, command: str | None = None, source: str = "analysis.json",
           examples_per_cell: int = 3, run_dir: Path | None = None) -> Rendered:
    """The report's text and figures in memory (nothing written); ``run_dir`` is handed to extra sections."""
    blocks = sections.build(analysis, sections.Header(version=__version__, command=command, source=source),
                            examples_per_cell=examples_per_cell, run_dir=run_dir)
    title = f"tracekd report: {analysis.experiment or '(unnamed)'}"
    return Rendered(markdown.render(blocks), html.render(blocks, title),
                    {b.path: b.png for b in blocks if isinstance(b, Figure)})


def write_report(run_dir: Path, analysis: Analysis, *, command: str | None = None, examples_per_cell: int = 3,
                 source: str = "analysis.json") -> Path:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``run_dir`` (atomically each); return
    the HTML path. ``command`` defaults to the one ``run_dir/plan.json`` names, if any."""
    run_dir = Path(run_dir)
    if command is None:
        command = reproduce_command(run_dir)
    r = render(analysis, command=command, source=source, examples_per_cell=examples_per_cell, run_dir=run_dir)
    for rel, png in r.plots.items():
        with atomic_write(run_dir / rel, "wb") as f:
            f.write(png)
    plots_dir = run_dir / "plots"
    if plots_dir.is_dir():  # figures of an earlier report that this one no longer has
        for old in plots_dir.glob("*.png"):
            if f"plots/{old.name}" not in r.plots:
                old.unlink()
    write_text(run_dir / "report.md", r.markdown)
    write_text(run_dir / "report.html", r.html)
    return run_dir / "report.html"
