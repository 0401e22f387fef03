"""The teacher's response cache: one JSON file per request, named by the request's key.

The key is the sha256 of the canonical request: the base model id, the messages, the sampling
settings and any extra body fields. A run looks every request up before sending it, so a re-run
(or another run asking the same question of the same model) sends nothing it already has an
answer for. Each entry is written atomically, so a kill never leaves half an entry; entries are
never rewritten, so several runs may share one cache folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import students
from ..errors import DataError
from ..io import write_json


def request_key(model: str, messages: list[dict], sampling: dict, extra_body: dict | None = None) -> str:
    """sha256 of the canonical request (sorted keys, no whitespace), as hex.

    >>> k = request_key("m", [{"role": "user", "content": "Q?"}], {"temperature": 0.0, "max_tokens": 8})
    >>> k == request_key("m", [{"content": "Q?", "role": "user"}], {"max_tokens": 8, "temperature": 0.0})
    True
    >>> k == request_key("m", [{"role": "user", "content": "Q?"}], {"temperature": 0.7, "max_tokens": 8})
    False
    >>> len(k)
    64
    """
    request = {"model": model, "messages": messages, "sampling": sampling}
    if extra_body:
        request["extra_body"] = extra_body
    text = json.dumps(request, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_cache_dir() -> Path:
    """``teacher/`` in tracekd's cache folder (``$TRACEKD_CACHE``, else ``~/.cache/tracekd``)."""
    return students.cache_dir() / "teacher"


class ResponseCache:
    """Raw responses by request key, one ``KEY[:2]/KEY.json`` file each."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The cached raw response of ``key``, or None; a damaged entry is an error naming its file."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            entry = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"damaged cache entry ({e.msg}); delete the file to ask again", path=p) from None
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("response"), dict):
            raise DataError("damaged cache entry (no matching key or response); delete the file to ask again",
                            path=p)
        return entry["response"]

    def put(self, key: str, request: dict, response: dict) -> None:
        """Store ``response`` (the raw message fields and usage) for ``key``, with the request it answers."""
        write_json(self.path(key), {"key": key, "request": request, "response": response})

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()
