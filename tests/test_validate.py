"""`tracekd validate`: every problem printed as file:line: field, a summary line, exit 1 on any problem."""

from __future__ import annotations

import json

from tracekd.cli import main

from conftest import BABI, COTEMP, needs_babi, needs_cotemp


@needs_babi
@needs_cotemp
def test_clean_data_exits_0(capsys):
    assert main(["validate", "--dataset", "babi", str(BABI)]) == 0
    assert main(["validate", "--dataset", "cotemp", str(COTEMP / "equal.json"), str(COTEMP / "mix.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"babi: no problems ({BABI})",
                   f"cotemp: no problems ({COTEMP / 'equal.json'}, {COTEMP / 'mix.json'})"]


def test_every_problem_is_listed_and_exit_is_1(tmp_path, capsys):
    babi_file = tmp_path / "qa1_single-supporting-fact_train.txt"
    babi_file.write_text("1 Mary went home.\n2 Where is Mary? home 1\n3 Where is Mary?\thome\t5\n", encoding="utf-8")
    cot = tmp_path / "equal.json"
    cot.write_text(json.dumps({"index": 0, "triple_element": "S1_R1_O2", "question": "Q?",
                               "facts": [], "answer": []}) + "\n{\n", encoding="utf-8")

    assert main(["validate", "--dataset", "babi", str(babi_file)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [
        f"{babi_file}:2: field 'question': question line without tabs "
        "(expected 'ID question<TAB>answer<TAB>supporting ids')",
        f"{babi_file}:3: field 'supporting_ids': supporting id 5 out of range (must be an earlier line, 1..2)",
    ]
    assert out[2] == f"babi: 2 problems in 1 file ({babi_file})"

    assert main(["validate", "--dataset", "cotemp", str(cot), str(tmp_path / "missing")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 1)[0] for line in out[:-1]] == [f"{cot}:1", f"{cot}:1", f"{cot}:2",
                                                             str(tmp_path / "missing")]
    assert "field 'facts': empty list" in out[0] and "field 'answer': empty list" in out[1]
    assert "invalid JSON" in out[2] and "no such file or folder" in out[3]
    assert out[-1].startswith("cotemp: 4 problems in 2 files (")


def test_unknown_dataset_is_a_clear_error(capsys):
    assert main(["validate", "--dataset", "babl", str(BABI)]) == 1
    assert "did you mean 'babi'?" in capsys.readouterr().err
