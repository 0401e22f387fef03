"""Which device and number format to use: measured facts about the machine, never guesses.

On CPU, bf16 pays off only with a bf16 matrix engine (Intel AMX). Without one, PyTorch's bf16
matrix products fall back to slower kernels: on this project's 2-core Xeon (AVX512-BF16, no AMX)
one LoRA optimizer step on 16 bAbI rows took 520 s under TRL's default bf16 autocast and 53 s in
float32. So ``auto`` means float32 on CPU unless AMX is present, bf16 on CUDA GPUs that support it
(fp16 on older ones).
"""

from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def decide_precision(requested: str, device: str, *, cuda_bf16: bool = False, cpu_amx: bool = False) -> str:
    """The number format for ``device`` given what the hardware supports.

    >>> decide_precision("auto", "cpu")
    'fp32'
    >>> decide_precision("auto", "cpu", cpu_amx=True)
    'bf16'
    >>> decide_precision("auto", "cuda", cuda_bf16=True)
    'bf16'
    >>> decide_precision("auto", "cuda")
    'fp16'
    >>> decide_precision("fp16", "cpu")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: precision 'fp16' needs a CUDA GPU; this run is on cpu (use fp32 or bf16)
    """
    from ..errors import ConfigError, did_you_mean

    if requested not in PRECISIONS:
        raise ConfigError(did_you_mean(requested, PRECISIONS, "precision"))
    if requested == "fp16" and device != "cuda":
        raise ConfigError(f"precision 'fp16' needs a CUDA GPU; this run is on {device} (use fp32 or bf16)")
    if requested != "auto":
        return requested
    if device == "cuda":
        return "bf16" if cuda_bf16 else "fp16"
    if device == "cpu":
        return "bf16" if cpu_amx else "fp32"
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


def precision(requested: str = "auto", dev: str | None = None) -> str:
    """:func:`decide_precision` for this machine."""
    import torch

    dev = dev or device()
    cuda_bf16 = False
    if dev == "cuda":  # from the compute capability: is_bf16_supported() also says True by emulation (T4, V100)
        from ..devices import bf16_native, cuda_precision

        cap = torch.cuda.get_device_capability()
        cuda_precision(requested, cap, torch.cuda.get_device_name())  # bf16 below 8.0: a clear error
        cuda_bf16 = bf16_native(cap)
    return decide_precision(requested, dev, cuda_bf16=cuda_bf16, cpu_amx=dev == "cpu" and cpu_has_amx())


def torch_dtype(prec: str):
    """
    >>> str(torch_dtype("bf16"))
    'torch.bfloat16'
    """
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[prec]
