"""Batched, resumable generation with a student and an optional LoRA adapter (``tracekd generate``).

``GenerateConfig`` holds every setting; ``generate(config) -> Path`` returns the generations JSONL
(one ``Generation`` per input row). Backends implement :class:`tracekd.generate.base.Generator`:
``hf`` (transformers, the CPU reference) and ``vllm`` (optional, GPU), imported only when chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import load_config
from .config import BACKENDS, GenerateConfig
from .run import generate as _generate
from .run import generate_from_settings as _gfs

__all__ = ["BACKENDS", "GenerateConfig", "generate", "generate_from_settings", "load_generate_config"]


def generate(config: GenerateConfig, **kwargs: Any) -> Path:
    """Generate for every row of ``config.input_file``; returns ``config.output_file``."""
    return _generate(config, **kwargs)


def generate_from_settings(settings: dict[str, Any], **fields: Any) -> Path:
    """Generate from an experiment's ``generate:`` settings plus caller fields (resumes by appending)."""
    return _gfs(settings, **fields)


def load_generate_config(source=None, overrides: dict[str, Any] | None = None) -> GenerateConfig:
    """A :class:`GenerateConfig` from a YAML file or dict plus overrides (unknown keys are errors)."""
    return load_config(GenerateConfig, source, overrides)
