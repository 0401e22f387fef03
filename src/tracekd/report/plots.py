"""The report's figures, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Each function takes the analysis groups (:class:`tracekd.stats.results.Group`) of one dataset x student
(one group per arm, in arm order) and draws from their numbers only. Arms whose outputs have no trace
get no step bars: their place says ``n/a (no trace)``. Output is deterministic: fixed style, sizes and dpi, and
no date or software version in the PNG metadata, so the same input gives the same bytes.
"""

from __future__ import annotations

import contextlib
import io
from typing import Iterator, Sequence

from ..records import STATUSES
from ..stats.results import NO_TRACE, Group, Spread

DPI = 100
#: Okabe-Ito colours, by arm name; other arm names take the rest in order
ARM_COLOURS = {"vanilla": "#999999", "correct": "#009E73", "incorrect": "#D55E00",
               "incorrect-class": "#E69F00", "incorrect-evidence": "#CC79A7"}
_SPARE = ("#0072B2", "#56B4E9", "#F0E442", "#000000")
STEP_COLOURS = {"class": "#56B4E9", "evidence": "#0072B2", "trace": "#332288"}
STATUS_COLOURS = {"ok": "#1b9e77", "no_trace": "#d95f02", "no_answer": "#7570b3", "unparseable_class": "#e7298a",
                  "unparseable_evidence": "#66a61e", "truncated": "#e6ab02", "empty": "#a6761d",
                  "missing": "#666666"}
#: step name in the report -> (its per-seed metric, its pooled accuracy) of a group
STEP_ACCURACY = {"class": (lambda g: g.metrics.class_, lambda g: g.pooled.accuracy.class_),
                 "evidence": (lambda g: g.metrics.evidence, lambda g: g.pooled.accuracy.evidence_exact),
                 "trace": (lambda g: g.metrics.trace, lambda g: g.pooled.accuracy.trace)}
_STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
          "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.spines.top": False, "axes.spines.right": False,
          "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
          "svg.hashsalt": "tracekd", "path.simplify": True}


