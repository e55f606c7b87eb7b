"""Where videomem keeps what it builds once and reuses: ``$VIDEOMEM_CACHE``, else
``~/.cache/videomem``.

One function, in the lowest folder that needs it (pipeline/ caches the ffmpeg choice;
encoders/ the tiny test checkpoints and the named models), so every cache lives
under the same root and one variable moves them all; and one way to put a folder
there atomically (:func:`build_folder`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """The videomem cache root (not created here: writers create what they need)."""
    return Path(os.environ.get("VIDEOMEM_CACHE", Path.home() / ".cache" / "videomem"))


def build_folder(
    out: Path, build: Callable[[Path], None], ready: Callable[[Path], bool], force: bool = False
) -> Path:
    """Make folder ``out`` by ``build(tmp)`` in a temporary folder beside it, then rename
    it into place, so a reader never sees half of it. ``force`` replaces what is there.
    Another process that put a ``ready`` folder there first wins the race quietly."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        build(tmp)
        if force and out.exists():
            shutil.rmtree(out)
        try:
            tmp.rename(out)
        except OSError:
            if not ready(out):  # not a lost race with another process: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
