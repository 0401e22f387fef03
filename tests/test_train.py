"""tracekd train: preflight, loss falls, determinism, resume after SIGKILL, configs and recipes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tracekd.config import load_config
from tracekd.errors import ConfigError, DataError
from tracekd.io import iter_jsonl, sha256_file, write_jsonl
from tracekd.records import Decomposition, SFTRow
from tracekd.runtime import read_rows
from tracekd.train import TrainConfig, train
from tracekd.train.data import preflight

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = ["Mary", "John", "Sandra", "Daniel"]
PLACES = ["kitchen", "garden", "office", "hallway", "bedroom"]


def make_rows(n: int, *, long_row: int | None = None) -> list[dict]:
    """Small bAbI-like SFT rows in the reference trace format (row ``long_row`` gets a huge context)."""
    rows = []
    for i in range(n):
        who, where = PEOPLE[i % 4], PLACES[i % 5]
        context = [f"{who} went to the {where}."] + [f"{PEOPLE[(i + k) % 4]} moved to the {PLACES[k % 5]}."
                                                      for k in range(1, 1 + i % 3)]
        if i == long_row:
            context = context * 200
        user = "Answer the question based on the context:\n" + "\n".join(context) + \
            f"\nQuestion: Where is {who}? Only return the answer."
        completion = (f"<think>The category of the question asked is: single-supporting-fact.\n"
                      f"I need to use the following text to answer the question: [\"{context[0]}\"]</think> "
                      f"<answer>{where}</answer>")
        rows.append(SFTRow(id=f"toy/{i}", arm="correct",
                           prompt=({"role": "system", "content": "You are a helpful assistant."},
                                   {"role": "user", "content": user}),
                           completion=({"role": "assistant", "content": completion},),
                           target=Decomposition("single-supporting-fact", (0,))).to_dict())
    return rows


@pytest.fixture
def rows_file(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    write_jsonl(path, make_rows(8))
    return path


def tiny(rows_file: Path, out: Path, **kw) -> TrainConfig:
    base = dict(train_file=str(rows_file), output_dir=str(out), student="tiny-random", learning_rate=1e-2,
                per_device_train_batch_size=4, gradient_accumulation_steps=1, warmup_steps=0, lora_r=8,
                lora_alpha=16, max_length=256, save_steps=100, progress=False, precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def log_lines(out: Path) -> list[dict]:
    return [obj for _, obj in iter_jsonl(out / "train_log.jsonl")]


def test_tiny_random_loss_falls_and_manifest_records_the_run(rows_file, tmp_path):
    out = train(tiny(rows_file, tmp_path / "run", max_steps=8), log=lambda *_: None)
    log = log_lines(out)
    assert [r["step"] for r in log] == list(range(1, 9))
    assert sum(r["loss"] for r in log[-2:]) / 2 < log[0]["loss"] - 0.2
    m = json.loads((out / "manifest.json").read_text())
    assert m["student"]["name"] == "tiny-random" and len(m["student"]["weights_sha256"]["model.safetensors"]) == 64
    assert m["lora"]["target_modules_resolved"] == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert m["files"]["train_file"] == sha256_file(rows_file)
    assert m["resolved"]["precision"] == "fp32" and m["config"]["learning_rate"] == 1e-2
    assert [s for s, _ in m["loss_curve"]] == list(range(1, 9))
    assert "torch" in m["versions"] and "peft" in m["versions"]
    # CPU: LoRA dropout 0.05 drawn by BitDropout in all 7 x 2 adapted projections of tiny-random
    assert m["lora"]["dropout_masks"] == "16-bit random words (BitDropout, 14 modules), effective p 0.0500031"
    # each epoch (2 steps of 4 rows) sees every row exactly once
    for epoch in range(4):
        ids = [i for r in log[2 * epoch: 2 * epoch + 2] for i in r["ids"]]
        assert sorted(ids) == sorted(f"toy/{i}" for i in range(8))
    # the adapter reloads on the base student and changes its outputs
    import torch
    from peft import PeftModel

    from tracekd import students

    s = students.resolve("tiny-random")
    base = students.load_model(s)
    x = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        before = base(x).logits
        after = PeftModel.from_pretrained(base, str(out))(x).logits
    assert not torch.allclose(before, after)


def test_same_seed_same_adapter_bytes(rows_file, tmp_path):
    a = train(tiny(rows_file, tmp_path / "a", max_steps=2), log=lambda *_: None)
    b = train(tiny(rows_file, tmp_path / "b", max_steps=2), log=lambda *_: None)
    c = train(tiny(rows_file, tmp_path / "c", max_steps=2, seed=7), log=lambda *_: None)
    assert sha256_file(a / "adapter_model.safetensors") == sha256_file(b / "adapter_model.safetensors")
    assert sha256_file(a / "adapter_model.safetensors") != sha256_file(c / "adapter_model.safetensors")


def test_preflight_catches_overlong_row(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, make_rows(6, long_row=3))
    from tracekd import students

    tok = students.load_tokenizer(students.resolve("tiny-random"))
    rows = read_rows(path)
    with pytest.raises(DataError) as e:
        preflight(rows, tok, 256, path=path)
    msg = str(e.value)
    assert f"{path}:4: id 'toy/3'" in msg and "max_length 256" in msg and "--drop-overlong" in msg
    kept, report = preflight(rows, tok, 256, path=path, drop=True)
    assert [t.id for t in kept] == ["toy/0", "toy/1", "toy/2", "toy/4", "toy/5"]
    assert report.dropped == 1 and report.overlong[0]["id"] == "toy/3"
    # the prompt is never trained on: labels are -100 up to the assistant's text
    first = kept[0]
    n_masked = sum(1 for x in first.labels if x == -100)
    assert tok.decode(first.input_ids[n_masked:]).startswith("<think>")


def test_train_refuses_overlong_rows_unless_dropped(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, make_rows(6, long_row=2))
    with pytest.raises(DataError, match="longer than max_length"):
        train(tiny(path, tmp_path / "x", max_steps=1), log=lambda *_: None)
    out = train(tiny(path, tmp_path / "y", max_steps=1, drop_overlong=True), log=lambda *_: None)
    assert json.loads((out / "preflight.json").read_text())["dropped"] == 1
    assert json.loads((out / "manifest.json").read_text())["data"]["trained_rows"] == 5


def test_bad_rows_name_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    rows = make_rows(3)
    rows[1]["completion"] = [{"role": "user", "content": "x"}]
    write_jsonl(path, rows)
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'completion'"):
        read_rows(path)
    rows = make_rows(3)
    rows[2]["id"] = rows[0]["id"]
    write_jsonl(path, rows)
    with pytest.raises(DataError, match=r"bad.jsonl:3: field 'id': duplicate id 'toy/0' \(first on line 1\)"):
        read_rows(path)


def test_qlora_without_cuda_is_a_clear_error(rows_file, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="--qlora .* needs a CUDA GPU"):
        train(tiny(rows_file, tmp_path / "q", max_steps=1, qlora=True), log=lambda *_: None)


def test_rerun_without_resume_is_refused(rows_file, tmp_path):
    cfg = tiny(rows_file, tmp_path / "r", max_steps=1)
    train(cfg, log=lambda *_: None)
    with pytest.raises(ConfigError, match="pass --resume"):
        train(cfg, log=lambda *_: None)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tracekd.cli", *args]


def test_training_resumes_after_sigkill(rows_file, tmp_path):
    """Killed after its first checkpoint, a rerun with --resume ends exactly like an uninterrupted run."""
    common = ["train", "--train-file", str(rows_file), "--student", "tiny-random", "--lr", "1e-2",
              "--batch-size", "2", "--grad-accum", "1", "--warmup-steps", "0", "--lora-r", "8", "--lora-alpha", "16",
              "--max-steps", "24", "--save-steps", "4", "--no-progress", "--max-length", "256"]
    ref = train(tiny(rows_file, tmp_path / "ref", per_device_train_batch_size=2, max_steps=24, save_steps=4),
                log=lambda *_: None)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*common, "-o", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "checkpoint-8").exists():
        assert proc.poll() is None, "training finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    done_before = len(log_lines(out))
    assert 8 <= done_before < 24

    subprocess.run(_cli(*common, "-o", str(out), "--resume"), check=True, capture_output=True)
    log = log_lines(out)
    assert [r["step"] for r in log] == list(range(1, 25))  # no step lost, none logged twice
    per_epoch = Counter()
    for r in log:  # 8 rows, 2 per step: steps 1-4 are epoch 0, 5-8 epoch 1, ...
        for i in r["ids"]:
            per_epoch[((r["step"] - 1) // 4, i)] += 1
    assert set(per_epoch.values()) == {1} and len(per_epoch) == 6 * 8
    assert [r["ids"] for r in log] == [r["ids"] for r in log_lines(ref)]
    assert [round(r["loss"], 5) for r in log] == [round(r["loss"], 5) for r in log_lines(ref)]
    assert sha256_file(out / "adapter_model.safetensors") == sha256_file(ref / "adapter_model.safetensors")
    assert "checkpoint-" in json.loads((out / "manifest.json").read_text())["resumed_from"]


def test_resume_with_other_settings_is_refused(rows_file, tmp_path):
    out = tmp_path / "run"
    train(tiny(rows_file, out, max_steps=2, save_steps=1), log=lambda *_: None)
    (out / "manifest.json").unlink()  # as if killed before the end
    with pytest.raises(ConfigError, match="learning_rate"):
        train(tiny(rows_file, out, max_steps=2, save_steps=1, learning_rate=1e-3, resume=True), log=lambda *_: None)


def test_bad_values_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="lora_r"):
        TrainConfig(train_file="a", output_dir="b", lora_r=0)
    with pytest.raises(ConfigError, match="lora_dropout"):
        TrainConfig(train_file="a", output_dir="b", lora_dropout=1.5)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(train_file="a", output_dir="b", precision="fp8")


def test_config_yaml_unknown_key_and_flag_precedence(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("train_file: a.jsonl\noutput_dir: out\nlearning_rate: 1e-3\nlora_rr: 8\n")
    with pytest.raises(ConfigError, match=r"unknown TrainConfig key 'lora_rr'; did you mean 'lora_r'"):
        load_config(TrainConfig, y)
    y.write_text("train_file: a.jsonl\noutput_dir: out\nlearning_rate: 1e-3\nlora_target_modules: q_proj,v_proj\n")
    from tracekd.cli import build_parser
    from tracekd.config import overrides_from_args

    args = build_parser().parse_args(["train", "--config", str(y), "--epochs", "2", "--lr", "5e-4"])
    cfg = load_config(TrainConfig, args.config, overrides_from_args(args, TrainConfig))
    assert cfg.learning_rate == 5e-4 and cfg.num_train_epochs == 2.0
    assert cfg.lora_target_modules == ["q_proj", "v_proj"] and cfg.lora_r == 16  # YAML, then default


@pytest.mark.parametrize("recipe", sorted([*(ROOT / "configs" / "train" / "cpu").glob("*.yaml"),
                                           *(ROOT / "configs" / "train" / "gpu").glob("*.yaml")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipes_load_and_say_their_command(recipe):
    text = recipe.read_text()
    command = next(line for line in text.splitlines() if line.startswith("# tracekd train"))
    assert f"--config configs/train/{recipe.parent.name}/{recipe.name}" in command
    cfg = load_config(TrainConfig, recipe, {"train_file": "x.jsonl", "output_dir": "out"})
    if recipe.parent.name == "gpu":
        assert cfg.qlora and cfg.learning_rate == 2e-4 and cfg.gradient_accumulation_steps == 4
    else:
        assert not cfg.qlora and cfg.precision in ("auto", "fp32")


def test_torn_checkpoint_is_skipped(tmp_path):
    from tracekd.train.run import last_complete_checkpoint

    for step, state in ((4, '{"global_step": 4}'), (8, '{"global_st'), (12, None)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if state is not None:
            (d / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4"]
    assert last_complete_checkpoint(tmp_path / "none") is None


def test_resume_of_a_finished_run_does_nothing(rows_file, tmp_path):
    out = train(tiny(rows_file, tmp_path / "done", max_steps=2), log=lambda *_: None)
    before = (out / "manifest.json").read_bytes()
    from tracekd.train import train_from_settings

    train_from_settings({"max_steps": 2, "learning_rate": 1e-2, "per_device_train_batch_size": 4,
                         "gradient_accumulation_steps": 1, "warmup_steps": 0, "lora_r": 8, "lora_alpha": 16,
                         "max_length": 256, "save_steps": 100, "progress": False, "precision": "fp32"},
                        student="tiny-random", train_file=rows_file, output_dir=out)
    assert (out / "manifest.json").read_bytes() == before


# --------------------------------------------------------------------------- precision by measurement, loss


def test_auto_precision_is_measured_cached_and_recorded(rows_file, tmp_path, monkeypatch):
    """precision auto on CPU: a calibration runs once per machine/student, the manifest records figures and choice."""
    from tracekd import calibration

    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(calibration, "MAX_OTHERS_SHARE", 1.0)  # cached however busy the machine running the tests
    assert not (tmp_path / "cache" / "calibration").exists()
    out = train(tiny(rows_file, tmp_path / "a", max_steps=1, precision="auto"), log=lambda *_: None)
    m = json.loads((out / "manifest.json").read_text())
    cal = m["resolved"]["calibration"]
    assert m["resolved"]["precision_source"] == "measured"
    assert cal["fp32_tokens_per_s"] > 0 and cal["bf16_tokens_per_s"] > 0
    assert len(cal["bf16_speedups"]) >= 2  # paired timings, decided by their median and the every-pair rule
    assert m["resolved"]["precision"] == cal["precision"] == calibration.decide_from_speedups(cal["bf16_speedups"])[0]
    assert cal["seconds"] > 0 and cal["torch_version"] == m["versions"]["torch"]
    # both of tiny-random's layers, then one: a layer's time, and a decoding step's for dry-run estimates
    assert "one layer's time from 2 vs 1 layers" in cal["probe"] and cal["decode_step_s"] > 0
    # bf16 timed as training runs it: the frozen projections stored in bf16
    assert cal["bf16_weights"] is True and "; bf16 with the frozen projections stored in bf16" in cal["probe"]
    # kept per probe shape: training's micro-batch (4 rows here), rounded up to a power of two
    assert cal["probe_rows"] * (cal["tokens_per_pass"] // cal["probe_rows"]) == cal["tokens_per_pass"]
    shape = (cal["probe_rows"], cal["tokens_per_pass"] // cal["probe_rows"])
    cached = calibration.measured("tiny-random", "cpu", probe=shape)
    assert cached is not None and cached.to_dict() == cal
    assert calibration.nearest("tiny-random", "cpu", tokens=10_000).to_dict() == cal
    # a second run reuses the cached measurement (same figures, no new file)
    out2 = train(tiny(rows_file, tmp_path / "b", max_steps=1, precision="auto"), log=lambda *_: None)
    assert json.loads((out2 / "manifest.json").read_text())["resolved"]["calibration"] == cal
    assert len(list((tmp_path / "cache" / "calibration").iterdir())) == 1
    # an explicit precision overrides and measures nothing
    out3 = train(tiny(rows_file, tmp_path / "c", max_steps=1, precision="bf16"), log=lambda *_: None)
    m3 = json.loads((out3 / "manifest.json").read_text())
    assert m3["resolved"]["precision"] == "bf16" and m3["resolved"]["calibration"] is None


@pytest.mark.parametrize(("fp32", "bf16", "identical", "chosen"), [
    (138.0, 13.8, None, "fp32"),     # bf16 10x slower (a CPU without a fast bf16 path)
    (100.0, 105.0, None, "fp32"),    # within the margin: keep the exact format
    (100.0, 190.0, None, "bf16"),    # bf16 clearly faster (AMX)
    (100.0, 190.0, False, "fp32"),   # faster, but greedy outputs change: not for generation
    (100.0, 190.0, True, "bf16"),
])
def test_precision_choice_from_measured_numbers(fp32, bf16, identical, chosen):
    from tracekd.calibration import choose_precision
    from tracekd.runtime import decide_precision

    got, reason = choose_precision(fp32, bf16, outputs_identical=identical)
    assert got == chosen and "measured" in reason or "differ" in reason
    assert decide_precision("auto", "cpu", cpu_measured=got) == chosen
    assert decide_precision("fp32", "cpu", cpu_measured=got) == "fp32"
    assert decide_precision("auto", "cpu") == "fp32"  # nothing measured: the exact format


@pytest.mark.parametrize(("fp32_s", "bf16_s", "chosen"), [
    ([1.0, 1.0, 1.0], [0.5, 0.55, 0.45], "bf16"),       # AMX: bf16 about 2x faster in every pair
    ([0.1, 0.1, 0.1], [1.0, 1.1, 0.9], "fp32"),         # a CPU without a fast bf16 path: 10x slower
    ([1.0, 1.0, 1.0], [0.95, 0.93, 0.97], "fp32"),      # within the margin: a tie keeps the exact format
    ([1.0, 1.0, 1.0], [0.7, 1.2, 0.7], "fp32"),         # median 1.43x but float32 won one pair: a tie
    ([1.0, 3.0, 1.0], [0.6, 0.6, 0.6], "bf16"),         # one pair disturbed (fp32 slowed down): the median holds
    ([1.0, 1.0, 1.0, 1.0], [0.8, 0.8, 0.8, 0.99], "bf16"),  # even count: median of the middle two
    ([1.0, 1.0], [0.92, 0.9], "fp32"),                  # 1.09x and 1.11x: median 1.10x minus rounding < margin
])
def test_precision_decision_from_paired_timings(fp32_s, bf16_s, chosen):
    """The decision is a pure function of the paired wall times: median speed-up >= margin and bf16 won every pair."""
    from tracekd.calibration import BF16_MARGIN, decide_from_speedups, decide_from_timings

    got, reason, speedups = decide_from_timings(fp32_s, bf16_s)
    assert got == chosen, reason
    assert speedups == pytest.approx([a / b for a, b in zip(fp32_s, bf16_s)])
    assert decide_from_speedups(speedups) == (got, reason)
    assert decide_from_timings(fp32_s, bf16_s, margin=100.0)[0] == "fp32"
    # the same timings scaled by machine load (every pass 3x slower) decide the same
    assert decide_from_timings([3 * x for x in fp32_s], [3 * x for x in bf16_s])[0] == got
    assert BF16_MARGIN > 1.0
    with pytest.raises(ValueError):
        decide_from_timings([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        decide_from_timings([1.0], [0.0])


def test_calibration_times_a_proportional_slice_and_restores_the_model(tmp_path, monkeypatch):
    """1 of tiny-random's 2 layers: the model keeps its layers, figures are for the whole student."""
    import torch

    from tracekd import calibration
    from tracekd.train.loss import base_causal_lm, completion_loss
    from tracekd.train.weights import frozen_linears

    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path))
    monkeypatch.setattr(calibration, "MAX_OTHERS_SHARE", 1.0)  # cached however busy the machine running the tests
    model = _lora_tiny()
    layers = base_causal_lm(model).model.layers
    before = [p.detach().clone() for p in model.parameters()]
    cal = calibration.calibrate_training(model, "tiny-random", [40, 30, 50], rows=2, loss=completion_loss, layers=1,
                                         pairs=2, bf16_modules=frozen_linears(model))
    assert base_causal_lm(model).model.layers is layers and len(layers) == 2
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())
    # 2 rows of median 40 tokens: a 128-token micro-batch (the power of two above 80) in 2 rows of 64
    assert cal.probe == ("2 x 64 tokens, 1 of 2 decoder layers, loss on 16 positions per row; bf16 with the frozen "
                         "projections stored in bf16; last row padded by 8")
    # the attention kernels were timed in both formats; the chosen format runs the faster of them (sdpa unless eager
    # was clearly faster), and the model is left running its own
    assert set(cal.attention_ms) == {"fp32", "bf16"} and all(v["sdpa"] > 0 and v["eager_autocast"] > 0
                                                             for v in cal.attention_ms.values())
    assert cal.attention in ("sdpa", "eager_autocast") and cal.attention_requested == "auto"
    assert cal.attention_reason.endswith(f"({cal.precision})")
    assert base_causal_lm(model).config._attn_implementation == "sdpa"
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the bf16 passes' weights swapped back
    assert cal.tokens_per_pass == 128 and cal.probe_rows == 2
    # the decoding probe steps through both layers and one, with the adapter off; it is on again in every layer
    assert cal.decode_step_s > 0
    from peft.tuners.tuners_utils import BaseTunerLayer
    lora = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    assert len(lora) == 6 and not any(m.disable_adapters for m in lora)
    assert len(cal.bf16_speedups) == 2 and cal.fp32_tokens_per_s > 0
    assert cal.precision == calibration.decide_from_speedups(cal.bf16_speedups)[0]
    threads = torch.get_num_threads()
    assert calibration.measured("tiny-random", "cpu", threads=threads, probe=(2, 64)) == cal
    assert calibration.measured("tiny-random", "cpu", threads=threads, probe=(1, 512)) is None  # another shape
    assert calibration.nearest("tiny-random", "cpu", tokens=512, threads=threads) == cal  # the closest one cached
    # bf16 with float32 weights cast by autocast is another measurement, cached apart
    assert calibration.measured("tiny-random", "cpu", threads=threads, probe=(2, 64), bf16_weights=False) is None
    # so is one with the attention fixed
    assert calibration.measured("tiny-random", "cpu", threads=threads, probe=(2, 64), attention="sdpa") is None