def arm_colours(arms: Sequence[str]) -> dict[str, str]:
    """A colour per arm: the fixed one for known arms, the spare ones in order for the rest.

    >>> arm_colours(["correct", "mine"])
    {'correct': '#009E73', 'mine': '#0072B2'}
    """
    spare = iter(_SPARE * (len(arms) // len(_SPARE) + 1))
    return {a: ARM_COLOURS.get(a) or next(spare) for a in arms}


def seed_offsets(k: int, width: float) -> list[float]:
    """Evenly spread x offsets for ``k`` per-seed points within ``width`` (no random jitter).

    >>> seed_offsets(1, 0.4), seed_offsets(3, 0.4)
    ([0.0], [-0.1, 0.0, 0.1])
    """
    if k <= 1:
        return [0.0]
    half = width / 4
    return [round(-half + 2 * half * i / (k - 1), 10) for i in range(k)]


@contextlib.contextmanager
def _style() -> Iterator[None]:
    import matplotlib
    import matplotlib.style

    with matplotlib.style.context("default"), matplotlib.rc_context(rc=_STYLE):
        yield


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def _bars_with_seeds(ax, x: float, width: float, colour: str, metric: Spread, interval: Sequence | None) -> None:
    """A bar at the mean over seeds, the per-seed values as dots, the pooled interval as an error bar."""
    mean = metric.mean
    ax.bar(x, _num(mean), width=width, color=colour, alpha=0.85, edgecolor="black", linewidth=0.6)
    values = metric.values
    for dx, value in zip(seed_offsets(len(values), width), values):
        if value is not None:
            ax.plot(x + dx, value, "o", ms=4.5, mfc="white", mec="black", mew=0.8, zorder=4)
    if interval and interval[0] is not None and interval[1] is not None:
        centre = _num(mean) if mean is not None else (interval[0] + interval[1]) / 2
        ax.errorbar(x, centre, yerr=[[max(0.0, centre - interval[0])], [max(0.0, interval[1] - centre)]],
                    fmt="none", ecolor="black", elinewidth=1.2, capsize=4, zorder=5)


def _legend_handles(extra: list) -> list:
    from matplotlib.lines import Line2D

    return [*extra,
            Line2D([], [], marker="o", ls="none", mfc="white", mec="black", label="one seed"),
            Line2D([], [], color="black", marker="_", ms=8, label="95% Wilson CI (pooled)")]


def answer_accuracy(groups: list[Group], title: str) -> bytes:
    """Answer accuracy per arm: bar = mean over seeds, dots = seeds, error bar = pooled Wilson CI."""
    from matplotlib.patches import Patch

    arms = [g.arm for g in groups]
    colours = arm_colours(arms)
    with _style():
        fig = _figure(max(4.5, 1.2 * len(arms) + 2.2), 3.8)
        ax = fig.add_subplot()
        for i, g in enumerate(groups):
            _bars_with_seeds(ax, i, 0.6, colours[g.arm], g.metrics.answer, g.pooled.accuracy.answer.ci95)
            top = g.pooled.accuracy.answer.ci95[1]
            mean = g.metrics.answer.mean
            if mean is not None:
                ax.text(i, min(1.0, _num(top) if top is not None else mean) + 0.03, f"{mean:.3f}",
                        ha="center", va="bottom", fontsize=9)
        _rate_axes(ax, arms, 1.12, "answer accuracy", title,
                   [Patch(facecolor="#cccccc", edgecolor="black", label="mean over seeds")])
        return _png(fig)


def _rate_axes(ax, labels: list[str], top: float, ylabel: str, title: str, handles: list) -> None:
    """A rate plot's frame: ``labels`` along x, 0-1 on y with headroom to ``top``, a light horizontal grid
    behind the bars, the legend outside on the right."""
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, top)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(handles=_legend_handles(handles), loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def step_accuracy(groups: list[Group], title: str) -> bytes:
    """Class, evidence (exact set) and whole-trace accuracy per arm, drawn like :func:`answer_accuracy`."""
    from matplotlib.patches import Patch

    steps = list(STEP_ACCURACY)
    width = 0.26
    with _style():
        fig = _figure(max(5.5, 1.5 * len(groups) + 2.8), 3.8)
        ax = fig.add_subplot()
        for i, g in enumerate(groups):
            if not g.pooled.has_trace:
                ax.text(i, 0.05, NO_TRACE, ha="center", va="bottom", fontsize=9, color="#444444")
                continue
            for s, step in enumerate(steps):
                x = i + (s - 1) * width
                metric, pooled = STEP_ACCURACY[step]
                _bars_with_seeds(ax, x, width * 0.92, STEP_COLOURS[step], metric(g), pooled(g).ci95)
        _rate_axes(ax, [g.arm for g in groups], 1.08, "step accuracy", title,
                   [Patch(facecolor=STEP_COLOURS[s], edgecolor="black", label=f"{s} (mean over seeds)")
                    for s in steps])
        return _png(fig)


def step_answer_tables(groups: list[Group], title: str) -> bytes:
    """The step x answer 2x2 tables (pooled over seeds) as annotated heatmaps: a row per step, a column per arm."""
    steps = list(STEP_ACCURACY)
    k = len(groups)
    with _style():
        fig = _figure(2.35 * k + 1.3, 2.15 * len(steps) + 0.9)
        axes = fig.subplots(len(steps), k, squeeze=False)
        image = None
        for c, g in enumerate(groups):
            for r, step in enumerate(steps):
                ax = axes[r][c]
                t = g.pooled.steps[step].table
                counts = [[t.both, t.step_only], [t.answer_only, t.neither]]
                n = sum(map(sum, counts))
                share = [[v / n if n else 0.0 for v in row] for row in counts]
                image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
                for i in range(2):
                    for j in range(2):
                        pct = f"{100 * share[i][j]:.1f}%" if n else "-"
                        ax.text(j, i, f"{counts[i][j]}\n{pct}", ha="center", va="center", fontsize=9,
                                color="white" if share[i][j] > 0.55 else "black")
                ax.set_xticks([0, 1], ["answer right", "answer wrong"] if r == len(steps) - 1 else ["", ""])
                ax.set_yticks([0, 1], [f"{step} right", f"{step} wrong"] if c == 0 else ["", ""])
                ax.tick_params(length=0)
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if r == 0:
                    ax.set_title(f"{g.arm} (n={n})" + ("" if g.pooled.has_trace else f"\n{NO_TRACE}"))
        if image is not None:
            fig.colorbar(image, ax=axes, shrink=0.6, label="share of items")
        fig.suptitle(title)
        return _png(fig)


def per_class(groups: list[Group], classes: list[str], title: str) -> bytes:
    """Answer and trace accuracy per gold class (pooled over seeds), grouped bars per arm."""
    from matplotlib.patches import Patch

    arms = [g.arm for g in groups]
    colours = arm_colours(arms)
    k = len(arms)
    width = 0.8 / max(1, k)
    with _style():
        fig = _figure(min(11.5, max(6.5, 0.3 * k * len(classes) + 2.5)), 6.4)
        axes = fig.subplots(2, 1, sharex=True)
        for ax, measure in zip(axes, ("answer", "trace")):
            for a, g in enumerate(groups):
                pc = g.pooled.per_class
                xs = [c + (a - (k - 1) / 2) * width for c in range(len(classes))]
                ys = [_num(getattr(pc[cl], f"{measure}_accuracy")) if cl in pc else float("nan") for cl in classes]
                ax.bar(xs, ys, width=width * 0.95, color=colours[g.arm], edgecolor="black", linewidth=0.4)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel(f"{measure} accuracy")
            ax.grid(axis="y", color="#dddddd", linewidth=0.6)
            ax.set_axisbelow(True)
        n_by_class = {cl: max((g.pooled.per_class[cl].n for g in groups if cl in g.pooled.per_class), default=0)
                      for cl in classes}
        if len(classes) > 5 or max((len(cl) for cl in classes), default=0) * len(classes) > 60:  # would overlap
            axes[1].set_xticks(range(len(classes)), [f"{cl} (n={n_by_class[cl]})" for cl in classes],
                               rotation=30, ha="right", rotation_mode="anchor")
        else:
            axes[1].set_xticks(range(len(classes)), [f"{cl}\n(n={n_by_class[cl]})" for cl in classes])
        axes[0].legend(handles=[Patch(facecolor=colours[a], edgecolor="black", label=a) for a in arms],
                       loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        axes[0].set_title(title)
        return _png(fig)


def parse_status(groups: list[Group], title: str) -> bytes:
    """Parse-status counts per arm (pooled over seeds) as stacked horizontal bars."""
    statuses = [s for s in STATUSES if any(g.pooled.status.get(s, 0) for g in groups)]
    statuses += sorted({s for g in groups for s, c in g.pooled.status.items() if c and s not in STATUSES})
    spare = iter(_SPARE * 4)
    colours = {s: STATUS_COLOURS.get(s) or next(spare) for s in statuses}
    with _style():
        fig = _figure(8.0, 1.6 + 0.55 * len(groups))
        ax = fig.add_subplot()
        for i, g in enumerate(groups):
            left = 0
            total = g.pooled.n or 1
            for s in statuses:
                c = g.pooled.status.get(s, 0)
                if not c:
                    continue
                ax.barh(i, c, left=left, color=colours[s], edgecolor="white", linewidth=0.6, height=0.6)
                if c / total >= 0.06:
                    ax.text(left + c / 2, i, str(c), ha="center", va="center", fontsize=8,
                            color="white" if s in ("ok", "no_answer", "unparseable_class") else "black")
                left += c
        ax.set_yticks(range(len(groups)), [g.arm for g in groups])
        ax.invert_yaxis()
        ax.set_xlabel("generations (all seeds)")
        ax.set_title(title)
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(facecolor=colours[s], label=s) for s in statuses],
                  loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _png(fig)
