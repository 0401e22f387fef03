"""File I/O every stage shares: atomic writes, JSONL read/append, hashes and manifests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .errors import ConfigError, DataError

T = TypeVar("T")


def dumps(obj: Any, **kw: Any) -> str:
    """One canonical JSON line: UTF-8 kept, keys in insertion order, no trailing spaces. Always valid
    JSON: a NaN or infinity (which strict parsers, jq and JavaScript reject) is written as ``null``.

    >>> dumps({"a": 1, "b": "é"})
    '{"a": 1, "b": "é"}'
    >>> dumps({"p": float("nan"), "ci": (0.5, float("inf"))})
    '{"p": null, "ci": [0.5, null]}'
    """
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, **kw)
    except ValueError:  # out-of-range floats somewhere: null them (results say why in their notes)
        return json.dumps(_finite_only(obj), ensure_ascii=False, allow_nan=False, **kw)


def _finite_only(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite_only(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_only(v) for v in obj]
    return obj


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


#: the file every writer of a folder puts its own file list in; readers of data folders skip it
MANIFEST = "manifest.json"


def refuse_existing(path: str | Path, overwrite: bool, what: str = "output") -> bool:
    """Raise a ConfigError when ``path`` exists (a non-empty folder or a file) and ``overwrite`` is off.

    Returns whether something is there (to be replaced). An empty folder counts as absent.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> refuse_existing(d, overwrite=False)
    False
    >>> _ = (d / "x.txt").write_text("old")
    >>> refuse_existing(d, overwrite=False)
    Traceback (most recent call last):
    ...
    tracekd.errors.ConfigError: ... already holds 1 entry (x.txt); pass --overwrite to replace it (nothing is merged)
    >>> refuse_existing(d, overwrite=True)
    True
    """
    path = Path(path)
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir())
        if not names:
            return False
        if not overwrite:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise ConfigError(f"{what} {path} already holds {len(names)} entr{'ies' if len(names) != 1 else 'y'} "
                              f"({shown}); pass --overwrite to replace it (nothing is merged)")
        return True
    if path.exists():
        if not overwrite:
            raise ConfigError(f"{what} {path} already exists; pass --overwrite to replace it")
        return True
    return False


@contextlib.contextmanager
def replace_dir(out: str | Path, overwrite: bool = False, what: str = "output folder") -> Iterator[Path]:
    """Write a folder as a whole: yield a fresh temporary sibling; when the block succeeds it takes ``out``'s place.

    An existing non-empty ``out`` is refused unless ``overwrite`` (see :func:`refuse_existing`);
    with it, the old folder is swapped out and deleted only after the new one is complete, so no
    old file ever survives next to new ones. A failed block leaves ``out`` as it was.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "build"
    >>> with replace_dir(out) as tmp:
    ...     _ = (tmp / "old-arm.txt").write_text("1")
    >>> with replace_dir(out, overwrite=True) as tmp:
    ...     _ = (tmp / "new.txt").write_text("2")
    >>> sorted(p.name for p in out.iterdir())
    ['new.txt']
    """
    out = Path(out)
    refuse_existing(out, overwrite, what)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clear_listed(out: str | Path, overwrite: bool, what: str = "output folder", kind: str = "") -> list[str]:
    """Make ``out`` ready for a writer that records its files in ``out/manifest.json``.

    A non-empty ``out`` is refused unless ``overwrite``; with it, the files the old manifest lists
    (and the manifest) are deleted and nothing else. Returns the names of the files left in place
    (not written by tracekd), so the caller can say so. With ``kind``, a manifest whose ``kind``
    does not start with it (another writer's folder, e.g. a build) is refused, even with ``overwrite``.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for name in ("qa1_test.txt", "notes.md"):
    ...     _ = (d / name).write_text("x")
    >>> _ = (d / "manifest.json").write_text('{"files": {"qa1_test.txt": "..."}}')
    >>> clear_listed(d, overwrite=True)
    ['notes.md']
    >>> sorted(p.name for p in d.iterdir())
    ['notes.md']
    """
    out = Path(out)
    if not refuse_existing(out, overwrite, what):
        return []
    listed: list[str] = []
    if (out / MANIFEST).is_file():
        m = read_json(out / MANIFEST)
        found = str(m.get("kind", "")) if isinstance(m, dict) else ""
        if kind and not found.startswith(kind):
            raise ConfigError(f"{what} {out} holds the output of another command (manifest kind {found!r}); "
                              "choose another folder")
        files = m.get("files") if isinstance(m, dict) else None
        listed = list(files) if isinstance(files, dict) else []
    for name in listed:
        target = (out / name).resolve()
        if out.resolve() not in target.parents:  # never outside the folder
            raise DataError(f"lists {name!r}, which is outside the folder", path=out / MANIFEST, field="files")
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
    with contextlib.suppress(FileNotFoundError):
        (out / MANIFEST).unlink()
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, dumps(obj, indent=2) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows atomically, one JSON object a line; returns the number written."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            n += 1
    return n


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (a leading BOM dropped, line ends removed).

    Undecodable bytes raise a DataError naming the file and the line they are on.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path, line=line) from None
    return text.splitlines()


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
