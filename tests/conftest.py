"""Shared test fixtures: the read-only data in ../shared/data (never copied into the repo)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRACEKD_SHARED", ROOT.parent / "shared")) / "data"
BABI = SHARED / "babi" / "en-first-question"
COTEMP = SHARED / "cotempqa"

sys.path.insert(0, str(Path(__file__).parent))  # `from conftest import BABI` in test modules

