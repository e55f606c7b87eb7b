"""Which ffmpeg binary videomem runs, and why.

Design decisions:

* Candidates: ``ffmpeg`` on ``PATH`` (the system one) and the static binary that the
  ``imageio-ffmpeg`` wheel ships. ``VIDEOMEM_FFMPEG`` (a path or a name on PATH) wins
  over both, always.
* When both exist, the faster one is used. "Faster" is a measurement when one was made
  on this machine for exactly these two binaries (:func:`measure_ffmpeg`, cached as
  JSON in the videomem cache dir, ``$VIDEOMEM_CACHE`` or ``~/.cache/videomem``; the
  decode benchmark makes it), else the newer version: ffmpeg's decoders and scalers
  get faster release by release (the imageio 9.0 build decoded an MS-MPEG4 clip 1.5x
  faster than Debian's 5.1), and comparing versions costs two ``-version`` calls, once
  per process, instead of a timed decode on every machine. Ties go to the system one.
* :func:`ffmpeg_info` says which binary, its version and the reason, for
  ``videomem probe`` and job summaries.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Final

from videomem.pipeline.cache import cache_dir
from videomem.pipeline.errors import DecodeError

__all__ = ["FFmpegChoice", "choose_ffmpeg", "ffmpeg_info", "ffmpeg_version", "measure_ffmpeg"]

CACHE_FILE: Final = "ffmpeg-choice.json"
_VERSION_RE = re.compile(r"ffmpeg version n?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class FFmpegChoice:
    path: str
    version: str  # "5.1.9", "9.0.2", or "unknown"
    source: str  # "VIDEOMEM_FFMPEG", "PATH" or "imageio-ffmpeg"
    reason: str  # one line: why this one


@functools.lru_cache(maxsize=16)
def _version(exe: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [exe, "-hide_banner", "-version"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = _VERSION_RE.search(out)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


def ffmpeg_version(exe: str) -> str:
    """``exe``'s release number ("5.1.9"), or "unknown" (a git build, no binary)."""
    v = _version(exe)
    return ".".join(map(str, v)) if v else "unknown"


def _bundled() -> str | None:
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return None


def _identity(exe: str) -> dict[str, Any]:
    st = os.stat(exe)
    return {"path": exe, "size": st.st_size, "mtime": st.st_mtime}


def _measured(candidates: list[str]) -> tuple[str, dict[str, float]] | None:
    """The cached measurement for exactly these binaries, if any."""
    try:
        data = json.loads((cache_dir() / CACHE_FILE).read_text())
        if data.get("candidates") != [_identity(c) for c in candidates]:
            return None
        seconds = {str(k): float(v) for k, v in data["seconds"].items()}
        return min(seconds, key=seconds.__getitem__), seconds
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@functools.lru_cache(maxsize=16)
def _choose(env: str | None, path_env: str | None, cache_key: str) -> FFmpegChoice:
    if env:
        exe = shutil.which(env)
        if exe is None:
            raise DecodeError("ffmpeg", f"VIDEOMEM_FFMPEG={env!r} is not an executable")
        return FFmpegChoice(exe, ffmpeg_version(exe), "VIDEOMEM_FFMPEG", "set by VIDEOMEM_FFMPEG")
    system = shutil.which("ffmpeg", path=path_env)
    bundled = _bundled()
    if system is None and bundled is None:
        raise DecodeError("ffmpeg", "no ffmpeg found on PATH and imageio-ffmpeg has none")
    if system is not None and (
        bundled is None or os.path.realpath(system) == os.path.realpath(bundled)
    ):
        return FFmpegChoice(system, ffmpeg_version(system), "PATH", "the only ffmpeg found")
    if bundled is not None and system is None:
        return FFmpegChoice(bundled, ffmpeg_version(bundled), "imageio-ffmpeg", "no ffmpeg on PATH")
    if system is None or bundled is None:  # both None: refused above; keeps mypy honest
        raise DecodeError("ffmpeg", "no ffmpeg found")
    measured = _measured([system, bundled])
    if measured is not None:
        exe, seconds = measured
        source = "PATH" if exe == system else "imageio-ffmpeg"
        times = ", ".join(f"{ffmpeg_version(p)}: {s:.2f} s" for p, s in seconds.items())
        return FFmpegChoice(
            exe, ffmpeg_version(exe), source, f"faster when measured here ({times})"
        )
    vs, vb = _version(system), _version(bundled)
    if vb is not None and (vs is None or vb > vs):
        reason = f"newer than the system ffmpeg ({ffmpeg_version(system)})"
        return FFmpegChoice(bundled, ffmpeg_version(bundled), "imageio-ffmpeg", reason)
    reason = f"not older than the imageio-ffmpeg one ({ffmpeg_version(bundled)})"
    return FFmpegChoice(system, ffmpeg_version(system), "PATH", reason)


def choose_ffmpeg() -> FFmpegChoice:
    """The ffmpeg to run (see the module docstring). Raises DecodeError when there is
    none or ``VIDEOMEM_FFMPEG`` names no executable."""
    cache = cache_dir() / CACHE_FILE
    try:
        stamp = f"{cache}:{cache.stat().st_mtime_ns}"
    except OSError:
        stamp = str(cache)
    return _choose(os.environ.get("VIDEOMEM_FFMPEG"), os.environ.get("PATH"), stamp)


def ffmpeg_info() -> dict[str, str]:
    """``{"path", "version", "source", "reason"}`` of the ffmpeg in use, for summaries;
    ``{"error": ...}`` when there is none."""
    try:
        return asdict(choose_ffmpeg())
    except DecodeError as err:
        return {"error": err.reason}


def measure_ffmpeg(repeats: int = 3, seconds: float = 8.0) -> dict[str, float]:
    """Time every candidate decoding the same H.264 clip (made here, 1280x720 30 fps,
    ``seconds`` long) to 224x224 at 1 fps, best of ``repeats``; cache the figures so
    :func:`choose_ffmpeg` prefers the faster binary from now on. Returns seconds per
    binary path (empty when fewer than two candidates exist)."""
    system, bundled = shutil.which("ffmpeg"), _bundled()
    if system is None or bundled is None or os.path.realpath(system) == os.path.realpath(bundled):
        return {}
    candidates = [system, bundled]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = os.path.join(tmp, "clip.mp4")
        make = [bundled, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi"]
        make += ["-i", f"testsrc2=size=1280x720:rate=30:duration={seconds:g}", "-c:v", "libx264"]
        make += ["-preset", "veryfast", "-g", "60", "-pix_fmt", "yuv420p", clip]
        subprocess.run(make, check=True, capture_output=True)
        for _ in range(repeats):  # interleaved, so drifting load hits both alike
            for exe in candidates:
                cmd = [exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-i", clip]
                cmd += ["-vf", "fps=1,scale=224:224", "-f", "null", "-"]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                dt = time.perf_counter() - t0
                out[exe] = min(out.get(exe, dt), dt)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tmp_file = cache / f".{CACHE_FILE}.{os.getpid()}.tmp"
    data = {"candidates": [_identity(c) for c in candidates], "seconds": out}
    tmp_file.write_text(json.dumps(data, indent=1))
    tmp_file.replace(cache / CACHE_FILE)  # atomic: readers never see half a file
    return out
