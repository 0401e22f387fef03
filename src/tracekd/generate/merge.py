"""A student with an adapter merged in: the cache key that names its folder (both identities in full), and
the merged folder itself (vLLM's merge mode).

Kept apart from the vLLM backend so that keying or merging never imports it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .. import runtime, students
from ..errors import ConfigError
from ..io import sha256_file, sha256_text
from .hf import load_model_with_adapter

#: files of a PEFT adapter folder that hold its weights (tracekd writes safetensors)
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def adapter_hashes(adapter: Path) -> dict[str, str]:
    """Full sha256 of an adapter's weights and config; an adapter without weights is an error."""
    adapter = Path(adapter)
    weights = [n for n in ADAPTER_WEIGHT_FILES if (adapter / n).is_file()]
    if not weights:
        raise ConfigError(f"adapter folder {adapter} has no {ADAPTER_WEIGHT_FILES[0]} (nor {ADAPTER_WEIGHT_FILES[1]}); "
                          "is the training finished? (`tracekd train --resume` finishes it)")
    names = weights + [n for n in ("adapter_config.json",) if (adapter / n).is_file()]
    return {n: sha256_file(adapter / n) for n in names}


def merged_cache_key(base_weights: dict[str, str], adapter_files: dict[str, str], precision: str) -> str:
    """The cache folder name of a student merged with an adapter: both identities in full, and the precision.

    >>> base = {"model.safetensors": "a" * 64}
    >>> k = merged_cache_key(base, {"adapter_model.safetensors": "b" * 64}, "bf16")
    >>> k.endswith("-bf16"), k == merged_cache_key({"model.safetensors": "c" * 64},
    ...                                            {"adapter_model.safetensors": "b" * 64}, "bf16")
    (True, False)
    >>> merged_cache_key({}, {"adapter_model.safetensors": "b" * 64}, "bf16")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: the base student's weights could not be hashed ...
    """
    if not base_weights:
        raise ConfigError("the base student's weights could not be hashed (a Hub id not in the local cache?), so a "
                          "merged copy cannot be keyed to them: download the student first, or serve the adapter "
                          "as a LoRA request (leave out --merge-adapter)")
    if not any(n in adapter_files for n in ADAPTER_WEIGHT_FILES):
        raise ConfigError(f"no adapter weights among {sorted(adapter_files)}: refusing a merged-model key without them")
    blob = json.dumps({"base": base_weights, "adapter": adapter_files, "precision": precision}, sort_keys=True)
    return f"{sha256_text(blob)[:32]}-{precision}"


def merged_folder(student, adapter: Path, precision: str) -> Path:
    """The student with the adapter merged in (in ``precision``), saved once in the cache (vLLM's merge mode).

    Keyed by the base student's weight hashes and the adapter's full hashes (:func:`merged_cache_key`).
    """
    key = merged_cache_key(students.weight_hashes(student), adapter_hashes(adapter), precision)
    target = students.cache_dir() / "merged" / key
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:  # written beside, renamed into place: a killed merge never leaves a half folder
        load_model_with_adapter(student, adapter, runtime.torch_dtype(precision), "cpu").save_pretrained(tmp)
        students.load_tokenizer(student).save_pretrained(tmp)
        if not target.exists():
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
