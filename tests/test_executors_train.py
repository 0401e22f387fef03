"""Data-parallel training: `tracekd train` under `accelerate launch` with 2 CPU processes (gloo) on tiny-random,
against one process with the same global batch; the global-batch arithmetic for simulated world sizes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tracekd.cli import main
from tracekd.errors import ConfigError
from tracekd.train.batch import keep_global_batch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_global_batch_is_kept_for_world_sizes_that_divide(world):
    for per_device, accumulation in ((4, 4), (2, 8), (1, 16)):
        if accumulation % world:
            continue  # refused: next test
        plan = keep_global_batch(per_device, accumulation, world)
        assert plan.global_batch == per_device * accumulation  # the recipe's, whatever the world size
        assert plan.accumulation * world == accumulation
        assert plan.to_dict()["world_size"] == world


@pytest.mark.parametrize("world", [3, 5, 6, 8])
def test_global_batch_refused_with_the_arithmetic(world):
    with pytest.raises(ConfigError, match=rf"4 x 4 = 16 cannot be kept on {world} processes: .* 4 / {world} = "):
        keep_global_batch(4, 4, world)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.skipif(shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
                    reason="accelerate's launcher is not installed")
def test_two_cpu_processes_train_like_one_with_the_same_global_batch(tmp_path):
    data, sets = tmp_path / "data", tmp_path / "sets"
    assert main(["synth", "babi", "--tasks", "qa1,qa2", "--n", "20", "--seed", "0", "--out", str(data)]) == 0
    assert main(["build", "--dataset", "babi", "--data", str(data), "--option", "tasks=qa1,qa2", "--arms", "correct",
                 "--seed", "0", "--out", str(sets)]) == 0
    train_file = str(sets / "correct" / "train.jsonl")
    common = ["--student", "tiny-random", "--train-file", train_file, "--max-examples", "16", "--max-steps", "4",
              "--per-device-train-batch-size", "2", "--gradient-accumulation-steps", "2", "--precision", "fp32",
              "--learning-rate", "5e-3", "--warmup-steps", "0", "--save-steps", "2", "--no-progress"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main(["train", *common, "--output-dir", str(single)]) == 0
    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [str(launcher) if launcher.exists() else "accelerate", "launch", "--config_file",
           str(ROOT / "configs/accelerate/cpu-2proc.yaml"), "--main_process_port", str(_free_port()),
           "-m", "tracekd.cli", "train", *common, "--output-dir", str(ddp)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    m1 = json.loads((single / "manifest.json").read_text())["resolved"]
    m2 = json.loads((ddp / "manifest.json").read_text())["resolved"]
    assert (m1["world_size"], m1["gradient_accumulation_steps"]) == (1, 2)
    assert (m2["world_size"], m2["gradient_accumulation_steps"]) == (2, 1)  # accumulation halved ...
    assert m1["effective_batch_size"] == m2["effective_batch_size"] == 4  # ... so the global batch is the same
    # one writer: one log line per step (rank 0), one adapter in the same format as a single process
    log1, log2 = _log(single), _log(ddp)
    assert [o["step"] for o in log2] == [1, 2, 3, 4]
    assert sorted(p.name for p in ddp.glob("*.safetensors")) == ["adapter_model.safetensors"]
    from safetensors import safe_open

    keys = [sorted(safe_open(str(d / "adapter_model.safetensors"), "pt").keys()) for d in (single, ddp)]
    assert keys[0] == keys[1]
    # the ranks see disjoint rows: each step's 4 rows (2 per rank, gathered) are distinct, and they are the
    # rows the single process put into the same step
    for a, b in zip(log1, log2):
        assert len(b["ids"]) == 4 == len(set(b["ids"]))
        assert sorted(a["ids"]) == sorted(b["ids"])
    # the loss curve is close to the single process's (same rows per step; reduction order differs)
    for a, b in zip(log1, log2):
        assert abs(a["loss"] - b["loss"]) <= 0.02 * abs(a["loss"]), (a["loss"], b["loss"])
