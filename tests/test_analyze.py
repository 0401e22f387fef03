"""`tracekd analyze` on fixture judgement files whose tables are built by hand."""

from __future__ import annotations

import json
import math

import pytest

from tracekd.cli import main

TOL = 1e-6
Z95 = 1.959963984540054

# (label_ok, evidence_exact, answer_ok) -> count; trace = class AND evidence.
# trace x answer = (174, 187 / 244, 345), the example.
CELLS = {
    (True, True, True): 174,
    (True, True, False): 187,
    (True, False, True): 100,
    (False, True, True): 44,
    (False, False, True): 100,     # of these, 30 have no trace (steps null)
    (True, False, False): 45,
    (False, True, False): 100,
    (False, False, False): 200,    # of these, 20 truncated and 10 empty
}
CLASS = (174 + 100, 187 + 45, 44 + 100, 100 + 200)       # (both, step_only, answer_only, neither)
EVIDENCE = (174 + 44, 187 + 100, 100 + 100, 45 + 200)
TRACE = (174, 187, 244, 345)


def judgement(i: int, label_ok, ev, answer_ok, status="ok", gold="equal") -> dict:
    judged = status == "ok"
    return {
        "id": f"cotemp/{gold}/{i}", "status": status,
        "label": gold if judged else None, "label_ok": label_ok if judged else None,
        "evidence": [0] if judged else None,
        "evidence_exact": ev if judged else None, "evidence_all": ev if judged else None,
        "evidence_any": ev if judged else None,
        "evidence_precision": float(ev) if judged else None,
        "evidence_recall": float(ev) if judged else None,
        "trace_ok": bool(judged and label_ok and ev),
        "answer": "x", "answer_ok": answer_ok, "answer_f1": 1.0 if answer_ok else 0.25,
        "gold_label": gold, "extra": {},
    }


def fixture_rows() -> list[dict]:
    rows = []
    i = 0
    for (lab, ev, ans), count in CELLS.items():
        for k in range(count):
            status = "ok"
            if (lab, ev, ans) == (False, False, True) and k < 30:
                status = "no_trace"
            if (lab, ev, ans) == (False, False, False) and k < 30:
                status = "truncated" if k < 20 else "empty"
            rows.append(judgement(i, lab, ev, ans, status, gold="equal" if i % 2 else "mix"))
            i += 1
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def chi2_hand(a, b, c, d, yates=False):
    n = a + b + c + d
    diff = abs(a * d - b * c)
    if yates:
        diff = max(0.0, diff - n / 2)
    return n * diff ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))


def sf1(x):
    return math.erfc(math.sqrt(x / 2))


def wilson_hand(k, n):
    p, z = k / n, Z95
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [centre - half, centre + half]


def fisher_hand(a, b, c, d):
    r1, c1, n = a + b, a + c, a + b + c + d
    prob = [math.comb(c1, x) * math.comb(n - c1, r1 - x) / math.comb(n, r1)
            for x in range(max(0, r1 + c1 - n), min(r1, c1) + 1)]
    p0 = math.comb(c1, a) * math.comb(n - c1, r1 - a) / math.comb(n, r1)
    return min(1.0, sum(p for p in prob if p <= p0 * (1 + 1e-7)))


def cell(result: dict, arm: str) -> dict:
    """The summary of one arm's cell in an analysis JSON."""
    found = [c["summary"] for c in result["cells"] if c["arm"] == arm]
    assert len(found) == 1, [c["arm"] for c in result["cells"]]
    return found[0]


