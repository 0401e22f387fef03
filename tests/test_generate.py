"""tracekd generate: batching, determinism, resume after SIGKILL, settings checks, the real default student."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracekd.errors import ConfigError, DataError
from tracekd.generate import GenerateConfig, generate
from tracekd.io import iter_jsonl, write_jsonl
from tracekd.records import SFTRow

PLACES = ["kitchen", "garden", "office", "hallway", "bedroom"]


def make_rows(n: int) -> list[dict]:
    """Prompts of varied length (so sorting and left padding matter)."""
    rows = []
    for i in range(n):
        context = [f"Person {k} went to the {PLACES[(i + k) % 5]}." for k in range(1 + i % 6)]
        user = "Answer the question based on the context:\n" + "\n".join(context) + \
            "\nQuestion: Where is Person 0? Only return the answer."
        rows.append(SFTRow(id=f"toy/{i}", arm="correct",
                           prompt=({"role": "system", "content": "You are a helpful assistant."},
                                   {"role": "user", "content": user}),
                           completion=({"role": "assistant", "content": PLACES[i % 5]},)).to_dict())
    return rows


@pytest.fixture
def rows_file(tmp_path) -> Path:
    path = tmp_path / "test.jsonl"
    write_jsonl(path, make_rows(12))
    return path


def cfg(rows_file: Path, out: Path, **kw) -> GenerateConfig:
    base = dict(input_file=str(rows_file), output_file=str(out), student="tiny-random", batch_size=4,
                max_new_tokens=12, progress=False)
    base.update(kw)
    return GenerateConfig(**base)


def read(out: Path) -> list[dict]:
    return [obj for _, obj in iter_jsonl(out)]


def test_generates_every_row_in_input_order_with_counts(rows_file, tmp_path):
    out = generate(cfg(rows_file, tmp_path / "g.jsonl", precision="fp32"), log=lambda *_: None)
    gens = read(out)
    assert [g["id"] for g in gens] == [f"toy/{i}" for i in range(12)]
    for g in gens:
        assert set(g) == {"id", "text", "finish_reason", "prompt_tokens", "completion_tokens"}
        assert g["finish_reason"] in ("stop", "length") and 0 < g["completion_tokens"] <= 12
        assert g["finish_reason"] == "stop" or g["completion_tokens"] == 12
    assert len({g["prompt_tokens"] for g in gens}) > 3  # varied prompts
    m = json.loads((tmp_path / "g.manifest.json").read_text())
    assert m["complete"] and m["counts"]["rows"] == 12 and m["settings"]["student"] == "tiny-random"
    assert m["settings"]["do_sample"] is False and m["settings"]["precision"] == "fp32"


def test_batched_greedy_equals_one_by_one(rows_file, tmp_path):
    """Left padding and attention masks make batching invisible: batch 4 == batch 1, token for token."""
    batched = read(generate(cfg(rows_file, tmp_path / "b4.jsonl", batch_size=4), log=lambda *_: None))
    single = read(generate(cfg(rows_file, tmp_path / "b1.jsonl", batch_size=1), log=lambda *_: None))
    assert [g["text"] for g in batched] == [g["text"] for g in single]
    assert [g["completion_tokens"] for g in batched] == [g["completion_tokens"] for g in single]


def test_seeded_sampling_is_reproducible(rows_file, tmp_path):
    a = read(generate(cfg(rows_file, tmp_path / "a.jsonl", do_sample=True, seed=1), log=lambda *_: None))
    b = read(generate(cfg(rows_file, tmp_path / "b.jsonl", do_sample=True, seed=1), log=lambda *_: None))
    c = read(generate(cfg(rows_file, tmp_path / "c.jsonl", do_sample=True, seed=2), log=lambda *_: None))
    assert a == b and a != c


def test_generation_resumes_after_sigkill(tmp_path):
    rows_file = tmp_path / "test.jsonl"
    write_jsonl(rows_file, make_rows(40))
    out = tmp_path / "gen.jsonl"
    args = [sys.executable, "-m", "tracekd.cli", "generate", "--input-file", str(rows_file), "--output-file", str(out),
            "--student", "tiny-random", "--batch-size", "2", "--max-new-tokens", "48", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.read_bytes().count(b"\n") >= 5):
        assert proc.poll() is None, "generation finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_bytes().count(b"\n")
    assert 5 <= partial < 40
    assert not json.loads((tmp_path / "gen.manifest.json").read_text())["complete"]

    subprocess.run(args, check=True, capture_output=True)
    gens = read(out)
    assert [g["id"] for g in gens] == [f"toy/{i}" for i in range(40)]  # every id exactly once, input order
    m = json.loads((tmp_path / "gen.manifest.json").read_text())
    assert m["complete"] and m["timing"]["resumed_with"] >= 5 and m["timing"]["generated_now"] == 40 - m["timing"][
        "resumed_with"]
    reference = read(generate(cfg(rows_file, tmp_path / "ref.jsonl", batch_size=2, max_new_tokens=48),
                              log=lambda *_: None))
    assert [g["text"] for g in gens] == [g["text"] for g in reference]


def test_resume_with_other_settings_is_refused(rows_file, tmp_path):
    out = tmp_path / "g.jsonl"
    generate(cfg(rows_file, out, max_examples=3), log=lambda *_: None)
    with pytest.raises(ConfigError, match="max_new_tokens: 12 -> 20"):
        generate(cfg(rows_file, out, max_new_tokens=20), log=lambda *_: None)
    # same settings: it completes the remaining rows
    generate(cfg(rows_file, out), log=lambda *_: None)
    assert len(read(out)) == 12


def test_foreign_or_duplicate_ids_in_output_are_errors(rows_file, tmp_path):
    out = tmp_path / "g.jsonl"
    write_jsonl(out, [{"id": "other/1", "text": "x", "finish_reason": "stop"}])
    with pytest.raises(DataError, match=r"g.jsonl:1: field 'id': id 'other/1' is not in the input"):
        generate(cfg(rows_file, out), log=lambda *_: None)
    write_jsonl(out, [{"id": "toy/1", "text": "x"}, {"id": "toy/1", "text": "y"}])
    with pytest.raises(DataError, match=r"g.jsonl:2: field 'id': duplicate id 'toy/1'"):
        generate(cfg(rows_file, out), log=lambda *_: None)


def test_adapter_student_is_used_and_changes_outputs(rows_file, tmp_path, monkeypatch):
    """A trained adapter (found from its folder) is merged in; its student is the default student."""
    from tracekd.train import TrainConfig, train

    train_file = tmp_path / "train.jsonl"
    write_jsonl(train_file, make_rows(8))
    adapter = train(TrainConfig(train_file=str(train_file), output_dir=str(tmp_path / "ad"), student="tiny-random",
                                max_steps=3, learning_rate=5e-2, gradient_accumulation_steps=1, warmup_steps=0,
                                progress=False), log=lambda *_: None)
    tuned = read(generate(cfg(rows_file, tmp_path / "t.jsonl", student=None, adapter=str(adapter)),
                          log=lambda *_: None))
    base = read(generate(cfg(rows_file, tmp_path / "b.jsonl"), log=lambda *_: None))
    assert [g["text"] for g in tuned] != [g["text"] for g in base]
    m = json.loads((tmp_path / "t.manifest.json").read_text())
    assert m["settings"]["student"] == "tiny-random" and len(m["settings"]["adapter_sha256"]) == 64
    # the merged copy (vLLM's merge mode), loaded as a local-folder student, generates the same
    from tracekd import students
    from tracekd.generate.merge import merged_folder
    from tracekd.generate.run import find_adapter

    tiny = students.resolve("tiny-random")
    monkeypatch.setattr(students, "cache_dir", lambda: tmp_path / "cache")
    merged = merged_folder(tiny, find_adapter(adapter), "fp32")
    assert merged.parent == tmp_path / "cache" / "merged"
    same = read(generate(cfg(rows_file, tmp_path / "m.jsonl", student=str(merged)), log=lambda *_: None))
    assert [g["text"] for g in same] == [g["text"] for g in tuned]
    with pytest.raises(ConfigError, match="no LoRA adapter"):
        generate(cfg(rows_file, tmp_path / "x.jsonl", adapter=str(tmp_path)), log=lambda *_: None)


def test_vllm_backend_is_imported_only_when_chosen(rows_file, tmp_path):
    import torch

    generate(cfg(rows_file, tmp_path / "g.jsonl", max_examples=2), log=lambda *_: None)
    assert "vllm" not in sys.modules and "tracekd.generate.vllm" not in sys.modules
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            generate(cfg(rows_file, tmp_path / "v.jsonl", backend="vllm"), log=lambda *_: None)


@pytest.mark.slow
def test_default_student_smollm2_generates_for_two_babi_prompts(tmp_path):
    """The real embedded student: GGUF -> cached safetensors -> greedy answers to two bAbI prompts."""
    from tracekd import students
    from tracekd.cli import main

    assert main(["synth", "babi", "--n", "10", "--seed", "0", "--out", str(tmp_path / "babi")]) == 0
    assert main(["build", "--dataset", "babi", "--data", str(tmp_path / "babi"), "--arms", "correct", "--max-train", "11",
                 "--max-test", "11", "--out", str(tmp_path / "sets"), "--quiet"]) == 0
    test_rows = read(tmp_path / "sets" / "correct" / "test.jsonl")[:2]
    write_jsonl(tmp_path / "two.jsonl", test_rows)
    s = students.resolve("smollm2-135m")
    assert (Path(s.source) / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((Path(s.source) / "config.json").read_text())
    out = generate(GenerateConfig(input_file=str(tmp_path / "two.jsonl"), output_file=str(tmp_path / "g.jsonl"),
                                  max_new_tokens=48, progress=False), log=lambda *_: None)
    gens = read(out)
    assert [g["id"] for g in gens] == [r["id"] for r in test_rows]
    for g in gens:
        assert g["text"].strip() and g["finish_reason"] in ("stop", "length") and g["prompt_tokens"] > 20
    m = json.loads((tmp_path / "g.manifest.json").read_text())
    assert m["settings"]["student"] == "smollm2-135m"


def test_cpu_precision_auto_follows_the_generation_calibration(rows_file, tmp_path, monkeypatch):
    """auto on CPU: fp32 unless a calibration found bf16 faster with identical outputs; a resumed run keeps its format."""
    from tracekd import calibration
    from tracekd.calibration import calibrate_generation, measured

    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(calibration, "MAX_OTHERS_SHARE", 1.0)  # cached however busy the machine running the tests
    first = cfg(rows_file, tmp_path / "a.jsonl", max_examples=4)
    generate(first, log=lambda *_: None)
    assert json.loads((tmp_path / "a.manifest.json").read_text())["settings"]["precision"] == "fp32"

    # measured numbers in, decision out: bf16 3x faster but one output differs -> fp32
    cal = calibrate_generation(lambda p: (["x", "y"] if p == "fp32" else ["x", "z"], 30, 1.0 if p == "fp32" else 0.3),
                               "tiny-random")
    assert cal.precision == "fp32" and cal.outputs_identical is False and measured("tiny-random", "cpu", "generate")
    # identical and faster -> bf16, and generate uses it
    cal = calibrate_generation(lambda p: (["x", "y"], 30, 1.0 if p == "fp32" else 0.3), "tiny-random")
    assert cal.precision == "bf16"
    generate(cfg(rows_file, tmp_path / "b.jsonl", max_examples=4), log=lambda *_: None)
    assert json.loads((tmp_path / "b.manifest.json").read_text())["settings"]["precision"] == "bf16"
    # the file started in fp32, run again, keeps fp32 (its settings must not change mid-file)
    generate(cfg(rows_file, tmp_path / "a.jsonl", max_examples=4), log=lambda *_: None)
    assert json.loads((tmp_path / "a.manifest.json").read_text())["settings"]["precision"] == "fp32"


def test_shared_prefix_prefill_gives_the_plain_paths_tokens(rows_file, tmp_path):
    """The prompts' common prefix prefilled once and reused gives, token for token, what full prompts give."""
    from tracekd import students
    from tracekd.generate import hf
    from tracekd.runtime import prompt_ids

    student = students.resolve("tiny-random")
    tok = students.load_tokenizer(student)
    prompts = [prompt_ids(tok, r["prompt"]) for _, r in iter_jsonl(rows_file)]
    batches = [prompts[:5], prompts[5:10], prompts[10:]]
    assert all(hf.shared_prefix_length(b) >= 20 for b in batches)  # system turn + instruction line at least
    model = hf.load_model_with_adapter(student, None, None, "cpu")
    outs = {}
    for shared in (True, False):
        gen = hf.HFGenerator(model, tok, max_new_tokens=16, shared_prefix=shared)
        outs[shared] = [c for b in batches for c in gen.generate(b)]
        assert (gen.prefix_tokens_saved > 0) == shared
    assert [(c.text, c.completion_tokens, c.finish_reason) for c in outs[True]] == \
        [(c.text, c.completion_tokens, c.finish_reason) for c in outs[False]]
    assert len({c.text for c in outs[True]}) > 3  # the prompts' own tokens steer the outputs
    # end to end, the setting off and on
    on = read(generate(cfg(rows_file, tmp_path / "on.jsonl"), log=lambda *_: None))
    off = read(generate(cfg(rows_file, tmp_path / "off.jsonl", shared_prefix=False), log=lambda *_: None))
    assert on == off


