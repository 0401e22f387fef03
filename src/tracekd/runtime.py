"""What train and generate share to run a model: the machine, the rows, the prompt ids, quiet libraries.

**Device and number format**: measured facts about the machine, never guesses. On CPU whether bf16
pays off depends on the chip and the PyTorch build (AMX tiles, AVX512-BF16 or neither): on one 2-core
Xeon (AVX512-BF16, no AMX) a LoRA step under TRL's default bf16 autocast took 10x longer than in
float32, on another bf16 matmuls ran 4.5x faster. So on CPU ``auto`` is decided by measuring the
student (:mod:`tracekd.calibration`); without a measurement it is float32. On CUDA, ``auto`` is
bf16 where the GPU computes it natively, else fp16.

**Rows**: :func:`read_rows` reads and checks an SFT JSONL (TRL prompt-completion rows), :func:`subset`
draws the seeded ``max_examples`` subset; :func:`prompt_ids` renders a prompt through the chat
template, as training's loss mask and generation both see it.

torch and the model libraries are imported inside the functions that need them.
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .devices import bf16_native, cuda_precision
from .errors import ConfigError, DataError, did_you_mean
from .io import iter_jsonl
from .records import SFTRow

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def decide_precision(requested: str, device: str, *, cuda_bf16: bool = False, cpu_measured: str | None = None) -> str:
    """The number format for ``device`` given what the hardware supports (CPU: what was measured).

    >>> decide_precision("auto", "cpu")
    'fp32'
    >>> decide_precision("auto", "cpu", cpu_measured="bf16")
    'bf16'
    >>> decide_precision("fp32", "cpu", cpu_measured="bf16")
    'fp32'
    >>> decide_precision("auto", "cuda", cuda_bf16=True)
    'bf16'
    >>> decide_precision("auto", "cuda")
    'fp16'
    >>> decide_precision("fp16", "cpu")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: precision 'fp16' needs a CUDA GPU; this run is on cpu (use fp32 or bf16)
    """
    if requested not in PRECISIONS:
        raise ConfigError(did_you_mean(requested, PRECISIONS, "precision"))
    if requested == "fp16" and device != "cuda":
        raise ConfigError(f"precision 'fp16' needs a CUDA GPU; this run is on {device} (use fp32 or bf16)")
    if requested != "auto":
        return requested
    if device == "cuda":
        return "bf16" if cuda_bf16 else "fp16"
    if device == "cpu":
        return cpu_measured or "fp32"
    return "fp32"


def device() -> str:
    """``cuda`` when a CUDA GPU is visible, else ``cpu`` (MPS is not used: LoRA training there is unreliable)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (a native bf16 matrix engine), as PyTorch detects it."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe else False
    except Exception:  # noqa: BLE001 - an old or odd build: assume no AMX (float32 is always correct)
        return False


def precision(requested: str = "auto", device_type: str | None = None, *, cpu_measured: str | None = None) -> str:
    """:func:`decide_precision` for this machine (``cpu_measured``: a calibration's choice, see :mod:`tracekd.calibration`)."""
    import torch

    device_type = device_type or device()
    cuda_bf16 = False
    if device_type == "cuda":  # from the compute capability: is_bf16_supported() also says True by emulation (T4, V100)
        cap = torch.cuda.get_device_capability()
        cuda_precision(requested, cap, torch.cuda.get_device_name())  # bf16 below 8.0: a clear error
        cuda_bf16 = bf16_native(cap)
    return decide_precision(requested, device_type, cuda_bf16=cuda_bf16, cpu_measured=cpu_measured)


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once), from /proc/cpuinfo.

    Falls back to the CPUs in this process's affinity mask when /proc/cpuinfo says nothing.
    """
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores, cpu, phys = set(), None, "0"
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return max(1, len(allowed))
    for line in text.splitlines() + [""]:
        key, _, value = (x.strip() for x in line.partition(":"))
        if key == "processor":
            cpu = int(value)
        elif key == "physical id":
            phys = value
        elif key == "core id" and cpu in allowed:
            cores.add((phys, value))
    return max(1, len(cores) or len(allowed))


def use_physical_cores() -> int:
    """Set torch's intra-op threads to the physical cores (unless OMP_NUM_THREADS says otherwise); returns it."""
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(physical_cores())
    return torch.get_num_threads()


def torch_dtype(precision: str):
    """
    >>> str(torch_dtype("bf16"))
    'torch.bfloat16'
    """
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def base_causal_lm(model):
    """The ``*ForCausalLM`` module under PEFT / accelerate wrappers."""
    m = model
    for _ in range(4):
        if hasattr(m, "get_base_model"):
            m = m.get_base_model()
        elif hasattr(m, "module") and not hasattr(m, "lm_head"):
            m = m.module
        else:
            break
    return m


def cache_kwarg(model) -> str:
    """The keyword ``model.forward`` takes its key/value cache by, and its output names it: ``cache`` in
    transformers 5, ``past_key_values`` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


# ---------------------------------------------------------------------------------------------
# rows and prompts

@dataclass(frozen=True)
class LineRow:
    """An SFT row and the line of its file (for error messages)."""

    line: int
    row: SFTRow


def _check_messages(messages: Any, fld: str, path: Path, line: int) -> None:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise DataError("must be a non-empty list of messages", path=path, line=line, field=fld)
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"message {i} must be {{'role': str, 'content': str}}", path=path, line=line, field=fld)


def read_rows(path: str | Path, *, need_completion: bool = True) -> list[LineRow]:
    """Read and check an SFT JSONL: every row well-formed, ids unique."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    out: list[LineRow] = []
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        try:
            row = SFTRow.from_dict(obj)
        except DataError as e:
            raise e.located(path, line) from None
        _check_messages(row.prompt, "prompt", path, line)
        if need_completion:
            _check_messages(row.completion, "completion", path, line)
            if any(m["role"] != "assistant" for m in row.completion):
                raise DataError("completion messages must have role 'assistant'", path=path, line=line,
                                field="completion")
        if row.id in seen:
            raise DataError(f"duplicate id {row.id!r} (first on line {seen[row.id]})", path=path, line=line,
                            field="id")
        seen[row.id] = line
        out.append(LineRow(line, row))
    if not out:
        raise DataError("no rows", path=path)
    return out


def subset(rows: Sequence[Any], n: int | None, seed: int) -> list[Any]:
    """A seeded random subset of ``n`` rows, kept in file order (all rows when ``n`` is None or large).

    >>> subset(list(range(10)), 3, seed=0)
    [0, 6, 9]
    >>> subset(list(range(4)), None, seed=0)
    [0, 1, 2, 3]
    """
    if n is None or n >= len(rows):
        return list(rows)
    if n < 1:
        raise DataError(f"max_examples must be >= 1, got {n}")
    keep = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


def token_ids(encoded: Any) -> list[int]:
    """The ids of a tokenizer's output (a ``BatchEncoding`` / dict with ``input_ids``, or the ids themselves)."""
    ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
    return list(ids)


def prompt_ids(tokenizer, messages: Sequence[dict], chat_template_kwargs: dict | None = None) -> list[int]:
    """Token ids of a prompt through the chat template, ending with the generation prompt."""
    return token_ids(tokenizer.apply_chat_template(list(messages), tokenize=True, add_generation_prompt=True,
                                              return_dict=True, **(chat_template_kwargs or {})))



def quiet_libraries() -> None:
    """Silence the libraries' own progress bars and deprecation chatter (tracekd shows its own progress)."""
    import datasets
    import transformers

    datasets.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)(\.|$)")
