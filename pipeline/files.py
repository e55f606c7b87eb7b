"""Finding video files and naming them by their content.

Design decisions:

* :func:`iter_video_files` walks folders (sorted, hidden entries skipped, suffix in
  ``VIDEO_EXTENSIONS``) but yields paths named explicitly whatever their suffix, even
  when missing, so the caller reports a bad one rather than skipping it.
* ``video_id`` comes from :func:`content_video_id`: a hash of the file size and of
  sixteen 64 KiB slices spread over the file (the whole file when it is under 1 MiB).
  It is stable across paths, copies and runs, costs at most 1 MiB of reads on any
  file size, and still separates different encodes because container headers and
  indexes (which sit at the start or end) differ. A file edited only between the
  sampled slices while keeping its size would keep its id: accepted for video files.
* :func:`check_file` turns a missing, empty or unreadable path, or a directory, into a
  DecodeError with a readable reason before any ffmpeg runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from videomem.pipeline.errors import DecodeError

__all__ = ["VIDEO_EXTENSIONS", "check_file", "content_video_id", "iter_video_files"]

#: file suffixes the directory walk treats as videos (files named explicitly are
#: always taken, whatever their suffix, so a bad one is reported rather than skipped)
VIDEO_EXTENSIONS: Final = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg",
        ".mpeg", ".ts", ".mts", ".m2ts", ".3gp", ".ogv",
    }
)  # fmt: skip

_ID_SLICES: Final = 16
_ID_SLICE_BYTES: Final = 64 * 1024


def iter_video_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Video files under ``paths``: directories are walked recursively (sorted, hidden
    entries skipped, suffix in VIDEO_EXTENSIONS); other paths are yielded as given,
    even when missing, so the caller reports them."""
    for p in paths:
        path = Path(p)
        if not path.is_dir():
            yield path
            continue
        found = [
            f
            for f in path.rglob("*")
            if f.suffix.lower() in VIDEO_EXTENSIONS
            and f.is_file()
            and not any(part.startswith(".") for part in f.relative_to(path).parts)
        ]
        yield from sorted(found)


def content_video_id(path: str | os.PathLike[str]) -> str:
    """Stable id of a video file's content: 24 hex chars (96 bits) of SHA-256 over the
    size and sixteen 64 KiB slices spread evenly over the file (see module docstring)."""
    size = os.stat(path).st_size
    h = hashlib.sha256(b"videomem-content-id-v1\0")
    h.update(size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        if size <= _ID_SLICES * _ID_SLICE_BYTES:
            h.update(f.read())
        else:
            last = size - _ID_SLICE_BYTES
            for i in range(_ID_SLICES):
                f.seek(last * i // (_ID_SLICES - 1))  # first slice at 0, last at the end
                h.update(f.read(_ID_SLICE_BYTES))
    return h.hexdigest()[:24]


def check_file(uri: str | os.PathLike[str]) -> tuple[Path, int]:
    """(path, size in bytes) of an existing, readable file; DecodeError with a
    readable reason otherwise (missing, a directory, empty, permission denied)."""
    path = Path(uri)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DecodeError(str(uri), "file not found") from None
    except OSError as err:
        raise DecodeError(str(uri), f"cannot access file: {err.strerror}") from None
    if path.is_dir():
        raise DecodeError(str(uri), "is a directory, not a video file")
    if st.st_size == 0 and path.is_file():
        raise DecodeError(str(uri), "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise DecodeError(str(uri), "file is not readable (permission denied)")
    return path, st.st_size
