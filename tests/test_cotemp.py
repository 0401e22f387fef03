"""CoTemp QA loader: the shared data, the seeded per-category split, the evidence rule, every error kind."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tracekd.datasets import DATASETS, cotemp
from tracekd.errors import ConfigError, DataError

from conftest import COTEMP, needs_cotemp

SPEC = DATASETS.get("cotemp")
SIZES = {"equal": 436, "overlap": 653, "during": 1033, "mix": 563}  # the shared copy (during is partial)


@pytest.fixture(scope="module")
def shared():
    return SPEC.load_splits(COTEMP)


def row(i: int, **kw) -> dict:
    d = {"index": i, "triple_element": "S1_R1_O2", "question": f"Q{i}?",
         "facts": ["Ann works for Acme from 1990 to 1995.", "Ann works for Bolt in 1993."], "answer": ["Bolt"]}
    d.update(kw)
    return d


def write(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# --- the shared data -----------------------------------------------------------------------------


@needs_cotemp
def test_shared_split_sizes_per_category(shared):
    for split in ("train", "test"):
        got = Counter(ex.gold.label for ex in shared[split])
        want = {c: (n - round(0.2 * n) if split == "train" else round(0.2 * n)) for c, n in SIZES.items()}
        assert got == want
    assert {k: len(v) for k, v in shared.items()} == {"train": 2147, "test": 538}
    assert shared.excluded == []
    assert SPEC.labels == ("equal", "overlap", "during", "mix")


def test_full_size_rule_gives_the_methods_950():
    full = {"equal": 436, "overlap": 653, "during": 3096, "mix": 563}
    tests = {c: len(cotemp.split_indices(list(range(n)), c)[1]) for c, n in full.items()}
    assert tests == {"equal": 87, "overlap": 131, "during": 619, "mix": 113} and sum(tests.values()) == 950


@needs_cotemp
def test_shared_ids_evidence_and_order(shared):
    ids = [ex.id for split in shared.values() for ex in split]
    assert len(ids) == len(set(ids)) == sum(SIZES.values())
    for split, examples in shared.items():
        keys = [(cotemp.CATEGORIES.index(ex.gold.label), int(ex.id.rsplit("/", 1)[1])) for ex in examples]
        assert keys == sorted(keys)
        for ex in examples:
            assert ex.id == f"cotemp/{ex.meta['category']}/{ex.id.rsplit('/', 1)[1]}"
            assert ex.gold.evidence and ex.meta["evidence_rule"] == "answer-mention"
            assert ex.meta["triple_element"] and ex.context and ex.answers


@needs_cotemp
def test_hand_checked_examples(shared):
    by_id = {ex.id: ex for split in shared.values() for ex in split}
    mix0 = by_id["cotemp/mix/0"]
    assert mix0.answers == ("titular bishop", "Catholic bishop")
    assert mix0.evidence_lines == (
        "Louis-Albert Vachon holds the position of titular bishop from April 4, 1977 to March 20, 1981.",
        "Louis-Albert Vachon holds the position of Catholic bishop from May 14, 1977 to September 29, 2006.")
    # "Republican Party" is also a whole-word part of "Catalan Republican Party": both facts are evidence
    eq104 = by_id["cotemp/equal/104"]
    assert len(eq104.gold.evidence) == 2 and eq104.meta["notes"] == ["answer-in-several-facts"]


@needs_cotemp
def test_answer_match_statistics_stated_in_the_docstring():
    unmatched = several = examples_several = answers = 0
    for category in cotemp.CATEGORIES:
        rows, errors = cotemp.read_category_file(COTEMP / f"{category}.json")
        assert errors == []
        for r in rows:
            ev = cotemp.answer_evidence(r.answer, r.facts)
            answers += len(ev)
            unmatched += sum(not e for e in ev)
            several += sum(len(e) > 1 for e in ev)
            examples_several += any(len(e) > 1 for e in ev)
    assert (answers, unmatched, several, examples_several) == (3978, 0, 130, 126)


@needs_cotemp
def test_split_is_deterministic_and_seeded(shared):
    again = SPEC.load_splits(COTEMP)
    assert [e.to_dict() for e in again["test"]] == [e.to_dict() for e in shared["test"]]
    assert [e.to_dict() for e in again["train"]] == [e.to_dict() for e in shared["train"]]
    other = SPEC.load_splits(COTEMP, split_seed=7)
    assert Counter(e.gold.label for e in other["test"]) == Counter(e.gold.label for e in shared["test"])
    assert {e.id for e in other["test"]} != {e.id for e in shared["test"]}
    # the split is random.Random(f"{seed}:{category}") over indices sorted ascending; first k are test
    train, test = cotemp.split_indices(list(range(SIZES["equal"])), "equal", seed=42)
    assert [f"cotemp/equal/{i}" for i in test] == [e.id for e in shared["test"] if e.gold.label == "equal"]


def test_split_does_not_depend_on_row_order(tmp_path):
    rows = [row(i) for i in range(20)]
    a = SPEC.load_splits(write(tmp_path / "a" / "equal.json", rows))
    b = SPEC.load_splits(write(tmp_path / "b" / "equal.json", rows[::-1]))
    assert [e.id for e in a["test"]] == [e.id for e in b["test"]] and len(a["test"]) == 4


@needs_cotemp
def test_rule_labels_keep_ids_and_split_and_mostly_agree():
    by_data = SPEC.load_splits(COTEMP / "overlap.json")
    by_rules = SPEC.load_splits(COTEMP / "overlap.json", labels="rules")
    for split in ("train", "test"):
        assert [e.id for e in by_rules[split]] == [e.id for e in by_data[split]]
    rules = [e for s in by_rules.values() for e in s]
    assert all(e.meta["label_source"] == "rules" and e.meta["rule_reason"] for e in rules)
    agree = sum(e.gold.label == e.meta["category"] for e in rules)
    assert 640 <= agree < len(rules) == 653  # 651/653 measured; the 2 others are labelled by their facts


@needs_cotemp
def test_options():
    with pytest.raises(ConfigError, match="did you mean 'rules'"):
        cotemp.CotempOptions(labels="rule")
    with pytest.raises(ConfigError, match="test_fraction"):
        cotemp.CotempOptions(test_fraction=1.5)
    with pytest.raises(ConfigError, match="split_seed"):
        cotemp.CotempOptions(split_seed="7")
    all_test = SPEC.load_splits(COTEMP / "equal.json", test_fraction=1)
    assert (len(all_test["train"]), len(all_test["test"])) == (0, 436)


def test_folder_needs_all_four_files(tmp_path):
    write(tmp_path / "equal.json", [row(0)])
    with pytest.raises(DataError, match="missing overlap.json, during.json, mix.json") as e:
        SPEC.load_splits(tmp_path)
    assert e.value.field == "file_name"
    assert [p.message for p in cotemp.validate(tmp_path)] == [f"missing {c}.json" for c in ("overlap", "during", "mix")]
    with pytest.raises(DataError, match="unknown CoTemp file 'before.json'"):
        SPEC.load_splits(write(tmp_path / "before.json", [row(0)]))


# --- answers that no fact mentions -------------------------------------------------------------------


def test_answer_in_no_fact_is_excluded_by_load_and_reported_by_validate(tmp_path):
    path = write(tmp_path / "mix.json", [row(0), row(1, answer=["Bolt", "Zenith"]), row(2)])
    loaded = SPEC.load_splits(path, test_fraction=0)
    assert [e.id for e in loaded["train"]] == ["cotemp/mix/0", "cotemp/mix/2"]
    assert loaded.excluded == [{"id": "cotemp/mix/1", "split": "train", "reason": "answer-in-no-fact",
                                "detail": "gold answer(s) ['Zenith'] mentioned in no fact", "source": "mix.json:2"}]
    (problem,) = cotemp.validate(path)
    assert (problem.line, problem.field) == (2, "answer") and "'Zenith'" in problem.message


# --- malformed input -------------------------------------------------------------------------------

BAD = [
    # (row as written, field, message part)
    ('{"index": 0, "question": ', None, "invalid JSON"),
    ("[1, 2]", None, "expected a JSON object"),
    (json.dumps({k: v for k, v in row(0).items() if k != "answer"}), "answer", "missing"),
    (json.dumps({k: v for k, v in row(0).items() if k != "triple_element"}), "triple_element", "missing"),
    (json.dumps(row(0, facts="Ann works for Bolt.")), "facts", "must be a list"),
    (json.dumps(row(0, facts=["Ann works for Bolt.", 3])), "facts", "item 1 must be str"),
    (json.dumps(row(0, facts=[])), "facts", "empty list"),
    (json.dumps(row(0, answer="Bolt")), "answer", "must be a list"),
    (json.dumps(row(0, answer=[])), "answer", "empty list"),
    (json.dumps(row(0, answer=["Bolt", ["x"]])), "answer", "item 1 must be str"),
    (json.dumps(row(0, answer=["  "])), "answer", "empty"),
    (json.dumps(row(0, index="0")), "index", "must be int"),
    (json.dumps(row(0, index=True)), "index", "must be int"),
    (json.dumps(row(0, question=7)), "question", "must be str"),
    (json.dumps(row(1)), "index", "duplicate index 1 (first on line 1)"),
]


@pytest.mark.parametrize("text,field,message", BAD)
def test_malformed_row_is_named(tmp_path, text, field, message):
    path = write(tmp_path / "during.json", [row(1), text])
    with pytest.raises(DataError) as e:
        SPEC.load_splits(path)
    err = e.value
    assert (err.path, err.line, err.field) == (str(path), 2, field)
    prefix = f"{path}:2: " + (f"field {field!r}: " if field else "")
    assert str(err).startswith(prefix) and message in str(err)
    assert [str(p) for p in cotemp.validate(path)] == [str(err)]


def test_validate_reports_every_problem_in_one_file(tmp_path):
    path = write(tmp_path / "overlap.json", [
        row(0),
        "not json",
        row(2, facts=[]),
        "",
        {k: v for k, v in row(4, answer=[1]).items() if k != "question"},
        row(0),
        row(6, answer=["Nobody"]),
    ])
    problems = cotemp.validate(path)
    assert [(p.line, p.field) for p in problems] == [
        (2, None), (3, "facts"), (5, "question"), (5, "answer"), (6, "index"), (7, "answer")]
    assert all(p.path == str(path) for p in problems)
