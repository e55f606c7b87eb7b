"""Probing a video file: streams, duration, frame rate, size, codec and rotation.

Design decisions:

* **probe** uses ffprobe's JSON when ffprobe exists, otherwise parses
  ``ffmpeg -i`` stderr. Limits of the ffmpeg-only path: duration has 10 ms precision,
  the frame count is unknown (None), fps is the rounded figure ffmpeg prints (common
  NTSC rates are snapped back to n*1000/1001), the duration is the container's (it
  may include a longer audio track), and only the first input program is read. When
  neither reports a duration, the video stream is stream-copied to the null muxer
  (no decoding) and its frames counted.
* The first audio stream is reported (codec, sample rate, channels) so the speech
  track can tell "no audio" from a failure without opening the file again.
* ``VideoSource.rotation`` is clockwise degrees; the container's display matrix is
  counter-clockwise, hence the sign flip in :func:`_clockwise`. Display-matrix
  mirroring is not read (only rotation).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from videomem.pipeline.errors import DecodeError
from videomem.pipeline.ffmpeg import (
    AUTO,
    _Auto,
    find_ffmpeg,
    find_ffprobe,
    run_captured,
    tail_lines,
)
from videomem.pipeline.files import check_file, content_video_id
from videomem.pipeline.types import VideoSource

__all__ = ["PROBE_TIMEOUT_S", "probe"]

#: how long one probe command may run
PROBE_TIMEOUT_S: Final = 60.0


@dataclass
class _Stream:
    kind: str  # "video", "audio", ...
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    num_frames: int | None = None
    duration: float | None = None
    rotation: int = 0  # clockwise degrees
    attached_pic: bool = False  # cover art in audio files: a "video" stream of 1 image
    sample_rate: int | None = None  # audio
    channels: int | None = None  # audio


def _snap_fps(fps: float | None) -> float | None:
    """Undo the rounding of NTSC rates in ffmpeg's printed fps (29.97 -> 30000/1001)."""
    if fps is None or not math.isfinite(fps) or fps <= 0:
        return None
    for base in (24, 30, 48, 60, 120, 240):
        exact = base * 1000 / 1001
        if abs(fps - exact) < 0.006:
            return exact
    return fps


def _ratio(text: Any) -> float | None:
    """'30000/1001' -> 29.97..., '0/0' or junk -> None."""
    try:
        num, _, den = str(text).partition("/")
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _int(text: Any) -> int | None:
    try:
        value = int(str(text))
    except ValueError:
        return None
    return value if value > 0 else None


def _clockwise(display_matrix_degrees: float) -> int:
    """Display-matrix rotation (counter-clockwise) -> clockwise quarter turns in degrees."""
    return int(round(-display_matrix_degrees / 90.0)) * 90 % 360


def _open_reason(stderr: str, tool: str) -> str:
    """A one-line reason for ffmpeg/ffprobe failing to open an input."""
    if "detected only with low score" in stderr:  # no format really matched
        return f"not a video file: its contents match no format {tool} knows"
    if "moov atom not found" in stderr:
        return "not a playable MP4/MOV: its index (moov atom) is missing, so the file is truncated, still being written, or not a video"
    if "Invalid data found when processing input" in stderr:
        return f"not a recognisable video ({tool}: invalid data found when processing input)"
    if "End of file" in stderr:
        return f"unexpected end of file ({tool}); the file looks truncated"
    last = tail_lines(stderr, 1)
    return f"{tool} could not read it" + (f": {last}" if last else "")


