"""`tracekd report`: the numbers in report.md are the analysis JSON's, the HTML is self-contained with
one valid PNG per plot, degenerate statistics and a single seed render, and Chromium shows it."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_fixture import make_analysis

from tracekd.cli import main
from tracekd.io import write_json, write_records
from tracekd.records import STATUSES
from tracekd.report import render, write_report
from tracekd.stats.results import NO_TRACE, Analysis

PLOTS_PER_SECTION = 5  # answer, steps, tables, classes, status


# ------------------------------------------------------------------------------------ helpers

def _unescape(cell: str) -> str:
    return re.sub(r"\\(.)", r"\1", cell)


def md_tables(md: str) -> dict[str, list[dict[str, str]]]:
    """Every pipe table of the Markdown, keyed by its caption (the line above it)."""
    lines = md.split("\n")
    tables: dict[str, list[dict[str, str]]] = {}
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("| ") and re.fullmatch(r"\|( -{3}:? \|)+", lines[i + 1]):
            caption = next(x for x in reversed(lines[:i]) if x.strip()).strip("*")

            def split(row: str) -> list[str]:
                return [_unescape(c) for c in re.split(r"(?<!\\) \| ", row[2:-2])]

            header = split(lines[i])
            rows = []
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                cells = split(lines[j])
                assert len(cells) == len(header), lines[j]
                rows.append(dict(zip(header, cells)))
                j += 1
            caption = _unescape(caption)
            assert caption not in tables, f"two tables captioned {caption!r}"
            tables[caption] = rows
            i = j
        else:
            i += 1
    return tables


def close(cell: str, value) -> None:
    """``cell`` shows ``value`` at the rounding it was written with (``n/a`` for null)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        assert cell == "n/a", f"{cell!r} shown for null"
        return
    assert cell != "n/a", f"n/a shown for {value!r}"
    x = float(cell)
    m = re.fullmatch(r"-?\d+(?:\.(\d+))?(?:e([-+]\d+))?", cell)
    assert m, cell
    decimals = len(m.group(1) or "")
    tol = 0.5 * 10.0 ** -decimals * (10.0 ** int(m.group(2)) if m.group(2) else 1.0)
    assert abs(x - value) <= tol + 1e-12, f"{cell!r} != {value!r}"


def no_trace(cell: str) -> None:
    assert cell == NO_TRACE, f"{cell!r} shown for a step of outputs without a trace"


def close_list(cell: str, values) -> None:
    parts = cell.split(", ")
    assert len(parts) == len(values), (cell, values)
    for p, v in zip(parts, values):
        close(p, v)


def close_ci(cell: str, ci) -> None:
    if ci[0] is None or ci[1] is None:
        assert cell == "n/a"
        return
    lo, hi = cell.strip("[]").split(", ")
    close(lo, ci[0])
    close(hi, ci[1])


def notes_of(md: str, caption: str) -> dict[str, str]:
    """The numbered footnotes under the table captioned ``caption``."""
    start = md.index(f"*{caption}*") if f"*{caption}*" in md else md.index(caption)
    after = md[start:].split("\n\n")
    notes = {}
    for part in after[2:4]:  # the table, then its notes (if any)
        for line in part.split("\n"):
            m = re.match(r"\\?\[(\d+)\\?\] (.*?)\s*$", line)
            if m:
                notes[f"[{m.group(1)}]"] = _unescape(m.group(2))
    return notes


def seed_of(cell: str):
    return None if cell == "-" else int(cell)


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data", "background", "formaction"):
                self.urls.append((tag, name, value or ""))


def png_ok(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return im.size


# ------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def analysis() -> dict:
    return json.loads(json.dumps(make_analysis()))  # exactly what analysis.json holds


@pytest.fixture(scope="module")
def rendered(analysis):
    return render(Analysis.from_dict(analysis), command="tracekd run configs/synthetic.yaml")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, analysis) -> Path:
    """A run directory with the report written (its plan names the reproducing command)."""
    d = tmp_path_factory.mktemp("run")
    write_json(d / "plan.json", {"command": "tracekd run configs/synthetic.yaml", "config": {}})
    assert write_report(d, Analysis.from_dict(analysis)) == d / "report.html"
    return d


# ------------------------------------------------------------------------------------ numbers

