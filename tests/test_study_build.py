"""`tracekd study build|export|analyze|power` from the command line, on a real `tracekd build` folder with
hand-written teacher arms; bad input is an error naming file, line and field."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

pytest.importorskip("fastapi")

from test_study_support import ADMIN_TOKEN, TEACHER_ARMS, make_build  # noqa: E402

from tracekd.cli import main as tracekd  # noqa: E402

CONDITIONS = "decomposed=correct," + ",".join(f"{a}={a}" for a in TEACHER_ARMS)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("b"))


def study(build, out, *extra: str) -> int:
    return tracekd(["study", "build", str(build), "--out", str(out), "--items-per-condition", "6",
                    "--items-per-participant", "3", *extra])


def test_items_balanced_shared_and_seeded(build, tmp_path):
    assert study(build, tmp_path / "s1") == 0
    data = json.loads((tmp_path / "s1" / "study.json").read_text())
    items = data["items"]
    by_cond = Counter(it["condition"] for it in items)
    assert by_cond == {"decomposed": 6, "teacher-trace": 6, "teacher-summary": 6, "teacher-explanation": 6}
    # the same questions in every condition (all four arms share the test ids here)
    questions = {c: sorted(it["example_id"] for it in items if it["condition"] == c) for c in by_cond}
    assert len({tuple(q) for q in questions.values()}) == 1 and all(it["shared"] for it in items)
    # balanced over the three bAbI classes
    assert set(Counter(it["class"] for it in items if it["condition"] == "decomposed").values()) == {2}
    dec = next(it for it in items if it["condition"] == "decomposed")
    assert dec["trace"].startswith("The category of the question") and "<think>" not in dec["trace"]
    assert dec["answer"] and dec["question"].endswith("?") and dec["context"]
    tt = next(it for it in items if it["condition"] == "teacher-trace")
    assert tt["answer"].startswith("The answer is") and tt["answer_source"] == "completion"
    manifest = json.loads((tmp_path / "s1" / "manifest.json").read_text())
    assert manifest["kind"] == "study" and manifest["seed"] == 0 and "study.json" in manifest["files"]
    # same seed, same bytes; another seed, other items
    assert study(build, tmp_path / "s2") == 0
    assert (tmp_path / "s1" / "study.json").read_bytes() == (tmp_path / "s2" / "study.json").read_bytes()
    assert study(build, tmp_path / "s3", "--seed", "1") == 0
    other = json.loads((tmp_path / "s3" / "study.json").read_text())["items"]
    assert [it["id"] for it in other] != [it["id"] for it in items]
    # an existing study is not overwritten by accident
    assert study(build, tmp_path / "s1") == 1
    assert study(build, tmp_path / "s1", "--overwrite") == 0


def test_conditions_from_any_arm_and_rows_without_examples(build, tmp_path):
    # a teacher arm kept in another folder, without examples/: question and context come from the prompt
    other = tmp_path / "elsewhere" / "teacher-trace"
    other.mkdir(parents=True)
    (other / "test.jsonl").write_text((build / "teacher-trace" / "test.jsonl").read_text())
    cfg = tmp_path / "study.yaml"
    cfg.write_text("conditions:\n  - {name: decomposed, arm: correct}\n"
                   f"  - {{name: raw, arm: teacher-trace, source: {tmp_path / 'elsewhere'}}}\n"
                   "items_per_condition: 4\nitems_per_participant: 2\n")
    assert tracekd(["study", "build", str(build), "--config", str(cfg), "--out", str(tmp_path / "s")]) == 0
    items = json.loads((tmp_path / "s" / "study.json").read_text())["items"]
    raw = [it for it in items if it["condition"] == "raw"]
    dec = {it["example_id"]: it for it in items if it["condition"] == "decomposed"}
    assert len(raw) == 4 and all(r["question"] == dec[r["example_id"]]["question"] for r in raw)
    assert all(r["context"] == dec[r["example_id"]]["context"] for r in raw)
    # the same from the command line alone
    assert tracekd(["study", "build", str(build), "--out", str(tmp_path / "s2"), "--items-per-condition", "4",
                    "--items-per-participant", "2", "--conditions",
                    f"decomposed=correct,raw=teacher-trace@{tmp_path / 'elsewhere'}"]) == 0
    again = json.loads((tmp_path / "s2" / "study.json").read_text())["items"]
    assert [it["trace"] for it in again] == [it["trace"] for it in items]


def test_a_run_folder_resolves_to_its_build_stage(build, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(build, run / "stages" / "build-0a1b2c" / "sets")
    assert tracekd(["study", "build", str(run), "--conditions", "decomposed=correct,incorrect=teacher-trace",
                    "--out", str(tmp_path / "s")]) == 0
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["build_dir"].endswith("stages/build-0a1b2c/sets")
    shutil.copytree(build, run / "stages" / "build-ffffff" / "sets")
    assert tracekd(["study", "build", str(run), "--out", str(tmp_path / "t")]) == 1
    assert "2 build stages" in capsys.readouterr().err


def test_bad_inputs_are_named(build, tmp_path, capsys):
    assert tracekd(["study", "build", str(build), "--out", str(tmp_path / "x"),
                    "--conditions", "decomposed=correct,ghost=no-such-arm"]) == 1
    err = capsys.readouterr().err
    assert "condition 'ghost'" in err and "no-such-arm" in err and "correct" in err and "Traceback" not in err
    bad = tmp_path / "bad"
    (bad / "examples").mkdir(parents=True)
    (bad / "examples" / "test.jsonl").write_text((build / "examples" / "test.jsonl").read_text())
    (bad / "arm").mkdir()
    rows = (build / "correct" / "test.jsonl").read_text().splitlines()
    broken = json.loads(rows[2])
    broken["completion"] = "not a list"
    (bad / "arm" / "test.jsonl").write_text("\n".join([rows[0], rows[1], json.dumps(broken), *rows[3:]]) + "\n")
    assert tracekd(["study", "build", str(bad), "--out", str(tmp_path / "y"), "--conditions", "a=arm"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"arm/test\.jsonl:3: field 'completion': ", err), err
    assert tracekd(["study", "build", str(build), "--out", str(tmp_path / "z"), "--conditions", CONDITIONS,
                    "--items-per-condition", "99"]) == 1
    assert "has 18 rows" in capsys.readouterr().err
    assert tracekd(["study", "build", str(build), "--out", str(tmp_path / "z"), "--design", "sideways"]) == 1
    assert "design" in capsys.readouterr().err


def test_export_and_analyze_from_the_command_line(build, tmp_path, capsys):
    from fastapi.testclient import TestClient
    from test_study_app import enter, finish

    from tracekd.study.app import create_app

    out = tmp_path / "s"
    assert study(build, out, "--items-per-participant", "2") == 0
    assert tracekd(["study", "export", str(out)]) == 1
    assert "has the study been served" in capsys.readouterr().err
    app = create_app(out, admin_token=ADMIN_TOKEN)
    for k in range(8):
        c = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
        enter(c, pid=f"cli{k}")
        finish(c, value=1 + k % 5)
    app.state.store.dispose()
    assert tracekd(["study", "export", str(out), "--drop-prolific-ids"]) == 0
    assert "8 participants" in capsys.readouterr().out
    export = out / "export"
    for name in ("responses", "participants", "codebook"):
        assert (export / f"{name}.csv").is_file() and (export / f"{name}.jsonl").is_file()
    people = [json.loads(x) for x in (export / "participants.jsonl").read_text().splitlines()]
    assert len(people) == 8 and all(p["prolific_pid"] is None for p in people)
    codebook = (export / "codebook.csv").read_text()
    assert "predictability" in codebook and "Strongly disagree" in codebook
    assert tracekd(["study", "analyze", str(export), "--keep-excluded", "--bootstrap", "200"]) == 0
    printed = capsys.readouterr().out
    assert "kruskal-wallis" in printed and "interpretability" in printed
    for name in ("analysis.json", "tables.md", "plots/likert.png", "plots/scales.png", "manifest.json"):
        assert (export / "analysis" / name).is_file()
    a = json.loads((export / "analysis" / "analysis.json").read_text())
    assert a["exclusions"]["participants"] == 8 and a["exclusions"]["applied"] is False
    # the study folder itself works too (reads its database)
    assert tracekd(["study", "analyze", str(out), "--no-plots", "--bootstrap", "200"]) == 0
    assert (out / "analysis" / "analysis.json").is_file()
    # a bad exported row is named by file, line and field
    lines = (export / "responses.jsonl").read_text().splitlines()
    row = json.loads(lines[4])
    row["value"] = 9
    lines[4] = json.dumps(row)
    (export / "responses.jsonl").write_text("\n".join(lines) + "\n")
    assert tracekd(["study", "analyze", str(export)]) == 1
    assert re.search(r"responses\.jsonl:5: field 'value'", capsys.readouterr().err)


def test_power_command(capsys):
    assert tracekd(["study", "power", "--effect-size", "0.8", "--comparisons", "6"]) == 0
    out = capsys.readouterr().out
    n = int(re.search(r"(\d+) participants per group", out).group(1))
    assert n > 26 and "power" in out
    assert tracekd(["study", "power", "--effect-size", "0.25", "--test", "anova", "--groups", "4"]) == 0
    assert "45 participants per group" in capsys.readouterr().out
    assert tracekd(["study", "power", "--effect-size", "-1"]) == 1


def test_serve_command_runs_the_app_on_loopback(build, tmp_path):
    import os
    import subprocess
    import sys
    import time

    import httpx
    from test_study_support import free_port

    out = tmp_path / "s"
    assert study(build, out) == 0
    port = free_port()
    env = {**os.environ, "TRACEKD_STUDY_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "tracekd.cli", "study", "serve", str(out), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/start?PROLIFIC_PID=abc", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.3)
        assert r.status_code == 200 and 'value="abc"' in r.text
        assert httpx.get(f"http://127.0.0.1:{port}/admin", timeout=5).status_code == 401
        auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        assert httpx.get(f"http://127.0.0.1:{port}/admin", headers=auth, timeout=5).status_code == 200
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert (out / "study.db").is_file()
    assert "abc" not in log  # no access log: the Prolific id of the link is not in the server's output
    assert ADMIN_TOKEN not in log
