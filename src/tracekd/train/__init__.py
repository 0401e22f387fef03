"""LoRA / QLoRA fine-tuning of a student on one arm's SFT rows (``tracekd train``).

``TrainConfig`` holds every setting (defaults = the method's); ``train(config) -> Path`` returns the
adapter folder. Heavy libraries (torch, transformers, TRL, PEFT) are imported only when training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import load_config
from .config import METHOD_TARGET_MODULES, TrainConfig
from .run import train as _train
from .run import train_from_settings as _tfs

__all__ = ["METHOD_TARGET_MODULES", "TrainConfig", "train", "train_from_settings", "load_train_config"]


def train(config: TrainConfig, **kwargs: Any) -> Path:
    """Fine-tune ``config.student`` on ``config.train_file``; returns the adapter folder."""
    return _train(config, **kwargs)


def train_from_settings(settings: dict[str, Any], **fields: Any) -> Path:
    """Train from an experiment's ``train:`` settings plus caller fields (resumes by default)."""
    return _tfs(settings, **fields)


def load_train_config(source=None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file or dict plus overrides (unknown keys are errors)."""
    return load_config(TrainConfig, source, overrides)