def test_a_calibration_starved_by_other_processes_is_used_but_not_cached(tmp_path, monkeypatch):
    import torch

    from tracekd import calibration
    from tracekd.experiment.machine_load import LoadMeter
    from tracekd.train.loss import completion_loss

    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path))
    monkeypatch.setattr(LoadMeter, "others_share", lambda self: 0.6)  # others took 60% of the CPUs meanwhile
    cal = calibration.calibrate_training(_lora_tiny(), "tiny-random", [40, 30, 50], rows=2, loss=completion_loss,
                                         pairs=2)
    assert cal.others_cpu_share == 0.6 and cal.precision in ("fp32", "bf16")
    assert calibration.measured("tiny-random", "cpu", threads=torch.get_num_threads(), probe=(2, 64)) is None
    assert not (tmp_path / "calibration").exists()


def test_time_pairs_alternates_the_order_and_stops_at_the_budget():
    from tracekd.timing import time_pairs

    calls: list[str] = []
    times = time_pairs({"fp32": lambda: calls.append("fp32"), "bf16": lambda: calls.append("bf16")}, pairs=3)
    assert calls == ["fp32", "bf16", "fp32", "bf16", "bf16", "fp32", "fp32", "bf16"]  # warm-ups, then ABBA...
    assert len(times["fp32"]) == len(times["bf16"]) == 3 and min(times["fp32"] + times["bf16"]) >= 0
    calls.clear()
    time_pairs({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, pairs=10, budget_s=0.0)
    assert len(calls) == 2 + 2 * 2  # the budget is spent: only the 2 pairs always timed


def test_calibration_cache_is_keyed_by_machine_torch_and_student(tmp_path, monkeypatch):
    from tracekd import calibration

    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path))
    a = calibration.cache_path("smollm2-135m", "cpu")
    assert a != calibration.cache_path("tiny-random", "cpu") and a != calibration.cache_path("smollm2-135m", "cpu",
                                                                                               "generate")
    assert a != calibration.cache_path("smollm2-135m", "cpu", threads=99)
    assert a != calibration.cache_path("smollm2-135m", "cpu", probe=(1, 512)) != calibration.cache_path(
        "smollm2-135m", "cpu", probe=(2, 256))  # one measurement per probe shape
    monkeypatch.setattr(calibration, "torch_version", lambda: "0.0.1")
    assert calibration.cache_path("smollm2-135m", "cpu") != a
    monkeypatch.setattr(calibration, "cpu_identity", lambda: {"cpu_model": "Other CPU", "cpu_flags": "",
                                                              "cpu_flags_digest": "0" * 16})
    assert calibration.cache_path("smollm2-135m", "cpu") != a