def test_markdown_numbers_equal_analysis(analysis, rendered):
    md = rendered.markdown
    tables = md_tables(md)
    groups = {g["arm"]: g for g in analysis["groups"]}
    cells = {(c["arm"], c["seed"]): c for c in analysis["cells"]}
    name = "babi / tiny-random"
    checked = set()

    cap = "Overview: means over seeds; last column pooled over seeds"
    assert [r["arm"] for r in tables[cap]] == analysis["arms"]
    for r in tables[cap]:
        g = groups[r["arm"]]
        assert (r["dataset"], r["student"]) == (g["dataset"], g["student"])
        assert r["n per seed"] == ", ".join(map(str, g["n_per_seed"]))
        close(r["answer"], g["metrics"]["answer"]["mean"])
        for col in ("class", "evidence", "trace"):
            close(r[col], g["metrics"][col]["mean"]) if g["pooled"]["has_trace"] else no_trace(r[col])
        if g["pooled"]["has_trace"]:
            close(r["trace and answer right / n"], g["pooled"]["steps"]["trace"]["both_share"])
        else:
            no_trace(r["trace and answer right / n"])
    checked.add(cap)

    cap = f"Accuracy per arm - {name}"
    acc = {"answer": "answer", "class": "class", "evidence": "evidence_exact", "trace": "trace"}
    assert len(tables[cap]) == 5 * len(groups)
    for r in tables[cap]:
        g = groups[r["arm"]]
        metric = "answer_f1" if r["measure"] == "answer F1" else r["measure"]
        m = g["metrics"][metric]
        if metric in ("class", "evidence", "trace") and not g["pooled"]["has_trace"]:
            assert all(r[col] == NO_TRACE for col in ("per seed", "mean", "SD", "pooled", "95% CI (pooled)"))
            continue
        close_list(r["per seed"], m["values"])
        for col, key in (("mean", "mean"), ("SD", "sd"), ("min", "min"), ("max", "max")):
            close(r[col], m[key])
        if metric == "answer_f1":
            close(r["pooled"], g["pooled"]["means"]["answer_f1"]["mean"])
        else:
            close(r["pooled"], g["pooled"]["accuracy"][acc[metric]]["accuracy"])
            close_ci(r["95% CI (pooled)"], g["pooled"]["accuracy"][acc[metric]]["ci95"])
    checked.add(cap)

    cap = f"Evidence step verdicts (pooled over seeds 0, 1) - {name}"
    for r in tables[cap]:
        p = groups[r["arm"]]["pooled"]
        assert int(r["n"]) == p["n"]
        if not p["has_trace"]:
            assert all(r[col] == NO_TRACE for col in ("exact set", "precision", "recall"))
            continue
        for col, key in (("exact set", "evidence_exact"), ("all gold present", "evidence_all"),
                         ("any gold present", "evidence_any")):
            close(r[col], p["accuracy"][key]["accuracy"])
        close(r["precision"], p["means"]["evidence_precision"]["mean"])
        close(r["recall"], p["means"]["evidence_recall"]["mean"])
    checked.add(cap)

    stat_cols = {"chi2": "chi2", "p": "p", "chi2 Yates": "chi2_yates", "p Yates": "p_yates", "phi": "phi",
                 "Fisher p": "fisher_p", "P(ans | step right)": "p_answer_given_step",
                 "P(ans | step wrong)": "p_answer_given_not_step", "both right / n": "both_share"}
    count_cols = {"both right": "both", "step only": "step_only", "answer only": "answer_only",
                  "both wrong": "neither"}
    for step, what in (("class", "class step"), ("evidence", "evidence step (exact set)"), ("trace", "whole trace")):
        cap = f"Step x answer statistics, {what} - {name}"
        notes = notes_of(md, cap)
        rows = tables[cap]
        assert len(rows) == len(groups) * 3  # 2 seeds + pooled
        for r in rows:
            src = (groups[r["arm"]]["pooled"] if r["seed"] == "pooled"
                   else cells[(r["arm"], seed_of(r["seed"]))]["summary"])["steps"][step]
            assert int(r["n"]) == src["n"]
            for col, key in count_cols.items():
                assert int(r[col]) == src["table"][key], (cap, r)
            for col, key in stat_cols.items():
                close(r[col], src[key])
            assert notes.get(r["note"], "") == (src["note"] or ""), (r["note"], src["note"])
        checked.add(cap)

    cap = f"McNemar between arms, per seed - {name}"
    comps = {(c["seed"], c["arm_a"], c["arm_b"]): c for c in analysis["comparisons"]}
    notes = notes_of(md, cap)
    assert len(tables[cap]) == 2 * len(comps)
    for r in tables[cap]:
        c = comps[(seed_of(r["seed"]), r["arm A"], r["arm B"])]
        m = c["result"][r["verdict"]]
        assert int(r["paired"]) == c["result"]["n_paired"]
        close(r["accuracy A"], m["accuracy_a"])
        close(r["accuracy B"], m["accuracy_b"])
        assert (int(r["right only in A"]), int(r["right only in B"])) == (m["b10"], m["b01"])
        close(r["exact p"], m["p_exact"])
        close(r["chi2 (cc)"], m["chi2"])
        close(r["p"], m["p"])
        assert notes.get(r["note"], "") == (m["note"] or "")
    checked.add(cap)

    cap = f"Accuracy per gold class (pooled over seeds 0, 1) - {name}"
    n_rows = 0
    for r in tables[cap]:
        pc = groups[r["arm"]]["pooled"]["per_class"][r["gold class"]]
        assert int(r["n"]) == pc["n"]
        close(r["answer"], pc["answer_accuracy"])
        if not groups[r["arm"]]["pooled"]["has_trace"]:
            assert r["trace"] == r["class"] == r["evidence"] == NO_TRACE
            n_rows += 1
            continue
        for col in ("trace", "class"):
            close(r[col], pc[f"{col}_accuracy"])
        close(r["evidence"], pc["evidence_exact_accuracy"])
        n_rows += 1
    assert n_rows == sum(len(g["pooled"]["per_class"]) for g in groups.values())
    checked.add(cap)

    cap = f"Parse status per arm and seed - {name}"
    for r in tables[cap]:
        s = groups[r["arm"]]["pooled"] if r["seed"] == "all" else cells[(r["arm"], seed_of(r["seed"]))]["summary"]
        assert {k: int(r[k]) for k in STATUSES} == {k: s["status"][k] for k in STATUSES}
        assert int(r["n"]) == s["n"]
    checked.add(cap)

    assert set(tables) == checked, f"tables not checked: {set(tables) - checked}"


