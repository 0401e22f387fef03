"""The ``Generator`` protocol every backend implements, the backends by name, and the pure pieces they share.

A backend turns token-id prompts (already rendered through the chat template with the generation
prompt, so every backend sees exactly the same input) into completions; the driver in
:mod:`tracekd.generate.run` does the reading, ordering, batching, resuming and writing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, Sequence

from ..registry import Registry

#: backend name -> ``make_generator(config, student, tokenizer, adapter, precision, device) -> Generator``,
#: imported only when chosen
BACKENDS: Registry = Registry("backend")
BACKENDS.add("hf", "tracekd.generate.hf:make_generator", "transformers, CPU or GPU (the reference)")
BACKENDS.add("vllm", "tracekd.generate.vllm:make_generator", "vLLM, a CUDA GPU (optional extra)")


@dataclass(frozen=True)
class Completion:
    """One backend output: decoded text (special tokens removed), why it ended, tokens generated."""

    text: str
    finish_reason: str | None  # "stop" | "length" | None (ended otherwise, e.g. aborted)
    completion_tokens: int


class Generator(Protocol):
    """A generation backend."""

    name: str

    def generate(self, prompts: Sequence[Sequence[int]], *, seed: int) -> list[Completion]:
        """Complete every prompt (token ids); outputs in the order of ``prompts``."""
        ...

    def close(self) -> None:
        """Free the model (GPU memory)."""
        ...


def cut_at_stop(tokens: Sequence[int], stop_ids: set[int], max_new_tokens: int) -> tuple[list[int], str]:
    """The completion up to and including its first stop token, and the finish reason.

    Tokens after the first stop token are padding of a finished row in a batch.

    >>> cut_at_stop([5, 6, 2, 2, 2], {2}, 5)
    ([5, 6, 2], 'stop')
    >>> cut_at_stop([5, 6, 7], {2}, 3)
    ([5, 6, 7], 'length')
    """
    for i, t in enumerate(tokens):
        if t in stop_ids:
            return list(tokens[: i + 1]), "stop"
    return list(tokens), "length"


def batches(order: Sequence[int], size: int) -> list[list[int]]:
    """Split an ordering into consecutive batches of ``size``.

    >>> batches([3, 1, 2, 0, 4], 2)
    [[3, 1], [2, 0], [4]]
    """
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [list(order[i:i + size]) for i in range(0, len(order), size)]


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices from the longest prompt to the shortest (stable: ties keep input order).

    Longest first: a batch that does not fit in memory fails at once, and the progress bar's
    estimate errs on the safe side.

    >>> length_order([5, 9, 5, 1])
    [1, 0, 2, 3]
    """
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def batch_seed(seed: int, ids: Sequence[str]) -> int:
    """A sampling seed for one batch from the run's seed and the batch's ids (stable across resumes).

    >>> batch_seed(42, ["a", "b"]) == batch_seed(42, ["a", "b"])
    True
    >>> batch_seed(42, ["a"]) != batch_seed(43, ["a"])
    True
    """
    h = hashlib.sha256(f"{seed}\x00" .encode() + "\x00".join(ids).encode("utf-8")).digest()
    return int.from_bytes(h[:4], "big")