def _lora_tiny():
    from peft import LoraConfig, get_peft_model

    from tracekd import students

    with students._seeded(0):
        model = students.load_model(students.resolve("tiny-random"))
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                                                 target_modules=["q_proj", "v_proj", "down_proj"]))
        for name, p in model.named_parameters():  # LoRA B starts at 0: give it values so every gradient flows
            if "lora_B" in name:
                p.data.normal_(0, 0.1)
    return model


def test_lm_head_on_completion_positions_equals_full_loss_and_gradients():
    """Loss and every LoRA gradient of the head-on-completion loss equal the model's own full-logits loss."""
    import torch

    from tracekd.train.loss import completion_loss, supports

    model = _lora_tiny()
    assert supports(model)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 1000, (3, 17), generator=gen)
    attn = torch.ones_like(ids)
    attn[1, 12:] = 0                     # a right-padded row, as the collator makes them
    labels = ids.clone()
    labels[:, :9] = -100                 # prompt
    labels[1, 12:] = -100                # padding
    labels[2, 9:11] = -100               # a hole inside the completion
    n_items = int(labels[:, 1:].ne(-100).sum()) + 5  # as if the accumulated batch held more tokens
    inputs = {"input_ids": ids, "attention_mask": attn, "labels": labels}

    def grads(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    for n in (n_items, None):
        full = model(**inputs, **({"num_items_in_batch": n} if n is not None else {})).loss
        ours = completion_loss(model, inputs, n)
        torch.testing.assert_close(ours, full, rtol=1e-6, atol=1e-6)
        g_full, g_ours = grads(full), grads(ours)
        assert g_full.keys() == g_ours.keys() and len(g_full) == 12  # 2 layers x 3 modules x A, B
        for name in g_full:
            torch.testing.assert_close(g_ours[name], g_full[name], rtol=1e-5, atol=1e-7)


def test_head_cross_entropy_in_chunks_equals_the_full_logits_loss_under_autocast():
    """The chunked head + cross-entropy: value and hidden-state gradient of the full-logits loss, in float32 and
    under bf16 autocast, whatever the chunking; a rescaled incoming gradient rescales it; the weight gets none."""
    import torch
    import torch.nn.functional as F

    from tracekd.train.loss import head_cross_entropy

    gen = torch.Generator().manual_seed(3)
    w = torch.randn(50, 16, generator=gen)
    h0 = torch.randn(11, 16, generator=gen)
    t = torch.randint(0, 50, (11,), generator=gen)

    def run(fn, autocast, scale=7):
        h = h0.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = fn(h) / scale
        loss.backward()
        return loss.detach(), h.grad

    for autocast, tol in ((False, 1e-6), (True, 1e-3)):
        ref = run(lambda h: F.cross_entropy(F.linear(h, w).float(), t, reduction="sum"), autocast)
        weight = w.to(torch.bfloat16) if autocast else w
        for chunk in (50, 150, 50 * 11, 10_000):  # 1, 3 (the last one partial), 11 and all rows at once
            ours = run(lambda h: head_cross_entropy(h, weight, t, per=7, chunk_logits=chunk), autocast)
            torch.testing.assert_close(ours[0], ref[0], rtol=tol, atol=tol)
            torch.testing.assert_close(ours[1], ref[1], rtol=tol, atol=tol)
            assert ours[1].dtype == torch.float32
        doubled = run(lambda h: head_cross_entropy(h, weight, t, per=7, chunk_logits=150), autocast, scale=3.5)
        torch.testing.assert_close(doubled[1], 2 * ref[1], rtol=tol, atol=tol)

    frozen = w.clone().requires_grad_(True)
    head_cross_entropy(h0.clone().requires_grad_(True), frozen, t).backward()
    assert frozen.grad is None


def test_completion_loss_keeps_one_cast_of_a_frozen_head_until_it_changes():
    """Under autocast the frozen LM head's weight is cast once and reused; a changed weight is cast again."""
    import torch

    from tracekd.train.loss import compute_weight, drop_weight_casts

    head = torch.nn.Linear(8, 20, bias=False).requires_grad_(False)
    x = torch.randn(3, 8)
    assert compute_weight(head, x) is head.weight  # no autocast: the weight itself
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = compute_weight(head, x)
        assert first.dtype == torch.bfloat16 and compute_weight(head, x) is first
        torch.testing.assert_close(first, head.weight.to(torch.bfloat16), rtol=0, atol=0)
        head.weight.mul_(2)
        again = compute_weight(head, x)
    assert again is not first
    torch.testing.assert_close(again, head.weight.to(torch.bfloat16), rtol=0, atol=0)
    assert compute_weight(head, x) is head.weight  # float32: the weight itself
    drop_weight_casts(torch.nn.Sequential(head))
    assert not hasattr(head, "_tracekd_cast")


def _accumulate(model, batches: list[dict], n_items: int):
    """One optimizer step's loss and LoRA gradients over ``batches`` as the trainer accumulates them (empty
    placeholders skipped, the loss normalised over the step's ``n_items`` completion tokens)."""
    import torch

    from tracekd.train.loss import completion_loss

    model.zero_grad(set_to_none=True)
    total = torch.zeros(())
    for b in batches:
        if b["input_ids"].shape[0] == 0:
            continue
        loss = completion_loss(model, {k: v for k, v in b.items() if k not in ("row_index", "tracekd_checkpoint")},
                               n_items)
        loss.backward()
        total += loss.detach()
    return total, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_micro_batches_by_length_equal_the_padded_step_loss_and_gradients():
    """A step's rows regrouped by length: less padding, same rows, same loss and LoRA gradients as the drawn batches."""
    import torch

    from tracekd.train.batch import regroup_step
    from tracekd.train.run import _collator

    model = _lora_tiny()
    gen = torch.Generator().manual_seed(3)
    features = []
    for i, n in enumerate([9, 30, 12, 28, 10, 31, 11, 29]):
        ids = torch.randint(1, 1000, (n,), generator=gen).tolist()
        features.append({"input_ids": ids, "labels": [-100] * (n // 2) + ids[n // 2:], "row_index": i})
    collate = _collator(0)
    drawn = [collate(features[k:k + 2]) for k in range(0, 8, 2)]  # as the sampler drew them: mixed lengths
    grouped = regroup_step(drawn, features, collate)
    assert sorted(i for b in grouped for i in b["row_index"].tolist()) == list(range(8))
    assert [len(b["row_index"]) for b in grouped] == [2, 2, 2, 2]
    assert [b["row_index"].tolist() for b in grouped] == [[5, 1], [7, 3], [2, 6], [4, 0]]  # longest first
    padded = sum(b["input_ids"].numel() for b in drawn)
    assert sum(b["input_ids"].numel() for b in grouped) < padded
    n_items = sum(int(b["labels"][:, 1:].ne(-100).sum()) for b in drawn)  # the step's completion tokens

    loss_drawn, g_drawn = _accumulate(model, drawn, n_items)
    loss_grouped, g_grouped = _accumulate(model, grouped, n_items)
    torch.testing.assert_close(loss_grouped, loss_drawn, rtol=1e-6, atol=1e-6)
    assert g_drawn.keys() == g_grouped.keys() and g_drawn
    for name in g_drawn:
        torch.testing.assert_close(g_grouped[name], g_drawn[name], rtol=1e-5, atol=1e-7)


def test_packed_step_equals_the_drawn_step_loss_and_gradients():
    """A step packed by tokens: short rows share micro-batches, empty placeholders lead, same loss and gradients."""
    import torch

    from tracekd.train.batch import regroup_step
    from tracekd.train.run import _collator

    model = _lora_tiny()
    gen = torch.Generator().manual_seed(5)
    features = []
    for i, n in enumerate([9, 30, 12, 10]):
        ids = torch.randint(1, 1000, (n,), generator=gen).tolist()
        features.append({"input_ids": ids, "labels": [-100] * (n // 2) + ids[n // 2:], "row_index": i})

    class Plan:  # the memory plan's rule: up to 40 padded tokens per micro-batch; rows over 20 recompute
        packed = True

        def packs(self, rows):
            return len(rows) * max(t for t, _ in rows) <= 40

        def recomputes(self, rows):
            return rows[0][0] > 20

    collate = _collator(0)
    drawn = [collate([f]) for f in features]  # one row per micro-batch, as a packed plan loads them
    packed = regroup_step(drawn, features, collate, Plan())
    assert len(packed) == len(drawn)  # the trainer's accumulation count is kept
    assert [b["row_index"].tolist() for b in packed] == [[], [], [1], [2, 3, 0]]  # longest alone, 3 x 12 <= 40
    assert [b["input_ids"].shape[0] for b in packed[:2]] == [0, 0]
    assert [b.get("tracekd_checkpoint") for b in packed] == [None, None, True, False]
    n_items = sum(int(b["labels"][:, 1:].ne(-100).sum()) for b in drawn)

    loss_drawn, g_drawn = _accumulate(model, drawn, n_items)
    loss_packed, g_packed = _accumulate(model, packed, n_items)
    torch.testing.assert_close(loss_packed, loss_drawn, rtol=1e-6, atol=1e-6)
    for name in g_drawn:
        torch.testing.assert_close(g_packed[name], g_drawn[name], rtol=1e-5, atol=1e-7)


def test_training_with_micro_batches_by_length_keeps_steps_rows_and_loss_curve(rows_file, tmp_path):
    common = dict(max_steps=2, lora_dropout=0.0, per_device_train_batch_size=2, gradient_accumulation_steps=2,
                  max_memory="off")
    grouped = train(tiny(rows_file, tmp_path / "grouped", **common), log=lambda *_: None)
    drawn = train(tiny(rows_file, tmp_path / "drawn", micro_batches_by_length=False, **common), log=lambda *_: None)
    lg, ld = log_lines(grouped), log_lines(drawn)
    assert [sorted(r["ids"]) for r in lg] == [sorted(r["ids"]) for r in ld] and len(lg) == 2  # the same rows per step
    assert [r["ids"] for r in lg] != [r["ids"] for r in ld]  # ... in other micro-batches
    for a, b in zip(lg, ld, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5) and a["tokens_seen"] == b["tokens_seen"]
    mg = json.loads((grouped / "manifest.json").read_text())
    assert mg["config"]["micro_batches_by_length"] is True


def test_memory_budget_splits_steps_keeping_rows_steps_and_loss_curve(rows_file, tmp_path, monkeypatch):
    """A budget that fits the 2 longest rows, not the 4 longest: fixed micro-batches of 2 (the default) or, with
    micro_batches_by_tokens, each step of 4 packed by tokens (rows share micro-batches, placeholders skipped);
    same steps, same loss curve either way."""
    import transformers

    from tracekd import students
    from tracekd.train import memory
    from tracekd.train.data import preflight as pf

    kept, _ = pf(read_rows(rows_file), students.load_tokenizer(students.resolve("tiny-random")), 256)
    shape = memory.Shape.from_folder(students.resolve("tiny-random").source)
    worst = sorted(((len(t.input_ids), t.trainable) for t in kept), reverse=True)
    lora = memory.lora_parameters(shape, 8, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"])
    two = memory.estimate(shape, worst[:2], trainable_params=lora, checkpointing=False, head_on_completion=True)
    four = memory.estimate(shape, worst[:4], trainable_params=lora, checkpointing=False, head_on_completion=True)
    assert two.total < four.total
    budget = f"{(two.total + four.total) / 2 / memory.GB:.6f}GB"
    rows_per_call = []
    real_step = transformers.Trainer.training_step

    def spy(self, model, inputs, *args, **kwargs):
        rows_per_call.append(inputs["input_ids"].shape[0])
        return real_step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", spy)
    common = dict(max_steps=4, lora_dropout=0.0)
    whole = train(tiny(rows_file, tmp_path / "whole", max_memory="off", **common), log=lambda *_: None)
    assert set(rows_per_call) == {4}
    rows_per_call.clear()
    split = train(tiny(rows_file, tmp_path / "split", max_memory=budget, micro_batches_by_tokens=True, **common),
                  log=lambda *_: None)
    packed_calls = list(rows_per_call)
    rows_per_call.clear()
    fixed = train(tiny(rows_file, tmp_path / "fixed", max_memory=budget, **common), log=lambda *_: None)
    mw, ms, mf = (json.loads((d / "manifest.json").read_text()) for d in (whole, split, fixed))
    assert ms["memory"]["per_device_train_batch_size"] == 1 and ms["memory"]["gradient_accumulation_steps"] == 4
    assert ms["memory"]["micro_batches"] == "packed to the budget"
    assert sum(packed_calls) == 16 and len(packed_calls) < 16  # packed by tokens: rows share micro-batches
    assert mf["memory"]["per_device_train_batch_size"] == 2 and mf["memory"]["gradient_accumulation_steps"] == 2
    assert set(rows_per_call) == {2}
    assert mw["memory"]["per_device_train_batch_size"] == 4 and ms["global_step"] == mw["global_step"] == 4
    for folder, run in ((split, ms), (fixed, mf)):
        assert [sorted(r["ids"]) for r in log_lines(folder)] == [sorted(r["ids"]) for r in log_lines(whole)]
        for (s1, l1), (s2, l2) in zip(mw["loss_curve"], run["loss_curve"], strict=True):
            assert s1 == s2 and l2 == pytest.approx(l1, rel=1e-4, abs=1e-5)
        assert run["memory"]["estimate"]["total"] <= run["memory"]["budget_gb"] and run["memory"]["peak_rss_gb"] > 0


def test_mixed_plan_checkpoints_only_rows_over_the_threshold():
    """No micro-batch fits without checkpointing for the longest row: one row per micro-batch, and only
    rows over the threshold recompute; the estimate at the threshold and with checkpointing fit."""
    from tracekd.train import memory

    shape = memory.Shape(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=49152,
                         weight_bytes=538_000_000)
    rows = [(1136, 150), (1000, 120), (600, 90), (550, 80), (500, 70), (480, 60)]
    kw = dict(trainable_params=4_884_480, head_on_completion=True)
    alone = memory.estimate(shape, [(1136, 150)], checkpointing=False, **kw).total
    second = memory.estimate(shape, [(1000, 150)], checkpointing=False, **kw).total
    budget = (alone + second) // 2
    p = memory.plan(shape, rows, batch_size=4, grad_accum=1, budget_bytes=budget, checkpointing=None, **kw)
    assert (p.per_device_train_batch_size, p.gradient_accumulation_steps, p.gradient_checkpointing) == (1, 4, True)
    assert 1000 <= p.checkpoint_above_tokens < 1136 and "1 of 6 rows" in p.reason
    assert p.estimate.total <= budget and p.to_dict()["checkpoint_above_tokens"] == p.checkpoint_above_tokens
    fixed = memory.plan(shape, rows, batch_size=4, grad_accum=1, budget_bytes=budget, checkpointing=True, **kw)
    assert fixed.checkpoint_above_tokens is None  # checkpointing asked for: every micro-batch


def test_mixed_checkpointing_keeps_the_loss_curve(rows_file, tmp_path, monkeypatch):
    """Checkpointing switched per micro-batch (long rows only) trains the same steps to the same losses."""
    from tracekd import students
    from tracekd.train import memory
    from tracekd.train.data import preflight as pf

    kept, _ = pf(read_rows(rows_file), students.load_tokenizer(students.resolve("tiny-random")), 256)
    lengths = sorted(len(t.input_ids) for t in kept)
    threshold = lengths[len(lengths) // 2]  # the tiny student's memory is all runtime: set the rule directly

    def mixed(shape, rows, *, batch_size, grad_accum, budget_bytes, **_):
        return memory.Plan(1, grad_accum * batch_size, True, budget_bytes, None, "mixed (test)",
                           checkpoint_above_tokens=threshold)

    monkeypatch.setattr(memory, "plan", mixed)
    budget = "1GB"
    switches = []
    real = memory.set_checkpointing

    def spy(model, on):
        switches.append(on)
        real(model, on)
        layers = model.__dict__["_tracekd_checkpointed"]
        assert layers and all(m.gradient_checkpointing is on for m in layers)  # the decoder layers follow

    monkeypatch.setattr(memory, "set_checkpointing", spy)
    common = dict(max_steps=3, lora_dropout=0.0)
    whole = train(tiny(rows_file, tmp_path / "whole", max_memory="off", **common), log=lambda *_: None)
    mixed = train(tiny(rows_file, tmp_path / "mixed", max_memory=budget, **common), log=lambda *_: None)
    mw = json.loads((whole / "manifest.json").read_text())
    mm = json.loads((mixed / "manifest.json").read_text())
    assert mm["memory"]["checkpoint_above_tokens"] is not None, mm["memory"]
    assert mm["memory"]["per_device_train_batch_size"] == 1
    assert True in switches and False in switches  # some micro-batches recomputed, others not
    assert [r["ids"] for r in log_lines(mixed)] == [r["ids"] for r in log_lines(whole)]
    for (s1, l1), (s2, l2) in zip(mw["loss_curve"], mm["loss_curve"], strict=True):
        assert s1 == s2 and l2 == pytest.approx(l1, rel=1e-4, abs=1e-5)


def test_return_freed_memory_setting_switches_the_malloc_lever(rows_file, tmp_path, monkeypatch):
    """return_freed_memory (default true) fixes glibc's mmap threshold on CPU; false leaves glibc alone."""
    from tracekd.train import memory

    calls = []
    monkeypatch.setattr(memory, "return_freed_memory_to_os", lambda: calls.append(1) or True)
    train(tiny(rows_file, tmp_path / "on", max_steps=1), log=lambda *_: None)
    assert calls == [1]
    off = train(tiny(rows_file, tmp_path / "off", max_steps=1, return_freed_memory=False), log=lambda *_: None)
    assert calls == [1] and json.loads((off / "train_config.json").read_text())["return_freed_memory"] is False


def test_row_that_cannot_fit_is_an_error_before_loading(rows_file, tmp_path, monkeypatch):
    """Even one row with checkpointing over the budget: a ConfigError naming the longest row, no model loaded."""
    from tracekd import students

    def no_load(*a, **k):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(students, "load_model", no_load)
    with pytest.raises(ConfigError, match=r"longest row \(toy/\d+, line \d+, \d+ tokens\)"):
        train(tiny(rows_file, tmp_path / "x", max_memory="100MB"), log=lambda *_: None)
    with pytest.raises(ConfigError, match="not a size"):
        tiny(rows_file, tmp_path / "y", max_memory="plenty")


def test_a_finished_training_is_not_run_again_with_the_same_settings(tmp_path):
    """``--resume`` on a finished folder: every setting it recorded must match (resume aside); one newer than
    that run is not compared, one it recorded and this version lacks is a difference."""
    from types import SimpleNamespace

    from tracekd.config import to_dict
    from tracekd.train.run import _already_trained

    cfg = TrainConfig(train_file="rows.jsonl", output_dir=str(tmp_path), resume=True, lora_r=8)
    run = SimpleNamespace(config=cfg, out=tmp_path)
    assert not _already_trained(run, log=lambda *_: None)  # no manifest yet

    def recorded(**changes):
        saved = {**to_dict(cfg), **changes}
        (tmp_path / "manifest.json").write_text(json.dumps({"config": {k: v for k, v in saved.items() if v != "-"}}))
        return _already_trained(run, log=lambda *_: None)

    assert recorded()
    assert recorded(resume=False)  # the finished run started fresh
    assert recorded(micro_batches_by_length="-")  # a setting newer than that run
    assert not recorded(lora_r=16)
    assert not recorded(old_setting=1)  # a setting since removed


def test_bf16_on_cpu_is_autocast_and_frozen_weights_cast_once_change_nothing(rows_file, tmp_path):
    """bf16 on CPU runs the completion-head loss under autocast (it calls the decoder past the forward accelerate
    wraps), and storing the frozen projections in bf16 once gives the very losses autocast's own casts give."""
    def curve(out):
        m = json.loads((out / "manifest.json").read_text())
        return m["loss_curve"], m["resolved"]

    quiet = {"log": lambda *_: None}
    cast, resolved = curve(train(tiny(rows_file, tmp_path / "cast", max_steps=2, precision="bf16"), **quiet))
    autocast, resolved_plain = curve(train(tiny(rows_file, tmp_path / "autocast", max_steps=2, precision="bf16",
                                                cast_frozen_weights=False), **quiet))
    fp32, _ = curve(train(tiny(rows_file, tmp_path / "fp32", max_steps=2), **quiet))
    assert resolved["loss_implementation"].startswith("LM head on completion positions")
    assert resolved["frozen_weights"].endswith("stored in bf16 (cast once, not by autocast per forward)")
    assert resolved_plain["frozen_weights"] == "as loaded"
    assert cast == autocast
    assert cast != fp32  # bf16 rounding shows: the loss ran under autocast, not silently in float32


def test_adapter_inputs_kept_in_autocast_type_give_the_same_bits():
    """Without PEFT's cast of an adapter's input to its float32 weight, bf16 autocast gives the same loss and LoRA
    gradients to the bit (adapted modules fed bf16 by autocast: o_proj, down_proj; with bit dropout), and the
    casts are gone."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tracekd import students
    from tracekd.train.dropout import use_bit_dropout
    from tracekd.train.loss import completion_loss
    from tracekd.train.weights import keep_adapter_inputs

    with students._seeded(0):
        model = students.load_model(students.resolve("tiny-random"), dtype=torch.float32)
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, task_type="CAUSAL_LM",
                                                 target_modules=["q_proj", "o_proj", "up_proj", "down_proj"]))
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.1)
    assert use_bit_dropout(model) == 8
    model.train()
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 1000, (2, 21), generator=gen)
    labels = ids.clone()
    labels[:, :11] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    def step():
        model.zero_grad(set_to_none=True)
        torch.manual_seed(7)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = completion_loss(model, inputs)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    def adapter_inputs():
        seen = []
        handles = [m.register_forward_pre_hook(lambda mod, args: seen.append(args[0].dtype))
                   for n, m in model.named_modules() if n.endswith(("o_proj.lora_dropout.default",
                                                                     "down_proj.lora_dropout.default"))]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            completion_loss(model, inputs)
        for h in handles:
            h.remove()
        return set(seen)

    assert adapter_inputs() == {torch.float32}  # PEFT widened autocast's bf16
    loss, grads = step()
    assert keep_adapter_inputs(model) == 8
    assert adapter_inputs() == {torch.bfloat16}
    kept_loss, kept_grads = step()
    assert torch.equal(kept_loss, loss)
    assert grads.keys() == kept_grads.keys() and all(torch.equal(kept_grads[n], grads[n]) for n in grads)


def test_frozen_weights_leave_the_checkpoint_mapping(tmp_path):
    import torch

    from tracekd import students
    from tracekd.train import memory
    from tracekd.train.weights import cast_frozen_linears, file_mappings, own_frozen_weights

    model = students.load_model(students.resolve("tiny-random"), dtype=torch.float32).requires_grad_(False)

    def mapped():
        spans = file_mappings()
        return [n for n, p in model.named_parameters() if any(lo <= p.data_ptr() < hi for lo, hi in spans)]

    assert mapped(), "transformers no longer maps safetensors: own_frozen_weights has nothing to do"
    cast = cast_frozen_linears(model, torch.bfloat16)
    assert cast > 0 and own_frozen_weights(model) > 0 and mapped() == []
    assert {p.dtype for n, p in model.named_parameters() if "proj" in n} == {torch.bfloat16}
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert memory.trim_heap() is True  # glibc here


def _scripted_time_pairs(monkeypatch, calibration, rounds):
    """Replace time_pairs: attention kernels tie (sdpa kept), the probe's rounds come from ``rounds`` in order."""
    answers, calls = iter(rounds), []

    def fake(runs, **kw):
        if "fp32/sdpa" in runs:  # the attention kernels: a tie
            return {name: [1.0] * 3 for name in runs}
        calls.append({"runs": sorted(runs), **kw})
        return next(answers)
    from tracekd import timing

    monkeypatch.setattr(calibration, "time_pairs", fake)
    monkeypatch.setattr(timing, "time_pairs", fake)  # what the attention kernels' timing calls
    return calls


def test_calibration_times_more_rounds_when_pairs_disagree(tmp_path, monkeypatch):
    from tracekd import calibration
    from tracekd.train.loss import completion_loss

    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path))
    monkeypatch.setattr(calibration, "MAX_OTHERS_SHARE", 1.0)
    # first rounds: bf16 1.25x (with the half-slice pass), then 0.98x (a disturbed pair); two more: 1.25x twice
    calls = _scripted_time_pairs(monkeypatch, calibration, [
        {"fp32": [1e-3], "bf16": [0.8e-3], "half": [0.6e-3]}, {"fp32": [1e-3], "bf16": [1.02e-3]},
        {"fp32": [1e-3, 1e-3], "bf16": [0.8e-3, 0.8e-3]}])
    cal = calibration.calibrate_training(_lora_tiny(), "tiny-random", [40, 30, 50], rows=2, loss=completion_loss,
                                         layers=2, refresh=True)
    assert [c["runs"] for c in calls] == [["bf16", "fp32", "half"], ["bf16", "fp32"], ["bf16", "fp32"]]
    assert calls[1]["first_round"] == 1 and calls[2]["pairs"] == calibration.EXTRA_PAIRS
    assert calls[2]["first_round"] == 2  # the alternation of the order goes on
    assert cal.bf16_speedups == [1.25, 0.9804, 1.25, 1.25] and cal.precision == "bf16"  # one lost pair of 4
    assert cal.attention == "sdpa" and cal.attention_ms["bf16"] == {"sdpa": 1000.0, "eager_autocast": 1000.0}


def test_calibration_adds_no_round_past_its_cap(tmp_path, monkeypatch):
    from tracekd import calibration
    from tracekd.train.loss import completion_loss

    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path))
    monkeypatch.setattr(calibration, "CALIBRATION_CAP_S", 0.0)
    calls = _scripted_time_pairs(monkeypatch, calibration, [
        {"fp32": [1e-3], "bf16": [0.8e-3], "half": [0.6e-3]}, {"fp32": [1e-3], "bf16": [1.02e-3]}])
    cal = calibration.calibrate_training(_lora_tiny(), "tiny-random", [40, 30, 50], rows=2, loss=completion_loss,
                                         layers=2, refresh=True)
    assert len(calls) == 2 and cal.bf16_speedups == [1.25, 0.9804] and cal.precision == "fp32"  # undecided: a tie


