"""The reference backend: batched ``model.generate`` from transformers, on CPU or one GPU.

Prompts are left-padded into one tensor per batch; decoding is greedy unless sampling is asked
for, and stops at the student's end-of-sequence token(s) or after ``max_new_tokens``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .base import Completion, cut_at_stop
from .config import hf_sampling


def stop_token_ids(model, tokenizer) -> set[int]:
    """Every token that ends a turn: the generation config's EOS ids and the tokenizer's EOS."""
    ids: set[int] = set()
    eos = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(e) for e in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def load_model_with_adapter(student, adapter: Path | None, dtype, device: str):
    """The student on ``device`` in eval mode, with the LoRA adapter merged into its weights."""
    from .. import students

    model = students.load_model(student, dtype=dtype)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.to(device).eval()


class HFGenerator:
    """Batched greedy (or seeded sampling) generation with transformers."""

    name = "hf"

    def __init__(self, model, tokenizer, *, max_new_tokens: int, do_sample: bool = False, temperature: float = 1.0,
                 top_p: float = 1.0, top_k: int = 0, device: str = "cpu"):
        from transformers import GenerationConfig

        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.do_sample = do_sample
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_ids)
        # A fresh config replaces the model's own (a Hub model's may turn sampling on); every sampling value is
        # explicit, so it means what vLLM's does (transformers' unset top_k would be 50).
        model.generation_config = GenerationConfig(
            max_new_tokens=max_new_tokens, eos_token_id=sorted(self.stop_ids), pad_token_id=self.pad_id,
            bos_token_id=tokenizer.bos_token_id, use_cache=True,
            **hf_sampling(do_sample, temperature, top_p, top_k))

    def generate(self, prompts: Sequence[Sequence[int]], *, seed: int = 0) -> list[Completion]:
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every prompt ends at the same column
            ids[i, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
            mask[i, width - len(p):] = 1
        if self.do_sample:
            torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        results = []
        for row in out[:, width:].tolist():
            tokens, reason = cut_at_stop(row, self.stop_ids, self.max_new_tokens)
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            results.append(Completion(text=text, finish_reason=reason, completion_tokens=len(tokens)))
        return results

    def close(self) -> None:
        import torch

        del self.model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