def test_markdown_catches_a_wrong_number(analysis, rendered):
    """The check above can fail: a changed number in the analysis no longer matches the rendering."""
    md = rendered.markdown
    row = md_tables(md)["Accuracy per arm - babi / tiny-random"][0]
    g = analysis["groups"][0]
    close(row["mean"], g["metrics"]["answer"]["mean"])
    with pytest.raises(AssertionError):
        close(row["mean"], g["metrics"]["answer"]["mean"] + 0.002)
    with pytest.raises(AssertionError):
        close(row["mean"], None)


# ------------------------------------------------------------------------------------ html

def test_html_self_contained_with_one_png_per_plot(run_dir):
    tmp_path = run_dir
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    parser = _Resources()
    parser.feed(page)
    imgs = [v for tag, attr, v in parser.urls if tag == "img"]
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert len(imgs) == len(pngs) == PLOTS_PER_SECTION
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", md)
    assert sorted(linked) == sorted(f"plots/{p.name}" for p in pngs)
    on_disk = {p.read_bytes() for p in pngs}
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        w, h = png_ok(data)
        assert w > 300 and h > 200
        assert data in on_disk
    # nothing is fetched from anywhere: every URL is a data URI or an in-page anchor
    for tag, attr, value in parser.urls:
        assert value.startswith("data:") or value.startswith("#"), (tag, attr, value[:60])
    assert {"script", "link", "iframe", "object", "embed"}.isdisjoint(parser.tags)
    assert "@import" not in page and "url(" not in page
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page, re.I)
    anchors = set(re.findall(r'id="([^"]+)"', page))
    assert all(v[1:] in anchors for _, _, v in parser.urls if v.startswith("#"))


