"""File I/O every stage shares: atomic writes, JSONL read/append, hashes and manifests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .errors import DataError

T = TypeVar("T")


def dumps(obj: Any) -> str:
    """One canonical JSON line: UTF-8 kept, keys in insertion order, no trailing spaces.

    >>> dumps({"a": 1, "b": "é"})
    '{"a": 1, "b": "é"}'
    """
    return json.dumps(obj, ensure_ascii=False)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w"):
    """Open a temporary file beside ``path``; rename it over ``path`` only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows atomically, one JSON object a line; returns the number written."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            n += 1
    return n


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=path, line=e.lineno) from None


def iter_jsonl(path: str | Path, *, skip_blank: bool = True) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each line; a bad line raises DataError naming it.

    A final line with no newline that does not parse is treated as an interrupted append and
    skipped (the appender wrote it last; see :func:`append_jsonl`).
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            if skip_blank:
                continue
            raise DataError("empty line", path=path, line=i)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) and not line.endswith("\n"):
                return  # torn last write of an interrupted append
            raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=path, line=i) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=i)
        yield i, obj


def read_records(path: str | Path, cls: Callable[..., T]) -> list[T]:
    """Read a JSONL file of records (``cls.from_dict``), naming file and line on a bad one."""
    out = []
    for i, obj in iter_jsonl(path):
        try:
            out.append(cls.from_dict(obj))  # type: ignore[attr-defined]
        except DataError as e:
            raise e.located(path, i) from None
    return out


def write_records(path: str | Path, records: Iterable[Any]) -> int:
    return write_jsonl(path, (r.to_dict() for r in records))


class JsonlAppender:
    """Append-only JSONL writer for resumable stages: each record is one ``write`` + flush + fsync.

    On open, a torn final line (from a kill mid-write) is cut off so the file stays valid.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _truncate_torn_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self._f.write(dumps(row) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _truncate_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(paths: Iterable[str | Path]) -> dict[str, str]:
    """sha256 of every file under the given files/folders, keyed by path."""
    out = {}
    for p in paths:
        p = Path(p)
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            out[str(f)] = sha256_file(f)
    return out


def sha256_text(text: str) -> str:
    """
    >>> sha256_text("abc")[:12]
    'ba7816bf8f01'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_VERSIONED = ("tracekd", "numpy", "scipy", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
              "gguf", "bitsandbytes", "vllm", "matplotlib")


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of Python and of the libraries that shape tracekd's results (installed ones only)."""
    out = {"python": platform.python_version()}
    for name in (*_VERSIONED, *extra):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def manifest(*, kind: str, config: dict, seed: int | None, files: dict[str, str] | None = None,
             **more: Any) -> dict:
    """The manifest written beside every artefact: what made it, from what, with which versions."""
    m = {
        "kind": kind,
        "tracekd_version": __import__("tracekd").__version__,
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]) if sys.argv else "",
        "config": config,
        "seed": seed,
        "versions": versions(),
    }
    m.update(more)
    if files is not None:
        m["files"] = files
    return m
