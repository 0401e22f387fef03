"""The configured global batch, kept under data-parallel training.

A recipe's batch is ``per_device_train_batch_size x gradient_accumulation_steps`` (the method's
4 x 4 = 16) for one process. Under ``accelerate launch`` with N processes every optimizer step sees
per-device x accumulation x N rows, so the same recipe would silently train on N times the batch
(and take N times fewer steps). tracekd keeps the recipe's global batch by dividing the
accumulation by N, and refuses, with the arithmetic, when it does not divide.

Within one optimizer step, the rows drawn for it are regrouped into micro-batches of similar length
(:func:`regroup_step`): less padding, the same rows per step, the same loss. Rows never move to
another step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError
from .data import IGNORE_INDEX


@dataclass(frozen=True)
class BatchPlan:
    """How one optimizer step's rows are made up under ``world_size`` processes."""

    per_device: int
    accumulation: int  # gradient accumulation steps each process uses
    world_size: int
    configured_accumulation: int

    @property
    def global_batch(self) -> int:
        """Rows per optimizer step over all processes."""
        return self.per_device * self.accumulation * self.world_size

    def to_dict(self) -> dict:
        return {"per_device_train_batch_size": self.per_device, "gradient_accumulation_steps": self.accumulation,
                "configured_gradient_accumulation_steps": self.configured_accumulation,
                "world_size": self.world_size, "global_batch": self.global_batch}


def keep_global_batch(per_device: int, accumulation: int, world_size: int) -> BatchPlan:
    """Accumulation per process so that per-device x accumulation x world size = the configured global batch.

    >>> keep_global_batch(4, 4, 1).global_batch
    16
    >>> p = keep_global_batch(4, 4, 2); (p.accumulation, p.global_batch)
    (2, 16)
    >>> keep_global_batch(4, 4, 4).accumulation
    1
    >>> keep_global_batch(4, 4, 3)
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: global batch 4 x 4 = 16 cannot be kept on 3 processes: 4 (per device) x accumulation x 3 = 16 needs accumulation 4 / 3 = 1.33, not a whole number; use a process count that divides 4 (1, 2, 4), or set per_device_train_batch_size and gradient_accumulation_steps so that their product stays 16 and the accumulation divides by 3
    """
    if per_device < 1 or accumulation < 1 or world_size < 1:
        raise ConfigError(f"batch sizes and world size must be >= 1 (got {per_device}, {accumulation}, {world_size})")
    if accumulation % world_size:
        target = per_device * accumulation
        divisors = ", ".join(str(d) for d in range(1, accumulation + 1) if accumulation % d == 0)
        raise ConfigError(
            f"global batch {per_device} x {accumulation} = {target} cannot be kept on {world_size} processes: "
            f"{per_device} (per device) x accumulation x {world_size} = {target} needs accumulation "
            f"{accumulation} / {world_size} = {accumulation / world_size:.2f}, not a whole number; use a process "
            f"count that divides {accumulation} ({divisors}), or set per_device_train_batch_size and "
            f"gradient_accumulation_steps so that their product stays {target} and the accumulation divides by "
            f"{world_size}")
    return BatchPlan(per_device, accumulation // world_size, world_size, accumulation)


def by_length(rows: list[int], lengths, sizes: list[int]) -> list[list[int]]:
    """The rows of one optimizer step split into micro-batches of ``sizes``, rows of similar length together.

    The step keeps exactly its rows (only which micro-batch a row is in changes, and the loss is
    normalised over the whole step), so the gradient is the same while padding shrinks. Longest
    first; ties keep the drawn order, so the result is deterministic.

    >>> by_length([7, 3, 5, 1], {7: 10, 3: 200, 5: 12, 1: 190}, [2, 2])
    [[3, 1], [5, 7]]
    >>> by_length([0, 1, 2], [5, 9, 5], [2, 1])
    [[1, 0], [2]]
    """
    if sum(sizes) != len(rows):
        raise ValueError(f"micro-batch sizes {sizes} do not add up to the step's {len(rows)} rows")
    order = sorted(rows, key=lambda i: -lengths[i])
    out, k = [], 0
    for n in sizes:
        out.append(order[k:k + n])
        k += n
    return out


def pack(rows: list[int], fits: Callable[[list[int]], bool], lengths=None) -> list[list[int]]:
    """The rows of one optimizer step packed into as few micro-batches as ``fits`` allows, longest first.

    Rows are taken longest first (by ``lengths``; as given without it) and each joins the current
    micro-batch while ``fits`` accepts the result, else starts the next one; a row alone is always
    accepted (the memory plan has checked that every row fits alone). Deterministic: ties keep the
    drawn order.

    >>> tokens = {0: 300, 1: 900, 2: 350, 3: 280}
    >>> pack([0, 1, 2, 3], lambda g: len(g) * max(tokens[i] for i in g) <= 1000, tokens)
    [[1], [2, 0], [3]]
    >>> pack([0, 1, 2, 3], lambda g: True, tokens)
    [[1, 2, 0, 3]]
    """
    order = sorted(rows, key=lambda i: -lengths[i]) if lengths is not None else list(rows)
    groups: list[list[int]] = []
    for i in order:
        if groups and fits([*groups[-1], i]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def regroup_step(batches: list[dict], features: list[dict], collate, plan=None) -> list[dict]:
    """Re-collate one optimizer step's micro-batches (each with ``row_index``) by :func:`by_length`.

    ``features[i]`` is row ``i`` as the collator takes it; tensors land on the device the batches were on.
    With a packed memory ``plan`` (:class:`.memory.Plan`) the rows are :func:`pack`-ed instead, each
    micro-batch marked ``tracekd_checkpoint`` (whether it recomputes its activations), and the step keeps
    its count of micro-batches (the trainer's accumulation counts them) by leading with empty ones,
    which the trainer skips: the last micro-batch, the one that synchronises gradients, is always real.
    """
    if not batches or any("row_index" not in b for b in batches):
        return batches
    sizes = [len(b["row_index"]) for b in batches]
    rows = [i for b in batches for i in b["row_index"].tolist()]
    lengths = {i: len(features[i]["input_ids"]) for i in rows}
    device = batches[0]["input_ids"].device
    if plan is None or plan.packed is None:
        groups, flags = by_length(rows, lengths, sizes), None
    else:
        shape = {i: (lengths[i], sum(1 for x in features[i]["labels"] if x != IGNORE_INDEX)) for i in rows}
        groups = pack(rows, lambda g: plan.packs([shape[i] for i in g]), lengths)
        flags = [plan.recomputes([shape[i] for i in g]) for g in groups]
    out = []
    for k, group in enumerate(groups):
        batch = collate([features[i] for i in group])
        batch = {key: v.to(device) if hasattr(v, "to") else v for key, v in batch.items()}
        if flags is not None:
            batch["tracekd_checkpoint"] = flags[k]
        out.append(batch)
    if len(out) < len(batches):
        empty = {key: v[:0] for key, v in out[0].items() if hasattr(v, "shape")}
        out = [dict(empty) for _ in range(len(batches) - len(out))] + out
    return out
