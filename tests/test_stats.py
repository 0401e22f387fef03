"""Contingency statistics against independent hand formulas; summaries and comparisons."""

from __future__ import annotations

import json
import math
import re

import pytest

from tracekd.errors import ConfigError, DataError
from tracekd.records import STATUSES, Judgement
from tracekd.stats.contingency import Table2x2, association, mcnemar, table_2x2, wilson
from tracekd.stats.summary import compare, format_compare, format_summary, json_safe, summarize

TOL = 1e-6
Z95 = 1.959963984540054  # the 97.5% normal quantile


# ----------------------------------------------------------------- independent hand formulas

def chi2_sf_1df(x: float) -> float:
    """P(chi-square with 1 df > x) = erfc(sqrt(x / 2))."""
    return math.erfc(math.sqrt(x / 2))


def hand_chi2(a, b, c, d, yates=False):
    n = a + b + c + d
    diff = abs(a * d - b * c)
    if yates:
        diff = max(0.0, diff - n / 2)
    return n * diff ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))


def hand_fisher(a, b, c, d):
    """Two-sided Fisher: sum of hypergeometric probabilities of tables no more likely than this."""
    r1, c1, n = a + b, a + c, a + b + c + d

    def prob(x):
        return math.comb(c1, x) * math.comb(n - c1, r1 - x) / math.comb(n, r1)

    p0 = prob(a)
    lo, hi = max(0, r1 + c1 - n), min(r1, c1)
    return min(1.0, sum(prob(x) for x in range(lo, hi + 1) if prob(x) <= p0 * (1 + 1e-7)))


def hand_wilson(k, n, z=Z95):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def hand_binom_two_sided(k, n):
    """Exact two-sided binomial p at 1/2 (symmetric: twice the smaller tail)."""
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


# ----------------------------------------------------------------- the issue's example table

def test_association_of_the_issue_table():
    a, b, c, d = 174, 187, 244, 345
    r = association(Table2x2(a, b, c, d))
    n = 950
    assert r["n"] == n
    assert r["table"] == {"both": a, "step_only": b, "answer_only": c, "neither": d}
    assert round(r["chi2"], 2) == 4.17
    assert r["chi2"] == pytest.approx(hand_chi2(a, b, c, d), abs=TOL)
    assert r["p"] == pytest.approx(chi2_sf_1df(hand_chi2(a, b, c, d)), abs=TOL)
    assert r["chi2_yates"] == pytest.approx(hand_chi2(a, b, c, d, yates=True), abs=TOL)
    assert r["p_yates"] == pytest.approx(chi2_sf_1df(hand_chi2(a, b, c, d, yates=True)), abs=TOL)
    phi = (a * d - b * c) / math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    assert r["phi"] == pytest.approx(phi, abs=TOL)
    assert r["phi"] ** 2 * n == pytest.approx(r["chi2"], abs=TOL)
    assert r["fisher_p"] == pytest.approx(hand_fisher(a, b, c, d), abs=TOL)
    assert r["odds_ratio"] == pytest.approx(a * d / (b * c), rel=1e-3)  # scipy: the sample OR
    assert r["p_answer_given_step"] == pytest.approx(174 / 361, abs=TOL)
    assert r["p_answer_given_not_step"] == pytest.approx(244 / 589, abs=TOL)
    assert r["both_share"] == pytest.approx(174 / 950, abs=TOL)
    assert r["min_expected"] == pytest.approx(361 * 418 / 950, abs=TOL)
    assert r["note"] is None


@pytest.mark.parametrize("a, b, c, d", [
    (10, 2, 3, 15), (2, 8, 9, 1), (1, 1, 1, 1), (0, 5, 5, 0), (3, 0, 0, 4), (20, 1, 30, 2),
    (1, 9, 2, 3),
])
def test_association_small_tables_match_hand_formulas(a, b, c, d):
    r = association(Table2x2(a, b, c, d))
    assert r["chi2"] == pytest.approx(hand_chi2(a, b, c, d), abs=TOL)
    assert r["chi2_yates"] == pytest.approx(hand_chi2(a, b, c, d, yates=True), abs=TOL)
    assert r["p_yates"] == pytest.approx(chi2_sf_1df(hand_chi2(a, b, c, d, yates=True)), abs=TOL)
    assert r["fisher_p"] == pytest.approx(hand_fisher(a, b, c, d), abs=TOL)
    assert math.copysign(1, r["phi"]) == math.copysign(1, a * d - b * c) or a * d == b * c
    if min((a + b) * (a + c), (a + b) * (b + d), (c + d) * (a + c), (c + d) * (b + d)) / (a + b + c + d) < 5:
        assert "Fisher" in r["note"]


