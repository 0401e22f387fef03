"""Generation settings that must mean the same on both backends, and the merged-model cache key (CPU-run)."""

from __future__ import annotations

import json

import pytest

from tracekd.errors import ConfigError
from tracekd.io import write_jsonl
from tracekd.generate.config import GenerateConfig, hf_sampling, vllm_sampling
from tracekd.generate.merge import adapter_hashes, merged_cache_key

# ----------------------------------------------------------------------------- sampling (point 7)


def _tiny():
    from tracekd import students

    student = students.resolve("tiny-random")
    return students.load_model(student).eval(), students.load_tokenizer(student)


def _kept_tokens(model, tokenizer, **sampling) -> int:
    """How many vocabulary entries the first sampled token is drawn from under HFGenerator's config."""
    import torch

    from tracekd.generate.hf import HFGenerator

    HFGenerator(model, tokenizer, max_new_tokens=1, **sampling)
    ids = torch.tensor([tokenizer("Where is Mary?")["input_ids"]])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1,
                         output_scores=True, return_dict_in_generate=True)
    return int(torch.isfinite(out.scores[0][0]).sum())


def test_hf_sampling_draws_from_the_whole_vocabulary_when_top_k_is_off():
    model, tok = _tiny()
    vocab = model.config.vocab_size
    # top_k off: every token stays (transformers' own default would keep 50)
    assert _kept_tokens(model, tok, do_sample=True, temperature=1.0, top_p=1.0, top_k=0) == vocab
    assert model.generation_config.top_k == 0
    assert _kept_tokens(model, tok, do_sample=True, temperature=1.0, top_p=1.0, top_k=7) == 7


def test_both_backends_get_the_same_sampling_values():
    for do_sample, t, p, k in [(True, 0.7, 0.95, 0), (True, 1.0, 1.0, 20), (False, 1.0, 1.0, 0)]:
        hf = hf_sampling(do_sample, t, p, k)
        vl = vllm_sampling(do_sample, t, p, k, max_new_tokens=500, stop_token_ids={2, 1}, seed=3)
        assert vl["max_tokens"] == 500 and vl["stop_token_ids"] == [1, 2] and vl["skip_special_tokens"]
        assert vl["repetition_penalty"] == 1.0 and vl["min_p"] == 0.0
        if not do_sample:
            assert hf == {"do_sample": False, "num_beams": 1}
            assert vl["temperature"] == 0.0 and vl["seed"] is None  # vLLM's greedy
            continue
        assert (hf["temperature"], hf["top_p"]) == (vl["temperature"], vl["top_p"]) == (t, p)
        assert hf["repetition_penalty"] == 1.0 and hf["min_p"] is None and hf["typical_p"] == 1.0
        # off is 0 for transformers (None would mean 50) and -1 for vLLM
        assert (hf["top_k"], vl["top_k"]) == ((0, -1) if k == 0 else (k, k))
        assert vl["seed"] == 3


def test_generate_config_defaults_are_greedy_and_top_k_off():
    cfg = GenerateConfig(input_file="x", output_file="y")
    assert cfg.do_sample is False and cfg.top_k == 0
    assert vllm_sampling(True, cfg.temperature, cfg.top_p, cfg.top_k, max_new_tokens=1)["top_k"] == -1


# ----------------------------------------------------------------------------- merged-model cache key (point 8)


def _adapter(folder, weights: bytes | None, config: dict | None = None):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps(config or {"r": 16}))
    if weights is not None:
        (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_merged_key_covers_base_weights_and_full_adapter_hash(tmp_path):
    a = adapter_hashes(_adapter(tmp_path / "a", b"weights-a"))
    b = adapter_hashes(_adapter(tmp_path / "b", b"weights-b"))
    c = adapter_hashes(_adapter(tmp_path / "c", b"weights-a", {"r": 8}))
    assert len(a["adapter_model.safetensors"]) == 64  # the full sha256, not a prefix
    base1, base2 = {"model.safetensors": "1" * 64}, {"model.safetensors": "2" * 64}
    keys = {merged_cache_key(base1, a, "bf16"), merged_cache_key(base2, a, "bf16"),
            merged_cache_key(base1, b, "bf16"), merged_cache_key(base1, c, "bf16"),
            merged_cache_key(base1, a, "fp16")}
    assert len(keys) == 5  # another student, adapter, adapter config or precision: another folder
    assert merged_cache_key(base1, a, "bf16") == merged_cache_key(dict(base1), dict(a), "bf16")


def test_adapter_without_weights_has_no_key(tmp_path):
    with pytest.raises(ConfigError, match="has no adapter_model.safetensors"):
        adapter_hashes(_adapter(tmp_path / "empty", None))
    with pytest.raises(ConfigError, match="no adapter weights"):
        merged_cache_key({"model.safetensors": "1" * 64}, {"adapter_config.json": "0" * 64}, "bf16")


def test_merged_folder_is_keyed_by_the_student_weights(tmp_path, monkeypatch):
    """The merge really lands in a folder named by both identities (tiny-random merged on CPU)."""
    from tracekd import students
    from tracekd.generate import merge

    student = students.resolve("tiny-random")
    monkeypatch.setattr(students, "cache_dir", lambda: tmp_path / "cache")  # merged copies land here
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(students.load_model(student),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(tmp_path / "adapter")
    folder = merge.merged_folder(student, tmp_path / "adapter", "fp32")
    expect = merged_cache_key(students.weight_hashes(student), adapter_hashes(tmp_path / "adapter"), "fp32")
    assert folder.name == expect and (folder / "config.json").is_file()
    assert merge.merged_folder(student, tmp_path / "adapter", "fp32") == folder  # reused


# ----------------------------------------------------------------------------- --deterministic (point 9)


def test_generate_deterministic_flag_reaches_torch_before_the_model(tmp_path, monkeypatch):
    from tracekd import devices, students
    from tracekd.generate import GenerateConfig, generate

    calls: list[str] = []

    class Stop(Exception):
        pass

    def resolve(name):
        calls.append("resolve")
        raise Stop

    monkeypatch.setattr(devices, "enable_determinism", lambda *a, **k: calls.append("deterministic") or {})
    monkeypatch.setattr(students, "resolve", resolve)
    rows = tmp_path / "t.jsonl"
    write_jsonl(rows, [{"id": "r0", "arm": "vanilla", "prompt": [{"role": "user", "content": "Where?"}],
                        "completion": [{"role": "assistant", "content": "box"}]}])
    with pytest.raises(Stop):
        generate(GenerateConfig(input_file=str(rows), output_file=str(tmp_path / "g.jsonl"), student="tiny-random",
                                deterministic=True, progress=False), log=lambda *_: None)
    assert calls == ["deterministic", "resolve"]
    calls.clear()
    with pytest.raises(Stop):
        generate(GenerateConfig(input_file=str(rows), output_file=str(tmp_path / "g.jsonl"), student="tiny-random",
                                progress=False), log=lambda *_: None)
    assert calls == ["resolve"]
