"""tracekd's own greedy decoding loop for the ``hf`` backend (``model.generate`` serves sampling).

Three things ``model.generate`` does not do, each giving the same tokens per row:

- **prefill in chunks, decode together**: a batch's prompts are prefilled ``prefill_batch_size`` at a
  time (consecutive prompts of a length-sorted batch: little padding), then their caches are merged,
  left-padded to the longest, and the whole batch decodes as one (a bigger decoding batch costs
  little more per step: the step reads every weight once whatever the rows);
- **finished rows leave**: after each step the rows that produced a stop token are dropped from the
  key/value cache, the mask and the next input, so no step is spent on padding of finished answers;
- **keys and values written in place** (:class:`GrowingLayer`): the cache keeps spare room and
  writes each step's keys and values into it, where transformers' dynamic cache copies the whole
  cache to append one token (about a quarter of a 16-row step on CPU).

Positions follow the attention mask (``cumsum - 1``), as in ``model.generate``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicLayer

#: cache slots added when a :class:`GrowingLayer` runs out of room (one copy every this many steps)
SPARE_SLOTS = 64


class GrowingLayer(DynamicLayer):
    """A full-attention cache layer that writes each step's keys/values into spare room instead of
    concatenating; ``keys``/``values`` are views of the filled part."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.lazy_initialization(keys, values)
        self._store(keys, values)

    def _store(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        b, h, t, d = keys.shape
        self._keys = keys.new_empty((b, h, t + SPARE_SLOTS, d))
        self._values = values.new_empty((b, h, t + SPARE_SLOTS, d))
        self._keys[:, :, :t] = keys
        self._values[:, :, :t] = values
        self._length = t
        self.keys, self.values = self._keys[:, :, :t], self._values[:, :, :t]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n = key_states.shape[-2]
        if self._length + n > self._keys.shape[2]:
            self._store(self.keys, self.values)
        self._keys[:, :, self._length:self._length + n] = key_states
        self._values[:, :, self._length:self._length + n] = value_states
        self._length += n
        self.keys, self.values = self._keys[:, :, :self._length], self._values[:, :, :self._length]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._store(self.keys[indices], self.values[indices])


def merge_prefills(parts: Sequence[tuple]):
    """One batch from several prefilled ones, each ``(cache, mask, next_tokens)``: key/value caches and
    masks left-padded with zeros (masked out) to the longest, stacked row-wise, keys/values stored in
    :class:`GrowingLayer`s."""
    width = max(mask.shape[1] for _, mask, _ in parts)
    cache = parts[0][0]
    for i in range(len(cache.layers)):
        keys, values = ([F.pad(getattr(c.layers[i], name), (0, 0, width - m.shape[1], 0)) for c, m, _ in parts]
                        for name in ("keys", "values"))
        cache.layers[i] = GrowingLayer(torch.cat(keys), torch.cat(values))
    mask = torch.cat([F.pad(m, (width - m.shape[1], 0)) for _, m, _ in parts])
    return cache, mask, torch.cat([t for _, _, t in parts])


def greedy_decode(step: Callable, prefilled: Sequence[tuple], stop_ids: set[int],
                  max_new_tokens: int) -> list[list[int]]:
    """Greedy tokens of every row of the ``prefilled`` chunks (``(cache, mask, first_tokens)`` each, in
    row order), a row ending at its first stop token or at ``max_new_tokens``.

    ``step(tokens, mask, positions, cache)`` runs the model on one new token per row and returns the
    next greedy tokens.
    """
    cache, mask, nxt = merge_prefills(prefilled)
    stop = torch.tensor(sorted(stop_ids), dtype=nxt.dtype, device=nxt.device)
    tokens: list[list[int]] = [[] for _ in range(mask.shape[0])]
    active = torch.arange(mask.shape[0], device=nxt.device)  # the cache's rows -> rows of the batch
    for produced in range(1, max_new_tokens + 1):  # every row still in the batch has this many tokens
        for row, t in zip(active.tolist(), nxt.tolist(), strict=True):
            tokens[row].append(t)
        if produced == max_new_tokens:
            break
        keep = ~torch.isin(nxt, stop)
        if not bool(keep.all()):
            if not bool(keep.any()):
                break
            kept = keep.nonzero().squeeze(-1)
            cache.batch_select_indices(kept)
            active, nxt, mask = active[kept], nxt[kept], mask[kept]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        nxt = step(nxt[:, None], mask, mask.sum(-1, keepdim=True) - 1, cache)
    return tokens
