"""The reference backend: transformers, on CPU or one GPU, in batches.

Prompts are left-padded into one tensor per batch; decoding is greedy unless sampling is asked
for, and stops at the student's end-of-sequence token(s) or after ``max_new_tokens``. Greedy
decoding runs in tracekd's own loop (:mod:`.greedy`), sampling in ``model.generate``.

**Shared-prefix prefill.** The prompts of a batch usually begin with the same tokens (the chat
template's system turn and the instruction's first line). Their key/value cache is computed once,
from one copy of the prefix, kept for the next batch with the same prefix, and repeated over the
batch's rows; only the rest of each prompt is prefilled, left-padded after the prefix::

    [prefix P tokens][pad ... suffix of row i][generated ...]     attention mask 1..1 0..0 1..1 1...

Position ids follow the mask (``cumsum - 1``), so every token has the position it has in the
unpadded prompt, and the result is the plain path's up to float rounding (greedy outputs tested equal).

**Greedy loop.** A batch is prefilled in chunks of similar length, decoded as one, and a row leaves
it once it ends (:mod:`.greedy`); each row's tokens are what ``model.generate`` gives it (tested equal).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

from .. import runtime, students
from .base import Completion, cut_at_stop
from .config import hf_sampling

#: shortest shared prefix worth a separate prefill (below it the plain path is used)
MIN_SHARED_PREFIX = 4


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt begins with, leaving at least one token of the shortest prompt after them.

    >>> shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 9, 9], [1, 2, 5]])
    2
    >>> shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]])     # the shortest keeps its last token
    2
    >>> shared_prefix_length([[7, 1], [8, 1]])
    0
    """
    if not prompts:
        return 0
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def supports_prefix_cache(model) -> bool:
    """True for decoder-only models whose cache is the plain growing key/value cache (no sliding window,
    no linear-attention state), the layout :class:`HFGenerator`'s shared prefix is written for."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return False
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layer_types = getattr(text, "layer_types", None) or []
    return not (any(t != "full_attention" for t in layer_types) or getattr(text, "sliding_window", None))


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
    model = students.load_model(student, dtype=dtype)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.to(device).eval()


def make_generator(cfg, student, tokenizer, adapter: Path | None, precision: str, device: str) -> "HFGenerator":
    """The ``hf`` backend for a :class:`~tracekd.generate.config.GenerateConfig` (see ``base.BACKENDS``)."""
    model = load_model_with_adapter(student, adapter, runtime.torch_dtype(precision), device)
    return HFGenerator(model, tokenizer, max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample,
                       temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, device=device,
                       shared_prefix=cfg.shared_prefix, drop_finished=cfg.drop_finished,
                       prefill_batch_size=cfg.prefill_batch_size)


class HFGenerator:
    """Batched greedy (or seeded sampling) generation with transformers."""

    name = "hf"

    def __init__(self, model, tokenizer, *, max_new_tokens: int, do_sample: bool = False, temperature: float = 1.0,
                 top_p: float = 1.0, top_k: int = 0, device: str = "cpu", shared_prefix: bool = True,
                 drop_finished: bool = True, prefill_batch_size: int = 16):
        from transformers import GenerationConfig

        self.model = model
        plain_cache = supports_prefix_cache(model)
        self.shared_prefix = shared_prefix and plain_cache
        #: greedy decoding in tracekd's loop (:mod:`.greedy`; needs the plain key/value cache)
        self.drop_finished = drop_finished and not do_sample and plain_cache
        self.prefill_batch_size = prefill_batch_size
        self._prefix: tuple[int, ...] = ()
        self._prefix_cache = None
        self._cache_kwarg = runtime.cache_kwarg(model)
        #: prompt tokens prefilled once per batch instead of once per row (counted for the manifest)
        self.prefix_tokens_saved = 0
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

    def _cache_of_prefix(self, prefix: tuple[int, ...], rows: int):
        """A fresh key/value cache holding ``prefix`` for ``rows`` rows (the prefix's forward pass is kept; the
        rows after the first count as prefix tokens saved)."""
        import torch

        if prefix != self._prefix or self._prefix_cache is None:
            ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
            with torch.inference_mode():
                out = self.model(input_ids=ids, use_cache=True)
            self._prefix_cache = getattr(out, self._cache_kwarg)
            self._prefix = prefix
        cache = copy.deepcopy(self._prefix_cache)  # generate appends to it; the kept one stays the prefix
        cache.batch_repeat_interleave(rows)
        self.prefix_tokens_saved += len(prefix) * (rows - 1)
        return cache

    def _padded(self, prompts: Sequence[Sequence[int]], n_prefix: int):
        """Token ids and attention mask of ``prompts``: the shared ``n_prefix`` tokens, then each row's rest
        left-padded so that every prompt ends at the same column."""
        import torch

        suffixes = [list(p[n_prefix:]) for p in prompts]
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(prompts), n_prefix + width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), n_prefix + width), dtype=torch.long)
        ids[:, :n_prefix] = torch.tensor(prompts[0][:n_prefix], dtype=torch.long)
        mask[:, :n_prefix] = 1
        for i, s in enumerate(suffixes):
            ids[i, n_prefix + width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, n_prefix + width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def generate(self, prompts: Sequence[Sequence[int]], *, seed: int = 0) -> list[Completion]:
        import torch

        n_prefix = shared_prefix_length(prompts) if self.shared_prefix and len(prompts) > 1 else 0
        if n_prefix < MIN_SHARED_PREFIX:
            n_prefix = 0
        if self.drop_finished:
            rows = self._greedy(prompts, n_prefix)
        else:
            ids, mask = self._padded(prompts, n_prefix)
            extra = {}
            if n_prefix:
                extra[self._cache_kwarg] = self._cache_of_prefix(tuple(prompts[0][:n_prefix]), len(prompts))
            if self.do_sample:
                torch.manual_seed(seed)
            with torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=mask, **extra)
            rows = out[:, ids.shape[1]:].tolist()
        results = []
        for row in rows:
            tokens, reason = cut_at_stop(row, self.stop_ids, self.max_new_tokens)
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            results.append(Completion(text=text, finish_reason=reason, completion_tokens=len(tokens)))
        return results

    def _prefill(self, prompts: Sequence[Sequence[int]], n_prefix: int):
        """One forward pass over ``prompts`` (their shared prefix from its kept cache): the filled cache, the
        attention mask and each row's first greedy token."""
        from transformers import DynamicCache

        ids, mask = self._padded(prompts, n_prefix)
        cache = (self._cache_of_prefix(tuple(prompts[0][:n_prefix]), len(prompts)) if n_prefix
                 else DynamicCache(config=self.model.config))
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)[:, n_prefix:]
        out = self.model(input_ids=ids[:, n_prefix:], attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **{self._cache_kwarg: cache})
        return cache, mask, out.logits[:, -1].argmax(-1)

    def _greedy(self, prompts: Sequence[Sequence[int]], n_prefix: int) -> list[list[int]]:
        """Greedy tokens of each prompt by :func:`~tracekd.generate.greedy.greedy_decode`."""
        import torch

        from .greedy import greedy_decode

        def step(tokens, mask, positions, cache):
            out = self.model(input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True,
                             **{self._cache_kwarg: cache})
            return out.logits[:, -1].argmax(-1)

        chunk = self.prefill_batch_size
        with torch.inference_mode():
            prefilled = [self._prefill(prompts[i:i + chunk], n_prefix) for i in range(0, len(prompts), chunk)]
            return greedy_decode(step, prefilled, self.stop_ids, self.max_new_tokens)

    def close(self) -> None:
        import torch

        del self.model
        self._prefix_cache = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
