"""The study analysis on synthetic response sets drawn from known distributions: it must find the
differences that are there (in the right direction), not find ones that are not, apply and report
exclusions, and measure agreement and consistency where they were built in."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pingouin")
pytest.importorskip("krippendorff")

from tracekd.study.analyze import analyze, markdown_tables, write_analysis  # noqa: E402
from tracekd.study.config import load_study_config  # noqa: E402
from tracekd.study.power import achieved_power, anova_per_group, per_group  # noqa: E402

CLEAR = [0.02, 0.03, 0.10, 0.35, 0.50]  # mean 4.28
MUDDY = [0.20, 0.30, 0.25, 0.15, 0.10]  # mean 2.65
STATEMENTS = ("predictability", "understandability", "faithfulness", "cognitive_load")


def population_mean(p) -> float:
    return float(np.dot(np.arange(1, 6), p))


def config(names=("clear", "muddy"), **over):
    return load_study_config(overrides={"conditions": [{"name": n} for n in names], **over})


def draw(dists: dict[str, list[float]], n_people: int, n_items: int, seed: int, load_flip: bool = True):
    """Responses and participants: every rating of condition c drawn from dists[c] (cognitive load from
    the reversed distribution when ``load_flip``)."""
    rng = np.random.default_rng(seed)
    responses, people = [], []
    for c, p in dists.items():
        for i in range(n_people):
            pid = f"{c}-{i}"
            people.append({"participant": pid, "condition": c, "failed_attention": False, "too_fast": False,
                           "incomplete": False, "excluded": False})
            for item in range(n_items):
                for s in STATEMENTS:
                    probs = p[::-1] if (s == "cognitive_load" and load_flip) else p
                    responses.append({"participant": pid, "condition": c, "item_id": f"{c}:{(i + item) % 8}",
                                      "statement": s, "kind": "likert", "value": int(rng.choice(5, p=probs)) + 1})
    return responses, people


@pytest.fixture(scope="module")
def two_groups():
    responses, people = draw({"clear": CLEAR, "muddy": MUDDY}, n_people=25, n_items=4, seed=11)
    return responses, people, analyze(responses, people, config(), n_boot=400, seed=0)


def test_detects_the_difference_in_the_right_direction(two_groups):
    _, _, a = two_groups
    interp = a["tests"]["scales"]["interpretability"]
    assert interp["omnibus"]["test"] == "kruskal-wallis" and interp["omnibus"]["p"] < 0.001
    (pair,) = interp["pairwise"]
    assert (pair["a"], pair["b"]) == ("clear", "muddy")
    assert pair["p_holm"] < 0.001 and pair["r"] > 0.5 and pair["mean_a"] > pair["mean_b"]
    load = a["tests"]["scales"]["cognitive_load"]["pairwise"][0]
    assert load["p_holm"] < 0.001 and load["r"] < -0.5  # the muddy traces cost more effort
    for stmt in STATEMENTS:
        (pr,) = a["tests"]["statements"][stmt]["pairwise"]
        assert pr["p_holm"] < 0.01 and (pr["r"] < 0) == (stmt == "cognitive_load")


def test_descriptives_bracket_the_population_values(two_groups):
    responses, _, a = two_groups
    for row in a["scale_scores"]:
        truth = population_mean(CLEAR if row["condition"] == "clear" else MUDDY)
        if row["scale"] == "cognitive_load":
            truth = 6 - truth
        assert row["n"] == 25 and row["ci_low"] < row["mean"] < row["ci_high"]
        assert abs(row["mean"] - truth) < 0.35
    for row in a["items"]:
        assert row["ratings"] == 25 * 4 == sum(row["distribution"].values())
        assert row["sd"] > 0 and 1 <= row["median"] <= 5
    # each cell's mean is the mean of participant means, computed independently here
    mine = [r for r in responses if r["condition"] == "clear" and r["statement"] == "faithfulness"]
    per_person = {}
    for r in mine:
        per_person.setdefault(r["participant"], []).append(r["value"])
    expect = np.mean([np.mean(v) for v in per_person.values()])
    (cell,) = [r for r in a["items"] if r["condition"] == "clear" and r["statement"] == "faithfulness"]
    assert cell["mean"] == pytest.approx(expect)


def test_no_difference_where_there_is_none():
    responses, people = draw({"a": MUDDY, "b": MUDDY, "c": MUDDY}, n_people=20, n_items=3, seed=5)
    a = analyze(responses, people, config(("a", "b", "c")), n_boot=200)
    t = a["tests"]["scales"]["interpretability"]
    assert t["omnibus"]["p"] > 0.05 and t["omnibus"]["df"] == 2
    assert len(t["pairwise"]) == 3 and all(p["p_holm"] > 0.05 for p in t["pairwise"])
    assert all(p["p_holm"] >= p["p"] for p in t["pairwise"])  # Holm never lowers a p-value


def test_exclusions_are_applied_and_reported():
    responses, people = draw({"clear": CLEAR, "muddy": MUDDY}, n_people=15, n_items=2, seed=3)
    # careless participants in the clear group who answer 1 throughout: excluded, they do not count
    for i in range(6):
        pid = f"careless-{i}"
        people.append({"participant": pid, "condition": "clear", "failed_attention": True, "too_fast": i < 3,
                       "incomplete": False, "excluded": True})
        responses += [{"participant": pid, "condition": "clear", "item_id": "clear:0", "statement": s,
                       "kind": "likert", "value": 1} for s in STATEMENTS]
    cfg = config()
    kept = analyze(responses, people, cfg, n_boot=200)
    assert kept["exclusions"] == {"applied": True, "participants": 36, "failed_attention": 6, "too_fast": 3,
                                  "incomplete": 0, "excluded": 6, "analysed": 30}
    clear = [r for r in kept["scale_scores"] if r["condition"] == "clear" and r["scale"] == "interpretability"][0]
    assert clear["n"] == 15
    everyone = analyze(responses, people, cfg, n_boot=200, apply_exclusions=False)
    clear_all = [r for r in everyone["scale_scores"]
                 if r["condition"] == "clear" and r["scale"] == "interpretability"][0]
    assert clear_all["n"] == 21 and clear_all["mean"] < clear["mean"]
    assert "excluded 6" in markdown_tables(kept) and "NOT applied" in markdown_tables(everyone)


def _rated(n_raters: int, n_items: int, noise: float, seed: int, consistent: bool):
    """Ratings where each item has a true level and each rater a personal level (latent traits)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, size=n_items)
    responses, people = [], []
    for r in range(n_raters):
        pid = f"r{r}"
        people.append({"participant": pid, "condition": "clear", "excluded": False})
        trait = rng.normal(0, 1.2)
        for j in range(n_items):
            for s in STATEMENTS:
                if consistent:
                    v = truth[j] + rng.normal(0, noise)
                    v = v + trait if s != "cognitive_load" else v
                else:
                    v = rng.integers(1, 6)
                responses.append({"participant": pid, "condition": "clear", "item_id": f"clear:{j}",
                                  "statement": s, "kind": "likert", "value": int(np.clip(np.rint(v), 1, 5))})
    return responses, people


