"""The student's frozen weights during CPU training: cast once for bf16 autocast, and owned by the process.

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` every ``nn.Linear`` call casts its float32 weight to bf16,
and autograd keeps that copy for the backward pass: per micro-batch, one bf16 copy of every projection is made,
held until the backward and freed. For frozen projections (LoRA trains only its own small matrices) the copy is the
same every time, so :func:`cast_frozen_linears` stores those weights in bf16 once. Autocast then has nothing to cast
for them, and the values are the ones it would have computed (a bf16 cast rounds the same float32 the same way;
two training steps give the same losses, tested). Norms, embeddings (and an LM head tied to them) keep float32:
autocast runs those in float32.

The weights come from a safetensors file that transformers maps into memory; a tensor left in that mapping keeps
the pages it was read through resident, so a float32 original read once for the cast would stay in RSS beside its
bf16 copy. :func:`own_frozen_weights` gives every remaining frozen parameter its own memory, releasing the file.
"""

from __future__ import annotations


def frozen_linears(model) -> list:
    """The ``nn.Linear`` modules of ``model`` whose weight is frozen and not shared with an embedding (a tied LM
    head): the ones :func:`cast_frozen_linears` casts."""
    import torch

    shared = {id(p) for mod in model.modules() if isinstance(mod, torch.nn.Embedding) for p in mod.parameters()}
    return [mod for mod in model.modules()
            if type(mod) is torch.nn.Linear and not mod.weight.requires_grad and id(mod.weight) not in shared]


def cast_frozen_linears(model, dtype) -> int:
    """Store the weight of every frozen ``nn.Linear`` of ``model`` in ``dtype``, except weights shared with an
    embedding (a tied LM head); returns how many were cast.

    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 5, bias=False))
    >>> _ = m.requires_grad_(False)
    >>> cast_frozen_linears(m, torch.bfloat16), m[1].weight.dtype, m[1].bias.dtype, m[0].weight.dtype
    (2, torch.bfloat16, torch.float32, torch.float32)
    >>> m[2].weight = m[0].weight  # tied to the embedding: kept float32
    >>> cast_frozen_linears(m, torch.bfloat16), m[2].weight.dtype
    (0, torch.float32)
    """
    cast = 0
    for mod in frozen_linears(model):
        if mod.weight.dtype != dtype:
            mod.weight.data = mod.weight.data.to(dtype)
            cast += 1
    return cast


def keep_adapter_inputs(model) -> int:
    """Stop PEFT casting each adapter's input to the adapter's own float32 weight (``cast_input_dtype_enabled``,
    what ``peft.helpers.disable_input_dtype_casting`` switches); returns how many layers were switched.

    For a model whose weights are float32 the cast does nothing without autocast, and under autocast it is undone
    at once: an output projection's bf16 input went to float32 and, in the dropout or the adapter's first matmul,
    back to bf16 - two copies forward and two backward per adapted module. The values and gradients are the same
    bits without it (a bf16 value widens to float32 exactly; the scaling then rounds once either way): tested.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.cast_input_dtype_enabled = False
    return len(layers)


def own_frozen_weights(model) -> int:
    """Copy every frozen parameter of ``model`` whose data lies in a memory-mapped file (how transformers loads
    safetensors) into memory of its own; returns the bytes copied (0 where ``/proc/self/maps`` is missing)."""
    spans = file_mappings()
    copied = 0
    for p in model.parameters():
        if p.requires_grad or not any(lo <= p.data_ptr() < hi for lo, hi in spans):
            continue
        p.data = p.data.clone()
        copied += p.numel() * p.element_size()
    return copied


def file_mappings(maps: str | None = None) -> list[tuple[int, int]]:
    """Address ranges this process has mapped from files (``/proc/self/maps`` lines naming a path).

    >>> file_mappings("7f00-7f80 r--p 00000000 08:01 12 /m/model.safetensors\\n7f80-7fff rw-p 00000000 00:00 0 [heap]\\n")
    [(32512, 32640)]
    """
    if maps is None:
        try:
            with open("/proc/self/maps", encoding="utf-8") as f:
                maps = f.read()
        except OSError:
            return []
    spans = []
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            lo, hi = parts[0].split("-")
            spans.append((int(lo, 16), int(hi, 16)))
    return spans
