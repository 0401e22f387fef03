"""GPU decisions as pure functions of what a device reports, and the few places that apply them.

Every decision here is a function of plain numbers (device count, compute capability, memory), so
it is tested on machines without a GPU by passing simulated values:

- :func:`plan_gpus`: which GPU(s) a training process uses. Without a distributed launcher, exactly
  one (the first visible, or ``--device cuda:N``): several GPUs visible to one process would make
  transformers wrap the model in ``nn.DataParallel``, which TRL's trainers do not support. Under
  ``accelerate launch`` (``WORLD_SIZE`` > 1) every process trains data-parallel on its own GPU.
- :func:`cuda_precision`: bf16 only where the GPU computes it natively (compute capability >= 8.0);
  ``torch.cuda.is_bf16_supported()`` also answers True on a T4 / V100 by emulation, and vLLM refuses
  bf16 there.
- :func:`vllm_memory_shortfall`: vLLM reserves ``gpu_memory_utilization`` of the whole device and
  refuses to start when less is free; tracekd says how much it needs and how much is free.
- :func:`enable_determinism`: the deterministic switches PyTorch has (``--deterministic``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, MutableMapping

from .errors import ConfigError

#: the first compute capability with native bf16 arithmetic (Ampere: A100, RTX 30xx; later: L4, H100)
BF16_MIN_CAPABILITY = (8, 0)
#: value of ``CUBLAS_WORKSPACE_CONFIG`` PyTorch documents for deterministic cuBLAS
CUBLAS_WORKSPACE = ":4096:8"

_GIB = 1024 ** 3


# --------------------------------------------------------------------------- which GPU


@dataclass(frozen=True)
class GpuPlan:
    """Where one training process runs.

    ``cuda_visible_devices`` is the value to give ``CUDA_VISIBLE_DEVICES`` before CUDA starts
    (None: leave it as it is); ``device`` is the device as this process will then see it.
    """

    mode: str  # "cpu" | "single" | "data-parallel"
    device: str
    world_size: int
    cuda_visible_devices: str | None
    message: str


def parse_device(requested: str) -> tuple[str, int | None]:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` -> (kind, index).

    >>> parse_device("cuda:1"), parse_device("auto"), parse_device("cuda")
    (('cuda', 1), ('auto', None), ('cuda', None))
    >>> parse_device("gpu1")
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: device must be auto, cpu, cuda or cuda:N, got 'gpu1'
    """
    text = str(requested).strip().lower()
    if text in ("auto", "cpu", "cuda"):
        return text, None
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {requested!r}")


def plan_gpus(requested: str, visible: int, *, world_size: int = 1,
              cuda_visible_devices: str | None = None) -> GpuPlan:
    """Decide the GPU(s) of a training process from the device count it sees.

    ``visible`` is ``torch.cuda.device_count()``; ``world_size`` the number of processes of a
    distributed launch (``WORLD_SIZE``; 1 for a plain ``tracekd train``).

    >>> plan_gpus("auto", 0).mode
    'cpu'
    >>> p = plan_gpus("auto", 4)
    >>> p.mode, p.device, p.cuda_visible_devices
    ('single', 'cuda:0', '0')
    >>> p = plan_gpus("cuda:1", 2, cuda_visible_devices="4,6")
    >>> p.device, p.cuda_visible_devices
    ('cuda:0', '6')
    >>> plan_gpus("auto", 1).cuda_visible_devices is None
    True
    >>> plan_gpus("auto", 4, world_size=4).mode
    'data-parallel'
    >>> plan_gpus("auto", 0, world_size=2).device     # accelerate launch over gloo on CPU
    'cpu'
    >>> plan_gpus("cuda:2", 2)
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: --device cuda:2, but only 2 GPU(s) are visible (cuda:0 .. cuda:1)
    """
    kind, index = parse_device(requested)
    if world_size > 1:
        if index is not None or kind == "cpu":
            raise ConfigError(f"--device {requested} picks one device, but this is a distributed launch of "
                              f"{world_size} processes (accelerate launch / torchrun), which gives each process its "
                              "own GPU; leave --device at auto")
        if visible == 0:
            return GpuPlan("data-parallel", "cpu", world_size, None,
                           f"training data-parallel over {world_size} CPU processes (distributed launch, no GPU)")
        return GpuPlan("data-parallel", "cuda", world_size, None,
                       f"training data-parallel over {world_size} processes (one GPU each, distributed launch)")
    if kind == "cpu":
        hide = "" if visible > 0 else None
        return GpuPlan("cpu", "cpu", 1, hide, "training on CPU" + (" (GPUs hidden: --device cpu)" if visible else ""))
    if visible == 0:
        if kind == "cuda":
            raise ConfigError(f"--device {requested}, but no CUDA GPU is visible to this process")
        return GpuPlan("cpu", "cpu", 1, None, "training on CPU (no CUDA GPU visible)")
    index = index or 0
    if index >= visible:
        raise ConfigError(f"--device cuda:{index}, but only {visible} GPU(s) are visible "
                          f"(cuda:0 .. cuda:{visible - 1})")
    if visible == 1:
        return GpuPlan("single", "cuda:0", 1, None, "training on one GPU (cuda:0, the only one visible)")
    listed = [d.strip() for d in cuda_visible_devices.split(",")] if cuda_visible_devices else []
    physical = listed[index] if len(listed) == visible else str(index)
    return GpuPlan("single", "cuda:0", 1, physical,
                   f"training on one GPU: cuda:{index} of the {visible} visible (CUDA_VISIBLE_DEVICES={physical}); "
                   "for data-parallel training on all of them: accelerate launch -m tracekd.cli train ...")


