"""MS MARCO QA v2.1: both schemas, both evidence rules, sampling, malformed rows, build + oracle."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

from tracekd.cli import main
from tracekd.datasets import DATASETS, marco
from tracekd.errors import ConfigError, DataError
from tracekd.io import read_records
from tracekd.records import Judgement

FIXTURES = Path(__file__).parent / "fixtures" / "marco"
sys.path.insert(0, str(FIXTURES))
import make_fixtures  # noqa: E402

SCHEMAS = ("json", "jsongz", "parquet")
ALL_ARMS = "vanilla,correct,incorrect,incorrect-class,incorrect-evidence"
SPEC = DATASETS.get("marco")


def _load(folder: str | Path, **options):
    return SPEC.load_splits(FIXTURES / folder if isinstance(folder, str) else folder, **options)


def _by_id(splits) -> dict:
    return {ex.id: ex for split in splits.values() for ex in split}


def test_spec():
    assert SPEC.labels == ("DESCRIPTION", "NUMERIC", "ENTITY", "LOCATION", "PERSON")
    assert SPEC.template == "reference-qa" and SPEC.scorer == "marco"
    opts = SPEC.make_options()
    assert (opts.evidence, opts.n_per_type, opts.m_per_type, opts.sample_seed, opts.no_answer) == \
        ("answer-overlap", 1000, 200, 42, "drop")


def test_fixtures_are_reproducible(tmp_path):
    make_fixtures.main(tmp_path)
    for rel in ("json/train_v2.1.json", "json/dev_v2.1.json", "jsongz/train_v2.1.json.gz", "jsongz/dev_v2.1.json.gz"):
        assert (tmp_path / rel).read_bytes() == (FIXTURES / rel).read_bytes(), rel
    for rel in ("parquet/v2.1/train-00000-of-00001.parquet", "parquet/v2.1/validation-00000-of-00001.parquet"):
        import pyarrow.parquet as pq

        assert pq.read_table(tmp_path / rel).equals(pq.read_table(FIXTURES / rel)), rel


@pytest.mark.parametrize("evidence", marco.EVIDENCE_RULES)
def test_schemas_give_the_same_examples(evidence):
    loaded = [_by_id(_load(s, evidence=evidence, no_answer="keep")) for s in SCHEMAS]
    assert len(loaded[0]) == len(make_fixtures.TRAIN) + len(make_fixtures.DEV)
    for other in loaded[1:]:
        assert other.keys() == loaded[0].keys()
        for k, ex in loaded[0].items():
            o = other[k]
            assert (o.question, o.context, o.answers, o.gold, o.split) == (ex.question, ex.context, ex.answers,
                                                                         ex.gold, ex.split)
            assert o.meta["references"] == ex.meta["references"]
            assert o.meta["well_formed"] == ex.meta["well_formed"]


def test_example_fields_and_rules():
    ex = _by_id(_load("parquet", no_answer="keep"))
    sel = _by_id(_load("json", evidence="is-selected", no_answer="keep"))
    e = ex["marco/train/1000011"]
    assert e.dataset == "marco" and e.split == "train" and e.gold.label == "NUMERIC"  # lower case in parquet
    assert e.answers == ("206",) and e.gold.evidence == (0,)
    assert e.meta["well_formed"] == ["There are 206 bones in the adult human body."]
    assert e.meta["evidence_rule"] == "answer-overlap" and sel[e.id].meta["evidence_rule"] == "is-selected"
    # several alternatives: the first is trained on, all are references
    e = ex["marco/train/1000015"]
    assert e.answers == ("8,849 metres",) and e.meta["references"] == ["8,849 metres", "29,032 feet"]
    # a repeated passage is dropped, its is_selected merged into the one kept
    e = ex["marco/train/1000006"]
    assert len(e.context) == 3 and e.meta["passages_dropped"] == 1 and e.meta["is_selected"] == [1, 1, 0]
    assert sel[e.id].gold.evidence == (0, 1)
    # two selected passages; overlap picks one
    assert sel["marco/train/1000026"].gold.evidence == (0, 2)
    assert ex["marco/train/1000026"].gold.evidence == (0,)
    # overlap differs from is_selected: "Yo-Yo Ma plays the cello" shares most words with "Cello"
    assert ex["marco/train/1000022"].gold.evidence == (1,)
    # an answer sharing no word with any passage: no evidence under answer-overlap
    assert ex["marco/train/1000003"].gold.evidence == () and ex["marco/train/1000003"].meta["evidence_overlap"] == 0
    assert sel["marco/train/1000003"].gold.evidence == (0,)
    # unicode kept
    assert any("馬友友" in c for c in ex["marco/train/1000022"].context)
    assert ex["marco/test/2000043"].answers == ("Édith Piaf",)
    # evidence indices are sorted and in range everywhere
    for e in list(ex.values()) + list(sel.values()):
        assert list(e.gold.evidence) == sorted(set(e.gold.evidence))
        assert all(0 <= i < len(e.context) for i in e.gold.evidence)
        assert all("\n" not in c for c in e.context)


def test_no_answer_rows():
    kept = _by_id(_load("json", no_answer="keep"))
    kept_sel = _by_id(_load("json", no_answer="keep", evidence="is-selected"))
    dropped = _by_id(_load("json"))
    na = [k for k, e in kept.items() if e.meta["no_answer"]]
    assert len(na) == 6  # 4 train + 2 dev
    for k in na:
        assert kept[k].answers == (marco.NO_ANSWER,)
        assert kept[k].gold.evidence == () and kept_sel[k].gold.evidence == ()
        assert k not in dropped
    assert len(dropped) == len(kept) - len(na)
    assert not any(e.meta["no_answer"] for e in dropped.values())


def test_sampling_per_type_is_seeded():
    a = _load("json", n_per_type=2, m_per_type=1)
    assert Counter(e.gold.label for e in a["train"]) == {label: 2 for label in marco.LABELS}
    assert Counter(e.gold.label for e in a["test"]) == {label: 1 for label in marco.LABELS}
    assert [e.id for e in a["train"]] == [e.id for e in _load("parquet", n_per_type=2, m_per_type=1)["train"]]
    # file order kept in each split
    ids = [int(e.meta["query_id"]) for e in a["train"]]
    assert ids == sorted(ids)
    picks = {tuple(e.id for e in _load("json", n_per_type=2, m_per_type=1, sample_seed=s)["train"])
             for s in range(5)}
    assert len(picks) > 1
    assert len(_load("json", n_per_type=0, m_per_type=0)["train"]) == 0


def test_option_errors():
    with pytest.raises(ConfigError, match="did you mean 'is-selected'"):
        SPEC.make_options(evidence="is_selected")
    with pytest.raises(ConfigError, match="no_answer"):
        SPEC.make_options(no_answer="maybe")
    with pytest.raises(ConfigError, match="n_per_type"):
        SPEC.make_options(n_per_type=-1)
    with pytest.raises(ConfigError, match="did you mean 'n_per_type'"):
        SPEC.make_options(n_per_typ=3)


def test_file_discovery(tmp_path):
    with pytest.raises(DataError, match="no train file: looked for train_v2.1.json"):
        _load(tmp_path)
    shutil.copy(FIXTURES / "json" / "train_v2.1.json", tmp_path / "my-train.json")
    shutil.copy(FIXTURES / "jsongz" / "dev_v2.1.json.gz", tmp_path / "my-dev.json.gz")
    splits = _load(tmp_path, train_files="my-train.json", test_files="my-*.json.gz")
    assert len(splits["train"]) == 26 and len(splits["test"]) == 13
    with pytest.raises(DataError, match="no file matches 'nope.json'"):
        _load(tmp_path, train_files="nope.json", test_files="my-dev.json.gz")


def _rewrite_json(tmp_path: Path, edit) -> Path:
    obj = make_fixtures.column_json(make_fixtures.TRAIN)
    edit(obj)
    make_fixtures.write_json(obj, tmp_path / "train_v2.1.json")
    shutil.copy(FIXTURES / "json" / "dev_v2.1.json", tmp_path / "dev_v2.1.json")
    return tmp_path


def test_unknown_query_type(tmp_path):
    folder = _rewrite_json(tmp_path, lambda o: o["query_type"].update({"3": "DESCRPTION"}))
    with pytest.raises(DataError) as e:
        _load(folder)
    msg = str(e.value)
    assert "train_v2.1.json" in msg and 'query_type["3"]' in msg and "did you mean 'DESCRIPTION'" in msg


def test_empty_answers(tmp_path):
    folder = _rewrite_json(tmp_path, lambda o: o["answers"].update({"7": []}))
    with pytest.raises(DataError, match=r"""answers\["7"\]'?: empty answers list"""):
        _load(folder)


