"""Dry-run estimates (tracekd.experiment.estimate): FLOP counts, token counts, rates and records, on synthetic numbers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tracekd.experiment import estimate
from tracekd.experiment.config import load_experiment
from tracekd.experiment.estimate import (
    Dims,
    forward_flops,
    generate_work,
    step_factor,
    train_work,
)
from tracekd.experiment.plan import make_plan

D = Dims(hidden=64, intermediate=128, layers=2, kv=32, vocab=1000, lora_params=500)

TINY = {
    "name": "tiny-estimate",
    "datasets": [{"name": "babi", "synth": {"generator": "babi", "n": 20, "n_test": 4, "seed": 0, "tasks": "qa1,qa2"},
                  "max_train": 16, "max_test": 8}],
    "students": ["tiny-random"],
    "arms": ["vanilla", "correct"],
    "seeds": [0],
    "train": {"num_train_epochs": 1, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
              "max_memory": "off", "progress": False},
    "generate": {"max_new_tokens": 32, "batch_size": 4, "progress": False},
}


def test_forward_flops_count_padding_attention_and_head():
    one = forward_flops(D, [10], logit_rows=10)
    assert one == 2 * 10 * D.dense_per_token + 2 * 2 * 64 * 100 + 2 * 1000 * 64 * 10
    assert forward_flops(D, [10, 4], logit_rows=20) == 2 * one  # the short row is padded to 10
    assert forward_flops(D, [10], logit_rows=2) < one  # the head only where the loss is


def test_train_work_micro_batches_checkpointing_and_steps():
    rows = [(n, 5) for n in (20, 200, 30, 180, 25, 210, 40, 190)]
    whole = train_work(D, rows, batch_size=4)
    split = train_work(D, rows, batch_size=4, micro_batch=1)
    assert whole.steps == split.steps == 2 and whole.tokens == split.tokens == sum(n for n, _ in rows)
    assert split.flops < whole.flops  # one row at a time: no padding
    exact = sum(forward_flops(D, [n], 5) for n, _ in rows) * step_factor(False)
    assert split.flops == pytest.approx(exact)
    ckpt = train_work(D, rows, batch_size=4, micro_batch=1, checkpointing=True)
    assert ckpt.flops == pytest.approx(split.flops * step_factor(True) / step_factor(False))
    # checkpointing only for micro-batches over a token threshold (the memory plan's per-micro-batch switch)
    assert train_work(D, rows, batch_size=4, micro_batch=1, checkpointing=True, checkpoint_above=10_000).flops \
        == pytest.approx(split.flops)
    some = train_work(D, rows, batch_size=4, micro_batch=1, checkpointing=True, checkpoint_above=100)
    long_rows = sum(forward_flops(D, [n], 5) for n, _ in rows if n > 100)
    assert some.flops == pytest.approx(split.flops + long_rows * (step_factor(True) - step_factor(False)))
    full_head = train_work(D, rows, batch_size=4, micro_batch=1, head_on_completion=False)
    assert full_head.flops > split.flops
    assert train_work(D, rows, batch_size=4, epochs=3).flops == pytest.approx(3 * whole.flops)
    capped = train_work(D, rows, batch_size=2, max_steps=3)
    assert capped.steps == 3 and capped.tokens == pytest.approx(sum(n for n, _ in rows) / 8 * 2 * 3)
    assert train_work(D, rows, batch_size=4, seed=1).flops == train_work(D, rows, batch_size=4, seed=1).flops


def test_train_work_packs_micro_batches_as_the_memory_plan_does():
    """A packed plan: a step's rows packed by tokens (short rows together), long rows alone, recomputed as it says."""
    rows = [(n, 5) for n in (20, 200, 30, 180, 25, 210, 40, 190)]

    class Rule:  # the plan's two questions: rows share a micro-batch up to 240 padded tokens; over 195 recompute
        def packs(self, g):
            return len(g) * max(n for n, _ in g) <= 240

        def recomputes(self, g):
            return g[0][0] > 195

    packed = train_work(D, rows, batch_size=8, checkpointing=True, packed=Rule())  # one step: order does not matter
    long_rows = sum(forward_flops(D, [n], 5) * step_factor(n > 195) for n in (210, 200, 190, 180))
    short_rows = forward_flops(D, [40, 30, 25, 20], 20) * step_factor(False)  # 4 x 40 = 160 tokens: one micro-batch
    assert packed.steps == 1 and packed.tokens == sum(n for n, _ in rows)
    assert packed.flops == pytest.approx(long_rows + short_rows)


