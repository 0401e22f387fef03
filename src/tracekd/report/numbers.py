"""How the report writes numbers: one rounding rule per kind of number, ``n/a`` for undefined ones.

Markdown and HTML both use these, so the two show the same strings; the tests parse them back.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

NA = "n/a"


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def prop(x: float | None) -> str:
    """A proportion (accuracy, conditional probability, share) to 3 decimals.

    >>> prop(0.41234), prop(1), prop(None)
    ('0.412', '1.000', 'n/a')
    """
    return NA if _missing(x) else f"{x:.3f}"


def stat(x: float | None) -> str:
    """A test statistic, phi or SD to 3 decimals.

    >>> stat(4.1702), stat(-0.06619), stat(float("nan"))
    ('4.170', '-0.066', 'n/a')
    """
    return NA if _missing(x) else f"{x:.3f}"


def pval(x: float | None) -> str:
    """A p-value: 4 decimals, or 3 significant digits in e-notation below 0.0001.

    >>> pval(0.04121), pval(1.0), pval(3.2e-07), pval(0.0), pval(None)
    ('0.0412', '1.0000', '3.20e-07', '0', 'n/a')
    """
    if _missing(x):
        return NA
    if x == 0:
        return "0"
    return f"{x:.4f}" if x >= 1e-4 else f"{x:.2e}"


def ci(interval: Iterable[float | None] | None) -> str:
    """A 95% interval.

    >>> ci([0.1078, 0.6032]), ci([None, None]), ci(None)
    ('[0.108, 0.603]', 'n/a', 'n/a')
    """
    lo, hi = interval if interval is not None else (None, None)
    return NA if _missing(lo) or _missing(hi) else f"[{prop(lo)}, {prop(hi)}]"


def props(values: Iterable[float | None]) -> str:
    """Several proportions (one per seed), comma-separated.

    >>> props([0.5, None, 0.75])
    '0.500, n/a, 0.750'
    """
    return ", ".join(prop(v) for v in values)


def seed_label(seed: Any) -> str:
    """A seed as shown (``-`` when the input has no seeds, as from ``tracekd analyze``).

    >>> seed_label(0), seed_label(None)
    ('0', '-')
    """
    return "-" if seed is None else str(seed)
