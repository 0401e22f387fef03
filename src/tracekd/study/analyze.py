"""Statistics and plots of a study's ratings.

The unit of analysis is the participant: each participant's ratings of one statement within one condition
are averaged first (their items are repeated measures of the same person), so every test compares
independent observations. Per condition and Likert item: n (participants), ratings, mean, SD, median and a
bootstrap 95% CI of the mean (SciPy, seeded). Scales (e.g. interpretability = predictability +
understandability + faithfulness; reverse-keyed items flipped) get the same, plus Cronbach's alpha
(pingouin). Between-subjects: Kruskal-Wallis across conditions and pairwise Mann-Whitney U (SciPy),
Holm-corrected (pingouin), with rank-biserial r (positive: the first condition rates higher). Within-subjects:
Friedman and pairwise Wilcoxon signed-rank. Krippendorff's alpha (ordinal) per condition and statement over
the items that several participants rated. Excluded participants (failed attention check, too fast,
incomplete) are left out and counted.
"""

from __future__ import annotations

import io
import itertools
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ..io import atomic_write, manifest, sha256_file, write_json, write_text
from .config import StudyConfig


def rank_biserial(u1: float, n1: int, n2: int) -> float:
    """Rank-biserial correlation from the Mann-Whitney U of the first sample: P(x > y) - P(x < y).

    >>> rank_biserial(9.0, 3, 3)
    1.0
    >>> rank_biserial(4.5, 3, 3)
    0.0
    """
    return 2.0 * u1 / (n1 * n2) - 1.0


def describe(values, *, n_boot: int, seed: int) -> dict:
    """n, mean, SD, median and a percentile-bootstrap 95% CI of the mean.

    >>> d = describe([1, 2, 3, 4, 5], n_boot=500, seed=0)
    >>> d["n"], d["mean"], d["median"], round(d["sd"], 3), d["ci_low"] < 3 < d["ci_high"]
    (5, 3.0, 3.0, 1.581, True)
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    out = {"n": int(x.size), "mean": None, "sd": None, "median": None, "ci_low": None, "ci_high": None}
    if x.size == 0:
        return out
    out.update(mean=float(x.mean()), median=float(np.median(x)), sd=float(x.std(ddof=1)) if x.size > 1 else None)
    if x.size > 1 and np.ptp(x) > 0:
        res = stats.bootstrap((x,), np.mean, n_resamples=n_boot, confidence_level=0.95, method="percentile",
                              rng=np.random.default_rng(seed))
        out.update(ci_low=float(res.confidence_interval.low), ci_high=float(res.confidence_interval.high))
    elif x.size > 1:
        out.update(ci_low=float(x[0]), ci_high=float(x[0]))
    return out


def _clean(x):
    """JSON-safe: NaN and infinities become None, numpy scalars plain numbers."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _compare(groups: dict[str, dict[str, float]], design: str) -> dict:
    """Omnibus and pairwise tests over ``groups`` (condition -> participant -> score)."""
    import pingouin as pg
    from scipy import stats

    names = [n for n, g in groups.items() if len(g) > 0]
    out: dict = {"omnibus": None, "pairwise": []}
    if len(names) < 2:
        return out
    if design == "between":
        samples = [list(groups[n].values()) for n in names]
        if all(len(s) >= 1 for s in samples) and len({v for s in samples for v in s}) > 1:
            h, p = stats.kruskal(*samples)
            out["omnibus"] = {"test": "kruskal-wallis", "statistic": h, "df": len(names) - 1, "p": p}
        pairs = []
        for a, b in itertools.combinations(names, 2):
            x, y = list(groups[a].values()), list(groups[b].values())
            u, p = stats.mannwhitneyu(x, y, alternative="two-sided")
            pairs.append({"a": a, "b": b, "test": "mann-whitney-u", "n_a": len(x), "n_b": len(y), "U": u, "p": p,
                          "effect": "rank-biserial", "r": rank_biserial(u, len(x), len(y)),
                          "mean_a": float(np.mean(x)), "mean_b": float(np.mean(y))})
    else:
        common = sorted(set.intersection(*(set(groups[n]) for n in names)))
        if len(common) >= 2 and len(names) >= 3:
            f, p = stats.friedmanchisquare(*[[groups[n][pid] for pid in common] for n in names])
            out["omnibus"] = {"test": "friedman", "statistic": f, "df": len(names) - 1, "p": p, "n": len(common)}
        pairs = []
        for a, b in itertools.combinations(names, 2):
            x = np.array([groups[a][pid] for pid in common])
            y = np.array([groups[b][pid] for pid in common])
            d = x - y
            if len(common) < 2 or not np.any(d):
                pairs.append({"a": a, "b": b, "test": "wilcoxon", "n": len(common), "W": None, "p": None,
                              "effect": "matched-pairs rank-biserial", "r": 0.0 if len(common) else None,
                              "mean_a": float(x.mean()) if len(x) else None,
                              "mean_b": float(y.mean()) if len(y) else None})
                continue
            w, p = stats.wilcoxon(x, y)
            nz = d[d != 0]
            ranks = stats.rankdata(np.abs(nz))
            r = (ranks[nz > 0].sum() - ranks[nz < 0].sum()) / ranks.sum()
            pairs.append({"a": a, "b": b, "test": "wilcoxon", "n": len(common), "W": w, "p": p,
                          "effect": "matched-pairs rank-biserial", "r": r,
                          "mean_a": float(x.mean()), "mean_b": float(y.mean())})
    ps = [pr["p"] for pr in pairs if pr["p"] is not None and math.isfinite(pr["p"])]
    if ps:
        adj = iter(pg.multicomp(ps, method="holm")[1])
        for pr in pairs:
            pr["p_holm"] = next(adj) if pr["p"] is not None and math.isfinite(pr["p"]) else None
    out["pairwise"] = pairs
    return out


