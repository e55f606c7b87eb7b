"""Where the repository and the shared test data are, for tests at any depth."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: real clips nobody on this project made; tests skip cleanly when absent
SHARED = Path(os.environ.get("VIDEOMEM_SHARED", REPO.parent / "shared"))
