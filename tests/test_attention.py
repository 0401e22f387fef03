"""Attention kernels by measurement (tracekd.train.attention): same values either way, a recorded choice."""

from __future__ import annotations

import json

import pytest

from test_train import rows_file, tiny  # noqa: F401 - the fixture and the config helper

pytest.importorskip("torch")


def _tiny_model():
    import torch

    from tracekd import students

    with students._seeded(0):
        return students.load_model(students.resolve("tiny-random"), dtype=torch.float32)


@pytest.mark.parametrize("rows", [1, 3])
def test_both_kernels_compute_the_same_attention_on_the_probe_inputs(rows):
    """The probe's masks are each implementation's form of one mask (causal, the last row padded): sdpa and eager
    give the same outputs and gradients on them, so the timing compares like with like."""
    import torch

    from tracekd.train import attention

    module, functions = attention.kernels(_tiny_model())
    x = attention.probe_inputs(module.config, rows, 16, bf16=False)
    results = []
    for name in attention.IMPLEMENTATIONS:
        out, _ = functions[name](module, x["q"], x["k"], x["v"], x["masks"][name], dropout=0.0, scaling=module.scaling)
        out.backward(x["grad"])
        results.append((out.detach(), [t.grad.clone() for t in (x["q"], x["k"], x["v"])]))
        for t in (x["q"], x["k"], x["v"]):
            t.grad = None
    (a, grads_a), (b, grads_b) = results
    assert a.shape == (rows, 16, module.config.num_attention_heads, module.head_dim)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-4)
    if rows > 1:  # the padded keys of the last row get no attention
        assert x["masks"]["sdpa"][-1, 0, -1, -2:].tolist() == [False, False]


def test_choose_times_both_kernels_in_each_format_and_switching_restores():
    from tracekd.train import attention

    model = _tiny_model()
    chosen = attention.choose(model, 2, 32, pairs=3, budget_s=0.0)
    assert set(chosen) == {"fp32", "bf16"}
    for implementation, reason, ms in chosen.values():
        assert implementation in attention.IMPLEMENTATIONS and "paired timings" in reason
        assert set(ms) == {"sdpa", "eager"} and min(ms.values()) > 0
    with attention.switched(model, "eager"):
        assert attention.current(model) == "eager"
    assert attention.current(model) == "sdpa"
    attention.use(model, "eager")
    assert attention.current(model) == "eager"


def test_decide_keeps_sdpa_unless_eager_is_clearly_and_consistently_faster():
    from tracekd.train.attention import decide

    assert decide([2.0] * 4, [1.0, 1.0, 1.0, 2.5])[0] == "eager"  # one disturbed pair of four
    assert decide([2.0] * 3, [1.0, 1.0, 2.5])[0] == "sdpa"  # of three, none may be lost
    assert decide([1.05] * 3, [1.0] * 3)[0] == "sdpa"  # under the margin
    with pytest.raises(ValueError):
        decide([1.0], [])


def test_training_records_its_attention_and_counts_eager_probabilities(rows_file, tmp_path):  # noqa: F811
    from tracekd.train import train

    quiet = {"log": lambda *_: None}
    out = train(tiny(rows_file, tmp_path / "eager", max_steps=1, attention="eager"), **quiet)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resolved"]["attention"] == "eager" and manifest["resolved"]["attention_reason"] == "requested"
    assert manifest["memory"]["estimate"]["attention"] > 0
    out = train(tiny(rows_file, tmp_path / "plain", max_steps=1), **quiet)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resolved"]["attention"] == "sdpa" and manifest["memory"]["estimate"]["attention"] == 0


def test_auto_precision_runs_the_attention_its_calibration_chose(rows_file, tmp_path, monkeypatch):  # noqa: F811
    from tracekd import calibration
    from tracekd.train import train

    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(calibration, "MAX_OTHERS_SHARE", 1.0)
    lines: list[str] = []
    out = train(tiny(rows_file, tmp_path / "auto", max_steps=1, precision="auto"), log=lines.append)
    resolved = json.loads((out / "manifest.json").read_text())["resolved"]
    cal = resolved["calibration"]
    assert resolved["attention"] == cal["attention"] and resolved["attention_reason"] == cal["attention_reason"]
    assert set(cal["attention_ms"]) == {"fp32", "bf16"}
    plan = json.loads((out / "memory_plan.json").read_text())
    assert (plan["estimate"]["attention"] > 0) == (resolved["attention"] == "eager")


def test_auto_attention_stays_sdpa_when_eager_would_change_the_memory_plan(rows_file, tmp_path,  # noqa: F811
                                                                           monkeypatch):
    from tracekd.train import run as train_run

    monkeypatch.setenv("TRACEKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(train_run, "_runs_alike", lambda a, b: False)  # as if eager needed smaller micro-batches
    lines: list[str] = []
    out = train_run.train(tiny(rows_file, tmp_path / "auto", max_steps=1, precision="auto"), log=lines.append)
    resolved = json.loads((out / "manifest.json").read_text())["resolved"]
    assert resolved["attention"] == "sdpa" and resolved["calibration"]["attention_requested"] == "sdpa"
    assert any(line.startswith("attention auto: sdpa (eager attention's per-layer probabilities") for line in lines)
