"""`tracekd synth babi`: every generated answer re-derived by an independent checker (tests/babi_oracle.py).

The checker parses the written text and solves each task with its own rules; it never calls the
generator. It is itself checked against the real bAbI files, so it cannot simply mirror the
generator's assumptions.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

import babi_oracle as oracle
from conftest import BABI, needs_babi
from tracekd.cli import main
from tracekd.errors import ConfigError
from tracekd.io import sha256_file
from tracekd.synth.babi import TASKS, file_name, format_stories, generate_task, task_number, write_babi

N = 1000


@pytest.mark.parametrize("task", list(TASKS), ids=[f"qa{t}" for t in TASKS])
def test_every_answer_and_its_support_check_out(task):
    """1,000 stories per task: answer right, supporting ids are story lines, they alone fix the answer,
    and each one is needed (qa7/qa8: they are exactly the person's holding events)."""
    text = format_stories(generate_task(task, N, seed=0))
    stories = oracle.parse(text)
    assert len(stories) == N
    problems = []
    for k, story in enumerate(stories):
        problems += [f"story {k} (file line {story.first_line}): {p}" for p in oracle.check_story(task, story)]
    assert not problems, "\n".join(problems[:20])
    # every task offers more than one answer, and no answer swamps the others
    answers = [s.answer for s in stories]
    assert len(set(answers)) >= 2
    assert max(answers.count(a) for a in set(answers)) < 0.95 * N


@needs_babi
def test_oracle_agrees_with_real_babi():
    """The checker solves the real files too; it only abstains where bAbI itself is ambiguous
    (qa14: a person visits the asked place twice; qa16: animals of the asked species have different
    colours), so its rules are bAbI's, not the generator's."""
    for path in sorted(BABI.glob("qa*_*.txt")):
        task = int(re.match(r"qa(\d+)_", path.name)[1])
        for story in oracle.parse(path.read_text(encoding="utf-8")):
            problems = oracle.check_story(task, story)
            if task in (14, 16) and problems:
                assert problems == [f"answer {story.answer!r}, story says None"], (path.name, story)
            else:
                assert not problems, (path.name, story.first_line, problems)


def _variants(story: oracle.Parsed):
    """Broken copies of a good story: each must be caught."""
    wrong = {"yes": "no", "no": "yes", "one": "none", "none": "one", "nothing": "apple"}
    yield dataclasses.replace(story, answer=wrong.get(story.answer, "garden" if story.answer != "garden" else "kitchen"))
    yield dataclasses.replace(story, support=story.support[:-1])
    extra = [i for i, _ in story.sentences if i not in story.support]
    if extra:
        yield dataclasses.replace(story, support=sorted(story.support + extra[:1]))
    yield dataclasses.replace(story, support=story.support + [len(story.sentences) + 5])


@pytest.mark.parametrize("task", list(TASKS), ids=[f"qa{t}" for t in TASKS])
def test_oracle_catches_broken_stories(task):
    for story in oracle.parse(format_stories(generate_task(task, 30, seed=1))):
        assert not oracle.check_story(task, story)
        for bad in _variants(story):
            if bad.answer == story.answer and bad.support == story.support:
                continue
            assert oracle.check_story(task, bad), (task, bad)


def test_oracle_rejects_bad_syntax():
    with pytest.raises(ValueError, match="expected 2"):
        oracle.parse("1 Mary went to the kitchen.\n3 Where is Mary?\tkitchen\t1\n")
    with pytest.raises(ValueError, match="outside"):
        oracle.parse("1 Mary went to the kitchen.\n2 Where is Mary?\tkitchen\t2\n")
    with pytest.raises(ValueError, match="ends inside"):
        oracle.parse("1 Mary went to the kitchen.\n")


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = (write_babi(tmp_path / d, "all", 40, 7, seed) for d, seed in (("a", 5), ("b", 5), ("c", 6)))
    assert a["files"] == b["files"]
    for name in a["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert a["files"][name] != c["files"][name], name


def test_stories_are_independent_of_count_task_set_and_split():
    for task in TASKS:
        assert generate_task(task, 20, 3)[:10] == generate_task(task, 10, 3)
        assert generate_task(task, 10, 3, "test") != generate_task(task, 10, 3, "train")
    assert generate_task("qa2", 5, 0) == generate_task(2, 5, 0)


def test_write_babi_files_and_manifest(tmp_path):
    m = write_babi(tmp_path, "qa1,qa17", n_train=25, seed=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["manifest.json", "qa17_positional-reasoning_test.txt", "qa17_positional-reasoning_train.txt",
                     "qa1_single-supporting-fact_test.txt", "qa1_single-supporting-fact_train.txt"]
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["files"] == m["files"] == {n: sha256_file(tmp_path / n) for n in names if n.endswith(".txt")}
    assert on_disk["kind"] == "synth-babi" and on_disk["seed"] == 2
    assert on_disk["config"] == {"tasks": ["qa1", "qa17"], "n_train": 25, "n_test": 2, "seed": 2}
    for name, n in on_disk["stories"].items():
        assert len(oracle.parse((tmp_path / name).read_text())) == n
    # one task written alone gives the same bytes as when written with others
    write_babi(tmp_path / "one", ["qa17"], n_train=25, seed=2)
    name = file_name(17, "train")
    assert (tmp_path / "one" / name).read_bytes() == (tmp_path / name).read_bytes()


def test_cli(tmp_path, capsys):
    assert main(["synth", "babi", "--tasks", "qa4,counting", "--n", "30", "--seed", "1", "--out", str(tmp_path)]) == 0
    assert "wrote 4 files (66 stories)" in capsys.readouterr().out
    assert len(oracle.parse((tmp_path / "qa7_counting_test.txt").read_text())) == 3
    assert main(["synth", "babi", "--tasks", "qa1,conjuction", "--out", str(tmp_path / "x")]) == 1
    assert "did you mean 'conjunction'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_task_names():
    assert [task_number(t) for t in ("1", "qa12", "time-reasoning", "qa18_size-reasoning", 15)] == [1, 12, 14, 18, 15]
    with pytest.raises(ConfigError, match="did you mean 'lists-sets'"):
        task_number("list-sets")
    with pytest.raises(ConfigError, match=r"unknown bAbI task 'qa3' \(choices: all, qa1, qa2, qa4"):
        task_number("qa3")


def _template(sentence: str) -> str:
    """A sentence with its names, places, things, animals, colours and shapes masked."""
    words = ["box of chocolates", "red square", "red sphere", "blue square", "pink rectangle", "triangle",
             "yellow square", "chocolate", "container", "chest", "suitcase", "box",
             "Mary", "John", "Sandra", "Daniel", "Bill", "Fred", "Julie", "Jessica", "Emily", "Winona", "Gertrude",
             "Lily", "Julius", "Brian", "Bernhard", "Greg", "kitchen", "office", "bathroom", "hallway", "garden",
             "bedroom", "park", "school", "cinema", "milk", "football", "apple", "swan", "frog", "lion", "rhino",
             "yellow", "white", "green", "gray", "mouse", "cat", "sheep", "wolf", "mice", "cats", "wolves",
             "north", "south", "east", "west"]
    return re.sub(r"\b(" + "|".join(map(re.escape, words)) + r")\b", "X", sentence, flags=re.IGNORECASE)


@needs_babi
def test_surface_forms_are_those_of_real_babi():
    """Every generated sentence and question, names masked, is a form found in the real files,
    and every answer word is one the real task uses."""
    real_sentences: set[str] = set()
    real_questions: dict[int, set[str]] = {}
    real_answers: dict[int, set[str]] = {}
    for path in BABI.glob("qa*_*.txt"):
        task = int(re.match(r"qa(\d+)_", path.name)[1])
        for s in oracle.parse(path.read_text(encoding="utf-8")):
            real_sentences |= {_template(t) for _, t in s.sentences}
            real_questions.setdefault(task, set()).add(_template(s.question))
            real_answers.setdefault(task, set()).update(s.answer.split(","))
    for task in TASKS:
        for s in oracle.parse(format_stories(generate_task(task, 300, seed=0))):
            for _, t in s.sentences:
                assert _template(t) in real_sentences, (task, t)
            assert _template(s.question) in real_questions[task], (task, s.question)
            assert set(s.answer.split(",")) <= real_answers[task], (task, s.answer)


def test_the_babi_loader_reads_the_generated_files(tmp_path):
    from tracekd.datasets import DATASETS

    write_babi(tmp_path, "all", n_train=20, n_test=3, seed=0)
    spec = DATASETS.get("babi")
    assert spec.validate(Path(tmp_path)) == []
    splits = spec.load_splits(tmp_path)
    assert len(splits["train"]) == 11 * 20 and len(splits["test"]) == 11 * 3
    stories = {t: generate_task(t, 20, 0) for t in TASKS}
    for ex in splits["train"]:
        task, index = int(ex.id.split("/")[1][2:]), int(ex.id.split("/")[3])
        story = stories[task][index]
        assert ex.gold.label == TASKS[task][0]
        assert ex.context == story.sentences and ex.question == story.question
        assert ex.answers == tuple(story.answer.split(","))
        assert ex.gold.evidence == tuple(i - 1 for i in story.supporting)
