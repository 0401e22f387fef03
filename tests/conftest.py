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
