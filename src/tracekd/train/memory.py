"""Training memory: an estimate per micro-batch, a budget, and the micro-batch plan that fits it.

Where the memory of a LoRA step goes (float32 on CPU, per token ``t`` of a padded micro-batch):

- weights: the student's parameters (4 bytes each in float32);
- LoRA and optimizer state: trainable parameters x (value, gradient, Adam m, Adam v) x 4 bytes;
- activations kept for the backward pass: per layer and token about ``13 h + 2 kv + 5 i`` floats
  (norm inputs, q/k/v/o inputs and outputs, the LoRA dropout outputs, the MLP's gate/up/act/product),
  or only the layer inputs with activation checkpointing (plus one layer recomputed);
- logits: vocabulary-sized rows, kept as logits, log-softmax and gradient (3 copies); with the LM
  head on completion positions only (:mod:`.loss`) one chunk of those rows at a time (logits and their
  gradient, 2 copies), plus the head's weight cast once for autocast;
- attention: ``heads x t^2`` scores per layer for eager attention; SDPA (the default) keeps O(t).

:func:`plan` keeps the optimizer step the same (same rows per step, loss normalised over the whole
step) and only splits it into smaller micro-batches: of one fixed size (the largest whose worst case
fits), or - with ``pack`` - sized by tokens: each step's rows, longest first, packed into as few
micro-batches as fit the budget (:meth:`Plan.packs`), so a step of short rows runs as one micro-batch and
a step with a long row as several (on the CoTemp CPU recipe packed runs peaked up to 0.29 GiB over the
budget, not yet explained: ``benchmarks/bench_padded_pair.py``). If one row alone
does not fit, activation checkpointing is switched on for the micro-batches that need it (the rest
run without recomputation); when even that does not fit, the plan refuses before anything is
loaded, naming the longest row.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError
from .batch import pack
from .loss import CHUNK_LOGITS

GB = 1024 ** 3

#: floats kept per layer and token, as multiples of (hidden, key/value width, MLP width); see the module doc
ACT_HIDDEN, ACT_KV, ACT_MLP = 13, 2, 5
#: copies of each logits row alive at the loss (logits, log-softmax, gradient)
LOGIT_COPIES = 3
#: the same with the LM head on completion positions, per row of its chunk (float32 logits, their gradient in bf16)
CHUNK_LOGIT_COPIES = 2
#: allocator slack: peak RSS over the sum of live tensors, measured (benchmarks/bench_memory.py)
SLACK = 1.25
#: Python, torch, tokenizer and libraries before the model (measured ~0.6 GB)
RUNTIME_BYTES = int(0.6 * GB)
#: default budget: this share of the machine's RAM (CPU) or of the GPU's memory
RAM_SHARE, GPU_SHARE = 0.5, 0.9


def parse_size(text: str | int | float | None) -> int | None:
    """Bytes of a size like ``4GB``, ``3.5G``, ``512MB``; None for ``off`` / ``none``; plain numbers are GB.

    >>> parse_size("4GB") == 4 * GB, parse_size("512 MiB"), parse_size(2) == 2 * GB, parse_size("off")
    (True, 536870912, True, None)
    >>> parse_size("lots")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: max_memory 'lots' is not a size: use e.g. 4GB, 512MB, auto or off
    """
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return int(float(text) * GB)
    s = str(text).strip().lower()
    if s in ("off", "none", "unlimited"):
        return None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(g|gb|gib|m|mb|mib|t|tb|tib)?", s)
    if not m:
        raise ConfigError(f"max_memory {text!r} is not a size: use e.g. 4GB, 512MB, auto or off")
    unit = (m.group(2) or "g")[0]
    return int(float(m.group(1)) * {"m": 1024 ** 2, "g": GB, "t": 1024 ** 4}[unit])


def ram_total() -> int:
    """Physical memory of this machine (bytes)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def budget(max_memory: str, device: str = "cpu") -> int | None:
    """The budget in bytes: ``auto`` is a safe share of RAM (CPU) or of the GPU's memory."""
    if str(max_memory).strip().lower() != "auto":
        return parse_size(max_memory)
    if device.startswith("cuda"):
        import torch

        idx = int(device.split(":")[1]) if ":" in device else 0
        return int(GPU_SHARE * torch.cuda.get_device_properties(idx).total_memory)
    return int(RAM_SHARE * ram_total())


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a student: sizes from its ``config.json`` and its weight bytes."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    weight_bytes: int
    eager_attention: bool = False

    @property
    def kv(self) -> int:
        """Width of the key / value projections (grouped-query attention)."""
        return self.hidden // max(1, self.heads) * self.kv_heads

    @classmethod
    def from_folder(cls, folder: str | Path) -> Shape | None:
        """From a Hugging Face model folder (None when it is not a decoder of the usual shape)."""
        folder = Path(folder)
        try:
            cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            cfg = cfg.get("text_config", cfg)
            h, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
            heads = int(cfg["num_attention_heads"])
            weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
            bytes_per = 4 if str(cfg.get("torch_dtype", cfg.get("dtype", "float32"))) == "float32" else 2
            n_params_bytes = weights // bytes_per * 4  # float32 in memory on CPU
            return cls(hidden=h, intermediate=int(cfg.get("intermediate_size", 4 * h)), layers=layers, heads=heads,
                       kv_heads=int(cfg.get("num_key_value_heads", heads)), vocab=int(cfg["vocab_size"]),
                       weight_bytes=n_params_bytes,
                       eager_attention=cfg.get("_attn_implementation", cfg.get("attn_implementation")) == "eager")
        except (OSError, KeyError, ValueError, TypeError):
            return None