def _probe_ffprobe(path: Path, exe: str, timeout_s: float) -> tuple[list[_Stream], float | None]:
    # warnings included: "detected only with low score" tells junk from a broken video
    cmd = [exe, "-v", "warning", "-print_format", "json", "-show_format", "-show_streams"]
    res = run_captured([*cmd, str(path.absolute())], str(path), timeout_s)
    try:
        info = json.loads(res.stdout) if res.stdout.strip() else {}
    except json.JSONDecodeError:
        info = {}
    if res.returncode != 0 or "format" not in info:
        raise DecodeError(str(path), _open_reason(res.stderr, "ffprobe"), tail_lines(res.stderr))
    streams = []
    for s in info.get("streams", []):
        rotation = 0
        for side in s.get("side_data_list", []) or []:
            if "rotation" in side:
                rotation = _clockwise(float(side["rotation"]))
        tags = s.get("tags", {}) or {}
        if not rotation and _float(tags.get("rotate")):  # pre-5.0 muxers: clockwise tag
            rotation = int(round(float(tags["rotate"]) / 90.0)) * 90 % 360
        nb = s.get("nb_frames")
        streams.append(
            _Stream(
                kind=str(s.get("codec_type", "")),
                codec=s.get("codec_name"),
                width=s.get("width"),
                height=s.get("height"),
                fps=_ratio(s.get("avg_frame_rate")) or _ratio(s.get("r_frame_rate")),
                num_frames=int(nb) if str(nb).isdigit() else None,
                duration=_float(s.get("duration")),
                rotation=rotation,
                attached_pic=bool((s.get("disposition") or {}).get("attached_pic")),
                sample_rate=_int(s.get("sample_rate")),
                channels=_int(s.get("channels")),
            )
        )
    return streams, _float(info["format"].get("duration"))


_STREAM_RE = re.compile(r"^\s*Stream #\d+:\d+\S*?: (\w+): (.*)$")
_DURATION_RE = re.compile(r"^\s*Duration: (?:(\d+):(\d+):(\d+(?:\.\d+)?)|N/A)")
_SIZE_RE = re.compile(r"(?<![\w])(\d{1,5})x(\d{1,5})(?![\w])")
_RATE_RE = re.compile(r"([\d.]+)(k?) (fps|tbr)\b")
_ROTATION_RE = re.compile(r"rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_ROTATE_TAG_RE = re.compile(r"^\s*rotate\s*:\s*(-?\d+)")
_HZ_RE = re.compile(r"\b(\d+) Hz\b")
#: ffmpeg's printed channel layouts -> channel count ("N channels" is parsed as is)
_LAYOUTS: Final = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6,
                   "6.1": 7, "7.1": 8}  # fmt: skip
_CHANNELS_RE = re.compile(r"\b(\d+) channels\b")


def _parse_ffmpeg_info(stderr: str) -> tuple[list[_Stream], float | None] | None:
    """Parse ``ffmpeg -i`` stderr; None when there is no ``Input #0`` block."""
    lines = stderr.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith("Input #0"))
    except StopIteration:
        return None
    duration: float | None = None
    streams: list[_Stream] = []
    for ln in lines[start + 1 :]:
        if not ln.startswith(" "):  # end of the Input #0 block
            break
        if m := _DURATION_RE.match(ln):
            if m.group(1) is not None:
                duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            continue
        if m := _STREAM_RE.match(ln):
            kind, rest = m.group(1).lower(), m.group(2)
            st = _Stream(kind=kind, codec=rest.split()[0].rstrip(",") if rest else None)
            if kind == "video":
                if size := _SIZE_RE.search(rest):
                    st.width, st.height = int(size.group(1)), int(size.group(2))
                rates = {u: float(v) * (1000 if k else 1) for v, k, u in _RATE_RE.findall(rest)}
                st.fps = _snap_fps(rates.get("fps") or rates.get("tbr"))
                st.attached_pic = "(attached pic)" in rest
            elif kind == "audio":
                # "aac (LC) (mp4a / 0x6134706D), 48000 Hz, 5.1(side), fltp, 383 kb/s"
                if hz := _HZ_RE.search(rest):
                    st.sample_rate = int(hz.group(1))
                fields = [f.strip().split("(")[0] for f in rest.split(",")]
                layouts = [_LAYOUTS[f] for f in fields if f in _LAYOUTS]
                if n := _CHANNELS_RE.search(rest):
                    st.channels = int(n.group(1))
                elif layouts:
                    st.channels = layouts[0]
            streams.append(st)
            continue
        if streams and (m := _ROTATION_RE.search(ln)):  # side data of the last stream
            streams[-1].rotation = _clockwise(float(m.group(1)))
        elif streams and not streams[-1].rotation and (m := _ROTATE_TAG_RE.match(ln)):
            streams[-1].rotation = int(round(int(m.group(1)) / 90.0)) * 90 % 360
    return streams, duration


