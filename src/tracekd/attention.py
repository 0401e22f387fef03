"""Which attention kernel CPU training runs: PyTorch's SDPA or eager attention, by measurement.

transformers runs a student's attention through ``torch.nn.functional.scaled_dot_product_attention`` by default.
On CPU its flash kernel is slow backwards at short padded rows: on this project's machine (AMX, torch 2.13) a
forward+backward through one SmolLM2 layer's attention took 14-16 ms under bf16 autocast at 4 rows x 132-137 tokens
where transformers' eager implementation (two matmuls and a float32 softmax) took 6 ms; at 1 x 1024 tokens SDPA took
37 ms and eager 88 ms. Eager attention keeps each layer's ``rows x heads x t^2`` probabilities for the backward pass,
in float32 (the softmax's output) and bf16 (the second matmul's input): 6 bytes each. :func:`eager_autocast_attention`
(registered with transformers as ``eager_autocast``) is the same computation with the softmax left in the scores'
type: under autocast the probabilities are bf16 once (2 bytes each), the forward values are bit-identical to eager's
(tested) and it is faster still (4.7 ms at 4 x 137, 12 ms at 1 x 512 where SDPA took 20); without autocast it is
eager. So the choice is measured: :func:`time_kernels` times SDPA and ``eager_autocast`` alone (on query/key/value
shaped like the calibration's probe, with the masks transformers builds for each, in each number format), and
:func:`decide` keeps SDPA unless the eager kernel is clearly and consistently faster. Training uses it only when the
memory plan is the same with its probabilities counted (:mod:`tracekd.train.memory`).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from typing import Any, Callable

#: tracekd's eager attention, registered with transformers under this name (:func:`eager_autocast_attention`)
EAGER_AUTOCAST = "eager_autocast"
#: the attention implementations ``auto`` measures (transformers' names)
IMPLEMENTATIONS = ("sdpa", EAGER_AUTOCAST)
#: implementations that keep each layer's attention probabilities for the backward pass
KEEPS_PROBABILITIES = ("eager", EAGER_AUTOCAST)
#: values of the ``attention`` setting: auto (measured) or one implementation
SETTINGS = ("auto", "sdpa", *KEEPS_PROBABILITIES)
#: eager must be at least this much faster than SDPA (median of the paired timings) to be chosen
EAGER_MARGIN = 1.10
#: timed pairs of the attention probe (after one warm-up each), at least 3, and its wall-time budget
ATTENTION_PAIRS, ATTENTION_BUDGET_S = 8, 0.15


def decide(sdpa_s: list[float], eager_s: list[float], *, margin: float = EAGER_MARGIN) -> tuple[str, str]:
    """The attention implementation from paired wall times (``sdpa_s[i]`` and ``eager_s[i]`` back to back).

    ``eager_autocast`` only when the median of the per-pair speed-ups (SDPA time / eager time) is at least ``margin``
    and eager won all pairs but one in three; anything else keeps SDPA (transformers' default, O(t) memory).

    >>> decide([14.0, 15.0, 14.5], [6.0, 6.2, 6.1])
    ('eager_autocast', 'eager attention 2.38x faster than sdpa (median of 3 paired timings)')
    >>> decide([15.0, 15.2, 14.9], [15.1, 14.8, 15.3])[0]     # a tie keeps sdpa
    'sdpa'
    >>> decide([37.0, 38.0, 37.5], [88.0, 87.0, 90.0])
    ('sdpa', 'eager attention 0.42x of sdpa (median of 3 paired timings); sdpa kept')
    >>> decide([14.0, 6.0, 14.0], [6.0, 14.0, 6.0])[1]          # lost a pair of three
    'eager attention 2.33x of sdpa (median of 3 paired timings) but slower in 1 of them; sdpa kept'
    """
    if not sdpa_s or len(sdpa_s) != len(eager_s):
        raise ValueError(f"need the same number (>= 1) of sdpa and eager timings, got {len(sdpa_s)} and {len(eager_s)}")
    speedups = [a / b for a, b in zip(sdpa_s, eager_s)]
    n, median = len(speedups), statistics.median(speedups)
    lost = sum(r <= 1.0 for r in speedups)
    said = f"eager attention {median:.2f}x {{}} sdpa (median of {n} paired timings)"
    if median < margin:
        return "sdpa", said.format("of") + "; sdpa kept"
    if lost > (n - 1) // 3:
        return "sdpa", said.format("of") + f" but slower in {lost} of them; sdpa kept"
    return EAGER_AUTOCAST, said.format("faster than")


def eager_autocast_attention(module, query, key, value, attention_mask, scaling: float | None = None,
                             dropout: float = 0.0, **kwargs):
    """transformers' eager attention (scores, additive mask, softmax, weighted sum) with the softmax in the scores'
    own type: under bf16 autocast the probabilities are computed (float32 inside the kernel) and kept once in bf16,
    where eager keeps a float32 and a bf16 copy. Same signature and return value as transformers' attention functions;
    for attention without logit soft-capping or sink tokens (:func:`kernels` checks)."""
    import torch

    groups = int(getattr(module, "num_key_value_groups", 1))
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * (query.shape[-1] ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]].to(scores.dtype)
    probs = torch.nn.functional.dropout(torch.softmax(scores, dim=-1), p=dropout, training=module.training)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def register() -> None:
    """Make ``eager_autocast`` known to transformers (attention function and mask form: eager's additive mask)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(EAGER_AUTOCAST, eager_autocast_attention)
    AttentionMaskInterface.register(EAGER_AUTOCAST, eager_mask)


def kernels(model) -> tuple[Any, dict[str, Callable]] | None:
    """(the first decoder layer's attention module, {implementation: attention function}) of a decoder-only ``model``
    (PEFT-wrapped or not), or None when :func:`eager_autocast_attention` does not compute its attention (no eager
    function of its own, logit soft-capping, sink tokens)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from .runtime import base_causal_lm

    layers = getattr(getattr(base_causal_lm(model), "model", None), "layers", None)
    attn = getattr(layers[0], "self_attn", None) if layers is not None and len(layers) else None
    module = sys.modules.get(type(attn).__module__) if attn is not None else None
    eager = getattr(module, "eager_attention_forward", None)
    plain = attn is not None and getattr(attn.config, "attn_logit_softcapping", None) is None \
        and not hasattr(attn, "sinks") and hasattr(attn, "scaling")
    if eager is None or not plain or "sdpa" not in ALL_ATTENTION_FUNCTIONS:
        return None
    register()
    return attn, {"sdpa": ALL_ATTENTION_FUNCTIONS["sdpa"], EAGER_AUTOCAST: eager_autocast_attention, "eager": eager}


def padded(length: int) -> int:
    """Positions a probe pads in the last of several rows of ``length`` tokens: an eighth, at least one (the shortest
    row of a length-grouped micro-batch; the calibration's probe and the attention probe pad alike).

    >>> padded(170), padded(4)
    (21, 1)
    """
    return max(1, length // 8)


def probe_inputs(config, rows: int, length: int, *, bf16: bool, generator=None) -> dict[str, Any]:
    """Query, key, value, output gradient and each implementation's mask for one attention call of training.

    Shaped as a decoder layer of ``config`` sees a micro-batch of ``rows`` x ``length`` tokens: query and key in
    float32 (the rotary embedding promotes them), value in bf16 when ``bf16`` (a projection's output under
    autocast). With more than one row the last row is an eighth shorter (padding, as length-grouped batches have)
    and the masks are transformers' for padded batches: boolean for SDPA, additive float32 for eager; one row has
    no mask for SDPA (its causal kernel) and a causal one for eager.
    """
    import torch

    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    gen = generator or torch.Generator().manual_seed(0)

    def leaf(shape, dtype):
        return torch.randn(shape, generator=gen).to(dtype).requires_grad_()

    q = leaf((rows, heads, length, head_dim), torch.float32)
    k = leaf((rows, kv_heads, length, head_dim), torch.float32)
    v = leaf((rows, kv_heads, length, head_dim), torch.bfloat16 if bf16 else torch.float32)
    allowed = torch.ones(length, length, dtype=torch.bool).tril().expand(rows, 1, length, length).clone()
    if rows > 1:
        allowed[-1, :, :, length - padded(length):] = False  # the shortest row's padded keys
    eager_mask = torch.zeros(allowed.shape).masked_fill_(~allowed, torch.finfo(torch.float32).min)
    return {"q": q, "k": k, "v": v, "grad": torch.randn((rows, length, heads, head_dim), generator=gen),
            "masks": {"sdpa": allowed if rows > 1 else None, "eager": eager_mask, EAGER_AUTOCAST: eager_mask}}


def time_kernels(model, rows: int, length: int, *, formats: tuple[str, ...] = ("fp32", "bf16"),
                 pairs: int = ATTENTION_PAIRS, budget_s: float = ATTENTION_BUDGET_S) \
        -> dict[str, dict[str, list[float]]] | None:
    """Seconds of forward+backward of each attention implementation of ``model`` at ``rows`` x ``length`` in each
    number format (``fp32``; ``bf16``: under autocast), timed in rounds (:func:`tracekd.timing.time_pairs`: one
    warm-up each, at least 3 rounds, no new one after ``budget_s``): ``{format: {implementation: [seconds]}}``.
    None when the model has no eager function (:func:`kernels`)."""
    import torch

    from .timing import time_pairs

    found = kernels(model)
    if found is None:
        return None
    module, functions = found
    inputs = {fmt: probe_inputs(module.config, rows, length, bf16=fmt == "bf16") for fmt in formats}

    def run(fmt: str, name: str) -> Callable[[], None]:
        x = inputs[fmt]

        def once() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fmt == "bf16"):
                out, _ = functions[name](module, x["q"], x["k"], x["v"], x["masks"][name], dropout=0.0,
                                         scaling=module.scaling)
            out.backward(x["grad"].to(out.dtype))
            for t in (x["q"], x["k"], x["v"]):
                t.grad = None
        return once

    times = time_pairs({f"{fmt}/{name}": run(fmt, name) for fmt in formats for name in IMPLEMENTATIONS},
                       pairs=pairs, budget_s=budget_s, min_pairs=3)
    return {fmt: {name: times[f"{fmt}/{name}"] for name in IMPLEMENTATIONS} for fmt in formats}


def choose(model, rows: int, length: int, formats: tuple[str, ...] = ("fp32", "bf16"), **timing) \
        -> dict[str, tuple[str, str, dict[str, float]]] | None:
    """For each number format: (implementation, reason, median milliseconds of each) by :func:`time_kernels` and
    :func:`decide`; None when the model has no eager function to compare with."""
    times = time_kernels(model, rows, length, formats=formats, **timing)
    if times is None:
        return None
    return {fmt: (*decide(t["sdpa"], t[EAGER_AUTOCAST]),
                  {name: round(statistics.median(s) * 1000, 3) for name, s in t.items()}) for fmt, t in times.items()}


@contextlib.contextmanager
def switched(model, implementation: str | None):
    """Within the block ``model`` runs its attention through ``implementation`` (None: unchanged); for timing
    passes (a plain config switch, which transformers' attention modules and masks read at every forward)."""
    from .runtime import base_causal_lm

    config = base_causal_lm(model).config
    before = getattr(config, "_attn_implementation", None)
    if implementation == EAGER_AUTOCAST:
        register()
    if implementation is not None:
        config._attn_implementation = implementation
    try:
        yield
    finally:
        if implementation is not None:
            config._attn_implementation = before


def use(model, implementation: str) -> None:
    """Run ``model``'s attention (PEFT-wrapped or not) through ``implementation`` (``sdpa``, ``eager``,
    ``eager_autocast``)."""
    from .runtime import base_causal_lm

    if implementation == EAGER_AUTOCAST:
        register()
    lm = base_causal_lm(model)
    if hasattr(lm, "set_attn_implementation"):
        lm.set_attn_implementation(implementation)
    else:  # older transformers: the config attribute the attention modules read at every forward
        lm.config._attn_implementation = implementation


def current(model) -> str:
    """The attention implementation ``model`` runs now (``sdpa``, ``eager``, ...)."""
    from .runtime import base_causal_lm

    return str(getattr(base_causal_lm(model).config, "_attn_implementation", None) or "eager")