def test_analyze_matches_hand_computed_values(tmp_path, capsys):
    path = write_jsonl(tmp_path / "judgements.jsonl", fixture_rows())
    out = tmp_path / "analysis.json"
    assert main(["analyze", str(path), "--labels", "correct", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    result = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    s = cell(result, "correct")
    n = 950
    assert s["n"] == n
    assert {k: v for k, v in s["status"].items() if v} == {"ok": 890, "no_trace": 30, "truncated": 20, "empty": 10}
    assert result["cells"][0]["dataset"] == "cotemp"  # from the judgements' ids: no score summary beside them
    for name, cells in (("class", CLASS), ("evidence", EVIDENCE), ("trace", TRACE)):
        a, b, c, d = cells
        r = s["steps"][name]
        assert r["table"] == {"both": a, "step_only": b, "answer_only": c, "neither": d}, name
        assert r["chi2"] == pytest.approx(chi2_hand(*cells), abs=TOL)
        assert r["p"] == pytest.approx(sf1(chi2_hand(*cells)), abs=TOL)
        assert r["chi2_yates"] == pytest.approx(chi2_hand(*cells, yates=True), abs=TOL)
        assert r["p_yates"] == pytest.approx(sf1(chi2_hand(*cells, yates=True)), abs=TOL)
        phi = (a * d - b * c) / math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
        assert r["phi"] == pytest.approx(phi, abs=TOL)
        assert r["fisher_p"] == pytest.approx(fisher_hand(*cells), abs=TOL)
        assert r["p_answer_given_step"] == pytest.approx(a / (a + b), abs=TOL)
        assert r["p_answer_given_not_step"] == pytest.approx(c / (c + d), abs=TOL)
        assert r["both_share"] == pytest.approx(a / n, abs=TOL)
    assert round(s["steps"]["trace"]["chi2"], 2) == 4.17
    acc = s["accuracy"]
    for name, k in (("class", CLASS[0] + CLASS[1]), ("evidence_exact", EVIDENCE[0] + EVIDENCE[1]),
                    ("trace", 361), ("answer", 174 + 244)):
        assert (acc[name]["correct"], acc[name]["n"]) == (k, n), name
        assert acc[name]["accuracy"] == pytest.approx(k / n, abs=TOL)
        assert acc[name]["ci95"] == pytest.approx(wilson_hand(k, n), abs=TOL)
    # answer F1: 418 answers right (1.0) and 532 wrong (0.25)
    assert s["means"]["answer_f1"]["mean"] == pytest.approx((418 + 0.25 * 532) / n, abs=TOL)
    # evidence precision: null for the 60 unjudged, which count as 0 in "mean"
    assert s["means"]["evidence_precision"]["mean"] == pytest.approx(505 / n, abs=TOL)
    assert s["means"]["evidence_precision"]["n_judged"] == 890
    assert result["comparisons"] == []
    assert result["inputs"][str(path)]["path"] == str(path)
    printed = capsys.readouterr().out
    assert "== cotemp / (not recorded) / correct (n=950)" in printed and "4.167" in printed


def test_analyze_two_files_mcnemar_and_nulls(tmp_path, capsys):
    rows = fixture_rows()
    a = write_jsonl(tmp_path / "a.jsonl", rows)
    flipped = []
    up = down = 0
    for r in rows:
        r = dict(r)
        if not r["answer_ok"] and up < 30:
            r["answer_ok"], up = True, up + 1
        elif r["answer_ok"] and down < 12:
            r["answer_ok"], down = False, down + 1
        flipped.append(r)
    flipped.append(judgement(10_000, True, True, True))          # unpaired
    b = write_jsonl(tmp_path / "b.jsonl", flipped)
    # every item fully right: a degenerate table -> nulls, not NaN, in the JSON
    c = write_jsonl(tmp_path / "c.jsonl", [judgement(i, True, True, True) for i in range(5)])
    out = tmp_path / "out" / "analysis.json"
    assert main(["analyze", str(a), str(b), str(c), "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert [c["arm"] for c in result["cells"]] == result["arms"] == ["a", "b", "c"]
    ab = result["comparisons"][0]
    assert (ab["arm_a"], ab["arm_b"]) == ("a", "b")
    ab = ab["result"]
    assert (ab["n_paired"], ab["unpaired_a"], ab["unpaired_b"]) == (950, 0, 1)
    m = ab["answer"]
    assert (m["b01"], m["b10"]) == (30, 12)
    exact = min(1.0, 2 * sum(math.comb(42, i) for i in range(13)) / 2 ** 42)
    assert m["p_exact"] == pytest.approx(exact, abs=TOL)
    assert m["chi2"] == pytest.approx(17 ** 2 / 42, abs=TOL)
    assert m["p"] == pytest.approx(sf1(17 ** 2 / 42), abs=TOL)
    assert ab["trace"]["note"] == "no discordant pairs" and ab["trace"]["chi2"] is None
    assert [(x["arm_a"], x["arm_b"]) for x in result["comparisons"]] == [("a", "b"), ("a", "c"), ("b", "c")]
    deg = cell(result, "c")["steps"]["trace"]
    assert deg["chi2"] is None and deg["phi"] is None and "empty" in deg["note"]
    assert "McNemar: a vs b" in capsys.readouterr().out


def test_analyze_group_option(tmp_path):
    path = write_jsonl(tmp_path / "j.jsonl", fixture_rows())
    out = tmp_path / "g.json"
    assert main(["analyze", str(path), "--group", "gold_label", "--out", str(out)]) == 0
    s = cell(json.loads(out.read_text()), "j")
    assert s["groups"]["equal"]["n"] + s["groups"]["mix"]["n"] == 950
    assert s["per_class"]["equal"]["n"] == s["groups"]["equal"]["n"] == 475


def test_analyze_errors_name_file_line_and_field(tmp_path, capsys):
    rows = fixture_rows()[:3]
    bad = dict(rows[1])
    bad["answer_ok"] = "yes"
    path = write_jsonl(tmp_path / "bad.jsonl", [rows[0], bad, rows[2]])
    assert main(["analyze", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: field 'answer_ok': must be true or false" in err

    missing = {k: v for k, v in rows[0].items() if k != "trace_ok"}
    path = write_jsonl(tmp_path / "missing.jsonl", [missing])
    assert main(["analyze", str(path)]) == 1
    assert "missing.jsonl:1: field 'trace_ok': missing" in capsys.readouterr().err

    path.write_text('{"id": "x"\n{}\n', encoding="utf-8")
    assert main(["analyze", str(path)]) == 1
    assert "missing.jsonl:1: invalid JSON" in capsys.readouterr().err

    ok = write_jsonl(tmp_path / "ok.jsonl", rows)
    assert main(["analyze", str(ok), "--labels", "a", "b"]) == 1
    assert "--labels gives 2 names for 1 files" in capsys.readouterr().err
    assert main(["analyze", str(ok), str(ok), "--labels", "a", "a"]) == 1
    assert "give each file its own name with --labels" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "nope.jsonl")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_analyze_minimal_rows_are_accepted(tmp_path):
    # only the required fields: unjudged steps default to null, F1 to 0
    rows = [{"id": "1", "status": "no_trace", "trace_ok": False, "answer_ok": True},
            {"id": "2", "status": "ok", "trace_ok": True, "answer_ok": True, "label_ok": True}]
    path = write_jsonl(tmp_path / "min.jsonl", rows)
    out = tmp_path / "min.json"
    assert main(["analyze", str(path), "--out", str(out)]) == 0
    s = cell(json.loads(out.read_text()), "min")
    assert s["accuracy"]["class"]["correct"] == 1 and s["means"]["answer_f1"]["mean"] == 0.0
