"""Participants per group a study needs (statsmodels power analysis).

Two-group comparisons: the two-sample t-test (``TTestIndPower``); the Mann-Whitney U test needs the t-test's
n divided by its asymptotic relative efficiency (3/pi for normal data, 0.864 at worst for any
distribution: the conservative default). With ``comparisons`` > 1 the pairwise tests share alpha
(Bonferroni, which Holm never needs more than). ``anova`` sizes the omnibus test over ``groups`` groups
from Cohen's f (``FTestAnovaPower``).
"""

from __future__ import annotations

import math

ARE = {"normal": 3 / math.pi, "worst": 108 / 125}


def per_group(effect_size: float, *, alpha: float = 0.05, power: float = 0.8, test: str = "mwu",
              comparisons: int = 1, are: str = "worst") -> dict:
    """Participants per group for a two-sided two-group test of standardised effect ``effect_size`` (d).

    >>> r = per_group(0.8, test="t")
    >>> r["n_per_group"], round(r["n_exact"], 1)
    (26, 25.5)
    >>> per_group(0.8, test="mwu")["n_per_group"] > 26
    True
    """
    from statsmodels.stats.power import TTestIndPower

    if effect_size <= 0:
        raise ValueError("effect size must be positive")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError("alpha and power must be between 0 and 1")
    a = alpha / max(1, comparisons)
    n = float(TTestIndPower().solve_power(effect_size=effect_size, alpha=a, power=power, ratio=1.0,
                                          alternative="two-sided"))
    if test == "mwu":
        n /= ARE[are]
    elif test != "t":
        raise ValueError(f"unknown test {test!r} (t, mwu)")
    return {"test": test, "effect_size": effect_size, "alpha": alpha, "alpha_per_test": a, "power": power,
            "comparisons": comparisons, "are": ARE[are] if test == "mwu" else None, "n_exact": n,
            "n_per_group": math.ceil(n)}


def anova_per_group(f: float, groups: int, *, alpha: float = 0.05, power: float = 0.8) -> dict:
    """Participants per group for a one-way ANOVA over ``groups`` groups with Cohen's ``f``.

    >>> anova_per_group(0.25, 4)["n_per_group"]
    45
    """
    from statsmodels.stats.power import FTestAnovaPower

    total = float(FTestAnovaPower().solve_power(effect_size=f, alpha=alpha, power=power, k_groups=groups))
    return {"test": "anova", "effect_size": f, "groups": groups, "alpha": alpha, "power": power,
            "n_total_exact": total, "n_per_group": math.ceil(total / groups)}


def achieved_power(effect_size: float, n_per_group: int, *, alpha: float = 0.05, test: str = "mwu",
                   comparisons: int = 1, are: str = "worst") -> float:
    """Power of the two-group test with ``n_per_group`` participants per group.

    >>> round(achieved_power(0.8, 26, test="t"), 2)
    0.81
    """
    from statsmodels.stats.power import TTestIndPower

    n_eff = n_per_group * (ARE[are] if test == "mwu" else 1.0)
    return float(TTestIndPower().power(effect_size=effect_size, nobs1=n_eff, alpha=alpha / max(1, comparisons),
                                       ratio=1.0, alternative="two-sided"))
