"""Step-vs-answer 2x2 tables and their tests, Wilson intervals, McNemar's test (SciPy underneath).

A table's rows are step correct / step wrong and its columns answer correct / answer wrong::

                 answer ok   answer wrong
    step ok        both        step_only
    step wrong   answer_only    neither

Undefined statistics (a zero row or column, no items) are ``nan`` - written as JSON ``null`` - with
a ``note`` saying why; nothing here raises on a degenerate table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

NAN = float("nan")


@dataclass(frozen=True)
class Table2x2:
    """Counts of step-correct x answer-correct (``a = both``, ``b = step_only``, ...)."""

    both: int
    step_only: int
    answer_only: int
    neither: int

    @property
    def n(self) -> int:
        return self.both + self.step_only + self.answer_only + self.neither

    def rows(self) -> list[list[int]]:
        """``[[both, step_only], [answer_only, neither]]``."""
        return [[self.both, self.step_only], [self.answer_only, self.neither]]

    def to_dict(self) -> dict:
        return {"both": self.both, "step_only": self.step_only,
                "answer_only": self.answer_only, "neither": self.neither}


def _ok(x: bool | None) -> bool:
    return bool(x) if x is not None else False


def table_2x2(step: Sequence[bool | None], answer: Sequence[bool | None]) -> Table2x2:
    """Cross-tabulate per-item step and answer verdicts (``None`` counts as not correct).

    >>> table_2x2([True, True, False, None], [True, False, True, False])
    Table2x2(both=1, step_only=1, answer_only=1, neither=1)
    """
    if len(step) != len(answer):
        raise ValueError(f"step and answer verdicts differ in length ({len(step)} != {len(answer)})")
    counts = [[0, 0], [0, 0]]
    for s, a in zip(step, answer):
        counts[0 if _ok(s) else 1][0 if _ok(a) else 1] += 1
    return Table2x2(counts[0][0], counts[0][1], counts[1][0], counts[1][1])


def _ratio(k: float, n: float) -> float:
    return k / n if n else NAN


def association(t: Table2x2) -> dict:
    """Every statistic of a step-vs-answer table.

    ``chi2``/``p``: Pearson's chi-square (1 df) without continuity correction; ``chi2_yates``/
    ``p_yates``: with Yates' correction (SciPy's default); ``phi``: signed, ``(ad - bc) /
    sqrt(row and column sums)``, positive when step and answer go together; ``fisher_p``: Fisher's
    exact test, two-sided (prefer it when ``min_expected`` < 5); ``odds_ratio``: the sample odds
    ratio ``ad / bc``; ``p_answer_given_step`` = both / (both + step_only);
    ``p_answer_given_not_step`` = answer_only / (answer_only + neither); ``both_share`` = both / n.

    >>> r = association(Table2x2(174, 187, 244, 345))
    >>> round(r["chi2"], 2), round(r["p"], 4), round(r["phi"], 4), r["note"]
    (4.17, 0.0412, 0.0662, None)
    >>> r = association(Table2x2(5, 5, 0, 0))   # nobody got the step wrong
    >>> r["chi2"], r["phi"], r["note"]
    (nan, nan, 'a row or column of the table is empty: no test of association is possible')
    """
    a, b, c, d = t.both, t.step_only, t.answer_only, t.neither
    n = t.n
    rows, cols = (a + b, c + d), (a + c, b + d)
    out: dict = {
        "table": t.to_dict(),
        "n": n,
        "chi2": NAN, "p": NAN, "chi2_yates": NAN, "p_yates": NAN, "phi": NAN,
        "fisher_p": NAN, "odds_ratio": NAN,
        "p_answer_given_step": _ratio(a, a + b),
        "p_answer_given_not_step": _ratio(c, c + d),
        "both_share": _ratio(a, n),
        "min_expected": NAN,
        "note": None,
    }
    if n == 0:
        out["note"] = "no items"
        return out
    out["min_expected"] = min(r * k for r in rows for k in cols) / n
    # Fisher's exact test is defined for any table (p = 1 when a margin is empty).
    fisher = stats.fisher_exact(t.rows(), alternative="two-sided")
    out["fisher_p"] = float(fisher.pvalue)
    if b * c:
        out["odds_ratio"] = float(fisher.statistic)
    elif a * d:
        out["odds_ratio"] = math.inf
    if 0 in rows or 0 in cols:
        out["note"] = "a row or column of the table is empty: no test of association is possible"
        return out
    plain = stats.chi2_contingency(t.rows(), correction=False)
    yates = stats.chi2_contingency(t.rows(), correction=True)
    out.update(
        chi2=float(plain.statistic), p=float(plain.pvalue),
        chi2_yates=float(yates.statistic), p_yates=float(yates.pvalue),
        phi=(a * d - b * c) / math.sqrt(rows[0] * rows[1] * cols[0] * cols[1]),
    )
    if out["min_expected"] < 5:
        out["note"] = "an expected count is below 5: prefer Fisher's exact p"
    return out


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for ``k`` successes in ``n`` trials (``(nan, nan)`` when n = 0).

    >>> [round(x, 4) for x in wilson(3, 10)]
    [0.1078, 0.6032]
    >>> wilson(0, 0)
    (nan, nan)
    """
    if n == 0:
        return (NAN, NAN)
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def mcnemar(a: Sequence[bool | None], b: Sequence[bool | None]) -> dict:
    """McNemar's test between two verdict sequences on the same items (paired by position).

    ``b01``: items wrong in ``a`` and right in ``b``; ``b10``: right in ``a``, wrong in ``b``.
    ``p_exact``: two-sided exact binomial test of ``b01`` against ``b01 + b10`` at 1/2;
    ``chi2``/``p``: chi-square with continuity correction, ``max(0, |b01 - b10| - 1)^2 /
    (b01 + b10)``, 1 df. ``None`` counts as not correct.

    >>> r = mcnemar([True, True, True, False, False], [False, False, True, True, False])
    >>> r["b01"], r["b10"], r["p_exact"], r["chi2"]
    (1, 2, 1.0, 0.0)
    """
    if len(a) != len(b):
        raise ValueError(f"paired verdicts differ in length ({len(a)} != {len(b)})")
    xa = np.array([_ok(x) for x in a], dtype=bool)
    xb = np.array([_ok(x) for x in b], dtype=bool)
    b01 = int(np.sum(~xa & xb))
    b10 = int(np.sum(xa & ~xb))
    n = len(xa)
    disc = b01 + b10
    out: dict = {
        "n": n,
        "both": int(np.sum(xa & xb)), "neither": int(np.sum(~xa & ~xb)),
        "b01": b01, "b10": b10,
        "accuracy_a": _ratio(int(xa.sum()), n), "accuracy_b": _ratio(int(xb.sum()), n),
        "difference": _ratio(b01 - b10, n),
        "p_exact": NAN, "chi2": NAN, "p": NAN, "note": None,
    }
    if disc == 0:
        out["p_exact"] = 1.0 if n else NAN
        out["note"] = "no discordant pairs" if n else "no items"
        return out
    out["p_exact"] = float(stats.binomtest(b01, disc, 0.5, alternative="two-sided").pvalue)
    chi2 = max(0, abs(b01 - b10) - 1) ** 2 / disc
    out["chi2"] = float(chi2)
    out["p"] = float(stats.chi2.sf(chi2, 1))
    return out