@pytest.mark.parametrize("table", [Table2x2(5, 5, 0, 0), Table2x2(4, 0, 3, 0), Table2x2(0, 0, 0, 7),
                                   Table2x2(0, 3, 0, 4)])
def test_degenerate_tables_give_nan_with_a_note(table):
    r = association(table)
    for k in ("chi2", "p", "chi2_yates", "p_yates", "phi"):
        assert math.isnan(r[k]), k
    assert "empty" in r["note"]
    assert r["fisher_p"] == 1.0  # defined: only one table has these margins
    json.dumps(json_safe(r), allow_nan=False)


def test_empty_table():
    r = association(table_2x2([], []))
    assert r["n"] == 0 and r["note"] == "no items"
    assert all(math.isnan(r[k]) for k in ("chi2", "phi", "fisher_p", "both_share", "min_expected"))


def test_table_2x2_counts_none_as_wrong_and_checks_lengths():
    t = table_2x2([True, True, False, None, None, True], [True, False, True, True, False, True])
    assert t == Table2x2(both=2, step_only=1, answer_only=2, neither=1)
    assert t.n == 6 and t.rows() == [[2, 1], [2, 1]]
    with pytest.raises(ValueError, match="length"):
        table_2x2([True], [True, False])


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (174, 950), (1, 1)])
def test_wilson_matches_the_formula(k, n):
    lo, hi = wilson(k, n)
    elo, ehi = hand_wilson(k, n)
    assert lo == pytest.approx(elo, abs=TOL) and hi == pytest.approx(ehi, abs=TOL)
    assert 0 <= lo <= k / n <= hi <= 1


def test_wilson_no_trials():
    lo, hi = wilson(0, 0)
    assert math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize("b01, b10, both, neither", [(30, 12, 50, 8), (5, 0, 1, 1), (7, 7, 3, 3),
                                                     (1, 2, 0, 0)])
def test_mcnemar_matches_hand_values(b01, b10, both, neither):
    a = [False] * b01 + [True] * b10 + [True] * both + [False] * neither
    b = [True] * b01 + [False] * b10 + [True] * both + [False] * neither
    r = mcnemar(a, b)
    assert (r["b01"], r["b10"], r["both"], r["neither"], r["n"]) == (b01, b10, both, neither, len(a))
    assert r["p_exact"] == pytest.approx(hand_binom_two_sided(b01, b01 + b10), abs=TOL)
    chi2 = max(0, abs(b01 - b10) - 1) ** 2 / (b01 + b10)
    assert r["chi2"] == pytest.approx(chi2, abs=TOL)
    assert r["p"] == pytest.approx(chi2_sf_1df(chi2), abs=TOL)
    assert r["accuracy_b"] - r["accuracy_a"] == pytest.approx((b01 - b10) / len(a), abs=TOL)


def test_mcnemar_without_discordant_pairs_and_bad_lengths():
    r = mcnemar([True, False, None], [True, False, False])
    assert (r["b01"], r["b10"], r["p_exact"]) == (0, 0, 1.0)
    assert math.isnan(r["chi2"]) and r["note"] == "no discordant pairs"
    with pytest.raises(ValueError):
        mcnemar([True], [])


# ----------------------------------------------------------------- summaries

def J(i, *, status="ok", label_ok=True, ev=True, answer_ok=True, gold="equal", prec=None, rec=None,
      f1=None, extra=None):
    judged = status == "ok"
    return Judgement(
        id=str(i), status=status,
        label="equal" if judged else None, label_ok=label_ok if judged else None,
        evidence=(0,) if judged else None,
        evidence_exact=ev if judged else None, evidence_all=ev if judged else None,
        evidence_any=True if judged else None,
        evidence_precision=(prec if prec is not None else float(ev)) if judged else None,
        evidence_recall=(rec if rec is not None else float(ev)) if judged else None,
        trace_ok=bool(judged and label_ok and ev), answer="x", answer_ok=answer_ok,
        answer_f1=f1 if f1 is not None else float(answer_ok), gold_label=gold, extra=extra or {},
    )


def small_set():
    return [
        J(0, gold="equal"),                                               # all right
        J(1, gold="equal", ev=False, answer_ok=False, prec=0.5, rec=0.5),   # class only
        J(2, gold="mix", label_ok=False, answer_ok=True),                  # evidence + answer
        J(3, gold="mix", status="no_trace", answer_ok=True),               # answer only
        J(4, gold="mix", status="truncated", answer_ok=False),
    ]