def test_generate_work_batches_by_prompt_length():
    w = generate_work(D, [50, 10, 40, 20], [5, 30, 3, 1], batch_size=2)
    # longest prompts first: (50, 40) decode max(5, 3) - 1 = 4 steps, (20, 10) max(1, 30) - 1 = 29
    assert (w.steps, w.rows) == (33, 4)
    unsorted = generate_work(D, [50, 10, 40, 20], [5, 30, 3, 1], batch_size=2, sort_by_length=False)
    assert unsorted.steps == 29 + 2  # in file order: (50, 10) -> 29, (40, 20) -> 2
    one = generate_work(D, [10], [1], batch_size=1)
    assert (one.steps, one.flops) == (0, forward_flops(D, [10], logit_rows=1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("est")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(json.dumps({**TINY, "out": str(tmp / "run")}), encoding="utf-8")
    config = load_experiment(cfg)
    return config, make_plan(config)


def test_token_counts_equal_the_training_tokenisation(tiny):
    from tracekd import students
    from tracekd.records import SFTRow
    from tracekd.train.data import tokenize_row

    config, stages = tiny
    train = next(s for s in stages if s.kind == "train" and s.spec["arm"] == "correct")
    rows = estimate.stage_rows(train, config.run_dir, {}, "train")  # rendered in memory, as the dry run does
    students._smollm2_tokenizer_folder()  # the tokenizer the dry run reads (converted once, as training does)
    counter = estimate.TokenCounter("tiny-random")
    assert counter.exact and "tokenizer and chat template" in counter.source
    tok = students.load_tokenizer(students.resolve("tiny-random"))
    ctk = students.pin_template_kwargs(tok.chat_template, {})
    for (p, c), r in zip(counter.count(rows), rows, strict=True):
        ids, labels = tokenize_row(tok, SFTRow.from_dict(r), ctk)
        assert (p, c) == (labels.count(-100), len(ids) - labels.count(-100))


def test_token_counts_fall_back_to_characters(monkeypatch):
    monkeypatch.setattr(estimate, "_tokenizer_folder", lambda student: None)
    counter = estimate.TokenCounter("tiny-random")
    assert not counter.exact and "characters / 4" in counter.source
    row = {"prompt": [{"role": "user", "content": "x" * 400}], "completion": [{"role": "assistant", "content": "y"}]}
    p, c = counter.count([row])[0]
    assert 100 <= p <= 110 and 0 < c < 20


def _fake_calibration(tokens_per_s: float):
    return SimpleNamespace(tokens_per_s=tokens_per_s, fp32_tokens_per_s=tokens_per_s, bf16_tokens_per_s=tokens_per_s / 2,
                           tokens_per_pass=96, probe_rows=1, precision="fp32", cpu_model="Test CPU",
                           measured_at="2026-12-01T10:00:00+00:00", seconds=2.0)


def test_estimates_use_the_calibration_then_finished_stages(tiny, tmp_path, monkeypatch):
    from tracekd import students

    config, stages = tiny
    folder = students._smollm2_tokenizer_folder()
    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path / "cache"))  # no records, no calibration
    monkeypatch.setattr(estimate, "_tokenizer_folder", lambda student: folder)
    train = next(s for s in stages if s.kind == "train")
    gen = next(s for s in stages if s.kind == "generate" and any(d.kind == "train" for d in s.deps))
    cache: dict = {}
    assert estimate.estimate_stage(train, config.run_dir, cache)[0] is None  # nothing measured here

    from tracekd import calibration

    asked = []
    monkeypatch.setattr(calibration, "measured", lambda student, device="cpu", kind="train", probe=None, **kw:
                        asked.append(probe) or (_fake_calibration(200.0) if kind == "train" else None))
    monkeypatch.setattr(calibration, "nearest", lambda *a, **kw: _fake_calibration(200.0))
    work, dims, _ = estimate.train_stage_work(train, config.run_dir, cache, "cpu")
    rate = forward_flops(dims, [96], 0) * step_factor(False) * 200.0 / 96  # through the decoder layers
    seconds, source = estimate.estimate_stage(train, config.run_dir, cache)
    assert seconds == pytest.approx(estimate.ASSUMED_OVERHEAD_S["train"] + work.flops / rate)
    assert source.startswith("calibration: 200 tok/s") and f"assumed {estimate.ASSUMED_OVERHEAD_S['train']:.0f} s" in source
    # the calibration of the stage's own micro-batch shape was asked for
    assert asked[-1] == calibration.probe_batch([work.median_tokens], work.micro_batch)
    gwork, _, notes = estimate.generate_stage_work(gen, config.run_dir, cache)
    g_seconds, g_source = estimate.estimate_stage(gen, config.run_dir, cache)
    assert g_seconds == pytest.approx(estimate.ASSUMED_OVERHEAD_S["generate"] + gwork.flops / rate)
    assert "low bound" in g_source and "completions as long as the targets" in notes
    # a calibration that timed a decoding step: each of the stage's steps costs that step's time beyond its FLOPs
    rows, prompt = calibration.DECODE_ROWS, calibration.DECODE_PROMPT
    step_flops = (estimate.generate_work(dims, [prompt] * rows, [2] * rows, batch_size=rows).flops
                  - forward_flops(dims, [prompt] * rows, logit_rows=rows))
    decoding = SimpleNamespace(**{**vars(_fake_calibration(200.0)), "decode_step_s": step_flops / rate + 0.05})
    monkeypatch.setattr(calibration, "nearest", lambda *a, **kw: decoding)
    g_seconds, g_source = estimate.estimate_stage(gen, config.run_dir, cache)
    assert g_seconds == pytest.approx(estimate.ASSUMED_OVERHEAD_S["generate"] + gwork.flops / rate + gwork.steps * 0.05)
    assert g_source.startswith("calibration: ") and "(50 ms beyond its FLOPs)" in g_source
    # a stage configured in bf16 is estimated at the calibration's bf16 throughput (here half of fp32's)
    bf16 = SimpleNamespace(**{**vars(train), "spec": {**train.spec, "settings": {**train.spec.get("settings", {}),
                                                                                 "precision": "bf16"}}})
    b_seconds, b_source = estimate.estimate_stage(bf16, config.run_dir, cache)
    assert b_seconds == pytest.approx(estimate.ASSUMED_OVERHEAD_S["train"] + work.flops / (rate / 2))
    assert "(bf16 as configured; the calibration chose fp32" in b_source
    starved = SimpleNamespace(**{**vars(_fake_calibration(1.0)), "seconds": 735.0})
    monkeypatch.setattr(calibration, "measured", lambda *a, **kw: starved)
    seconds, source = estimate.estimate_stage(train, config.run_dir, cache)
    assert seconds is None and "took 735 s" in source and "not used" in source

    # finished stages measured here replace the calibration: their median rate, overhead and decode step time
    for r in (1e9, 3e9, 2e9):
        estimate.add_record({"flops_per_s": r, "overhead_s": 12.0}, "train", "tiny-random", "cpu")
    estimate.add_record({"seconds": 4e9 / 2e9 + 40 * 0.05, "flops": 4e9, "steps": 40, "overhead_s": 5.0}, "generate",
                        "tiny-random", "cpu")
    seconds, source = estimate.estimate_stage(train, config.run_dir, cache)
    assert seconds == pytest.approx(12.0 + work.flops / 2e9) and source.startswith("measured: median of 3")
    g_seconds, g_source = estimate.estimate_stage(gen, config.run_dir, cache)
    assert g_seconds == pytest.approx(5.0 + gwork.flops / 2e9 + gwork.steps * 0.05)
    assert "50 ms per decode step" in g_source
    # a stage that shared the machine (others took 60% of the CPUs) is kept but left out of the median
    estimate.add_record({"flops_per_s": 0.1e9, "overhead_s": 90.0, "others_cpu_share": 0.6}, "train", "tiny-random",
                        "cpu")
    seconds, source = estimate.estimate_stage(train, config.run_dir, cache)
    assert seconds == pytest.approx(12.0 + work.flops / 2e9) and "1 left out: other processes took over 25%" in source


