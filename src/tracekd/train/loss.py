"""Completion-only cross-entropy that applies the LM head only where the loss is.

With the loss on completion tokens only, the vocabulary-sized logits of prompt positions are
computed, kept for the backward pass and thrown away: on CoTemp rows (~300-370 prompt tokens,
~75 completion tokens, 49,152-entry vocabulary in float32) that is about 80% of the largest
tensor of a training step. Here the decoder's hidden states are gathered at the positions that
predict a completion token first, and the LM head (and the float32 cross-entropy) runs on those
rows only. The value and its gradients equal the model's own full-logits loss (tested).

Works for decoder-only models of the usual shape (``model.model`` the decoder, ``model.lm_head``
the head, no logit soft-capping or scaling); :func:`supports` says when, and callers fall back to
the model's own loss otherwise.
"""

from __future__ import annotations

from typing import Any

from ..runtime import base_causal_lm
from .data import IGNORE_INDEX

#: config attributes that change logits after the head (then the full computation is used)
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def supports(model) -> bool:
    """Whether :func:`completion_loss` can compute this model's loss exactly."""
    lm = base_causal_lm(model)
    decoder, head = getattr(lm, "model", None), getattr(lm, "lm_head", None)
    if decoder is None or head is None or not callable(decoder):
        return False
    cfg = getattr(lm, "config", None)
    return not any(getattr(cfg, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS)


def completion_positions(labels):
    """Mask over ``hidden[:, :-1]`` of the positions whose next token carries a loss, and those targets.

    >>> import torch
    >>> mask, targets = completion_positions(torch.tensor([[-100, -100, 5, 6], [-100, 7, 8, -100]]))
    >>> mask.tolist(), targets.tolist()
    ([[False, True, True], [True, True, False]], [5, 6, 7, 8])
    """
    shifted = labels[:, 1:]
    mask = shifted.ne(IGNORE_INDEX)
    return mask, shifted[mask]


def completion_loss(model, inputs: dict[str, Any], num_items_in_batch=None):
    """Cross-entropy over the completion tokens, with the LM head applied to those positions only.

    ``num_items_in_batch`` (the completion tokens of the whole accumulated batch) makes the value a
    sum over this micro-batch divided by it, as the model's own loss does; without it, the mean.
    """
    import torch
    import torch.nn.functional as F

    lm = base_causal_lm(model)
    labels = inputs["labels"]
    kwargs = {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch")}
    hidden = lm.model(**kwargs, use_cache=False).last_hidden_state
    mask, targets = completion_positions(labels.to(hidden.device))
    picked = hidden[:, :-1][mask]
    logits = lm.lm_head(picked).float()
    total = F.cross_entropy(logits, targets.to(logits.device), reduction="sum")
    if num_items_in_batch is None:
        return total / max(1, int(targets.numel()))
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