#: LoRA-adapted projections of a Llama-style layer: (input width, output width) as functions of the shape
_PROJ = {"q_proj": lambda s: (s.hidden, s.hidden), "k_proj": lambda s: (s.hidden, s.kv),
         "v_proj": lambda s: (s.hidden, s.kv), "o_proj": lambda s: (s.hidden, s.hidden),
         "gate_proj": lambda s: (s.hidden, s.intermediate), "up_proj": lambda s: (s.hidden, s.intermediate),
         "down_proj": lambda s: (s.intermediate, s.hidden)}


def lora_parameters(shape: Shape, r: int, targets: list[str]) -> int:
    """Trainable LoRA parameters: r x (in + out) per adapted projection and layer (all-linear = all seven).

    >>> s = Shape(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=49152, weight_bytes=0)
    >>> lora_parameters(s, 16, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    4884480
    """
    names = list(_PROJ) if list(targets) == ["all-linear"] else [t for t in targets if t in _PROJ]
    return shape.layers * r * sum(sum(_PROJ[n](shape)) for n in names)


@dataclass(frozen=True)
class Estimate:
    """Peak memory of one micro-batch, by what drives it (bytes)."""

    weights: int
    lora_optimizer: int
    activations: int
    logits: int
    attention: int
    runtime: int

    @property
    def total(self) -> int:
        return int((self.weights + self.lora_optimizer + self.activations + self.logits + self.attention) * SLACK
                   + self.runtime)

    def to_dict(self) -> dict:
        return {**{k: round(v / GB, 3) for k, v in asdict(self).items()}, "total": round(self.total / GB, 3),
                "unit": "GB"}