def test_share_of_the_cpus_other_processes_took_while_a_stage_ran():
    """Measured from /proc/stat: a process that keeps one CPU busy beside a sleeping 'stage' shows up."""
    import os
    import subprocess
    import sys
    import time

    from tracekd.experiment.machine_load import LoadMeter, busy_cpu_seconds

    if busy_cpu_seconds() is None:
        pytest.skip("no /proc/stat on this system")
    meter = LoadMeter.start()
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    burner.wait(timeout=30)
    time.sleep(0.1)
    share = meter.others_share()
    assert share is not None and share >= 0.5 / (os.cpu_count() or 1)  # the burner's second (of 1.6 s wall)


def test_records_keep_the_latest(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path))
    for i in range(estimate.KEEP_RECORDS + 3):
        estimate.add_record({"flops_per_s": float(i + 1)}, "train", "s", "cpu")
    recs = estimate.load_records("train", "s", "cpu")
    assert len(recs) == estimate.KEEP_RECORDS and recs[-1]["flops_per_s"] == estimate.KEEP_RECORDS + 3
    assert estimate.load_records("train", "other", "cpu") == []
    estimate.records_path("train", "s", "cpu").write_text("{not json")
    assert estimate.load_records("train", "s", "cpu") == []  # a damaged file is ignored, then rewritten