def test_missing_passages(tmp_path):
    folder = _rewrite_json(tmp_path, lambda o: o["passages"].pop("12"))
    with pytest.raises(DataError, match=r"""passages\["12"\]'?: missing"""):
        _load(folder)
    folder = _rewrite_json(tmp_path, lambda o: o["passages"].update({"12": []}))
    with pytest.raises(DataError, match="no passages"):
        _load(folder)


def test_parquet_errors_name_the_row(tmp_path):
    rows = [list(r) for r in make_fixtures.TRAIN]
    rows[4][1] = "ANIMAL"
    make_fixtures.write_parquet(make_fixtures.parquet_table([tuple(r) for r in rows]), tmp_path / "train-0.parquet")
    shutil.copy(FIXTURES / "parquet" / "v2.1" / "validation-00000-of-00001.parquet", tmp_path / "validation-0.parquet")
    with pytest.raises(DataError, match=r"train-0\.parquet:5: field 'query_type': unknown query type 'animal'"):
        _load(tmp_path)


def test_validate_reports_every_problem(tmp_path):
    assert SPEC.validate(FIXTURES / "json") == []
    assert SPEC.validate(FIXTURES / "parquet") == []

    def edit(o):
        o["query_type"]["3"] = "COLOUR"
        o["answers"]["7"] = []
        del o["passages"]["12"]
        o["passages"]["13"][0]["is_selected"] = 2
        o["query_id"]["14"] = o["query_id"]["0"]

    folder = _rewrite_json(tmp_path, edit)
    errors = SPEC.validate(folder)
    text = "\n".join(map(str, errors))
    assert len(errors) == 5, text
    for needle in ('query_type["3"]', 'answers["7"]', 'passages["12"]', "'is_selected' must be 0 or 1",
                   "duplicate query_id 1000001"):
        assert needle in text
    # a truncated (gzipped) file: one clear error
    bad = tmp_path / "broken.json.gz"
    bad.write_bytes(gzip.compress(b'{"query": {"0": "x"'))
    errs = marco.validate_file(bad)
    assert len(errs) == 1 and "invalid JSON" in str(errs[0])