def _krippendorff(ratings: list[dict], points: int) -> dict:
    """Ordinal Krippendorff's alpha over items (units) x participants (raters); None if undefined."""
    import krippendorff

    raters = sorted({r["participant"] for r in ratings})
    units = sorted({r["item_id"] for r in ratings})
    per_unit = Counter(r["item_id"] for r in ratings)
    multi = [u for u in units if per_unit[u] >= 2]
    out = {"units": len(units), "units_with_several_raters": len(multi), "raters": len(raters), "alpha": None}
    if not multi:
        return out
    ri, ui = {p: i for i, p in enumerate(raters)}, {u: j for j, u in enumerate(multi)}
    data = np.full((len(raters), len(multi)), np.nan)
    for r in ratings:
        if r["item_id"] in ui:
            data[ri[r["participant"]], ui[r["item_id"]]] = r["value"]
    if len(np.unique(data[~np.isnan(data)])) < 2:
        return out  # one value everywhere: no variance to agree on
    try:
        out["alpha"] = float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal",
                                                value_domain=list(range(1, points + 1))))
    except (ValueError, ZeroDivisionError):
        pass
    return out


def analyze(responses: list[dict], participants: list[dict], cfg: StudyConfig, *,
            apply_exclusions: bool = True, n_boot: int = 2000, seed: int = 0) -> dict:
    """The analysis dict (JSON-safe) of exported responses and participants."""
    import pandas as pd
    import pingouin as pg

    flags = ("failed_attention", "too_fast", "incomplete")
    excl = {"applied": apply_exclusions, "participants": len(participants),
            **{f: sum(1 for p in participants if p.get(f)) for f in flags},
            "excluded": sum(1 for p in participants if p.get("excluded"))}
    dropped = {p["participant"] for p in participants if p.get("excluded")} if apply_exclusions else set()
    known = {p["participant"] for p in participants}
    likert = [r for r in responses if r.get("kind", "likert") == "likert" and r["participant"] in known
              and r["participant"] not in dropped]
    excl["analysed"] = len(known - dropped)
    conditions = [c.name for c in cfg.conditions]
    statements = [it.id for it in cfg.likert_items]
    reverse = {it.id for it in cfg.likert_items if it.reverse}
    scales = cfg.scales()

    df = pd.DataFrame(likert, columns=["participant", "condition", "item_id", "statement", "value"])
    # participant-level score per condition x statement (mean over that participant's items)
    person: dict[tuple[str, str], dict[str, float]] = {}
    for (cond, stmt, pid), mean in df.groupby(["condition", "statement", "participant"])["value"].mean().items():
        person.setdefault((cond, stmt), {})[pid] = float(mean)

    def scores(cond: str, stmt: str) -> dict[str, float]:
        return person.get((cond, stmt), {})

    items_table, tests_items, agreement = [], {}, []
    for stmt in statements:
        groups = {c: scores(c, stmt) for c in conditions}
        for k, c in enumerate(conditions):
            sub = df[(df.condition == c) & (df.statement == stmt)]
            row = {"condition": c, "statement": stmt, "ratings": int(len(sub)),
                   **describe(list(groups[c].values()), n_boot=n_boot, seed=seed + k),
                   "distribution": {str(v): int((sub.value == v).sum()) for v in range(1, cfg.points + 1)}}
            items_table.append(row)
            agreement.append({"condition": c, "statement": stmt,
                              **_krippendorff(sub.to_dict("records"), cfg.points)})
        tests_items[stmt] = _compare(groups, cfg.design)

    scale_table, tests_scales, alphas = [], {}, {}
    for scale, members in scales.items():
        groups: dict[str, dict[str, float]] = {}
        wide_all = []
        for k, c in enumerate(conditions):
            cols = {}
            for s in members:
                sc = scores(c, s)
                cols[s] = {p: (cfg.points + 1 - v if s in reverse else v) for p, v in sc.items()}
            wide = pd.DataFrame(cols)
            wide_all.append(wide)
            groups[c] = wide.mean(axis=1).dropna().to_dict() if len(wide) else {}
            scale_table.append({"condition": c, "scale": scale, "items": members,
                                **describe(list(groups[c].values()), n_boot=n_boot, seed=seed + 100 + k)})
        tests_scales[scale] = _compare(groups, cfg.design)
        wide = pd.concat(wide_all).dropna() if wide_all else pd.DataFrame()
        if len(members) >= 2 and len(wide) >= 3 and float(wide.var().sum()) > 0:
            a, ci = pg.cronbach_alpha(data=wide)
            alphas[scale] = {"alpha": a, "ci_low": ci[0], "ci_high": ci[1], "n": int(len(wide)),
                             "items": members}
        else:
            alphas[scale] = {"alpha": None, "n": int(len(wide)), "items": members,
                             "note": "one item" if len(members) < 2 else "too few complete rows"}

    return _clean({"kind": "study-analysis", "design": cfg.design, "conditions": conditions,
                   "labels": {c.name: c.label or c.name for c in cfg.conditions},
                   "statements": {it.id: it.text for it in cfg.likert_items}, "scales": scales,
                   "points": cfg.points, "scale_labels": cfg.scale_labels, "exclusions": excl,
                   "items": items_table, "scale_scores": scale_table, "cronbach_alpha": alphas,
                   "tests": {"statements": tests_items, "scales": tests_scales},
                   "krippendorff_alpha": agreement, "bootstrap": {"resamples": n_boot, "seed": seed}})