def test_header_states_experiment_command_and_version(run_dir, tmp_path):
    import tracekd
    from tracekd.report import reproduce_command

    page = (run_dir / "report.html").read_text(encoding="utf-8")
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "<code>tracekd run configs/synthetic.yaml</code>" in page
    assert "`tracekd run configs/synthetic.yaml`" in md
    assert f"**tracekd version:** {tracekd.__version__}" in md
    assert "synthetic" in md.split("\n")[0]
    (tmp_path / "plan.json").write_text(json.dumps({"config_path": "my runs/x.yaml"}))
    assert reproduce_command(tmp_path) == "tracekd run 'my runs/x.yaml'"
    (tmp_path / "plan.json").write_text(json.dumps({"config": {"name": "x"}}))
    assert reproduce_command(tmp_path) is None
    (tmp_path / "plan.json").unlink()
    assert reproduce_command(tmp_path) is None


def test_user_text_is_escaped(rendered):
    page, md = rendered.html, rendered.markdown
    assert "&lt;think&gt;" in page and "<think>" not in page
    assert "John &lt;b&gt;took&lt;/b&gt; the milk | there &amp; *here*." in page
    assert "Where is Mary? &lt;0&gt;" in page
    assert "<mark>Mary went to the kitchen 0.</mark>" in page  # gold evidence marked in the context
    # Markdown: traces and context inside fences, other text escaped
    assert "Where is Mary? \\<0\\>" in md
    fenced = re.findall(r"```text\n(.*?)\n```", md, re.S)
    assert any("<think>" in block for block in fenced)
    outside = re.sub(r"```text\n.*?\n```", "", md, flags=re.S)
    assert "<think>" not in outside and "<b>" not in outside


def test_same_input_same_bytes(analysis, rendered):
    again = render(Analysis.from_dict(json.loads(json.dumps(analysis))), command="tracekd run configs/synthetic.yaml")
    assert again.plots == rendered.plots
    assert again.markdown == rendered.markdown and again.html == rendered.html


# ------------------------------------------------------------------------------------ degenerate input

def _all_answers_right(arm, seed, js):
    import dataclasses

    if arm == "correct":
        return [dataclasses.replace(j, answer_ok=True, answer_f1=1.0) for j in js]
    if arm == "incorrect":
        return []
    return js


def test_degenerate_statistics_and_single_seed(tmp_path):
    analysis = json.loads(json.dumps(make_analysis(seeds=(3,), n=12, judgements_hook=_all_answers_right)))
    correct = next(g for g in analysis["groups"] if g["arm"] == "correct")
    assert correct["pooled"]["steps"]["trace"]["chi2"] is None  # the answer column "wrong" is empty
    empty = next(g for g in analysis["groups"] if g["arm"] == "incorrect")
    assert empty["pooled"]["n"] == 0 and empty["metrics"]["answer"]["mean"] is None
    write_report(tmp_path, Analysis.from_dict(analysis))
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    tables = md_tables(md)
    cap = "Step x answer statistics, whole trace - babi / tiny-random"
    rows = {r["arm"]: r for r in tables[cap]}
    assert [r["seed"] for r in tables[cap]] == ["3", "3", "3"]  # one seed: no pooled rows
    notes = notes_of(md, cap)
    assert rows["correct"]["chi2"] == rows["correct"]["phi"] == "n/a"
    assert notes[rows["correct"]["note"]].startswith("a row or column of the table is empty")
    assert rows["incorrect"]["n"] == "0" and notes[rows["incorrect"]["note"]] == "no items"
    acc = md_tables(md)["Accuracy per arm - babi / tiny-random"]
    assert all(r["SD"] in ("n/a", NO_TRACE) for r in acc)
    assert all(r["mean"] == "n/a" and r["95% CI (pooled)"] in ("n/a", "") for r in acc if r["arm"] == "incorrect")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    parser = _Resources()
    parser.feed(page)
    srcs = [v for t, _, v in parser.urls if t == "img"]
    assert len(srcs) == PLOTS_PER_SECTION
    for src in srcs:
        png_ok(base64.b64decode(src.split(",", 1)[1]))
    assert "pooled over seeds" not in md
    assert "Reproduce" not in md  # no plan.json: no command claimed


