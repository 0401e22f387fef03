"""Outputs never mix with stale files: every writer refuses a used folder unless --overwrite, then replaces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracekd.cli import main
from tracekd.io import MANIFEST, replace_dir


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _manifest_lists_every_file(folder: Path) -> None:
    listed = set(json.loads((folder / MANIFEST).read_text())["files"])
    assert listed == _files(folder) - {MANIFEST}


@pytest.fixture
def babi_all(tmp_path) -> Path:
    out = tmp_path / "babi"
    assert main(["synth", "babi", "--n", "6", "--n-test", "2", "--seed", "0", "--out", str(out)]) == 0
    return out


def test_synth_refuses_a_used_folder_and_overwrite_replaces_only_its_own_files(babi_all, capsys):
    assert len(_files(babi_all)) == 23  # 11 tasks x train/test + manifest
    _manifest_lists_every_file(babi_all)
    (babi_all / "NOTES.md").write_text("mine")
    capsys.readouterr()
    assert main(["synth", "babi", "--tasks", "qa1,qa2", "--n", "6", "--out", str(babi_all)]) == 1
    err = capsys.readouterr().err
    assert "already holds 24 entries" in err and "--overwrite" in err
    assert len(_files(babi_all)) == 24  # untouched

    assert main(["synth", "babi", "--tasks", "qa1,qa2", "--n", "6", "--out", str(babi_all), "--overwrite"]) == 0
    assert "kept 1 file(s) not written by tracekd synth: NOTES.md" in capsys.readouterr().out
    assert _files(babi_all) == {MANIFEST, "NOTES.md", "qa1_single-supporting-fact_train.txt",
                                "qa1_single-supporting-fact_test.txt", "qa2_two-supporting-facts_train.txt",
                                "qa2_two-supporting-facts_test.txt"}
    assert set(json.loads((babi_all / MANIFEST).read_text())["files"]) == _files(babi_all) - {MANIFEST, "NOTES.md"}


def test_synth_cotemp_refuses_too(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["synth", "cotemp", "--n", "3", "--out", str(out)]) == 0
    _manifest_lists_every_file(out)
    assert main(["synth", "cotemp", "--n", "3", "--out", str(out)]) == 1
    assert main(["synth", "cotemp", "--n", "2", "--categories", "mix", "--out", str(out), "--overwrite"]) == 0
    assert _files(out) == {MANIFEST, "mix.json"}
    # --overwrite never deletes what another command wrote
    assert main(["build", "--dataset", "cotemp", "--data", str(out / "mix.json"), "--out", str(tmp_path / "b"),
                 "--quiet"]) == 0
    before = _files(tmp_path / "b")
    capsys.readouterr()
    assert main(["synth", "cotemp", "--n", "2", "--out", str(tmp_path / "b"), "--overwrite"]) == 1
    assert "holds the output of another command (manifest kind 'build')" in capsys.readouterr().err
    assert _files(tmp_path / "b") == before


def test_validate_and_build_agree_on_a_task_subset(babi_all, tmp_path, capsys):
    main(["synth", "babi", "--tasks", "qa1,qa2", "--n", "6", "--out", str(babi_all), "--overwrite"])
    capsys.readouterr()
    assert main(["validate", "--dataset", "babi", str(babi_all)]) == 0
    out = capsys.readouterr().out
    assert "note: " in out and "--option tasks=qa1,qa2" in out and out.endswith(f"babi: no problems ({babi_all})\n")
    assert main(["build", "--dataset", "babi", "--data", str(babi_all), "--out", str(tmp_path / "b"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "--option tasks=qa1,qa2" in err and "field 'tasks'" in err
    assert not (tmp_path / "b").exists()
    assert main(["build", "--dataset", "babi", "--data", str(babi_all), "--option", "tasks=qa1,qa2",
                 "--out", str(tmp_path / "b"), "--quiet"]) == 0


def test_build_refuses_then_replaces_the_whole_folder(babi_all, tmp_path, capsys):
    out = tmp_path / "build"
    args = ["build", "--dataset", "babi", "--data", str(babi_all), "--out", str(out), "--quiet"]
    assert main([*args, "--arms", "vanilla,correct,incorrect-class"]) == 0
    _manifest_lists_every_file(out)
    before = _files(out)
    capsys.readouterr()
    assert main([*args, "--arms", "correct"]) == 1
    assert "--overwrite" in capsys.readouterr().err and _files(out) == before

    # a build that fails leaves the old one as it was, and no temporary folder behind
    assert main([*args, "--arms", "correct", "--overwrite", "--option", "tasks=qa3"]) == 1
    assert _files(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["babi", "build"]

    assert main([*args, "--arms", "correct", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["correct", "examples", MANIFEST]
    _manifest_lists_every_file(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["babi", "build"]


def test_build_summary_and_manifest_explain_their_words(babi_all, tmp_path, capsys):
    out = tmp_path / "build"
    assert main(["build", "--dataset", "babi", "--data", str(babi_all), "--arms", "correct,incorrect",
                 "--max-train", "20", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    m = json.loads((out / MANIFEST).read_text())
    glossary = m["glossary"]
    assert set(glossary["counts"]) == set(m["counts"]["train"])
    cases = {case for split in m["evidence_cases"].values() for arm in split.values() for case in arm}
    assert cases and cases <= set(glossary["evidence_cases"])
    assert "train: 20 rows in each arm's file (66 examples loaded, 20 selected by --max-train)" in printed
    for case in cases:
        assert f" {case}: {glossary['evidence_cases'][case]}" in printed


@pytest.fixture
def built(babi_all, tmp_path) -> Path:
    out = tmp_path / "build"
    assert main(["build", "--dataset", "babi", "--data", str(babi_all), "--arms", "correct",
                 "--out", str(out), "--quiet"]) == 0
    return out


def test_score_and_analyze_refuse_then_replace(built, tmp_path, capsys):
    scored = tmp_path / "scored"
    args = ["score", str(built / "correct" / "test.jsonl"), "--examples", str(built / "examples" / "test.jsonl"),
            "--text-field", "completion.0.content", "--finish-field", "none", "--out", str(scored)]
    assert main(args) == 0
    (scored / "stale.txt").write_text("from an earlier run")
    capsys.readouterr()
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in scored.iterdir()) == ["judgements.jsonl", "summary.json"]

    analysis = tmp_path / "analysis.json"
    args = ["analyze", str(scored / "judgements.jsonl"), "--out", str(analysis)]
    assert main(args) == 0
    first = analysis.read_bytes()
    capsys.readouterr()
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err and analysis.read_bytes() == first
    assert main([*args, "--overwrite"]) == 0


def test_report_refuses_an_existing_report(tmp_path, capsys):
    (tmp_path / "analysis.json").write_text("{}")
    (tmp_path / "report.md").write_text("# old")
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "already holds a report (report.md)" in err and "--overwrite" in err


def test_replace_dir_keeps_the_old_folder_when_the_block_fails(tmp_path):
    out = tmp_path / "o"
    with replace_dir(out) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with replace_dir(out, overwrite=True) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("interrupted")
    assert _files(out) == {"a"} and [p.name for p in tmp_path.iterdir()] == ["o"]