def estimate(shape: Shape, batch: list[tuple[int, int]], *, trainable_params: int, checkpointing: bool,
             head_on_completion: bool, float_bytes: int = 4) -> Estimate:
    """Memory of one micro-batch of rows given as ``(tokens, completion tokens)`` (padded to the longest).

    >>> s = Shape(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=49152, weight_bytes=538_000_000)
    >>> full = estimate(s, [(555, 75)] * 4, trainable_params=4_884_480, checkpointing=False, head_on_completion=False)
    >>> head = estimate(s, [(555, 75)] * 4, trainable_params=4_884_480, checkpointing=False, head_on_completion=True)
    >>> round(full.logits / GB, 2), round(head.logits / GB, 2), round(full.activations / GB, 2)
    (1.22, 0.08, 3.86)
    >>> ckpt = estimate(s, [(555, 75)] * 4, trainable_params=4_884_480, checkpointing=True, head_on_completion=True)
    >>> round(ckpt.activations / GB, 2)
    0.27
    """
    rows = len(batch)
    t = max((n for n, _ in batch), default=0)
    tokens = rows * t
    per_layer = (ACT_HIDDEN * shape.hidden + ACT_KV * shape.kv + ACT_MLP * shape.intermediate) * float_bytes
    if checkpointing:
        acts = tokens * (shape.layers * shape.hidden * float_bytes + per_layer)
    else:
        acts = tokens * shape.layers * per_layer
    if head_on_completion:  # one chunk at a time (.loss.head_cross_entropy) and the head's weight cast once
        chunk = min(sum(c for _, c in batch), max(1, CHUNK_LOGITS // shape.vocab))
        logits = chunk * shape.vocab * 4 * CHUNK_LOGIT_COPIES + shape.vocab * shape.hidden * 2
    else:
        logits = tokens * shape.vocab * 4 * LOGIT_COPIES
    attention = rows * shape.heads * t * t * float_bytes * 2 * (1 if checkpointing else shape.layers) \
        if shape.eager_attention else 0
    return Estimate(weights=shape.weight_bytes, lora_optimizer=trainable_params * 4 * 4, activations=acts,
                    logits=logits, attention=attention, runtime=RUNTIME_BYTES)


@dataclass(frozen=True)
class Budget:
    """What one micro-batch may hold: the student's shape, the byte budget and the training's settings.

    >>> s = Shape(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=49152, weight_bytes=538_000_000)
    >>> b = Budget(s, 3 * GB, trainable_params=4_884_480, head_on_completion=True)
    >>> b.fits([(300, 75)] * 2), b.fits([(300, 75)] * 4), b.fits([(1200, 75)]), b.fits([(1200, 75)], checkpointing=True)
    (True, False, False, True)
    """

    shape: Shape
    budget_bytes: int
    trainable_params: int
    head_on_completion: bool

    def estimate(self, rows: list[tuple[int, int]], checkpointing: bool = False) -> Estimate:
        """:func:`estimate` of a micro-batch of ``rows`` (``(tokens, completion tokens)``) under these settings."""
        return estimate(self.shape, rows, trainable_params=self.trainable_params, checkpointing=checkpointing,
                        head_on_completion=self.head_on_completion)

    def fits(self, rows: list[tuple[int, int]], checkpointing: bool = False) -> bool:
        return self.estimate(rows, checkpointing).total <= self.budget_bytes


@dataclass(frozen=True)
class Plan:
    """How a step is run within the budget (same rows and loss per optimizer step as the configured batch)."""

    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    budget_bytes: int | None
    estimate: Estimate | None
    reason: str
    #: with checkpointing on: only micro-batches of more than this many (padded) tokens recompute their
    #: activations (with ``packed``: only rows too long to fit alone without it); None = every micro-batch does
    checkpoint_above_tokens: int | None = None
    #: rows are loaded one at a time and each step's rows packed into micro-batches that fit this budget
    packed: Budget | None = None

    def packs(self, rows: list[tuple[int, int]]) -> bool:
        """Whether ``rows`` may run as one micro-batch (only with ``packed``)."""
        everywhere = self.gradient_checkpointing and self.checkpoint_above_tokens is None
        return self.packed is not None and self.packed.fits(rows, checkpointing=everywhere)

    def recomputes(self, rows: list[tuple[int, int]]) -> bool:
        """Whether the micro-batch of ``rows`` runs with activation checkpointing."""
        if not self.gradient_checkpointing:
            return False
        if self.checkpoint_above_tokens is None:
            return True
        if self.packed is not None:
            return not self.packed.fits(rows)
        return len(rows) * max(t for t, _ in rows) > self.checkpoint_above_tokens

    def to_dict(self) -> dict:
        return {"per_device_train_batch_size": self.per_device_train_batch_size,
                "gradient_accumulation_steps": self.gradient_accumulation_steps,
                "gradient_checkpointing": self.gradient_checkpointing,
                "checkpoint_above_tokens": self.checkpoint_above_tokens,
                "micro_batches": "packed to the budget" if self.packed else "fixed",
                "budget_bytes": self.budget_bytes,
                "budget_gb": round(self.budget_bytes / GB, 3) if self.budget_bytes else None,
                "estimate": self.estimate.to_dict() if self.estimate else None, "reason": self.reason}


def _divisors_desc(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def plan(shape: Shape | None, rows: list[tuple[int, int]], *, batch_size: int, grad_accum: int, budget_bytes: int | None,
         trainable_params: int, checkpointing: bool | None, head_on_completion: bool,
         longest_id: str = "?", pack: bool = False) -> Plan:
    """How each optimizer step of ``batch_size x grad_accum`` rows runs within ``budget_bytes``.

    When the ``batch_size`` longest rows fit together, nothing changes. Otherwise, with ``pack``
    (rows regrouped within each step), rows are loaded one at a time and each step's rows packed,
    longest first, into as few micro-batches as fit (:meth:`Plan.packs`); without it, the largest
    fixed micro-batch (a divisor of ``batch_size``) whose worst case fits. Activation checkpointing is
    switched on (unless the config says false) only for rows that do not fit alone without it.

    >>> s = Shape(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=49152, weight_bytes=538_000_000)
    >>> rows = [(555, 75)] * 8
    >>> kw = dict(batch_size=4, grad_accum=1, trainable_params=4_884_480, checkpointing=None, head_on_completion=True)
    >>> p = plan(s, rows, budget_bytes=4 * GB, **kw)
    >>> p.per_device_train_batch_size, p.gradient_accumulation_steps, p.gradient_checkpointing
    (2, 2, False)
    >>> p = plan(s, rows, budget_bytes=4 * GB, pack=True, **kw)
    >>> p.per_device_train_batch_size, p.gradient_accumulation_steps, p.gradient_checkpointing, p.packs(rows[:2])
    (1, 4, False, True)
    >>> plan(s, rows, budget_bytes=2 * GB, **kw).gradient_checkpointing
    True
    >>> plan(s, rows, budget_bytes=GB, longest_id="cotemp/7", **kw)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: even one row at a time does not fit max_memory 1.00 GB: the longest row (cotemp/7, 555 tokens) needs ...
    """
    checkpointing_default = bool(checkpointing)
    if shape is None or budget_bytes is None or not rows:
        why = "no budget" if budget_bytes is None else "no estimate for this student"
        return Plan(batch_size, grad_accum, checkpointing_default, budget_bytes, None, why)
    worst = sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)
    room = Budget(shape, budget_bytes, trainable_params, head_on_completion)
    if pack:
        whole = room.estimate(worst[:batch_size], checkpointing_default)
        if whole.total <= budget_bytes:
            return Plan(batch_size, grad_accum, checkpointing_default, budget_bytes, whole,
                        f"fits (estimate {whole.total / GB:.2f} GB)")
        return _packed_plan(room, worst, batch_size, grad_accum, checkpointing, longest_id)

    options = [checkpointing_default] if checkpointing is not None else [False, True]
    for with_checkpointing in options:
        if with_checkpointing and checkpointing is None:
            mixed = _mixed_plan(room, worst, batch_size, grad_accum)
            if mixed is not None:
                return mixed
        for micro in _divisors_desc(batch_size):
            e = room.estimate(worst[:micro], with_checkpointing)
            if e.total <= budget_bytes:
                split = batch_size // micro
                why = ("fits" if split == 1 and with_checkpointing == checkpointing_default else
                       f"batch {batch_size} split into {split} micro-batches of {micro}"
                       + (" with activation checkpointing" if with_checkpointing and not checkpointing_default
                          else ""))
                return Plan(micro, grad_accum * split, with_checkpointing, budget_bytes, e,
                            why + f" (estimate {e.total / GB:.2f} GB)")
    raise _does_not_fit(room, worst, options[-1], longest_id)


def _does_not_fit(room: Budget, worst: list[tuple[int, int]], checkpointing: bool, longest_id: str) -> ConfigError:
    e = room.estimate(worst[:1], checkpointing)
    return ConfigError(
        f"even one row at a time does not fit max_memory {room.budget_bytes / GB:.2f} GB: the longest row "
        f"({longest_id}, {worst[0][0]} tokens) needs about {e.total / GB:.2f} GB "
        f"({', '.join(f'{k} {v} GB' for k, v in e.to_dict().items() if k not in ('total', 'unit'))}); "
        "raise --max-memory, lower --max-length with --drop-overlong, or use a smaller student")


def _threshold(room: Budget, worst: list[tuple[int, int]]) -> tuple[int | None, list[Estimate]]:
    """(tokens above which a row needs checkpointing to fit alone, or None; each row's estimate as run).

    The threshold is one token below the shortest row that does not fit without checkpointing.
    """
    plain = [room.estimate([r]) for r in worst]
    too_long = [t for (t, _), e in zip(worst, plain, strict=True) if e.total > room.budget_bytes]
    if not too_long:
        return None, plain
    threshold = min(too_long) - 1
    return threshold, [room.estimate([r], True) if r[0] > threshold else e for r, e in zip(worst, plain, strict=True)]


def _packed_plan(room: Budget, worst: list[tuple[int, int]], batch_size: int, grad_accum: int,
                 checkpointing: bool | None, longest_id: str) -> Plan:
    """Rows loaded one at a time, each step's rows packed into micro-batches within the budget."""
    head = f"batch {batch_size} packed per step into micro-batches within {room.budget_bytes / GB:.2f} GB"
    if checkpointing is None:
        threshold, alone = _threshold(room, worst)
        if max(e.total for e in alone) > room.budget_bytes:
            raise _does_not_fit(room, worst, True, longest_id)
        with_ckpt = threshold is not None
        p = Plan(1, grad_accum * batch_size, with_ckpt, room.budget_bytes, None, "", threshold, room)
        if with_ckpt:
            over = sum(1 for t, _ in worst if t > threshold)
            head += (f"; activation checkpointing only for rows over {threshold} tokens ({over} of {len(worst)} "
                     "rows)")
    else:
        if not room.fits(worst[:1], checkpointing):
            raise _does_not_fit(room, worst, checkpointing, longest_id)
        p = Plan(1, grad_accum * batch_size, checkpointing, room.budget_bytes, None, "", None, room)
        head += " with activation checkpointing" if checkpointing else ""
    # the largest of: each row alone, and the micro-batches of the step holding the longest rows
    groups = [[r] for r in worst] + [[worst[i] for i in g] for g in
                                     pack(list(range(batch_size)), lambda idx: p.packs([worst[i] for i in idx]))]
    peak = max((room.estimate(g, p.recomputes(g)) for g in groups), key=lambda e: e.total)
    return dataclasses.replace(p, estimate=peak, reason=head + f" (estimate {peak.total / GB:.2f} GB)")


def _mixed_plan(room: Budget, worst: list[tuple[int, int]], batch_size: int, grad_accum: int) -> Plan | None:
    """One row per micro-batch, activation checkpointing only for rows too long to fit without it.

    None when the longest row does not fit even with checkpointing.
    """
    threshold, alone = _threshold(room, worst)
    if threshold is None or max(e.total for e in alone) > room.budget_bytes:
        return None
    over = sum(1 for t, _ in worst if t > threshold)
    peak = max(alone, key=lambda e: e.total)
    why = (f"batch {batch_size} split into {batch_size} micro-batches of 1; activation checkpointing only for rows "
           f"over {threshold} tokens ({over} of {len(worst)} rows) (estimate {peak.total / GB:.2f} GB)")
    return Plan(1, grad_accum * batch_size, True, room.budget_bytes, peak, why, checkpoint_above_tokens=threshold)


def set_checkpointing(model, on: bool) -> None:
    """Switch activation checkpointing on or off for the next forward pass of an enabled model.

    transformers' decoder layers recompute only while their ``gradient_checkpointing`` flag is set
    (``gradient_checkpointing_enable`` sets it and the function that recomputes); flipping the flags
    keeps that function, so a micro-batch can skip the recomputation it does not need. The layers are
    the ones enabled when this is first called.
    """
    layers = model.__dict__.get("_tracekd_checkpointed")
    if layers is None:
        layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", None) is True]
        model.__dict__["_tracekd_checkpointed"] = layers
    for module in layers:
        module.gradient_checkpointing = on


def current_rss() -> int:
    """Resident memory of this process now (bytes; 0 where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def return_freed_memory_to_os() -> bool:
    """Make glibc hand large freed blocks back to the OS (fixed mmap threshold), so peak RSS tracks live tensors.

    glibc raises its mmap threshold after every large free, so activation-sized blocks end up in
    the heap, fragment it, and RSS keeps the high-water mark of every step. A fixed 1 MiB threshold
    keeps such blocks in mmap'd memory that ``free`` returns at once. Returns whether it applied.
    ``TRACEKD_KEEP_MALLOC=1`` leaves glibc's defaults (benchmarks/bench_memory.py measures both).
    """
    if os.environ.get("TRACEKD_KEEP_MALLOC") == "1":
        return False
    libc = _libc()
    if libc is None:
        return False
    try:
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 20))
    except AttributeError:  # a C library without mallopt
        return False


def trim_heap() -> bool:
    """Hand the free pages inside glibc's heaps back to the OS (``malloc_trim(0)``); returns whether it ran (not
    whether there was anything to hand back).

    With the fixed mmap threshold, blocks under 1 MiB (bf16 activations of a few hundred tokens among them) still
    come from the heap, whose free gaps between live blocks stay resident: on the demo's rows they grew to ~1 GB
    over a dozen micro-batches. Called after each micro-batch, RSS between micro-batches falls back to the live
    tensors. A no-op (False) without glibc. Training calls it only where :func:`return_freed_memory_to_os` took
    effect, so ``TRACEKD_KEEP_MALLOC=1`` (glibc's defaults) switches both off at that one place.
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


@functools.lru_cache(maxsize=1)
def _libc():
    """The C library, loaded once (None where there is none to load)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None
