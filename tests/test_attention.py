"""Attention kernels by measurement (tracekd.attention): same values either way, a recorded choice."""

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
def test_the_kernels_compute_the_same_attention_on_the_probe_inputs(rows):
    """The probe's masks are each implementation's form of one mask (causal, the last row padded): sdpa, eager and
    eager_autocast give the same outputs and gradients on them in float32, so the timing compares like with like."""
    import torch

    from tracekd import attention

    module, functions = attention.kernels(_tiny_model())
    x = attention.probe_inputs(module.config, rows, 16, bf16=False)
    results = []
    for name in ("sdpa", "eager_autocast", "eager"):
        out, _ = functions[name](module, x["q"], x["k"], x["v"], x["masks"][name], dropout=0.0, scaling=module.scaling)
        out.backward(x["grad"])
        results.append((out.detach(), [t.grad.clone() for t in (x["q"], x["k"], x["v"])]))
        for t in (x["q"], x["k"], x["v"]):
            t.grad = None
    (a, grads_a), (b, grads_b), (c, grads_c) = results
    assert a.shape == (rows, 16, module.config.num_attention_heads, module.head_dim)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-4)
    assert torch.equal(b, c) and all(torch.equal(gb, gc) for gb, gc in zip(grads_b, grads_c))  # float32: eager
    if rows > 1:  # the padded keys of the last row get no attention
        assert x["masks"]["sdpa"][-1, 0, -1, -2:].tolist() == [False, False]


def test_eager_autocast_keeps_bf16_probabilities_and_eager_values():
    """Under bf16 autocast: the same outputs as transformers' eager bit for bit, probabilities kept once, in bf16."""
    import torch

    from tracekd import attention

    module, functions = attention.kernels(_tiny_model())
    x = attention.probe_inputs(module.config, 3, 24, bf16=True)
    outs = {}
    for name in ("eager", "eager_autocast"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outs[name] = functions[name](module, x["q"], x["k"], x["v"], x["masks"][name], dropout=0.0,
                                         scaling=module.scaling)
    assert torch.equal(outs["eager"][0], outs["eager_autocast"][0])
    assert outs["eager"][1].dtype == torch.float32 and outs["eager_autocast"][1].dtype == torch.bfloat16


def test_choose_times_both_kernels_in_each_format_and_switching_restores():
    import torch

    from tracekd import attention

    model = _tiny_model()
    chosen = attention.choose(model, 2, 32, pairs=3, budget_s=0.0)
    assert set(chosen) == {"fp32", "bf16"}
    for implementation, reason, ms in chosen.values():
        assert implementation in attention.IMPLEMENTATIONS and "paired timings" in reason
        assert set(ms) == {"sdpa", "eager_autocast"} and min(ms.values()) > 0
    with attention.switched(model, "eager_autocast"):
        assert attention.current(model) == "eager_autocast"
    assert attention.current(model) == "sdpa"
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        attention.use(model, "eager_autocast")  # registered with transformers: a whole forward runs through it
        assert attention.current(model) == "eager_autocast"
        got = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1, :2], expected[1, :2], atol=1e-5, rtol=1e-4)


def test_decide_keeps_sdpa_unless_eager_is_clearly_and_consistently_faster():
    from tracekd.attention import decide

    assert decide([2.0] * 4, [1.0, 1.0, 1.0, 2.5])[0] == "eager_autocast"  # one disturbed pair of four
    assert decide([2.0] * 3, [1.0, 1.0, 2.5])[0] == "sdpa"  # of three, none may be lost
    assert decide([1.05] * 3, [1.0] * 3)[0] == "sdpa"  # under the margin
    with pytest.raises(ValueError):
        decide([1.0], [])


def test_training_records_its_attention_and_counts_eager_probabilities(rows_file, tmp_path):  # noqa: F811
    from tracekd.train import train

    quiet = {"log": lambda *_: None}
    for name in ("eager", "eager_autocast"):
        out = train(tiny(rows_file, tmp_path / name, max_steps=1, attention=name), **quiet)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["resolved"]["attention"] == name and manifest["resolved"]["attention_reason"] == "requested"
        assert manifest["memory"]["estimate"]["attention"] > 0
    out = train(tiny(rows_file, tmp_path / "plain", max_steps=1), **quiet)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resolved"]["attention"] == "sdpa" and manifest["memory"]["estimate"]["attention"] == 0


def test_auto_precision_runs_the_attention_its_calibration_chose(rows_file, tmp_path, monkeypatch):  # noqa: F811
    from tracekd import calibration
    from tracekd.train import train

    monkeypatch.setattr(calibration, "MAX_OTHERS_SHARE", 1.0)
    lines: list[str] = []
    out = train(tiny(rows_file, tmp_path / "auto", max_steps=1, precision="auto"), log=lines.append)
    resolved = json.loads((out / "manifest.json").read_text())["resolved"]
    cal = resolved["calibration"]
    assert resolved["attention"] == cal["attention"] and resolved["attention_reason"] == cal["attention_reason"]
    assert set(cal["attention_ms"]) == {"fp32", "bf16"}
    plan = json.loads((out / "memory_plan.json").read_text())
    assert (plan["estimate"]["attention"] > 0) == (resolved["attention"] == "eager_autocast")


def test_auto_attention_stays_sdpa_when_eager_would_change_the_memory_plan(rows_file, tmp_path,  # noqa: F811
                                                                           monkeypatch):
    from tracekd.train import run as train_run

    monkeypatch.setattr(train_run, "_runs_alike", lambda a, b: False)  # as if eager needed smaller micro-batches
    lines: list[str] = []
    out = train_run.train(tiny(rows_file, tmp_path / "auto", max_steps=1, precision="auto"), log=lines.append)
    resolved = json.loads((out / "manifest.json").read_text())["resolved"]
    assert resolved["attention"] == "sdpa" and resolved["calibration"]["attention_requested"] == "sdpa"
    assert any(line.startswith("attention auto: sdpa (eager attention's per-layer probabilities") for line in lines)


def test_a_misspelt_attention_setting_is_a_clear_error(rows_file, tmp_path):  # noqa: F811
    from tracekd.errors import ConfigError

    with pytest.raises(ConfigError, match="eager"):
        tiny(rows_file, tmp_path / "x", attention="eagr")