def test_streaming_builds_only_wanted_rows():
    path = FIXTURES / "json" / "train_v2.1.json"
    cells = list(marco.iter_json_cells(path, ("passages", "query"), want={"2", "5"}))
    assert sorted((c.column, c.key) for c in cells) == [("passages", "2"), ("passages", "5"),
                                                        ("query", "2"), ("query", "5")]
    assert json.loads(path.read_text(encoding="utf-8"))["query"]["5"] == next(
        c.value for c in cells if c.column == "query" and c.key == "5")


# ---------------------------------------------------------------------------------------------
# the whole path: build (both schemas, both rules) and the oracle checks through `tracekd score`


def _oracle(build: Path, arm: str, tmp_path: Path, scorer: str | None = None) -> dict:
    out = tmp_path / f"scored-{arm}-{scorer or 'default'}".replace(":", "_").replace(">=", "ge")
    argv = ["score", str(build / arm / "test.jsonl"), "--examples", str(build / "examples" / "test.jsonl"),
            "--text-field", "completion.0.content", "--finish-field", "none", "--out", str(out)]
    if scorer:
        argv += ["--scorer", scorer]
    assert main(argv) == 0
    js = read_records(out / "judgements.jsonl", Judgement)
    n = len(js)
    return {"n": n, "statuses": Counter(j.status for j in js), "class": sum(bool(j.label_ok) for j in js) / n,
            "evidence": sum(bool(j.evidence_exact) for j in js) / n, "answer": sum(j.answer_ok for j in js) / n,
            "criteria": {j.extra.get("criterion") for j in js}}


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("evidence", marco.EVIDENCE_RULES)
def test_build_and_oracle(schema, evidence, tmp_path):
    out = tmp_path / "build"
    assert main(["build", "--dataset", "marco", "--data", str(FIXTURES / schema), "--arms", ALL_ARMS,
                 "--seed", "0", "--out", str(out), "--option", f"evidence={evidence}",
                 "--option", "no_answer=keep", "--quiet"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["train"]["kept"] == 30 and m["counts"]["test"]["kept"] == 15
    row = json.loads((out / "correct" / "test.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert "The category of the question asked is: DESCRIPTION." in row["completion"][0]["content"]

    r = _oracle(out, "correct", tmp_path)
    assert (r["class"], r["evidence"], r["answer"]) == (1.0, 1.0, 1.0) and r["statuses"] == {"ok": 15}
    assert r["criteria"] == {"em"}
    r = _oracle(out, "incorrect", tmp_path)
    assert (r["class"], r["evidence"], r["answer"]) == (0.0, 0.0, 1.0)
    r = _oracle(out, "incorrect-class", tmp_path)
    assert (r["class"], r["evidence"], r["answer"]) == (0.0, 1.0, 1.0)
    r = _oracle(out, "incorrect-evidence", tmp_path)
    assert (r["class"], r["evidence"], r["answer"]) == (1.0, 0.0, 1.0)
    r = _oracle(out, "vanilla", tmp_path)
    assert r["statuses"] == {"no_trace": 15} and r["answer"] == 1.0
    r = _oracle(out, "correct", tmp_path, scorer="marco:rougeL>=0.5")
    assert r["answer"] == 1.0 and r["criteria"] == {"rougeL>=0.5"}


def test_build_same_seed_same_bytes(tmp_path):
    outs = []
    for name, schema in (("a", "json"), ("b", "parquet")):
        out = tmp_path / name
        assert main(["build", "--dataset", "marco", "--data", str(FIXTURES / schema), "--arms", "correct,incorrect",
                     "--seed", "3", "--out", str(out), "--quiet"]) == 0
        outs.append(out)
    for arm in ("correct", "incorrect"):
        for split in ("train", "test"):
            assert (outs[0] / arm / f"{split}.jsonl").read_bytes() == (outs[1] / arm / f"{split}.jsonl").read_bytes()


def test_ls_shows_marco(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "marco:" in out and "classes (5): DESCRIPTION, NUMERIC, ENTITY, LOCATION, PERSON" in out
