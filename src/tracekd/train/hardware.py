"""Which device and number format to use: measured facts about the machine, never guesses.

On CPU whether bf16 pays off depends on the chip and the PyTorch build (AMX tiles, AVX512-BF16 or
neither): on one 2-core Xeon (AVX512-BF16, no AMX) a LoRA step under TRL's default bf16 autocast
took 10x longer than in float32, on another bf16 matmuls ran 4.5x faster. So on CPU ``auto`` is
decided by measuring the student (:mod:`.calibration`); without a measurement it is float32.
On CUDA, ``auto`` is bf16 where the GPU computes it natively, else fp16.
"""

from __future__ import annotations

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


def precision(requested: str = "auto", dev: str | None = None, *, cpu_measured: str | None = None) -> str:
    """:func:`decide_precision` for this machine (``cpu_measured``: a calibration's choice, see :mod:`.calibration`)."""
    import torch

    dev = dev or device()
    cuda_bf16 = False
    if dev == "cuda":  # from the compute capability: is_bf16_supported() also says True by emulation (T4, V100)
        from ..devices import bf16_native, cuda_precision

        cap = torch.cuda.get_device_capability()
        cuda_precision(requested, cap, torch.cuda.get_device_name())  # bf16 below 8.0: a clear error
        cuda_bf16 = bf16_native(cap)
    return decide_precision(requested, dev, cuda_bf16=cuda_bf16, cpu_measured=cpu_measured)


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once), from /proc/cpuinfo.

    Falls back to the CPUs in this process's affinity mask when /proc/cpuinfo says nothing.
    """
    import os

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
    import os

    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(physical_cores())
    return torch.get_num_threads()


def torch_dtype(prec: str):
    """
    >>> str(torch_dtype("bf16"))
    'torch.bfloat16'
    """
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[prec]
