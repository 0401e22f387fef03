"""Read what the report is made from: the analysis (typed, checked) and the run's reproduce command.

``tracekd run`` (``RUN/analysis.json``) and ``tracekd analyze --out`` write the same format,
:class:`tracekd.stats.results.Analysis`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import DataError
from ..io import read_json
from ..stats.results import Analysis


def load_analysis(path: str | Path) -> Analysis:
    """Read and check an analysis JSON; a bad or missing field is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=path)
    d = read_json(path)
    if isinstance(d, dict) and "summaries" in d and "groups" not in d:
        raise DataError("written by an older `tracekd analyze`; run `tracekd analyze ... --out` again", path=path)
    return Analysis.from_dict(d, where=str(path))


def reproduce_command(run_dir: str | Path) -> str | None:
    """The command that reproduces a run, from ``RUN/plan.json``: its ``command``, or ``tracekd run``
    with its ``config_path`` (or ``config.config_path``); None when the plan does not say."""
    plan_path = Path(run_dir) / "plan.json"
    if not plan_path.is_file():
        return None
    plan = read_json(plan_path)
    if not isinstance(plan, dict):
        return None
    if isinstance(plan.get("command"), str) and plan["command"].strip():
        return plan["command"].strip()
    config = plan.get("config") if isinstance(plan.get("config"), dict) else {}
    for holder in (plan, config):
        for key in ("config_path", "config_file"):
            if isinstance(holder.get(key), str) and holder[key]:
                return f"tracekd run {shlex.quote(holder[key])}"
    return None
