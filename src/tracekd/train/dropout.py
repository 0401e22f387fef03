"""LoRA dropout whose masks come from 16-bit random words (CPU: torch's own dropout is the slow part of a LoRA step).

PEFT applies LoRA's dropout to the full input of every adapted projection (seven per decoder layer for the method's
targets), and on CPU torch's dropout draws one Bernoulli sample per element: on this project's 2-core machine it took
as long as the projection itself (2.3 ms for a 4 x 137 x 576 input, the 576 -> 1536 matmul 5 ms), and 21% of a bAbI
training step's wall time went to it (py-spy). :class:`BitDropout` draws 64 random bits per four elements instead
and compares each 16-bit quarter with a threshold: the same kind of mask (each element dropped independently with
probability p) with p rounded to a multiple of 1/65,536 (0.05 -> 3,277 / 65,536 = 0.0500031), kept values scaled by
1 / (1 - that p) so the expectation is exact. The words come from numpy's SFC64 generator, seeded for each mask by
one draw from torch's default generator (:func:`random_words`): twice as fast as torch's own Mersenne Twister here
(a demo step's 210 masks in ~105 ms against 160-220 ms), and a seed - or the generator state a checkpoint restores -
still gives the same bytes. The masks differ from the ones ``torch.nn.Dropout`` would draw (as any other order of
draws would).

The mask is applied by multiplying with a 0/1 tensor of the output's own type (:class:`_KeepScaled`): ops that read a
boolean mask (``masked_fill``, ``where``) ran at a quarter of a same-type multiply's speed here (0.9-1.1 ms vs 0.25
ms for a 4 x 140 x 1536 input). Under autocast the output is already in autocast's type (the adapter's first
projection casts its input to it anyway), so the cast happens in the same pass as the scaling. Values and gradients
are bit-identical to ``(x * scale).masked_fill_(drop, 0)`` followed by autocast's cast (tested).
"""

from __future__ import annotations

import numpy
import torch

#: values a 16-bit word can take: dropout probabilities are multiples of 1 / RESOLUTION
RESOLUTION = 1 << 16


def drop_count(p: float) -> int:
    """Of every :data:`RESOLUTION` values, how many a mask of probability ``p`` drops (the nearest count).

    >>> drop_count(0.05), drop_count(0.0), drop_count(1.0), drop_count(0.1)
    (3277, 0, 65536, 6554)
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    return round(p * RESOLUTION)


def random_words(count: int, device=None) -> torch.Tensor:
    """``count`` random 64-bit words (int64). On CPU from numpy's SFC64, seeded by one draw from torch's default
    generator (so ``torch.manual_seed`` and a restored generator state repeat them); elsewhere torch's own.

    >>> _ = torch.manual_seed(0); a = random_words(5)
    >>> _ = torch.manual_seed(0); torch.equal(a, random_words(5)), a.dtype, torch.equal(a, random_words(5))
    (True, torch.int64, False)
    """
    device = torch.device(device or "cpu")
    if device.type != "cpu":
        return torch.empty(count, dtype=torch.int64, device=device).random_(-(1 << 63), None)
    seed = int(torch.empty((), dtype=torch.int64).random_())
    return torch.from_numpy(numpy.random.SFC64(seed).random_raw(count).view(numpy.int64))


class BitDropout(torch.nn.Module):
    """Drop-in for ``torch.nn.Dropout(p)`` in training mode, masks from 16-bit random words; identity in eval mode.

    >>> d = BitDropout(0.05).train()
    >>> d.effective_p
    0.0500030517578125
    >>> _ = torch.manual_seed(0); y = d(torch.ones(100_000))
    >>> sorted(set(y.tolist())) == [0.0, torch.tensor(65536 / 62259).item()], abs(float((y == 0).float().mean()) - 0.05) < 0.003
    (True, True)
    >>> torch.equal(d.eval()(torch.ones(3)), torch.ones(3))
    True
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.dropped = drop_count(self.p)

    @property
    def effective_p(self) -> float:
        """The probability the masks drop with (``p`` rounded to a multiple of 1 / :data:`RESOLUTION`)."""
        return self.dropped / RESOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropped == 0:
            return x
        if self.dropped >= RESOLUTION:
            return x * 0
        n = x.numel()
        words = random_words((n + 3) // 4, x.device)
        keep = torch.ge(words.view(torch.int16)[:n].view(x.shape), self.dropped - RESOLUTION // 2,
                        out=torch.empty(x.shape, dtype=torch.uint8, device=x.device))
        kind = x.device.type
        dtype = (torch.get_autocast_dtype(kind) if x.dtype == torch.float32 and torch.is_autocast_enabled(kind)
                 else x.dtype)
        return _KeepScaled.apply(x, keep, RESOLUTION / (RESOLUTION - self.dropped), dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}, effective_p={self.effective_p:.7f}"


class _KeepScaled(torch.autograd.Function):
    """``x * scale * keep`` as ``dtype`` (``keep``: uint8 0/1, saved for the backward pass; one byte per element as a
    boolean mask would be); the gradient is ``grad * keep`` in the gradient's type, then ``* scale`` in ``x``'s."""

    @staticmethod
    def forward(ctx, x, keep, scale, dtype):
        out = torch.mul(x, scale, out=torch.empty(x.shape, dtype=dtype, device=x.device))
        out.mul_(keep.to(dtype))
        ctx.save_for_backward(keep)
        ctx.scale, ctx.input_dtype = scale, x.dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return (grad * keep.to(grad.dtype)).to(ctx.input_dtype).mul_(ctx.scale), None, None, None


def use_bit_dropout(model) -> int:
    """Replace every ``torch.nn.Dropout`` in the LoRA layers of a PEFT ``model`` by :class:`BitDropout` of the same
    p; returns how many were replaced (0 when the adapter has no dropout)."""
    replaced = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, torch.nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            if isinstance(drop, torch.nn.Dropout) and drop.p > 0:
                drops[name] = BitDropout(drop.p).train(drop.training)
                replaced += 1
    return replaced
