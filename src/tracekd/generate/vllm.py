"""Optional GPU backend: vLLM (``pip install 'tracekd[vllm]'``), imported only when chosen.

The adapter is served as a LoRA request (vLLM's multi-LoRA kernels), or merged into the weights
first (``merge_adapter``) for architectures vLLM cannot serve LoRA on. Prompts go in as token ids
rendered by the same chat template as the hf backend, so both backends see identical inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..devices import check_vllm_memory
from ..errors import ConfigError
from .base import Completion
from .config import vllm_sampling
from .merge import ADAPTER_WEIGHT_FILES, adapter_hashes, merged_cache_key, merged_folder  # noqa: F401 - re-exported

#: LoRA ranks vLLM accepts for ``max_lora_rank``
_VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank_slot(r: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds rank ``r``.

    >>> lora_rank_slot(16), lora_rank_slot(12), lora_rank_slot(4)
    (16, 16, 8)
    """
    for slot in _VLLM_RANKS:
        if r <= slot:
            return slot
    raise ValueError(f"LoRA rank {r} is above vLLM's largest ({_VLLM_RANKS[-1]}); use merge_adapter")


def make_generator(cfg, student, tokenizer, adapter: Path | None, precision: str, device: str) -> "VLLMGenerator":
    """The ``vllm`` backend for a :class:`~tracekd.generate.config.GenerateConfig` (see ``base.BACKENDS``):
    the adapter as a LoRA request, or merged first (``merge_adapter``); stops at every EOS the student names."""
    if device != "cuda":
        raise ConfigError("--backend vllm needs a CUDA GPU; use --backend hf on this machine")
    source, served = student.source, adapter
    rank = None
    if adapter is not None:
        rank = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("r")
        if cfg.merge_adapter:
            source, served = str(merged_folder(student, adapter, precision)), None
    stop = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    try:
        from transformers import GenerationConfig

        gen_eos = GenerationConfig.from_pretrained(student.source).eos_token_id
        stop.update([gen_eos] if isinstance(gen_eos, int) else (gen_eos or []))
    except OSError:
        pass
    return VLLMGenerator(source, adapter=served, lora_rank=rank, dtype=precision, max_new_tokens=cfg.max_new_tokens,
                         stop_ids=stop, do_sample=cfg.do_sample, temperature=cfg.temperature, top_p=cfg.top_p,
                         top_k=cfg.top_k, seed=cfg.seed, gpu_memory_utilization=cfg.gpu_memory_utilization,
                         tensor_parallel_size=cfg.tensor_parallel_size)


class VLLMGenerator:
    """Generation with vLLM's continuous batching; ``generate`` takes whole chunks of prompts."""

    name = "vllm"

    def __init__(self, model_source: str, *, adapter: Path | None, lora_rank: int | None, dtype: str,
                 max_new_tokens: int, stop_ids: set[int], do_sample: bool = False, temperature: float = 1.0,
                 top_p: float = 1.0, top_k: int = 0, seed: int = 0, gpu_memory_utilization: float = 0.9,
                 tensor_parallel_size: int = 1):
        try:
            from vllm import LLM
            from vllm.lora.request import LoRARequest
        except ImportError as e:  # pragma: no cover - depends on the optional extra
            raise ConfigError(f"--backend vllm needs vLLM (a CUDA GPU): pip install 'tracekd[vllm]' ({e})") from None
        check_vllm_memory(gpu_memory_utilization)  # vLLM's own refusal does not say what holds the memory
        kwargs = {}
        if adapter is not None:
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank_slot(lora_rank or 16), max_loras=1)
        self.llm = LLM(model=model_source, dtype={"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype],
                       seed=seed, gpu_memory_utilization=gpu_memory_utilization,
                       tensor_parallel_size=tensor_parallel_size, **kwargs)
        self.lora = LoRARequest("tracekd-adapter", 1, str(adapter)) if adapter is not None else None
        self.max_new_tokens = max_new_tokens
        self.stop_ids = sorted(stop_ids)
        self.do_sample, self.temperature, self.top_p, self.top_k = do_sample, temperature, top_p, top_k

    def generate(self, prompts: Sequence[Sequence[int]], *, seed: int = 0) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(**vllm_sampling(self.do_sample, self.temperature, self.top_p, self.top_k,
                                                max_new_tokens=self.max_new_tokens, stop_token_ids=self.stop_ids,
                                                seed=seed))
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params,
                                 lora_request=self.lora, use_tqdm=False)
        results = []
        for o in outs:
            c = o.outputs[0]
            reason = c.finish_reason if c.finish_reason in ("stop", "length") else None
            results.append(Completion(text=c.text, finish_reason=reason, completion_tokens=len(c.token_ids)))
        return results

    def close(self) -> None:
        del self.llm