def test_krippendorff_alpha_high_for_agreeing_raters_near_zero_for_random_ones():
    cfg = config(("clear",))
    agree = analyze(*_rated(6, 10, 0.3, seed=1, consistent=True), cfg, n_boot=100)
    noise = analyze(*_rated(6, 10, 0.0, seed=2, consistent=False), cfg, n_boot=100)
    k_agree = {k["statement"]: k for k in agree["krippendorff_alpha"]}
    k_noise = {k["statement"]: k for k in noise["krippendorff_alpha"]}
    assert k_agree["cognitive_load"]["units_with_several_raters"] == 10 and k_agree["cognitive_load"]["raters"] == 6
    assert k_agree["cognitive_load"]["alpha"] > 0.8
    assert all(abs(k["alpha"]) < 0.25 for k in k_noise.values())


def test_cronbach_alpha_high_when_items_measure_one_trait():
    cfg = config(("clear",))
    rng = np.random.default_rng(4)
    responses, people = [], []
    for i in range(40):
        pid, trait = f"p{i}", rng.normal(3, 1)
        people.append({"participant": pid, "condition": "clear", "excluded": False})
        for s in STATEMENTS:
            for item in range(2):
                v = trait + rng.normal(0, 0.4) if s != "cognitive_load" else rng.integers(1, 6)
                responses.append({"participant": pid, "condition": "clear", "item_id": f"clear:{item}",
                                  "statement": s, "kind": "likert", "value": int(np.clip(np.rint(v), 1, 5))})
    a = analyze(responses, people, cfg, n_boot=100)
    assert a["cronbach_alpha"]["interpretability"]["alpha"] > 0.8
    assert a["cronbach_alpha"]["cognitive_load"]["alpha"] is None  # one item: no alpha
    two = analyze(*draw({"clear": MUDDY}, 40, 1, seed=9), cfg, n_boot=100)
    assert two["cronbach_alpha"]["interpretability"]["alpha"] < 0.4  # independent items


