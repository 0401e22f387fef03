"""Shared test fixtures: the read-only data in ../shared/data (never copied into the repo).

``TRACEKD_SHARED`` overrides where the shared folder is (``TRACEKD_SHARED=/nonexistent`` runs the suite
as a fresh clone without it would). Tests that need the full shared datasets carry ``needs_babi`` /
``needs_cotemp`` and are skipped, with the reason, when the data is absent; every other test builds its
data with ``tracekd synth`` or reads small fixtures in tests/fixtures/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRACEKD_SHARED", ROOT.parent / "shared")) / "data"
BABI = SHARED / "babi" / "en-first-question"
COTEMP = SHARED / "cotempqa"

_HOW = "(set TRACEKD_SHARED to the folder holding data/, or see README 'Data')"
needs_babi = pytest.mark.skipif(not BABI.is_dir(), reason=f"needs the shared bAbI data at {BABI} {_HOW}")
needs_cotemp = pytest.mark.skipif(not COTEMP.is_dir(), reason=f"needs the shared CoTemp QA data at {COTEMP} {_HOW}")

sys.path.insert(0, str(Path(__file__).parent))  # `from conftest import BABI` in test modules


def _private_cache() -> None:
    """Point ``TRACEKD_CACHE`` at a folder of this test session, so tests never write stage records, calibrations
    or teacher answers into the user's cache (they would steer later dry-run estimates and precision choices).
    The models (``students/``, ``merged/``) are shared with the real cache by links and their weight hashes
    copied: they are derived from the packages, identical whoever writes them, and slow to make again."""
    import atexit
    import shutil
    import tempfile

    from tracekd.students import cache_dir

    real = cache_dir()
    private = Path(tempfile.mkdtemp(prefix="tracekd-test-cache-"))
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    for name in ("students", "merged"):
        (real / name).mkdir(parents=True, exist_ok=True)
        (private / name).symlink_to(real / name, target_is_directory=True)
    if (real / "weight-hashes.json").is_file():
        shutil.copy2(real / "weight-hashes.json", private / "weight-hashes.json")
    os.environ["TRACEKD_CACHE"] = str(private)


_private_cache()
