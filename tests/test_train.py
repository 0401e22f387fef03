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
from tracekd.train import TrainConfig, train
from tracekd.train.data import preflight, read_rows

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
                lora_alpha=16, max_length=256, save_steps=100, progress=False)
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
                         "max_length": 256, "save_steps": 100, "progress": False},
                        student="tiny-random", train_file=rows_file, output_dir=out)
    assert (out / "manifest.json").read_bytes() == before