def _probe_ffmpeg(path: Path, exe: str, timeout_s: float) -> tuple[list[_Stream], float | None]:
    # With no output file ffmpeg prints the input description and exits 1: normal.
    res = run_captured(
        [exe, "-hide_banner", "-nostdin", "-i", str(path.absolute())], str(path), timeout_s
    )
    parsed = _parse_ffmpeg_info(res.stderr)
    if parsed is None:
        raise DecodeError(str(path), _open_reason(res.stderr, "ffmpeg"), tail_lines(res.stderr))
    return parsed


_FRAME_RE = re.compile(r"frame=\s*(\d+)")
_TIME_RE = re.compile(r"time=\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


def _count_frames(path: Path, timeout_s: float) -> tuple[int | None, float | None]:
    """(frames, seconds) of the first video stream by stream-copying it to the null
    muxer: reads the whole file but decodes nothing."""
    cmd = [find_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path.absolute())]
    cmd += ["-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    res = run_captured(cmd, str(path), timeout_s)
    frames = _FRAME_RE.findall(res.stderr)
    times = _TIME_RE.findall(res.stderr)
    n = int(frames[-1]) if frames else None
    t = int(times[-1][0]) * 3600 + int(times[-1][1]) * 60 + float(times[-1][2]) if times else None
    return n, t


def probe(
    uri: str | os.PathLike[str],
    *,
    ffprobe: str | None | _Auto = AUTO,
    timeout_s: float = PROBE_TIMEOUT_S,
    video_id: str | None = None,
) -> VideoSource:
    """Describe a local video file.

    ``ffprobe``: AUTO finds it (``$VIDEOMEM_FFPROBE``, then PATH); None forces the
    ffmpeg-only path; a string names the binary. ``video_id``: the file's
    :func:`content_video_id` when the caller has it already (saves reading it twice).
    Raises DecodeError with a readable reason (missing, empty, unreadable, no video
    stream, zero duration, …).
    """
    path, size = check_file(uri)
    exe = find_ffprobe() if isinstance(ffprobe, _Auto) else ffprobe
    if exe is not None:
        streams, fmt_duration = _probe_ffprobe(path, exe, timeout_s)
        probed_with = "ffprobe"
    else:
        streams, fmt_duration = _probe_ffmpeg(path, find_ffmpeg(), timeout_s)
        probed_with = "ffmpeg"

    if not streams:
        if not fmt_duration:
            raise DecodeError(str(uri), "zero-duration file: it holds no streams and no frames")
        raise DecodeError(str(uri), "no streams found in the file")
    videos = [s for s in streams if s.kind == "video" and not s.attached_pic]
    if not videos:
        kinds = sorted(
            {s.kind for s in streams}
            | ({"cover art"} if any(s.attached_pic for s in streams) else set())
        )
        raise DecodeError(str(uri), f"no video stream (the file only has: {', '.join(kinds)})")
    v = videos[0]
    audio = next((s for s in streams if s.kind == "audio"), None)
    duration = v.duration if v.duration is not None else fmt_duration
    num_frames = v.num_frames
    if duration is None or (num_frames is None and duration <= 0):
        # Unknown length (raw streams, some containers): count packets without decoding.
        counted, seconds = _count_frames(path, timeout_s)
        num_frames = counted if counted is not None else num_frames
        if counted and v.fps:
            duration = counted / v.fps
        elif seconds is not None:
            duration = seconds
    if num_frames == 0 or (duration is not None and duration <= 0):
        raise DecodeError(str(uri), "zero-duration video: its video stream holds no frames")
    if v.width is None or v.height is None:
        raise DecodeError(str(uri), "the video stream has no frame size (unsupported codec?)")
    return VideoSource(
        video_id=video_id if video_id is not None else content_video_id(path),
        uri=str(path),
        size_bytes=size,
        has_video=True,
        duration_s=duration,
        fps=v.fps,
        num_frames=num_frames,
        width=int(v.width),
        height=int(v.height),
        codec=v.codec,
        rotation=v.rotation,
        probed_with=probed_with,
        audio_codec=(audio.codec or "unknown") if audio is not None else None,
        audio_sample_rate=audio.sample_rate if audio is not None else None,
        audio_channels=audio.channels if audio is not None else None,
    )
