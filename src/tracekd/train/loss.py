"""Completion-only cross-entropy that applies the LM head only where the loss is.

With the loss on completion tokens only, the vocabulary-sized logits of prompt positions are
computed, kept for the backward pass and thrown away: on CoTemp rows (~300-370 prompt tokens,
~75 completion tokens, 49,152-entry vocabulary in float32) that is about 80% of the largest
tensor of a training step. Here the decoder's hidden states are gathered at the positions that
predict a completion token first, and the LM head (and the float32 cross-entropy) runs on those
rows only. The value and its gradients equal the model's own full-logits loss (tested).

The head and the cross-entropy run together (:func:`head_cross_entropy`), a chunk of rows at a time: a
chunk's logits are made, reduced to its loss and to the gradient of its hidden states, and freed, so no
vocabulary-sized tensor outlives its chunk (separately, the float32 logits, their log-softmax and its
gradient took 52 MB each for a bAbI micro-batch of 268 completion positions, and the loss ~11% of the step).
Under autocast the head's weight is cast once and the cast kept (:func:`compute_weight`): autocast itself
re-casts a frozen weight at every forward.

Works for decoder-only models of the usual shape (``model.model`` the decoder, ``model.lm_head``
the head, no logit soft-capping or scaling); :func:`supports` says when, and callers fall back to
the model's own loss otherwise.
"""

from __future__ import annotations

import functools
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
    targets = targets.to(picked.device)
    head = lm.lm_head
    if num_items_in_batch is None:
        num_items_in_batch = max(1, int(targets.numel()))
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(picked.device)
    if type(head) is torch.nn.Linear and head.bias is None and not head.weight.requires_grad:
        total = head_cross_entropy(picked, compute_weight(head, picked), targets, per=num_items_in_batch)
    else:  # a trained or adapted head: its own module, full logits
        total = F.cross_entropy(head(picked).float(), targets, reduction="sum")
    return total / num_items_in_batch


#: float32 logits made at once by :func:`head_cross_entropy` (16 MB: 85 rows of a 49,152-entry vocabulary)
CHUNK_LOGITS = 1 << 22


def compute_weight(head, hidden):
    """The weight ``head`` computes with for ``hidden`` here: under autocast a cast to autocast's type, made once and
    kept on the module while the weight is unchanged (a frozen LM head: autocast would cast it at every call);
    without autocast the weight itself. :func:`drop_weight_casts` frees kept casts."""
    import torch

    weight, kind = head.weight, hidden.device.type
    if not torch.is_autocast_enabled(kind) or not weight.is_floating_point():
        return weight
    dtype = torch.get_autocast_dtype(kind)
    if weight.dtype == dtype:
        return weight
    key = (dtype, weight.data_ptr(), weight._version)
    kept = getattr(head, "_tracekd_cast", None)
    if kept is None or kept[0] != key:
        kept = (key, weight.detach().to(dtype))
        head._tracekd_cast = kept
    return kept[1]


def drop_weight_casts(model) -> None:
    """Free the casts :func:`compute_weight` kept on ``model``'s modules (e.g. after a calibration's bf16 passes,
    before a float32 training)."""
    for module in model.modules():
        module.__dict__.pop("_tracekd_cast", None)


def head_cross_entropy(hidden, weight, targets, *, per=1, chunk_logits: int = CHUNK_LOGITS):
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets``, the logits made a chunk of rows at a time.

    The value and the gradient of ``hidden`` are those of ``F.cross_entropy(F.linear(hidden, weight).float(),
    targets, reduction="sum")`` (under autocast too: the matmul in ``weight``'s type, the log-softmax in float32):
    the same arithmetic in the same order, except how the matmuls block their rows. ``weight`` gets no gradient
    (a frozen head). The gradient is made with the value, for the caller's ``loss = sum / per``: scaled by
    ``1 / per`` before it is rounded to ``weight``'s type, as the cross-entropy's own backward pass does (another
    incoming gradient rescales it afterwards).

    >>> import torch, torch.nn.functional as F
    >>> h, w, t = torch.randn(5, 4, requires_grad=True), torch.randn(7, 4), torch.tensor([0, 6, 2, 2, 3])
    >>> ours = head_cross_entropy(h, w, t, per=3, chunk_logits=14) / 3  # two rows of logits per chunk
    >>> ref = F.cross_entropy(h @ w.T, t, reduction="sum") / 3
    >>> torch.allclose(ours, ref), torch.allclose(torch.autograd.grad(ours, h)[0], torch.autograd.grad(ref, h)[0])
    (True, True)
    """
    rows = max(1, chunk_logits // weight.shape[0])
    return _head_cross_entropy_function().apply(hidden, weight.detach(), targets, rows, per)


@functools.cache
def _head_cross_entropy_function():
    import torch

    class HeadCrossEntropy(torch.autograd.Function):
        """Forward: per chunk, logits (``weight``'s type) -> float32 log-softmax -> the loss, and
        ``(softmax - one_hot) / per``, whose product with the weight is the chunk's gradient (kept, float32);
        backward: that gradient, rescaled when the incoming gradient is not ``1 / per``."""

        @staticmethod
        def forward(ctx, hidden, weight, targets, rows, per):
            expected = torch.ones((), dtype=torch.float32, device=hidden.device) / per
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) \
                if ctx.needs_input_grad[0] else None
            with torch.autocast(hidden.device.type, enabled=False):
                for start in range(0, hidden.shape[0], rows):
                    h = hidden[start:start + rows].to(weight.dtype)
                    target = targets[start:start + rows, None]
                    logits = torch.nn.functional.linear(h, weight)
                    log_probs = torch.log_softmax(logits, dim=-1, dtype=torch.float32)
                    del logits
                    total -= log_probs.gather(1, target).sum()
                    if grad is not None:  # log-softmax's backward for the incoming 1 / per: p / per, minus 1 / per
                        scaled = log_probs.exp_().mul_(expected)
                        scaled.scatter_add_(1, target, (-expected).expand(target.shape))
                        grad[start:start + rows] = scaled.to(weight.dtype) @ weight
            ctx.save_for_backward(grad, expected)
            ctx.input_dtype = hidden.dtype
            return total

        @staticmethod
        def backward(ctx, incoming):
            grad, expected = ctx.saved_tensors
            if not torch.equal(incoming, expected):
                grad = grad * (incoming / expected)
            return grad.to(ctx.input_dtype), None, None, None, None

    return HeadCrossEntropy