# ------------------------------------------------------------------------------------------ output
def _f(x, nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}" if abs(x) >= 10 ** -nd or x == 0 else f"{x:.1e}"
    return str(x)


def markdown_tables(a: dict) -> str:
    """The analysis as Markdown tables."""
    e = a["exclusions"]
    lines = [f"Participants: {e['participants']}; excluded {e['excluded']} (failed attention check "
             f"{e['failed_attention']}, too fast {e['too_fast']}, incomplete {e['incomplete']}; a participant "
             f"can have several reasons){'' if e['applied'] else ' - exclusions NOT applied'}; analysed "
             f"{e['analysed']}.", ""]
    lines += ["| scale | condition | n | mean | SD | median | 95% CI |", "|---|---|---:|---:|---:|---:|---|"]
    for r in a["scale_scores"]:
        lines.append(f"| {r['scale']} | {r['condition']} | {r['n']} | {_f(r['mean'])} | {_f(r['sd'])} | "
                     f"{_f(r['median'])} | [{_f(r['ci_low'])}, {_f(r['ci_high'])}] |")
    lines += ["", "| scale | Cronbach's alpha | 95% CI | n |", "|---|---:|---|---:|"]
    for s, r in a["cronbach_alpha"].items():
        ci = f"[{_f(r.get('ci_low'))}, {_f(r.get('ci_high'))}]" if r["alpha"] is not None else r.get("note", "")
        lines.append(f"| {s} | {_f(r['alpha'])} | {ci} | {r['n']} |")
    lines += ["", "| statement | condition | n | ratings | mean | SD | median | 95% CI | Krippendorff's alpha |",
              "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    kr = {(k["condition"], k["statement"]): k for k in a["krippendorff_alpha"]}
    for r in a["items"]:
        k = kr[(r["condition"], r["statement"])]
        lines.append(f"| {r['statement']} | {r['condition']} | {r['n']} | {r['ratings']} | {_f(r['mean'])} | "
                     f"{_f(r['sd'])} | {_f(r['median'])} | [{_f(r['ci_low'])}, {_f(r['ci_high'])}] | "
                     f"{_f(k['alpha'])} |")
    for kind in ("scales", "statements"):
        lines += ["", f"Tests per {kind[:-1]}:", "",
                  "| " + kind[:-1] + " | test | statistic | p | pair | effect r | p | p (Holm) |",
                  "|---|---|---:|---:|---|---:|---:|---:|"]
        for name, t in a["tests"][kind].items():
            o = t["omnibus"] or {}
            head = f"| {name} | {o.get('test', '-')} | {_f(o.get('statistic'))} | {_f(o.get('p'), 3)} |"
            if not t["pairwise"]:
                lines.append(head + " - | - | - | - |")
            for i, pr in enumerate(t["pairwise"]):
                lines.append((head if i == 0 else "| | | | |") +
                             f" {pr['a']} vs {pr['b']} | {_f(pr['r'])} | {_f(pr['p'], 3)} | "
                             f"{_f(pr.get('p_holm'), 3)} |")
    return "\n".join(lines) + "\n"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in threads

    return Figure(figsize=(width, height), dpi=100)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version or date: same data, same bytes
    return buf.getvalue()


def plot_likert(a: dict) -> bytes:
    """Diverging stacked bars: for each statement, one bar per condition, centred on the neutral point."""
    import matplotlib

    statements, conditions, k = list(a["statements"]), a["conditions"], a["points"]
    dist = {(r["condition"], r["statement"]): r["distribution"] for r in a["items"]}
    colors = matplotlib.colormaps["RdBu"](np.linspace(0.1, 0.9, k))
    if k % 2:
        colors[k // 2] = (0.75, 0.75, 0.75, 1.0)  # the neutral point in grey, visible on white
    fig = _figure(8, 1.0 + 0.45 * len(conditions) * len(statements))
    axes = fig.subplots(len(statements), 1, squeeze=False, sharex=True)
    for ax, stmt in zip(axes[:, 0], statements):
        for y, c in enumerate(conditions):
            counts = np.array([dist[(c, stmt)][str(point)] for point in range(1, k + 1)], dtype=float)
            share = counts / counts.sum() * 100 if counts.sum() else counts
            mid = k // 2
            left = -share[:mid].sum() - (share[mid] / 2 if k % 2 else 0)
            for point in range(k):
                ax.barh(y, share[point], left=left, color=colors[point], edgecolor="white", height=0.7,
                        label=a["scale_labels"][point] if y == 0 else None)
                left += share[point]
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(conditions)), conditions)
        ax.invert_yaxis()
        ax.set_title(stmt, fontsize=10, loc="left")
    axes[-1, 0].set_xlabel("% of ratings (left: disagree, right: agree)")
    handles, lab = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, lab, loc="lower center", ncol=k, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _png(fig)