def test_one_report_holds_every_dataset_and_student(tmp_path, analysis):
    other = json.loads(json.dumps(analysis).replace('"babi"', '"cotemp"').replace(
        '"tiny-random"', '"meta-llama/Llama-3.2-1B-Instruct"'))
    both = {**analysis, **{k: analysis[k] + other[k] for k in ("cells", "groups", "comparisons", "examples")}}
    write_report(tmp_path, Analysis.from_dict(both))
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert len(list((tmp_path / "plots").glob("*.png"))) == 2 * PLOTS_PER_SECTION
    assert page.count('src="data:image/png;base64,') == 2 * PLOTS_PER_SECTION
    tables = md_tables(md)
    assert "Accuracy per arm - cotemp / meta-llama/Llama-3.2-1B-Instruct" in tables
    assert len(tables["Overview: means over seeds; last column pooled over seeds"]) == 2 * len(analysis["arms"])
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    headings = {"-".join(re.sub(r"[^\w\- ]", "", h.lower()).split(" "))
                for h in re.findall(r"^#+ (.*)$", _unescape(md), re.M)}
    for target in re.findall(r"^- \[[^\]]+\]\(#([^)]+)\)$", md, re.M):
        assert target in headings, target


# ------------------------------------------------------------------------------------ command line

def test_cli_writes_report_and_prints_paths(tmp_path, analysis, capsys):
    write_json(tmp_path / "analysis.json", analysis)
    assert main(["report", str(tmp_path), "--examples", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("report.md", "report.html"):
        assert str(tmp_path / name) in out and (tmp_path / name).is_file()
    assert len(list((tmp_path / "plots").glob("*.png"))) == PLOTS_PER_SECTION
    assert "1 shown of" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_cli_errors_name_the_problem(tmp_path, analysis, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "no analysis at" in capsys.readouterr().err
    broken = json.loads(json.dumps(analysis))
    del broken["groups"][1]["pooled"]["steps"]["trace"]["phi"]
    write_json(tmp_path / "analysis.json", broken)
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "analysis.json" in err and "groups[1].pooled.steps.trace.phi" in err


def test_report_from_tracekd_analyze_output(tmp_path, capsys):
    """The --out file of `tracekd analyze` renders too: one arm per labelled file."""
    from report_fixture import ARMS, example, judgement
    import random

    paths = []
    for arm in ARMS[1:]:
        rng = random.Random(arm)
        paths.append(tmp_path / f"{arm}.jsonl")
        write_records(paths[-1], [judgement(rng, example(i), arm)[0] for i in range(30)])
    assert main(["analyze", *map(str, paths), "--out", str(tmp_path / "a.json")]) == 0
    assert main(["report", str(tmp_path / "rep"), "--analysis", str(tmp_path / "a.json")]) == 0
    capsys.readouterr()
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    analysis = json.loads((tmp_path / "a.json").read_text())
    tables = md_tables(md)
    cap = "Step x answer statistics, whole trace - babi / (not recorded)"  # dataset from the ids
    cells = {c["arm"]: c for c in analysis["cells"]}
    assert set(cells) == set(ARMS[1:])
    for r in tables[cap]:
        close(r["chi2"], cells[r["arm"]]["summary"]["steps"]["trace"]["chi2"])
    assert "judgements /" not in md and " / -" not in md
    assert "to record them, pass `--show-examples K` to `tracekd analyze`" in _unescape(md)
    assert len(list((tmp_path / "rep" / "plots").glob("*.png"))) == PLOTS_PER_SECTION


# ------------------------------------------------------------------------------------ chromium

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome")
                 if shutil.which(b)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: appended to a copy of the page: after load, the title says how many images decoded
PROBE = """<script>window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.title = "IMAGES " + ok + "/" + imgs.length + " WIDTH " + document.documentElement.scrollWidth;
});</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium)")
def test_headless_chromium_loads_every_image(tmp_path, run_dir):
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "\n</body>"), encoding="utf-8")

    def chromium(*args: str) -> subprocess.CompletedProcess:
        profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=120)

    dom = chromium("--virtual-time-budget=10000", "--window-size=1000,2000", "--dump-dom", probe.as_uri())
    title = re.search(r"<title>IMAGES (\d+)/(\d+) WIDTH (\d+)</title>", dom.stdout)
    assert title, dom.stdout[:500] + dom.stderr[-2000:]
    ok, total, width = map(int, title.groups())
    assert ok == total == PLOTS_PER_SECTION
    assert width <= 1000  # nothing forces the page to scroll sideways at this window width

    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,3000", (run_dir / "report.html").as_uri())
    w, h = png_ok(shot.read_bytes())
    assert (w, h) == (1200, 3000)
    from PIL import Image

    import numpy as np

    with Image.open(shot) as im:
        dark = int((np.asarray(im.convert("L")) < 128).sum())
    assert dark > 10_000  # text and figures were drawn, not a blank page
