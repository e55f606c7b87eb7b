"""Where videomem keeps what it builds once and reuses: ``$VIDEOMEM_CACHE``, else
``~/.cache/videomem``.

One function, in the lowest folder that needs it (pipeline/ caches the ffmpeg choice;
encoders/ the tiny test checkpoints; qa/ the prepared models), so every cache lives
under the same root and one variable moves them all.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The videomem cache root (not created here: writers create what they need)."""
    return Path(os.environ.get("VIDEOMEM_CACHE", Path.home() / ".cache" / "videomem"))
