"""The "Human ratings" section of ``tracekd report``, for a run that a study is linked to.

``tracekd study analyze ... --link RUN_DIR`` writes ``RUN_DIR/human_study.json`` naming the study's
``analysis.json``; the report's extension point (:mod:`tracekd.report.extra`) calls
:func:`human_ratings`, which shows the scale scores with CIs, the tests between conditions, scale
consistency and rater agreement, and the two study plots. Without a link the report has no such section.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError, DataError
from ..io import read_json, write_json
from ..report.document import Figure, Paragraph, Table
from ..report.extra import Section
from .analyze import plot_likert, plot_scales

LINK = "human_study.json"


def write_link(run_dir: str | Path, analysis_path: str | Path) -> Path:
    """Link a study analysis to an experiment run (the report then shows it)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"--link: no run folder {run_dir}")
    path = run_dir / LINK
    write_json(path, {"kind": "study-link", "analysis": str(Path(analysis_path).resolve())})
    return path


def _fmt(x, nd: int = 2) -> str:
    """
    >>> _fmt(None), _fmt(3.14159), _fmt(0.00012, 3)
    ('-', '3.14', '1.2e-04')
    """
    if x is None:
        return "-"
    if isinstance(x, float) and x != 0 and abs(x) < 10 ** -nd:
        return f"{x:.1e}"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def load_linked(run_dir: Path) -> dict | None:
    """The linked study analysis of ``run_dir``, or None when no study is linked."""
    link = Path(run_dir) / LINK
    if not link.is_file():
        return None

    target = read_json(link).get("analysis")
    if not isinstance(target, str):
        raise DataError("missing or not a string", path=link, field="analysis")
    path = Path(target)
    if not path.is_absolute():
        path = Path(run_dir) / path
    if not path.is_file():
        raise DataError(f"linked study analysis {path} does not exist", path=link, field="analysis")
    a = read_json(path)
    if a.get("kind") != "study-analysis":
        raise DataError("not a `tracekd study analyze` output", path=path, field="kind")
    return a


def human_ratings(analysis, run_dir: Path | None):
    """Report section builder (see :mod:`tracekd.report.extra`): None when no study is linked."""
    if run_dir is None:
        return None
    a = load_linked(Path(run_dir))
    if a is None:
        return None

    e = a["exclusions"]
    labels = a.get("labels", {})
    intro = (f"{e['participants']} participants, {a['design']}-subjects, conditions: "
             + ", ".join(f"{c} ({labels.get(c, c)})" for c in a["conditions"])
             + f". Excluded {e['excluded']} (failed attention check {e['failed_attention']}, too fast "
               f"{e['too_fast']}, incomplete {e['incomplete']})"
             + ("" if e["applied"] else ", but exclusions were NOT applied")
             + f"; analysed {e['analysed']}. Ratings on a {a['points']}-point scale ("
             + f"1 = {a['scale_labels'][0]}, {a['points']} = {a['scale_labels'][-1]}); a participant's "
               "ratings are averaged per statement first, so n counts participants.")
    blocks = [Paragraph(intro)]
    blocks.append(Table(
        caption="Scale scores per condition (mean of the participant means; bootstrap 95% CI)",
        header=("scale", "condition", "n", "mean", "SD", "median", "95% CI"),
        rows=tuple((r["scale"], r["condition"], str(r["n"]), _fmt(r["mean"]), _fmt(r["sd"]), _fmt(r["median"]),
                    f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]") for r in a["scale_scores"]),
        numeric=(False, False, True, True, True, True, False)))
    rows = []
    for scale, t in a["tests"]["scales"].items():
        o = t["omnibus"] or {}
        omni = f"{o.get('test', '-')} {_fmt(o.get('statistic'))}, p = {_fmt(o.get('p'), 3)}" if o else "-"
        for pr in t["pairwise"] or [None]:
            if pr is None:
                rows.append((scale, omni, "-", "-", "-", "-"))
                continue
            rows.append((scale, omni, f"{pr['a']} vs {pr['b']}", _fmt(pr["r"]), _fmt(pr["p"], 3),
                         _fmt(pr.get("p_holm"), 3)))
            omni = ""
    blocks.append(Table(caption="Tests between conditions per scale (effect r: rank-biserial, positive when "
                                "the first condition rates higher; p Holm-corrected within a scale)",
                        header=("scale", "omnibus", "pair", "r", "p", "p (Holm)"), rows=tuple(rows),
                        numeric=(False, False, False, True, True, True)))
    kr = {(k["condition"], k["statement"]): k for k in a["krippendorff_alpha"]}
    blocks.append(Table(
        caption="Per statement: mean (SD) per condition, Krippendorff's alpha (ordinal) over items rated by "
                "several participants",
        header=("statement", "condition", "n", "mean", "SD", "Krippendorff's alpha"),
        rows=tuple((r["statement"], r["condition"], str(r["n"]), _fmt(r["mean"]), _fmt(r["sd"]),
                    _fmt(kr[(r["condition"], r["statement"])]["alpha"])) for r in a["items"]),
        numeric=(False, False, True, True, True, True)))
    blocks.append(Table(caption="Internal consistency of each scale", header=("scale", "items", "Cronbach's alpha"),
                        rows=tuple((s, ", ".join(c["items"]), _fmt(c["alpha"]))
                                   for s, c in a["cronbach_alpha"].items()),
                        numeric=(False, False, True)))
    blocks.append(Figure(path="plots/human-ratings-likert.png", png=plot_likert(a),
                         alt="Diverging stacked bars of the Likert ratings per statement and condition",
                         caption="Share of ratings per answer, centred on the neutral point"))
    blocks.append(Figure(path="plots/human-ratings-scales.png", png=plot_scales(a),
                         alt="Scale means per condition with 95% confidence intervals",
                         caption="Scale means per condition with bootstrap 95% CIs"))
    return Section("Human ratings", tuple(blocks))
