"""Read what the report is made from: the analysis JSON (checked) and the run's reproduce command.

Two inputs are accepted: ``RUN/analysis.json`` of ``tracekd run`` (``groups``/``cells``/
``comparisons``/``examples``) and the ``--out`` file of ``tracekd analyze`` (``summaries``/
``comparisons``), which is turned into the first form with one arm per labelled file.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import read_json

#: keys every summarize() output must have, as dotted paths
SUMMARY_KEYS = (
    "n", "status", "per_class",
    *(f"accuracy.{a}.{k}" for a in ("answer", "class", "evidence_exact", "evidence_all", "evidence_any", "trace")
      for k in ("accuracy", "ci95")),
    *(f"means.{m}.mean" for m in ("evidence_precision", "evidence_recall", "answer_f1")),
    *(f"steps.{s}.{k}" for s in ("class", "evidence", "trace")
      for k in ("table", "n", "chi2", "p", "chi2_yates", "p_yates", "phi", "fisher_p", "p_answer_given_step",
                "p_answer_given_not_step", "both_share")),
)
METRIC_KEYS = tuple(f"metrics.{m}.{k}" for m in ("answer", "class", "evidence", "trace", "answer_f1")
                    for k in ("values", "mean", "sd", "min", "max"))


def _get(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            raise KeyError(part)
        d = d[part]
    return d


def _require(obj: Any, keys: tuple[str, ...] | list[str], where: str, path: Path | None) -> None:
    for k in keys:
        try:
            _get(obj, k)
        except KeyError:
            raise DataError("missing", path=path, field=f"{where}.{k}" if where else k) from None


def check_analysis(analysis: Any, path: Path | None = None) -> None:
    """Raise DataError naming the first missing field of a run analysis dict."""
    if not isinstance(analysis, dict):
        raise DataError(f"expected a JSON object, got {type(analysis).__name__}", path=path)
    _require(analysis, ("arms", "seeds", "groups", "cells", "comparisons"), "", path)
    for name in ("arms", "seeds", "groups", "cells", "comparisons"):
        if not isinstance(analysis[name], list):
            raise DataError("must be a list", path=path, field=name)
    for i, g in enumerate(analysis["groups"]):
        where = f"groups[{i}]"
        _require(g, ("dataset", "student", "arm", "seeds", "n_per_seed", *METRIC_KEYS), where, path)
        _require(g, [f"pooled.{k}" for k in SUMMARY_KEYS], where, path)
    for i, c in enumerate(analysis["cells"]):
        _require(c, ("dataset", "student", "arm", "seed", *(f"summary.{k}" for k in SUMMARY_KEYS)),
                 f"cells[{i}]", path)
    for i, c in enumerate(analysis["comparisons"]):
        _require(c, ("dataset", "student", "seed", "arm_a", "arm_b", "result.n_paired", "result.unpaired_a",
                     "result.unpaired_b", *(f"result.{v}.{k}" for v in ("answer", "trace")
                                            for k in ("accuracy_a", "accuracy_b", "b01", "b10", "p_exact", "chi2",
                                                      "p"))), f"comparisons[{i}]", path)
    for i, e in enumerate(analysis.get("examples") or []):
        _require(e, ("dataset", "student", "arm", "kind", "id"), f"examples[{i}]", path)


def from_analyze(d: dict, path: Path | None = None) -> dict:
    """A ``tracekd analyze`` JSON as a run analysis: one arm per labelled file, one unnamed seed.

    >>> from tracekd.stats.summary import summarize
    >>> a = from_analyze({"kind": "analysis", "summaries": {"x": summarize([])}, "comparisons": []})
    >>> a["arms"], a["groups"][0]["seeds"], a["groups"][0]["metrics"]["answer"]["mean"]
    (['x'], [None], None)
    """
    from ..experiment.analysis import METRICS, spread
    from ..stats.summary import json_safe

    summaries = d.get("summaries")
    if not isinstance(summaries, dict):
        raise DataError("must be an object of label -> summary", path=path, field="summaries")
    labels = list(summaries)
    for label, s in summaries.items():
        _require(s, SUMMARY_KEYS, f"summaries.{label}", path)
    where = "judgements"
    cells = [{"dataset": where, "student": "-", "arm": label, "seed": None, "summary": s}
             for label, s in summaries.items()]
    groups = []
    for label, s in summaries.items():
        metrics = {}
        for m, f in METRICS.items():
            try:
                value = f(s)
            except (KeyError, TypeError):
                value = None
            metrics[m] = spread([value])
        groups.append({"dataset": where, "student": "-", "arm": label, "seeds": [None], "n_per_seed": [s["n"]],
                       "metrics": metrics, "pooled": s})
    comparisons = []
    for i, c in enumerate(d.get("comparisons") or []):
        _require(c, ("a", "b", "n_paired", "unpaired_a", "unpaired_b", "answer", "trace"), f"comparisons[{i}]", path)
        comparisons.append({"dataset": where, "student": "-", "seed": None, "arm_a": c["a"], "arm_b": c["b"],
                            "result": {k: c[k] for k in ("n_paired", "unpaired_a", "unpaired_b", "answer", "trace")}})
    inputs = d.get("inputs") or {}
    name = "tracekd analyze: " + ", ".join(
        f"{label} ({inputs[label]['path']})" if isinstance(inputs.get(label), dict) and "path" in inputs[label]
        else label for label in labels)
    return json_safe({"kind": "analysis", "experiment": name, "arms": labels, "seeds": [None],
                      "trace_definition": None, "cells": cells, "groups": groups, "comparisons": comparisons,
                      "examples": []})


def load_analysis(path: str | Path) -> dict:
    """Read and check an analysis JSON of either form."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=path)
    d = read_json(path)
    if isinstance(d, dict) and "summaries" in d and "groups" not in d:
        d = from_analyze(d, path)
    check_analysis(d, path)
    return d


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
