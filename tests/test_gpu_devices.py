"""GPU decisions on a CPU machine: device count, compute capability and memory are simulated."""

from __future__ import annotations

import os

import pytest
import torch

from tracekd import devices, runtime
from tracekd.errors import ConfigError
from tracekd.io import write_jsonl
from tracekd.train import TrainConfig, train

# ----------------------------------------------------------------------------- one GPU or many (point 2)


@pytest.mark.parametrize("requested,visible,world,cvd,mode,device,restrict", [
    ("auto", 0, 1, None, "cpu", "cpu", None),
    ("auto", 1, 1, None, "single", "cuda:0", None),
    ("auto", 8, 1, None, "single", "cuda:0", "0"),
    ("cuda:3", 8, 1, None, "single", "cuda:0", "3"),
    ("cuda:1", 2, 1, "5,7", "single", "cuda:0", "7"),   # index into the visible list, not the physical id
    ("cuda", 2, 1, None, "single", "cuda:0", "0"),
    ("cpu", 2, 1, None, "cpu", "cpu", ""),              # GPUs hidden, so nothing picks one up
    ("auto", 4, 4, None, "data-parallel", "cuda", None),  # accelerate launch: leave the launcher's mapping
])
def test_plan_gpus(requested, visible, world, cvd, mode, device, restrict):
    plan = devices.plan_gpus(requested, visible, world_size=world, cuda_visible_devices=cvd)
    assert (plan.mode, plan.device, plan.cuda_visible_devices) == (mode, device, restrict)
    assert plan.world_size == world


@pytest.mark.parametrize("requested,visible,world,match", [
    ("cuda:2", 2, 1, "only 2 GPU"),
    ("cuda:0", 0, 1, "no CUDA GPU"),
    ("cuda:1", 4, 4, "distributed launch"),
    ("tpu", 1, 1, "auto, cpu, cuda or cuda:N"),
])
def test_plan_gpus_refuses(requested, visible, world, match):
    with pytest.raises(ConfigError, match=match):
        devices.plan_gpus(requested, visible, world_size=world)