def test_greedy_loop_gives_model_generates_tokens(rows_file, tmp_path, monkeypatch):
    """tracekd's greedy loop (chunked prefill, finished rows leaving, keys/values written in place) gives,
    row for row, the tokens and finish reasons of model.generate, with rows ending at different steps."""
    from tracekd import students
    from tracekd.generate import greedy, hf
    from tracekd.runtime import prompt_ids

    student = students.resolve("tiny-random")
    tok = students.load_tokenizer(student)
    prompts = [prompt_ids(tok, r["prompt"]) for _, r in iter_jsonl(rows_file)]
    model = hf.load_model_with_adapter(student, None, None, "cpu")
    # the random model never says EOS: stop at a token it says mid-way in some rows, so rows end apart
    probe = hf.HFGenerator(model, tok, max_new_tokens=12, drop_finished=False).generate(prompts)
    said = [t for c in probe for t in tok(c.text, add_special_tokens=False)["input_ids"][2:8]]
    stop = max(set(said), key=said.count)
    monkeypatch.setattr(hf, "stop_token_ids", lambda *_: {stop})
    monkeypatch.setattr(greedy, "SPARE_SLOTS", 5)  # the cache outgrows its room several times

    def run(**kw) -> list[tuple]:
        gen = hf.HFGenerator(model, tok, max_new_tokens=kw.pop("max_new_tokens", 24), **kw)
        return [(c.text, c.completion_tokens, c.finish_reason) for c in gen.generate(prompts)]

    reference = run(drop_finished=False)
    assert {r[2] for r in reference} == {"stop", "length"} and len({r[1] for r in reference}) > 2
    assert run() == reference  # one prefill chunk of 16
    assert run(prefill_batch_size=5) == reference  # chunks of 5, 5, 2 merged into one decoding batch
    assert run(prefill_batch_size=3, shared_prefix=False) == reference
    assert run(max_new_tokens=1) == run(drop_finished=False, max_new_tokens=1)


@pytest.mark.parametrize("name", ["batch_size", "prefill_batch_size"])
def test_batch_sizes_below_one_are_refused_by_name(rows_file, tmp_path, name):
    with pytest.raises(ConfigError, match=f"{name} must be >= 1, got 0"):
        cfg(rows_file, tmp_path / "g.jsonl", **{name: 0})