def _write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_finished_stages_record_their_measured_rate(tiny, tmp_path, monkeypatch):
    from tracekd import students

    config, stages = tiny
    folder = students._smollm2_tokenizer_folder()
    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(estimate, "_tokenizer_folder", lambda student: folder)
    run_dir = tmp_path / "run"
    build = next(s for s in stages if s.kind == "build")
    for s in stages:
        if s.kind == "train":
            for split in ("train", "test"):
                _write_rows(build.dir(run_dir) / "sets" / s.spec["arm"] / f"{split}.jsonl",
                            estimate.stage_rows(s, config.run_dir, {}, split))
    train = next(s for s in stages if s.kind == "train" and s.spec["arm"] == "correct")
    adapter = train.dir(run_dir) / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "manifest.json").write_text(json.dumps({
        "timing": {"train_seconds": 50.0, "tokens_seen": 1234}, "global_step": 4, "resumed_from": None,
        "resolved": {"device": "cpu", "precision": "fp32", "gradient_checkpointing": False, "torch_threads": 2},
        "memory": {"per_device_train_batch_size": 2}}))
    rec = estimate.record_stage(train, run_dir, seconds=65.0)
    work, _, _ = estimate.train_stage_work(train, run_dir, {}, "cpu", micro_batch=2, checkpointing=False)
    assert rec["flops_per_s"] == pytest.approx(work.flops / 50.0) and rec["overhead_s"] == pytest.approx(15.0)
    assert rec["micro_batch"] == 2 and estimate.load_records("train", "tiny-random", "cpu")[-1]["flops"] == work.flops

    gen = next(s for s in stages if s.kind == "generate" and s.spec["arm"] == "correct"
               and any(d.kind == "train" for d in s.deps))
    gens = [{"id": f"r{i}", "text": "x", "finish_reason": "stop" if i else "length", "prompt_tokens": 30 + i,
             "completion_tokens": 32 if i == 0 else 5 + i} for i in range(5)]
    _write_rows(gen.dir(run_dir) / "generations.jsonl", gens)
    (gen.dir(run_dir) / "generations.manifest.json").write_text(json.dumps({
        "config": {"max_new_tokens": 32, "batch_size": 2, "sort_by_length": True},
        "settings": {"precision": "fp32"}, "timing": {"resumed_with": 0, "seconds_now": 8.0}}))
    grec = estimate.record_stage(gen, run_dir, seconds=20.0)
    dims, _ = estimate.student_dims("tiny-random")
    # the stop token is decoded too (except for the row that hit max_new_tokens)
    expect = generate_work(dims, [30, 31, 32, 33, 34], [32, 7, 8, 9, 10], batch_size=2)
    assert (grec["flops"], grec["steps"], grec["overhead_s"]) == (expect.flops, expect.steps, 12.0)

    (gen.dir(run_dir) / "generations.manifest.json").write_text(json.dumps({
        "config": {}, "timing": {"resumed_with": 3, "seconds_now": 2.0}}))
    assert estimate.record_stage(gen, run_dir, seconds=5.0) is None  # a resumed stage's time is not the whole