def test_select_training_device_restricts_visible_gpus_before_cuda_starts(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    env: dict[str, str] = {}
    said: list[str] = []
    plan = devices.select_training_device("auto", environ=env, log=said.append)
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and plan.mode == "single"
    assert "one GPU: cuda:0 of the 4 visible" in said[0] and "accelerate launch" in said[0]

    env = {"CUDA_VISIBLE_DEVICES": "2,3,4,5", "WORLD_SIZE": "1"}
    devices.select_training_device("cuda:2", environ=env, log=said.append)
    assert env["CUDA_VISIBLE_DEVICES"] == "4"

    env = {"WORLD_SIZE": "4", "LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    plan = devices.select_training_device("auto", environ=env, log=said.append)
    assert plan.mode == "data-parallel" and env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert "data-parallel over 4 processes" in said[-1]


def test_select_training_device_refuses_once_cuda_has_started(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(ConfigError, match="before tracekd could choose"):
        devices.select_training_device("auto", environ={}, log=lambda *_: None)


def test_several_gpus_in_one_process_are_refused_with_the_way_out():
    devices.check_single_process_gpus(1, 1)
    devices.check_single_process_gpus(1, 8)
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES=N.*accelerate launch"):
        devices.check_single_process_gpus(2, 1)


def _rows(path):
    rows = []
    for i in range(4):
        rows.append({"id": f"r{i}", "arm": "correct",
                     "prompt": [{"role": "user", "content": f"Where is item {i}? Only return the answer."}],
                     "completion": [{"role": "assistant", "content": f"<answer>box {i}</answer>"}]})
    write_jsonl(path, rows)
    return path


def test_train_picks_one_gpu_and_sets_determinism_before_loading_the_model(tmp_path, monkeypatch):
    """`tracekd train` applies both first thing: 2 simulated GPUs, --device cuda:1 -> only GPU 1 visible."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    order: list[str] = []
    monkeypatch.setattr(devices, "enable_determinism", lambda *a, **k: order.append("deterministic") or {})
    from tracekd import students

    real_load = students.load_model

    def load_model(*a, **kw):
        order.append(f"load with CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}")
        return real_load(*a, **kw)

    monkeypatch.setattr(students, "load_model", load_model)
    said: list[str] = []
    cfg = TrainConfig(train_file=str(_rows(tmp_path / "t.jsonl")), output_dir=str(tmp_path / "out"),
                      student="tiny-random", device="cuda:1", deterministic=True, max_steps=1, precision="fp32",
                      per_device_train_batch_size=4, gradient_accumulation_steps=1, lora_r=4, lora_alpha=8,
                      max_length=128, progress=False)
    train(cfg, log=lambda *a: said.append(" ".join(map(str, a))))
    assert order == ["deterministic", "load with CUDA_VISIBLE_DEVICES=1"]
    assert any("one GPU: cuda:1 of the 2 visible" in s for s in said)
    with pytest.raises(ConfigError, match="device must be"):
        TrainConfig(train_file="x", output_dir="y", device="gpu")


# ----------------------------------------------------------------------------- bf16 or fp16 (point 6)


@pytest.mark.parametrize("capability,name,expected", [
    ((7, 0), "Tesla V100", "fp16"),
    ((7, 5), "Tesla T4", "fp16"),
    ((8, 0), "A100", "bf16"),
    ((8, 9), "L4", "bf16"),
    ((9, 0), "H100", "bf16"),
])
def test_precision_follows_compute_capability(monkeypatch, capability, name, expected):
    # is_bf16_supported() says True on a T4 by emulation: it must not be what decides
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)
    assert runtime.precision("auto", "cuda") == expected
    assert runtime.precision("fp32", "cuda") == "fp32"
    if expected == "fp16":
        with pytest.raises(ConfigError, match=f"bf16 needs compute capability >= 8.0; {name} has"):
            runtime.precision("bf16", "cuda")
    else:
        assert runtime.precision("bf16", "cuda") == "bf16"


def test_qlora_compute_dtype_follows_precision(monkeypatch):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes (the qlora extra) is not installed")
    from tracekd.train import run

    monkeypatch.setattr(run.importlib.util, "find_spec", lambda name: object())
    cfg = TrainConfig(train_file="x", output_dir="y", qlora=True)
    assert run._quantization(cfg, "cuda", "fp16").bnb_4bit_compute_dtype == torch.float16
    assert run._quantization(cfg, "cuda", "bf16").bnb_4bit_compute_dtype == torch.bfloat16


# ----------------------------------------------------------------------------- vLLM memory (point 1)


def test_vllm_memory_states_need_and_free():
    gib = 2 ** 30
    assert devices.vllm_memory_shortfall(141 * gib, 140 * gib, 0.9) is None
    msg = devices.vllm_memory_shortfall(16 * gib, 6 * gib, 0.9)
    assert "0.9 x 16.0 GiB = 14.4 GiB free" in msg and "6.0 GiB is free" in msg
    assert "its own process" in msg and "at most 0.36" in msg
    # exactly the utilisation vLLM needs is enough
    assert devices.vllm_memory_shortfall(100 * gib, 50 * gib, 0.5) is None
    assert "no utilisation fits" in devices.vllm_memory_shortfall(100 * gib, gib // 2, 0.5)
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        devices.vllm_memory_shortfall(gib, gib, 1.5)


def test_check_vllm_memory_reads_the_device(monkeypatch):
    gib = 2 ** 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (30 * gib, 80 * gib))
    with pytest.raises(ConfigError, match="72.0 GiB free on the GPU at start, and 30.0 GiB is free"):
        devices.check_vllm_memory(0.9)
    devices.check_vllm_memory(0.3)


# ----------------------------------------------------------------------------- --deterministic (point 9)


def test_deterministic_sets_torch_and_cublas_flags(monkeypatch):
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    env: dict[str, str] = {}
    try:
        done = devices.enable_determinism(env)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" == done["CUBLAS_WORKSPACE_CONFIG"]
        env = {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}  # a user's own setting is kept
        devices.enable_determinism(env)
        assert env["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]

