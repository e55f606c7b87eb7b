"""Probe videos and stream sampled, resized RGB frames out of one ffmpeg process each.

Design decisions:

* **One streaming ffmpeg per video.** The command is built with ffmpeg-python and run
  with our own ``Popen`` (:class:`~videomem.pipeline.ffmpeg.FFmpegPipe`): rawvideo
  ``rgb24`` on stdout, read in exact frame-size chunks straight into the batch array;
  stderr drained by a thread; a read that sees nothing for ``timeout_s`` kills ffmpeg;
  the child is killed and reaped in ``finally`` (normal end, early ``break``, error).
  Only one batch is allocated at a time, so memory is bounded by ``batch_size`` and
  whatever the caller keeps, however long the video.
* **Sampling happens inside ffmpeg** with the ``fps`` filter, ``round=up``: output tick
  ``k`` carries the source frame *on screen* at ``t_k`` (the last frame with pts <=
  ``t_k``). Timestamps are therefore computed, not parsed:

  - ``fps`` mode: ``t_k = start + k / fps`` for k = 0, 1, ... until the window ends
    (so about ``duration * fps`` frames);
  - ``num_frames`` mode (MovieChat-style uniform sampling): exactly N frames at
    ``t_i = start + (i + 0.5) * span / N``, the centres of N equal slices; frames are
    shifted by half a slice before the fps filter so its integer ticks land there.
    If the stream ends before the declared duration, the last frame is repeated
    (``tpad``) so N frames still come out: it is what stays on screen.

  A frame starting within 1 ms after ``t_k`` counts as on screen at ``t_k``: stored
  timestamps and rates are rounded, and a sample at exactly a frame's start must not
  slip to the previous frame.

  ``frame_index = floor((t + 1 ms) * native_fps)``: the index of that on-screen frame
  for constant-frame-rate video (an approximation for variable frame rate).
* **Time window**: ``-ss``/``-t`` on the input (ffmpeg's accurate seek, 1 s early so
  the frame already on screen at the start is not dropped); timestamps stay relative
  to the start of the video.
* **Rotation** is applied by us, not by ffmpeg's autorotation (``-noautorotate`` +
  ``transpose``), so the output size follows from the probed rotation and cannot
  silently disagree with it. ``VideoSource.rotation`` is clockwise degrees; the
  container's display matrix is counter-clockwise, hence the sign flip in probe.
* **Aspect policy** when ``size=(H, W)`` is set, using the *display* aspect ratio
  (sample aspect ratio and rotation included):
  ``"pad"`` fits the whole picture inside H×W and centres it on black bars;
  ``"crop"`` fills H×W and cuts the overflow equally on both sides;
  ``"stretch"`` scales to H×W ignoring aspect. With ``size=None`` frames keep their
  coded pixel size (rotated), sample aspect ratio not corrected.
* **probe** uses ffprobe's JSON when ffprobe exists, otherwise parses
  ``ffmpeg -i`` stderr. Limits of the ffmpeg-only path: duration has 10 ms precision,
  the frame count is unknown (None), fps is the rounded figure ffmpeg prints (common
  NTSC rates are snapped back to n*1000/1001), the duration is the container's (it
  may include a longer audio track), and only the first input program is read. When
  neither reports a duration, the video stream is stream-copied to the null muxer
  (no decoding) and its frames counted.
* **Not handled**: display-matrix mirroring (only rotation is read); a truncated file
  whose index survived yields the frames before the cut when ffmpeg exits 0 (it
  usually exits non-zero, which raises DecodeError).
* ``video_id`` comes from :func:`content_video_id`: a hash of the file size and of
  sixteen 64 KiB slices spread over the file (the whole file when it is under 1 MiB).
  It is stable across paths, copies and runs, costs at most 1 MiB of reads on any
  file size, and still separates different encodes because container headers and
  indexes (which sit at the start or end) differ. A file edited only between the
  sampled slices while keeping its size would keep its id: accepted for video files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import ffmpeg as ffmpeg_python
import numpy as np
from videomem.pipeline.errors import DecodeError
from videomem.pipeline.ffmpeg import (
    AUTO,
    FFmpegPipe,
    _Auto,
    find_ffmpeg,
    find_ffprobe,
    run_captured,
    tail_lines,
)
from videomem.pipeline.types import DecodeConfig, FrameBatch, VideoSource

__all__ = [
    "AUTO",
    "VIDEO_EXTENSIONS",
    "build_command",
    "check_video",
    "content_video_id",
    "decode",
    "find_ffmpeg",
    "find_ffprobe",
    "iter_video_files",
    "probe",
    "sample_timestamps",
]

#: file suffixes the directory walk treats as videos (files named explicitly are
#: always taken, whatever their suffix, so a bad one is reported rather than skipped)
VIDEO_EXTENSIONS: Final = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg",
        ".mpeg", ".ts", ".mts", ".m2ts", ".3gp", ".ogv",
    }
)  # fmt: skip

#: how long one probe command may run
PROBE_TIMEOUT_S: Final = 60.0
#: ffmpeg's log level while decoding: errors only, so stderr stays small and the tail
#: we keep for DecodeError is the interesting part
LOGLEVEL = "error"

#: a frame whose timestamp is at most this much after a sampling time is taken as
#: on screen at that time (timestamps and frame rates are stored rounded)
ON_SCREEN_TOLERANCE_S: Final = 1e-3

#: seek this far before a window's start, so the frame on screen at the start is kept
SEEK_MARGIN_S: Final = 1.0

_ID_SLICES: Final = 16
_ID_SLICE_BYTES: Final = 64 * 1024

# --------------------------------------------------------------------------- files


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


def _check_file(uri: str | os.PathLike[str]) -> tuple[Path, int]:
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


# --------------------------------------------------------------------------- probe


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
            )
        )
    return streams, _float(info["format"].get("duration"))


_STREAM_RE = re.compile(r"^\s*Stream #\d+:\d+\S*?: (\w+): (.*)$")
_DURATION_RE = re.compile(r"^\s*Duration: (?:(\d+):(\d+):(\d+(?:\.\d+)?)|N/A)")
_SIZE_RE = re.compile(r"(?<![\w])(\d{1,5})x(\d{1,5})(?![\w])")
_RATE_RE = re.compile(r"([\d.]+)(k?) (fps|tbr)\b")
_ROTATION_RE = re.compile(r"rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_ROTATE_TAG_RE = re.compile(r"^\s*rotate\s*:\s*(-?\d+)")


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


_CORRUPT_RE = re.compile(r"partial file|Invalid NAL|error while decoding|corrupt", re.I)
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
    path, size = _check_file(uri)
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
    )


# --------------------------------------------------------------------------- decode


@dataclass(frozen=True)
class _Plan:
    start: float  # window start, seconds
    span: float | None  # window length, seconds (None: to the end, unknown)
    step: float  # seconds between samples
    offset: float  # first sample at start + offset
    num_frames: int | None  # exact frame count (num_frames mode)
    out_hw: tuple[int, int]  # (H, W) of every output frame


def _plan(config: DecodeConfig, source: VideoSource) -> _Plan:
    uri = source.uri
    start = config.start_s or 0.0
    end = config.end_s
    if source.duration_s is not None:
        if start >= source.duration_s:
            raise DecodeError(
                uri, f"start_s={start:g} is past the end of the video ({source.duration_s:g} s)"
            )
        end = source.duration_s if end is None else min(end, source.duration_s)
    span = None if end is None else end - start
    if config.size is not None:
        out_hw = (int(config.size[0]), int(config.size[1]))
    elif source.display_size is not None:
        out_hw = source.display_size
    else:
        raise DecodeError(uri, "frame size unknown: probe found no width/height")
    if config.num_frames is not None:
        if span is None:
            raise DecodeError(
                uri, "num_frames sampling needs the video's duration, which is unknown"
            )
        step = span / config.num_frames
        return _Plan(start, span, step, step / 2, config.num_frames, out_hw)
    if config.fps is None:  # DecodeConfig already refuses this; keeps mypy honest
        raise DecodeError(uri, "DecodeConfig needs fps or num_frames")
    return _Plan(start, span, 1.0 / config.fps, 0.0, None, out_hw)


def sample_timestamps(config: DecodeConfig, source: VideoSource) -> np.ndarray | None:
    """The timestamps decode() will produce, float64 [N], when known in advance
    (num_frames mode); None in fps mode, where the count depends on where the stream
    really ends."""
    plan = _plan(config, source)
    if plan.num_frames is None:
        return None
    return plan.start + plan.offset + np.arange(plan.num_frames) * plan.step


def _fmt(x: float) -> str:
    return f"{x:.9g}"


def build_command(
    uri: str | os.PathLike[str],
    config: DecodeConfig,
    source: VideoSource,
    *,
    output: str = "pipe:",
    ffmpeg_exe: str | None = None,
) -> list[str]:
    """The ffmpeg argv for decode(): rawvideo rgb24 of the sampled, rotated, resized
    frames to ``output`` (``pipe:`` = stdout). Public so benchmarks can run the very
    same command without Python reading it."""
    plan = _plan(config, source)
    in_args: dict[str, Any] = {"noautorotate": None}
    # Seek a little before the window: ffmpeg's accurate seek drops every frame that
    # starts before the seek point, including the one still on screen at ``start``.
    seek = max(0.0, plan.start - SEEK_MARGIN_S)
    if seek > 0:
        in_args["ss"] = _fmt(seek)
    if config.end_s is not None and plan.span is not None:
        in_args["t"] = _fmt(plan.start - seek + plan.span)
    stream = ffmpeg_python.input(str(Path(uri).absolute()), **in_args)["v:0"]

    # Microsecond timebase first, so the shift below is exact whatever the container's
    # timebase. The shift puts the window start at 0, adds ON_SCREEN_TOLERANCE_S (a
    # frame starting within it after a tick counts as on screen then, absorbing
    # timestamp and rate rounding) and, in num_frames mode, half a slice so the fps
    # filter's integer ticks land on the slice centres.
    shift = (plan.start - seek) + ON_SCREEN_TOLERANCE_S + plan.offset
    stream = stream.filter("settb", "AVTB").filter("setpts", f"PTS-{_fmt(shift)}/TB")
    rate = _fmt(1.0 / plan.step)
    # round=up: tick k takes the last frame with pts <= k/rate (the one on screen then);
    # start_time=0: tick 0 is the window start even if the first frame comes later.
    stream = stream.filter("fps", fps=rate, round="up", start_time=0)
    if plan.num_frames is not None:
        # If the stream ends before the declared duration, the last frame stays on screen.
        stream = stream.filter("tpad", stop=-1, stop_mode="clone")

    # Rotate after sampling: only sampled frames pay for it.
    rotation = source.rotation % 360
    if rotation == 90:
        stream = stream.filter("transpose", "clock")
    elif rotation == 270:
        stream = stream.filter("transpose", "cclock")
    elif rotation == 180:
        stream = stream.filter("hflip").filter("vflip")

    if config.size is not None:
        h, w = plan.out_hw
        target = f"{w}/{h}"
        if config.aspect == "stretch":
            sw, sh = str(w), str(h)
        elif config.aspect == "pad":  # fit inside, keep display aspect ratio (dar)
            sw = f"if(gt(dar,{target}),{w},max(1,min({w},round({h}*dar))))"
            sh = f"if(gt(dar,{target}),max(1,min({h},round({w}/dar))),{h})"
        else:  # crop: fill, then cut the centre
            sw = f"if(gt(dar,{target}),max({w},round({h}*dar)),{w})"
            sh = f"if(gt(dar,{target}),{h},max({h},round({w}/dar)))"
        stream = stream.filter("scale", w=sw, h=sh, flags="bicubic")
        stream = stream.filter("format", "rgb24")
        if config.aspect == "pad":
            stream = stream.filter("pad", w, h, "(ow-iw)/2", "(oh-ih)/2", color="black")
        elif config.aspect == "crop":
            stream = stream.filter("crop", w, h)
        stream = stream.filter("setsar", 1)

    out_args: dict[str, Any] = {
        "format": "rawvideo",
        "pix_fmt": "rgb24",
        "fps_mode": "passthrough",  # the fps filter already made the frames we want
        "avioflags": "direct",  # one write() per frame, not one per 32 KiB buffer
    }
    if plan.num_frames is not None:
        out_args["frames:v"] = plan.num_frames
    out = ffmpeg_python.output(stream, output, **out_args)
    # ffmpeg-python appends global args after the output, where ffmpeg may ignore them.
    argv = out.compile(cmd=ffmpeg_exe or find_ffmpeg(), overwrite_output=output != "pipe:")
    return [argv[0], "-hide_banner", "-nostdin", "-loglevel", LOGLEVEL, *argv[1:]]


def decode(
    uri: str | os.PathLike[str],
    config: DecodeConfig,
    source: VideoSource | None = None,
) -> Iterator[FrameBatch]:
    """Stream a video as batches of sampled frames.

    Yields FrameBatch with frames uint8 [B, H, W, 3] (B <= config.batch_size, H×W =
    config.size or the rotated native size), timestamps float64 [B] seconds,
    frame_index int64 [B]. Probes first when ``source`` is None. Probing and
    command-building errors raise here; ffmpeg runs (and its errors raise) only while
    the result is iterated. Raises DecodeError.
    """
    if source is None:
        source = probe(uri)
    elif not Path(uri).exists():
        raise DecodeError(str(uri), "file not found")
    if not source.has_video:
        raise DecodeError(str(uri), "no video stream")
    plan = _plan(config, source)
    cmd = build_command(uri, config, source)
    return _stream(cmd, str(uri), plan, config, source)


def _stream(
    cmd: list[str], uri: str, plan: _Plan, config: DecodeConfig, source: VideoSource
) -> Iterator[FrameBatch]:
    h, w = plan.out_hw
    frame_bytes = h * w * 3
    first_t = plan.start + plan.offset
    fps = source.fps
    last_index = source.num_frames - 1 if source.num_frames else None
    produced = 0
    with FFmpegPipe(cmd, uri, config.timeout_s) as pipe:
        while True:
            batch = np.empty((config.batch_size, h, w, 3), dtype=np.uint8)
            got = pipe.readinto(batch.data.cast("B"))
            n, partial = divmod(got, frame_bytes)
            if partial:
                rc = pipe.wait()
                raise DecodeError(
                    uri,
                    f"ffmpeg stopped in the middle of a frame (exit code {rc})",
                    pipe.stderr_tail(),
                )
            if n:
                t = first_t + (produced + np.arange(n, dtype=np.float64)) * plan.step
                if fps:
                    idx = np.floor((t + ON_SCREEN_TOLERANCE_S) * fps + 1e-9).astype(np.int64)
                    if last_index is not None:
                        np.clip(idx, 0, last_index, out=idx)
                else:
                    idx = np.full(n, -1, dtype=np.int64)
                produced += n
                yield FrameBatch(
                    frames=batch[:n] if n < len(batch) else batch, timestamps=t, frame_index=idx
                )
            if got < len(batch) * frame_bytes:
                break  # stdout ended
        rc = pipe.wait()
        if rc != 0:
            tail = pipe.stderr_tail()
            hint = "; the file looks truncated or corrupt" if _CORRUPT_RE.search(tail) else ""
            raise DecodeError(uri, f"ffmpeg failed while decoding (exit code {rc}){hint}", tail)
        if produced == 0:
            raise DecodeError(uri, "ffmpeg decoded no frames from this video", pipe.stderr_tail())


# --------------------------------------------------------------------------- report


def check_video(uri: str | os.PathLike[str], config: DecodeConfig) -> dict[str, Any]:
    """Probe and fully decode one video; a summary dict for ``videomem probe``.

    Never raises DecodeError: a failure is a dict with ``ok=False`` and ``error``.
    """
    import time

    row: dict[str, Any] = {"path": str(uri), "ok": False}
    try:
        src = probe(uri)
        row.update(
            ok=True,
            video_id=src.video_id,
            duration_s=src.duration_s,
            fps=src.fps,
            width=src.width,
            height=src.height,
            codec=src.codec,
            rotation=src.rotation,
            probed_with=src.probed_with,
        )
        t0 = time.perf_counter()
        frames = 0
        shape = None
        for batch in decode(uri, config, src):
            frames += len(batch)
            shape = list(batch.frames.shape[1:])
        elapsed = time.perf_counter() - t0
        row.update(
            frames=frames, frame_shape=shape, decode_fps=frames / elapsed if elapsed > 0 else None
        )
    except DecodeError as err:
        row.update(ok=False, error=err.reason, detail=str(err))
    return row
