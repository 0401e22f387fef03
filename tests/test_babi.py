"""bAbI loader: the shared data, the official multi-question layout, options, and every error kind."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tracekd.datasets import DATASETS, babi
from tracekd.errors import ConfigError, DataError

from conftest import BABI, needs_babi

SPEC = DATASETS.get("babi")

# The official syntax: several questions per story, a space before the first tab.
OFFICIAL = """\
1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Sandra moved to the garden.
6 Where is Daniel? \thallway\t4
1 Sandra travelled to the office.
2 Sandra went to the bathroom.
3 Where is Sandra? \tbathroom\t2
"""


@pytest.fixture(scope="module")
def shared():
    return SPEC.load_splits(BABI)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the shared data -----------------------------------------------------------------------------


@needs_babi
def test_shared_counts_and_labels(shared):
    assert {k: len(v) for k, v in shared.items()} == {"train": 3773, "test": 376}
    test_per_task = Counter(ex.meta["task_id"] for ex in shared["test"])
    assert test_per_task == {"qa1": 20, "qa2": 20, "qa4": 100, "qa7": 20, "qa8": 20, "qa12": 20, "qa14": 20,
                             "qa15": 25, "qa16": 100, "qa17": 12, "qa18": 19}
    assert SPEC.labels == babi.LABELS and len(SPEC.labels) == 11
    for split, examples in shared.items():
        for ex in examples:
            assert ex.split == split and ex.dataset == "babi"
            assert ex.gold.label == babi.TASKS[int(ex.meta["task_id"][2:])]
            assert ex.gold.evidence, ex.id  # every first question names its supporting lines
            assert list(ex.gold.evidence) == sorted(set(ex.gold.evidence))
            assert all(0 <= i < len(ex.context) for i in ex.gold.evidence)
            assert all(a and a == a.strip() for a in ex.answers)


@needs_babi
def test_shared_ids_unique_and_stable(shared):
    ids = [ex.id for split in shared.values() for ex in split]
    assert len(ids) == len(set(ids))
    again = SPEC.load_splits(BABI)
    assert [ex.to_dict() for ex in again["train"]] == [ex.to_dict() for ex in shared["train"]]
    assert [ex.to_dict() for ex in again["test"]] == [ex.to_dict() for ex in shared["test"]]


@needs_babi
def test_first_qa2_train_story(shared):
    ex = next(e for e in shared["train"] if e.meta["task_id"] == "qa2")
    assert ex.id == "babi/qa2/train/0/5"
    assert ex.question == "Where is the milk?"
    assert ex.answers == ("office",)
    assert ex.gold.label == "two-supporting-facts"
    assert ex.evidence_lines == ("Mary took the milk there.", "Mary journeyed to the office.")
    assert ex.context[0] == "Daniel went to the kitchen." and len(ex.context) == 4


@needs_babi
def test_list_answer_and_three_supporting_lines(shared):
    ex = next(e for e in shared["train"] if e.meta["task_id"] == "qa8" and e.meta["line"] == 389)
    assert ex.question == "What is Sandra carrying?"
    assert ex.answers == ("milk", "football")
    assert ex.evidence_lines == ("Sandra grabbed the milk there.", "Sandra took the football there.")
    three = [e for e in shared["train"] if len(e.gold.evidence) == 3]
    assert three and {e.meta["task_id"] for e in three} <= {"qa7", "qa8", "qa14", "qa16", "qa17"}


@needs_babi
def test_validate_shared_is_clean():
    assert babi.validate(BABI) == []


# --- the official layout, a single file, options ---------------------------------------------------


def test_official_multi_question_file(tmp_path):
    write(tmp_path, "qa1_single-supporting-fact_train.txt", OFFICIAL)
    write(tmp_path, "qa1_single-supporting-fact_test.txt", OFFICIAL)
    first = SPEC.load_splits(tmp_path, tasks="qa1")
    assert [e.id for e in first["train"]] == ["babi/qa1/train/0/3", "babi/qa1/train/1/3"]
    assert first["train"][0].question == "Where is Mary?"  # the space before the tab is stripped
    assert first["test"][1].evidence_lines == ("Sandra went to the bathroom.",)

    every = SPEC.load_splits(tmp_path, tasks="qa1", first_question_only=False)
    assert [e.id for e in every["train"]] == ["babi/qa1/train/0/3", "babi/qa1/train/0/6", "babi/qa1/train/1/3"]
    second = every["train"][1]
    # context = the sentence lines before the question; the earlier question line is not one of them
    assert second.context == ("Mary moved to the bathroom.", "John went to the hallway.",
                              "Daniel went back to the hallway.", "Sandra moved to the garden.")
    assert second.gold.evidence == (2,) and second.answers == ("hallway",)
    assert second.meta["supporting_ids"] == [4]


def test_single_file_and_short_name(tmp_path):
    path = write(tmp_path, "qa3_test.txt", OFFICIAL)  # en-valid style name; tasks ignored for a file
    splits = SPEC.load_splits(path)
    assert len(splits["test"]) == 2 and splits["train"] == []
    assert splits["test"][0].gold.label == "three-supporting-facts"


@needs_babi
def test_tasks_option(tmp_path):
    assert babi.BabiOptions().tasks == babi.METHOD_TASKS
    assert babi.BabiOptions(tasks="counting, qa1").tasks == ("qa1", "qa7")
    assert babi.BabiOptions(tasks=[2, "qa2"]).tasks == ("qa2",)
    sub = SPEC.load_splits(BABI, tasks="qa1,qa17")
    assert {k: len(v) for k, v in sub.items()} == {"train": 200 + 125, "test": 20 + 12}
    with pytest.raises(ConfigError, match="did you mean 'counting'"):
        babi.BabiOptions(tasks="countng")
    with pytest.raises(ConfigError, match="first_question_only"):
        babi.BabiOptions(first_question_only="no")
    with pytest.raises(ConfigError, match="did you mean 'tasks'"):
        SPEC.make_options(task="qa1")
    with pytest.raises(DataError, match=r"qa3 \(three-supporting-facts\)") as e:
        SPEC.load_splits(BABI, tasks="qa1,qa3")
    assert e.value.field == "tasks"


# --- malformed input -------------------------------------------------------------------------------

GOOD = "1 Mary went to the kitchen.\n2 John went to the garden.\n"
BAD = [
    # (text, line, field, message part)
    (GOOD + "3 Where is Mary? kitchen 1\n", 3, "question", "without tabs"),
    (GOOD + "x Where is Mary?\tkitchen\t1\n", 3, "line_id", "not a positive integer"),
    ("1 Mary went to the kitchen.\n2 John went to the garden.\n2 Where is Mary?\tkitchen\t1\n", 3, "line_id",
     "does not increase"),
    ("2 Mary went to the kitchen.\n3 Where is Mary?\tkitchen\t2\n", 1, "line_id", "must start at line ID 1"),
    (GOOD + "3 Where is Mary?\tkitchen\t7\n", 3, "supporting_ids", "out of range"),
    (GOOD + "3 Where is Mary?\tkitchen\t0\n", 3, "supporting_ids", "out of range"),
    (GOOD + "3 Where is Mary?\tkitchen\t1 z\n", 3, "supporting_ids", "not a positive integer"),
    (GOOD + "3 Where is Mary?\tkitchen\t1\n4 Where is John?\tgarden\t3\n", 4, "supporting_ids",
     "points at a question line"),
    (GOOD + "3 Where is Mary?\tkitchen\n", 3, "supporting_ids", "missing"),
    (GOOD + "3 Where is Mary?\tkitchen\t\n", 3, "supporting_ids", "missing"),
    ("1 Mary went to the kitchen.\n3 John went to the garden.\n4 Where is Mary?\tkitchen\t2\n", 3,
     "supporting_ids", "no line 2"),
    (GOOD + "3 Where is Mary?\t\t1\n", 3, "answer", "empty answer"),
    (GOOD + "3 What is Mary carrying?\tmilk,\t1\n", 3, "answer", "empty answer"),
    (GOOD + "3 \tkitchen\t1\n", 3, "question", "empty question"),
    (GOOD, 1, "question", "story has no question"),
    (GOOD + "3 Where is Mary?\tkitchen\t1\tmore\n", 3, "line", "extra"),
]


@pytest.mark.parametrize("text,line,field,message", BAD)
def test_malformed_line_is_named(tmp_path, text, line, field, message):
    path = write(tmp_path, "qa1_single-supporting-fact_train.txt", text)
    with pytest.raises(DataError) as e:
        SPEC.load_splits(path)
    err = e.value
    assert (err.path, err.line, err.field) == (str(path), line, field)
    assert str(err).startswith(f"{path}:{line}: field {field!r}: ") and message in str(err)
    assert any((p.line, p.field) == (line, field) for p in babi.validate(path))


@pytest.mark.parametrize("name,message", [
    ("qa2_counting_train.txt", "does not match qa2"),
    ("qa21_extra_train.txt", "unknown task number"),
    ("qa1_single-supporting-fact_valid.txt", "unknown task file name"),
    ("notes.txt", "unknown task file name"),
])
def test_unknown_task_file_name(tmp_path, name, message):
    write(tmp_path, "qa1_single-supporting-fact_train.txt", OFFICIAL)
    bad = write(tmp_path, name, OFFICIAL)
    with pytest.raises(DataError, match=message) as e:
        SPEC.load_splits(tmp_path, tasks="qa1")
    assert e.value.path == str(bad) and e.value.field == "file_name"
    assert [p.path for p in babi.validate(tmp_path)] == [str(bad)]


def test_duplicate_and_empty(tmp_path):
    write(tmp_path, "qa1_single-supporting-fact_train.txt", OFFICIAL)
    write(tmp_path, "qa1_train.txt", OFFICIAL)
    assert any("duplicate" in str(p) for p in babi.validate(tmp_path))
    empty = write(tmp_path / "e", "qa1_test.txt", "\n")
    assert [str(p) for p in babi.validate(empty)] == [f"{empty}: empty file"]
    assert babi.validate(tmp_path / "nothing")[0].message == "no such file or folder"
    (tmp_path / "z").mkdir()
    with pytest.raises(DataError, match="no bAbI task files"):
        SPEC.load_splits(tmp_path / "z")


def test_validate_reports_every_problem_in_one_file(tmp_path):
    text = (
        "1 Mary went to the kitchen.\n"
        "2 Where is Mary? kitchen 1\n"            # no tabs
        "3 Where is Mary?\tkitchen\t9\n"          # out of range
        "1 John went to the garden.\n"
        "x John went home.\n"                      # bad id
        "2 Where is John?\t\t1\n"                  # empty answer
        "3 Where is John?\tgarden\t2\n"            # points at a question line
    )
    path = write(tmp_path, "qa1_single-supporting-fact_test.txt", text)
    problems = babi.validate(path)
    assert [(p.line, p.field) for p in problems] == [
        (2, "question"), (3, "supporting_ids"), (5, "line_id"), (6, "answer"), (7, "supporting_ids")]
    assert all(p.path == str(path) for p in problems)