def test_summarize_counts_everything():
    s = summarize(small_set()).to_dict()
    assert s["n"] == 5
    assert list(s["status"]) == list(STATUSES)
    assert s["status"] == {**{k: 0 for k in STATUSES}, "ok": 3, "no_trace": 1, "truncated": 1}
    acc = s["accuracy"]
    assert (acc["class"]["correct"], acc["class"]["n"]) == (2, 5)
    assert (acc["evidence_exact"]["correct"], acc["evidence_any"]["correct"]) == (2, 3)
    assert acc["trace"]["correct"] == 1 and acc["answer"]["correct"] == 3
    lo, hi = hand_wilson(3, 5)
    assert acc["answer"]["accuracy"] == 0.6
    assert acc["answer"]["ci95"] == [pytest.approx(lo, abs=TOL), pytest.approx(hi, abs=TOL)]
    # None precision counts as 0 in the mean over all items; mean_judged leaves it out
    assert s["means"]["evidence_precision"] == {"mean": pytest.approx(2.5 / 5), "n_judged": 3,
                                                "mean_judged": pytest.approx(2.5 / 3)}
    assert s["means"]["answer_f1"]["mean"] == pytest.approx(0.6)
    assert s["steps"]["class"]["table"] == {"both": 1, "step_only": 1, "answer_only": 2, "neither": 1}
    assert s["steps"]["evidence"]["table"] == {"both": 2, "step_only": 0, "answer_only": 1, "neither": 2}
    assert s["steps"]["trace"]["table"] == {"both": 1, "step_only": 0, "answer_only": 2, "neither": 2}
    assert s["per_class"] == {
        "equal": {"n": 2, "answer_accuracy": 0.5, "trace_accuracy": 0.5, "class_accuracy": 1.0,
                  "evidence_exact_accuracy": 0.5},
        "mix": {"n": 3, "answer_accuracy": pytest.approx(2 / 3), "trace_accuracy": 0.0,
                "class_accuracy": 0.0, "evidence_exact_accuracy": pytest.approx(1 / 3)},
    }


def test_summarize_unknown_status_is_counted_not_dropped():
    s = summarize([J(0), J(1, status="weird")]).to_dict()
    assert s["status"]["weird"] == 1 and sum(s["status"].values()) == 2


def test_summarize_groups_by_field_or_extra():
    js = [J(i, extra={"seed": i % 2}) for i in range(4)]
    s = summarize(js, group="seed").to_dict()
    assert s["group"] == "seed" and set(s["groups"]) == {"0", "1"}
    assert s["groups"]["0"]["n"] == 2
    s = summarize(small_set(), group="gold_label").to_dict()
    assert s["groups"]["mix"]["n"] == 3
    with pytest.raises(ConfigError, match="did you mean 'gold_label'"):
        summarize(small_set(), group="gold_labl")


def test_summarize_empty():
    s = summarize([])
    assert s.n == 0 and s.accuracy.answer.accuracy is None and s.accuracy.answer.note == "no items"
    json.dumps(s.to_dict(), allow_nan=False)
    format_summary(s)


def test_compare_pairs_by_id():
    a = [J(i, answer_ok=i < 6) for i in range(10)]
    b = [J(i, answer_ok=i % 2 == 0) for i in range(2, 12)]
    r = compare(a, b).to_dict()
    assert (r["n_paired"], r["unpaired_a"], r["unpaired_b"]) == (8, 2, 2)
    # ids 2..9: a right on 2-5, b right on 2,4,6,8 -> b01 = {6, 8}, b10 = {3, 5}
    assert (r["answer"]["b01"], r["answer"]["b10"]) == (2, 2)
    assert r["answer"]["p_exact"] == pytest.approx(1.0)
    with pytest.raises(DataError, match="duplicate id '1'"):
        compare([J(1), J(1)], [])


def test_format_summary_and_compare_are_tables():
    s = summarize(small_set())
    text = format_summary(s, "correct")
    assert text.splitlines()[0] == "== correct (n=5)"
    assert "no_trace=1" in text
    assert re.search(r"^answer\s+3/5\s+0\.600\s+\[", text, re.M)
    assert re.search(r"^trace\s+1\s+0\s+2\s+2\s", text, re.M)
    assert re.search(r"^mix\s+3\s+0\.667", text, re.M)
    cmp_text = format_compare(compare(small_set(), small_set()), "x", "y")
    assert "McNemar: x vs y (paired 5" in cmp_text


def test_json_safe():
    assert json_safe({"a": [float("nan"), (1, float("-inf"))], "b": "s", "c": None}) == {
        "a": [None, [1, None]], "b": "s", "c": None}


def test_summary_round_trips_and_an_older_file_gets_has_trace_from_its_statuses():
    from tracekd.stats.results import Summary

    s = summarize(small_set())
    assert Summary.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    old = summarize([J(0, status="no_trace"), J(1, status="no_trace")]).to_dict()
    del old["has_trace"]
    assert Summary.from_dict(old).has_trace is False
    old["status"]["ok"] = 1
    assert Summary.from_dict(old).has_trace is True