def visible_gpus() -> list[str]:
    """CUDA devices this process may use, without importing torch (``CUDA_VISIBLE_DEVICES``, else the driver's list).

    >>> import os; os.environ["CUDA_VISIBLE_DEVICES"] = "2,3"; visible_gpus()
    ['2', '3']
    >>> os.environ["CUDA_VISIBLE_DEVICES"] = ""; visible_gpus()
    []
    >>> del os.environ["CUDA_VISIBLE_DEVICES"]
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    gpus = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(gpus.iterdir())))] if gpus.is_dir() else []


def world_size(environ: MutableMapping[str, str] | None = None) -> int:
    """Processes of a distributed launch (``WORLD_SIZE`` set by accelerate launch / torchrun), else 1.

    >>> world_size({"WORLD_SIZE": "4"}), world_size({})
    (4, 1)
    """
    env = os.environ if environ is None else environ
    try:
        return max(1, int(env.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def select_training_device(requested: str = "auto", *, environ: MutableMapping[str, str] | None = None,
                           log: Callable[[str], None] = print) -> GpuPlan:
    """Apply :func:`plan_gpus` to this process: restrict ``CUDA_VISIBLE_DEVICES`` before CUDA starts.

    Must run before anything initialises CUDA (model loading, ``torch.cuda.is_available()``);
    ``torch.cuda.device_count()`` reads the count through NVML without doing so.
    """
    import torch

    env = os.environ if environ is None else environ
    plan = plan_gpus(requested, torch.cuda.device_count(), world_size=world_size(env),
                     cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"))
    if plan.cuda_visible_devices is not None and env.get("CUDA_VISIBLE_DEVICES") != plan.cuda_visible_devices:
        if torch.cuda.is_initialized():
            raise ConfigError("CUDA was started in this process before tracekd could choose the GPU to train on; "
                              "run training in its own process, or set CUDA_VISIBLE_DEVICES yourself")
        env["CUDA_VISIBLE_DEVICES"] = plan.cuda_visible_devices
    if plan.mode != "cpu" or requested == "cpu":
        log(plan.message)
    return plan


def check_single_process_gpus(n_gpu: int, world: int) -> None:
    """Refuse ``nn.DataParallel``: one process must not drive several GPUs (checked on the Trainer's count).

    >>> check_single_process_gpus(1, 1); check_single_process_gpus(1, 4)
    >>> check_single_process_gpus(2, 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: 2 GPUs are visible to this single training process ...
    """
    if n_gpu > 1 and world <= 1:
        raise ConfigError(f"{n_gpu} GPUs are visible to this single training process (CUDA started before tracekd "
                          "could pick one); set CUDA_VISIBLE_DEVICES=N, or train on all of them with "
                          "accelerate launch -m tracekd.cli train ...")


# --------------------------------------------------------------------------- number format


def bf16_native(capability: tuple[int, int]) -> bool:
    """Whether a GPU of this compute capability computes bf16 natively.

    >>> bf16_native((7, 5)), bf16_native((8, 0)), bf16_native((9, 0))
    (False, True, True)
    """
    return tuple(capability) >= BF16_MIN_CAPABILITY


def cuda_precision(requested: str, capability: tuple[int, int], name: str = "this GPU") -> str:
    """The number format on a CUDA GPU of ``capability``: bf16 at >= 8.0, fp16 below.

    >>> cuda_precision("auto", (8, 0)), cuda_precision("auto", (7, 5)), cuda_precision("auto", (7, 0))
    ('bf16', 'fp16', 'fp16')
    >>> cuda_precision("fp32", (7, 5))
    'fp32'
    >>> cuda_precision("bf16", (7, 5), "Tesla T4")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: precision bf16 needs compute capability >= 8.0; Tesla T4 has 7.5 ...
    """
    native = bf16_native(capability)
    if requested == "auto":
        return "bf16" if native else "fp16"
    if requested == "bf16" and not native:
        raise ConfigError(f"precision bf16 needs compute capability >= 8.0; {name} has {capability[0]}.{capability[1]} "
                          "(PyTorch only emulates bf16 there and vLLM refuses it): use precision auto or fp16")
    return requested


# --------------------------------------------------------------------------- vLLM memory


def vllm_memory_shortfall(total: int, free: int, gpu_memory_utilization: float) -> str | None:
    """Why vLLM cannot start with this much free memory (None when it can).

    vLLM reserves ``gpu_memory_utilization`` of the device's total memory and refuses to start
    when less than that is free.

    >>> vllm_memory_shortfall(80 * 2**30, 79 * 2**30, 0.9) is None
    True
    >>> print(vllm_memory_shortfall(80 * 2**30, 20 * 2**30, 0.9))  # doctest: +NORMALIZE_WHITESPACE
    vLLM needs gpu_memory_utilization 0.9 x 80.0 GiB = 72.0 GiB free on the GPU at start, and 20.0 GiB is free
    (60.0 GiB held by other processes, or by an earlier model stage in this process). Run each model stage in its
    own process (tracekd run does so on CUDA), free the GPU, or lower --gpu-memory-utilization to at most 0.24.
    """
    if not 0 < gpu_memory_utilization <= 1:
        raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    need = total * gpu_memory_utilization
    if free >= need:
        return None
    fits = math.floor((free / total - 0.01) * 100) / 100 if total else 0.0
    lower = (f"lower --gpu-memory-utilization to at most {fits:.2f}" if fits > 0
             else "no utilisation fits in what is free")
    return (f"vLLM needs gpu_memory_utilization {gpu_memory_utilization:g} x {total / _GIB:.1f} GiB = "
            f"{need / _GIB:.1f} GiB free on the GPU at start, and {free / _GIB:.1f} GiB is free "
            f"({(total - free) / _GIB:.1f} GiB held by other processes, or by an earlier model stage in this "
            f"process). Run each model stage in its own process (tracekd run does so on CUDA), free the GPU, or "
            f"{lower}.")


def check_vllm_memory(gpu_memory_utilization: float) -> None:
    """Raise a :class:`ConfigError` stating needed and free memory when vLLM would refuse to start."""
    import torch

    free, total = torch.cuda.mem_get_info()
    problem = vllm_memory_shortfall(total, free, gpu_memory_utilization)
    if problem:
        raise ConfigError(problem)


# --------------------------------------------------------------------------- determinism


def enable_determinism(environ: MutableMapping[str, str] | None = None) -> dict:
    """Turn on the deterministic switches PyTorch has; returns what was set (for the manifest).

    Sets ``CUBLAS_WORKSPACE_CONFIG`` (unless already set; read when cuBLAS starts, so call this
    before the model is loaded), ``torch.use_deterministic_algorithms(True, warn_only=True)``
    (ops without a deterministic kernel warn instead of failing) and cuDNN's deterministic mode.
    CPU runs of tracekd are bit-identical without this; on CUDA, bitsandbytes kernels, SDPA's
    backward pass and paged optimizers stay non-deterministic even with it.
    """
    import torch

    env = os.environ if environ is None else environ
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return {"use_deterministic_algorithms": "warn_only", "CUBLAS_WORKSPACE_CONFIG": env["CUBLAS_WORKSPACE_CONFIG"],
            "cudnn_deterministic": True}