def test_within_subjects_uses_paired_tests():
    rng = np.random.default_rng(8)
    cfg = config(("clear", "muddy", "mid"), design="within", items_per_participant=3)
    responses, people = [], []
    dists = {"clear": CLEAR, "muddy": MUDDY, "mid": [0.1, 0.2, 0.4, 0.2, 0.1]}
    for i in range(20):
        pid = f"p{i}"
        people.append({"participant": pid, "condition": "within", "excluded": False})
        for c, p in dists.items():
            for s in STATEMENTS:
                responses.append({"participant": pid, "condition": c, "item_id": f"{c}:{i % 4}", "statement": s,
                                  "kind": "likert", "value": int(rng.choice(5, p=p)) + 1})
    a = analyze(responses, people, cfg, n_boot=100)
    t = a["tests"]["scales"]["interpretability"]
    assert t["omnibus"]["test"] == "friedman" and t["omnibus"]["p"] < 0.001
    pair = [p for p in t["pairwise"] if (p["a"], p["b"]) == ("clear", "muddy")][0]
    assert pair["test"] == "wilcoxon" and pair["p_holm"] < 0.01 and pair["r"] > 0.5


def test_outputs_are_written_and_repeatable(two_groups, tmp_path):
    _, _, a = two_groups
    write_analysis(a, tmp_path / "one")
    write_analysis(a, tmp_path / "two")
    for name in ("analysis.json", "tables.md", "plots/likert.png", "plots/scales.png"):
        one, two = (tmp_path / "one" / name).read_bytes(), (tmp_path / "two" / name).read_bytes()
        assert one == two and len(one) > 500
    assert (tmp_path / "one" / "plots" / "likert.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert set(m["files"]) == {"analysis.json", "tables.md", "plots/likert.png", "plots/scales.png"}
    json.loads((tmp_path / "one" / "analysis.json").read_text())  # strict JSON (no NaN)


def test_power_follows_the_effect_size_and_alpha_sharing():
    t = per_group(0.5, test="t")
    assert 60 <= t["n_per_group"] <= 70  # the textbook 64 for d = 0.5
    assert per_group(0.5, test="mwu")["n_per_group"] > t["n_per_group"]
    assert per_group(0.5, test="t", comparisons=6)["n_per_group"] > t["n_per_group"]
    assert per_group(1.0, test="t")["n_per_group"] < t["n_per_group"]
    n = per_group(0.8, test="mwu", comparisons=6)["n_per_group"]
    assert achieved_power(0.8, n, test="mwu", comparisons=6) >= 0.8 > achieved_power(0.8, n - 2, test="mwu",
                                                                                      comparisons=6)
    assert anova_per_group(0.4, 4)["n_per_group"] < anova_per_group(0.25, 4)["n_per_group"]
    with pytest.raises(ValueError):
        per_group(0.0)


def test_everyone_excluded_still_gives_a_complete_report(tmp_path):
    responses, people = draw({"clear": CLEAR, "muddy": MUDDY}, n_people=3, n_items=1, seed=1)
    for p in people:
        p["incomplete"] = p["excluded"] = True
    a = analyze(responses, people, config(), n_boot=100)
    assert a["exclusions"]["analysed"] == 0
    assert all(r["n"] == 0 and r["mean"] is None for r in a["scale_scores"])
    assert a["tests"]["scales"]["interpretability"]["omnibus"] is None
    write_analysis(a, tmp_path)
    assert (tmp_path / "plots" / "likert.png").stat().st_size > 0