def plot_scales(a: dict) -> bytes:
    """Scale means per condition with bootstrap 95% CIs."""
    scales, conditions = list(a["scales"]), a["conditions"]
    fig = _figure(3.2 * len(scales) + 1, 3.4)
    axes = fig.subplots(1, len(scales), squeeze=False)
    for ax, scale in zip(axes[0], scales):
        rows = {r["condition"]: r for r in a["scale_scores"] if r["scale"] == scale}
        for x, c in enumerate(conditions):
            r = rows[c]
            if r["mean"] is None:
                continue
            lo = r["mean"] - r["ci_low"] if r["ci_low"] is not None else 0
            hi = r["ci_high"] - r["mean"] if r["ci_high"] is not None else 0
            ax.errorbar(x, r["mean"], yerr=[[lo], [hi]], fmt="o", capsize=4, color="C0")
        ax.set_xticks(range(len(conditions)), conditions, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(1, a["points"])
        ax.set_title(scale, fontsize=10)
        ax.set_ylabel("mean (95% CI)")
    fig.tight_layout()
    return _png(fig)


def write_analysis(a: dict, out: str | Path, *, plots: bool = True, **manifest_more) -> list[Path]:
    """``analysis.json``, ``tables.md``, ``plots/likert.png``, ``plots/scales.png`` and ``manifest.json``."""
    out = Path(out)
    written = [out / "analysis.json", out / "tables.md"]
    write_json(written[0], a)
    write_text(written[1], markdown_tables(a))
    if plots:
        for name, fn in (("likert", plot_likert), ("scales", plot_scales)):
            path = out / "plots" / f"{name}.png"
            with atomic_write(path, "wb") as f:
                f.write(fn(a))
            written.append(path)
    m = manifest(kind="study-analysis", config={"exclusions_applied": a["exclusions"]["applied"],
                                                "bootstrap": a["bootstrap"]},
                 seed=a["bootstrap"]["seed"], files={str(p.relative_to(out)): sha256_file(p) for p in written},
                 **manifest_more)
    write_json(out / "manifest.json", m)
    return written
