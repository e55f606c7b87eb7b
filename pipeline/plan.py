"""What a decode will produce, and the ffmpeg command that produces it.

A :class:`Plan` is the sampling of one video (window, step, output size, mode); a
:class:`Part` is what one ffmpeg process decodes of it (the whole window, or one time
range of it); :func:`part_command` is that process's argv. Nothing here runs ffmpeg to
decode: :mod:`videomem.pipeline.decode` streams the frames.

Design decisions:

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
* **Keyframe mode** (``sample="keyframes"``): ``-skip_frame nokey`` makes the decoder
  skip all but keyframes, ``select`` keeps frames flagged key (for decoders that
  ignore skip_frame) and thins them to at most ``fps`` per second (greedy: a keyframe
  at least 1/fps after the last one kept). ``showinfo`` logs each written frame's pts
  (integer microseconds), which the decoder reads as its timestamps.
* **Segment-parallel exact mode** (:func:`plan_parts`): a long video is cut into time
  ranges starting just after keyframes (``pipeline.segments``). A range's ffmpeg starts
  at the keyframe before its first tick and keeps every frame from there
  (``-noaccurate_seek``), so the frame on screen at each tick is the same as one
  ffmpeg's; its ticks are numbered from the whole plan's.
* **GPU decode** (``cuda=True``): ``-hwaccel cuda`` keeps frames in GPU memory
  through sampling and ``scale_cuda``; only the small frames are downloaded (rotation
  and padding then run on the CPU).
* **Time window**: ``-ss``/``-t`` on the input (ffmpeg's accurate seek, 1 s early so
  the frame already on screen at the start is not dropped); timestamps stay relative
  to the start of the video.
* **Rotation** is applied by us, not by ffmpeg's autorotation (``-noautorotate`` +
  ``transpose``), so the output size follows from the probed rotation and cannot
  silently disagree with it. ``VideoSource.rotation`` is clockwise degrees; the
  container's display matrix is counter-clockwise, hence the sign flip in ``pipeline.probe``.
* **Aspect policy** when ``size=(H, W)`` is set, using the *display* aspect ratio
  (sample aspect ratio and rotation included):
  ``"pad"`` fits the whole picture inside H×W and centres it on black bars;
  ``"crop"`` fills H×W and cuts the overflow equally on both sides;
  ``"stretch"`` scales to H×W ignoring aspect. With ``size=None`` frames keep their
  coded pixel size (rotated), sample aspect ratio not corrected.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import ffmpeg as ffmpeg_python
import numpy as np
from videomem.pipeline.errors import DecodeError
from videomem.pipeline.ffmpeg import CAPTURE_LOGLEVEL, find_ffmpeg
from videomem.pipeline.segments import (
    MIN_PART_S,
    SEGMENT_AFTER_KEYFRAME_S,
    SEGMENT_QUEUE_BATCHES,
    auto_segments,
    available_cpus,
    scan_keyframes,
    split_points,
)
from videomem.pipeline.types import DecodeConfig, VideoSource

__all__ = [
    "ON_SCREEN_TOLERANCE_S",
    "SEEK_MARGIN_S",
    "Part",
    "Plan",
    "build_command",
    "frame_index",
    "make_plan",
    "part_command",
    "plan_parts",
    "round_us",
    "sample_timestamps",
    "whole_part",
]

#: ffmpeg's log level while decoding: errors only, so stderr stays small and the tail
#: we keep for DecodeError is the interesting part
LOGLEVEL = "error"

#: a frame whose timestamp is at most this much after a sampling time is taken as
#: on screen at that time (timestamps and frame rates are stored rounded)
ON_SCREEN_TOLERANCE_S: Final = 1e-3

#: seek this far before a window's start, so the frame on screen at the start is kept
SEEK_MARGIN_S: Final = 1.0


@dataclass(frozen=True)
class Plan:
    """The sampling of one video's decode: which times, at what size, in which mode."""

    start: float  # window start, seconds
    span: float | None  # window length, seconds (None: to the end, unknown)
    step: float  # seconds between samples (keyframes: least gap kept, 0 = all)
    offset: float  # first sample at start + offset
    num_frames: int | None  # exact frame count (num_frames mode)
    out_hw: tuple[int, int]  # (H, W) of every output frame
    keyframes: bool = False  # keyframe mode: timestamps come from the stream

    @property
    def first_t(self) -> float:
        return self.start + self.offset


@dataclass(frozen=True)
class Part:
    """What one ffmpeg process produces: the whole plan, or one time range of it."""

    first_tick: int  # index (in the whole plan) of its first output tick
    seek: float  # -ss value, seconds (0: none)
    accurate: bool  # drop frames before ``seek`` (ffmpeg's accurate seek), or start
    # at the keyframe at or before it (segments: the frame on screen is always kept)
    frames: int | None  # output frame limit (None: until the window ends)
    last: bool  # holds the end of the window (num_frames mode pads the end there)
    threads: int | None = None  # decoder threads (None: ffmpeg's default, all cores)


def make_plan(config: DecodeConfig, source: VideoSource) -> Plan:
    """The plan of ``config`` on ``source``; raises DecodeError when it cannot be made
    (window past the end, unknown size, num_frames without a duration)."""
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
    if config.sample == "keyframes":
        step = 1.0 / config.fps if config.fps else 0.0
        return Plan(start, span, step, 0.0, None, out_hw, keyframes=True)
    if config.num_frames is not None:
        if span is None:
            raise DecodeError(
                uri, "num_frames sampling needs the video's duration, which is unknown"
            )
        step = span / config.num_frames
        return Plan(start, span, step, step / 2, config.num_frames, out_hw)
    if config.fps is None:  # DecodeConfig already refuses this; keeps mypy honest
        raise DecodeError(uri, "DecodeConfig needs fps or num_frames")
    return Plan(start, span, 1.0 / config.fps, 0.0, None, out_hw)


def whole_part(plan: Plan, threads: int | None = None) -> Part:
    """The part of a single ffmpeg decoding the whole window with ``threads`` decoder
    threads (a worker's share of the cores, ``DecodeConfig.cpus``; None: all)."""
    if plan.keyframes:  # keyframes before the window are not wanted: seek exactly
        return Part(0, round_us(plan.start), True, None, True, threads)
    seek = round_us(max(0.0, plan.start - SEEK_MARGIN_S))
    return Part(0, seek, True, plan.num_frames, True, threads)


def frame_index(t: np.ndarray, source: VideoSource) -> np.ndarray:
    """Index of the source frame at the native rate on screen at each time in ``t``
    (-1 when the rate is unknown)."""
    if not source.fps:
        return np.full(len(t), -1, dtype=np.int64)
    idx = np.floor((t + ON_SCREEN_TOLERANCE_S) * source.fps + 1e-9).astype(np.int64)
    if source.num_frames:
        np.clip(idx, 0, source.num_frames - 1, out=idx)
    return idx


def sample_timestamps(config: DecodeConfig, source: VideoSource) -> np.ndarray | None:
    """The timestamps decode() will produce, float64 [N], when known in advance
    (num_frames mode); None in fps and keyframe modes, where they depend on the
    stream."""
    plan = make_plan(config, source)
    if plan.num_frames is None:
        return None
    return plan.start + plan.offset + np.arange(plan.num_frames) * plan.step


def _fmt(x: float) -> str:
    return f"{x:.9g}"


def round_us(x: float) -> float:
    """``x`` rounded to the microsecond, as ffmpeg reads the ``%.6f`` we pass it."""
    return round(x, 6)


def build_command(
    uri: str | os.PathLike[str],
    config: DecodeConfig,
    source: VideoSource,
    *,
    output: str = "pipe:",
    ffmpeg_exe: str | None = None,
) -> list[str]:
    """The ffmpeg argv for decode() with one process: rawvideo rgb24 of the sampled,
    rotated, resized frames to ``output`` (``pipe:`` = stdout). Public so benchmarks can
    run the very same command without Python reading it."""
    plan = make_plan(config, source)
    return part_command(
        uri, config, source, plan, whole_part(plan, config.cpus), output, ffmpeg_exe
    )


def part_command(
    uri: str | os.PathLike[str],
    config: DecodeConfig,
    source: VideoSource,
    plan: Plan,
    part: Part,
    output: str = "pipe:",
    ffmpeg_exe: str | None = None,
    cuda: bool = False,
) -> list[str]:
    """The ffmpeg argv that decodes ``part`` of ``plan`` (on NVDEC when ``cuda``)."""
    in_args: dict[str, Any] = {"noautorotate": None}
    if cuda:
        # NVDEC decodes into GPU memory; frames stay there through sampling and
        # scaling, and only the small output frames are downloaded.
        in_args["hwaccel"] = "cuda"
        in_args["hwaccel_output_format"] = "cuda"
    if plan.keyframes:
        in_args["skip_frame"] = "nokey"  # the decoder skips every other frame
    if part.threads is not None:
        in_args["threads"] = part.threads
    if part.seek > 0:
        # Accurate seek (the default) drops every frame that starts before the seek
        # point, so a whole-window decode seeks SEEK_MARGIN_S early to keep the frame
        # still on screen at ``start``; a segment starts at the keyframe at or before
        # its seek point instead and keeps everything from there.
        in_args["ss"] = f"{part.seek:.6f}"
        if not part.accurate:
            in_args["noaccurate_seek"] = None
    window_end = None
    if config.end_s is not None and plan.span is not None:
        window_end = round_us(plan.start + plan.span - part.seek)  # seconds after the seek
        # Without accurate seek, -t counts from the first frame, which comes before the
        # seek point: read a little longer and cut at the window's end with ``trim``.
        extra = 0.0 if part.accurate else SEEK_MARGIN_S
        in_args["t"] = f"{window_end + extra:.6f}"
    stream = ffmpeg_python.input(str(Path(uri).absolute()), **in_args)["v:0"]
    # Microsecond timebase first: shifts below are exact, and showinfo's integer pts
    # are microseconds whatever the container's timebase.
    stream = stream.filter("settb", "AVTB")
    if window_end is not None and not part.accurate:
        stream = stream.filter("trim", end=_fmt(window_end))

    if plan.keyframes:
        # The key flag, not only -skip_frame: decoders that ignore skip_frame still
        # decode every frame. Thinning keeps a keyframe when it is at least one
        # sampling step after the last one kept (1 ms slack for rounded timestamps).
        keep = "eq(key,1)"
        if window_end is not None:
            # -t alone does not stop ffmpeg at the window's end when it skips frames
            keep += f"*lt(t,{_fmt(window_end)})"
        if plan.step > 0:
            gap = _fmt(max(0.0, plan.step - ON_SCREEN_TOLERANCE_S))
            keep += f"*(isnan(prev_selected_t)+gte(t-prev_selected_t,{gap}))"
        stream = stream.filter("select", keep)
    else:
        # Put this part's first tick at 0, plus ON_SCREEN_TOLERANCE_S (a frame starting
        # within it after a tick counts as on screen then, absorbing timestamp and
        # rate rounding); in num_frames mode ticks sit half a slice after the slices'
        # starts (plan.offset).
        tick0 = plan.first_t + part.first_tick * plan.step
        shift = tick0 - part.seek + ON_SCREEN_TOLERANCE_S
        stream = stream.filter("setpts", f"PTS-{_fmt(shift)}/TB")
        rate = _fmt(1.0 / plan.step)
        # round=up: tick k takes the last frame with pts <= k/rate (the one on screen
        # then); start_time=0: tick 0 is the part's first tick even if the first frame
        # comes later (earlier frames, at negative pts, are only on screen before it).
        stream = stream.filter("fps", fps=rate, round="up", start_time=0)
        if plan.num_frames is not None and part.last:
            # If the stream ends before the declared duration, the last frame stays on
            # screen.
            stream = stream.filter("tpad", stop=-1, stop_mode="clone")

    stream = _shape(stream, config, plan, source.rotation % 360, cuda)
    if plan.keyframes:
        # Last, so it logs exactly the frames written, after all the scaling: their
        # pts, in microseconds from the seek point. No checksums: nothing reads them,
        # and they cost a pass over every frame.
        stream = stream.filter("showinfo", checksum=0)

    out_args: dict[str, Any] = {
        "format": "rawvideo",
        "pix_fmt": "rgb24",
        "fps_mode": "passthrough",  # the fps filter already made the frames we want
    }
    if part.frames is not None:
        out_args["frames:v"] = part.frames
    out = ffmpeg_python.output(stream, output, **out_args)
    # ffmpeg-python appends global args after the output, where ffmpeg may ignore them.
    argv = out.compile(cmd=ffmpeg_exe or find_ffmpeg(), overwrite_output=output != "pipe:")
    loglevel = CAPTURE_LOGLEVEL if plan.keyframes else LOGLEVEL
    return [argv[0], "-hide_banner", "-nostdin", "-nostats", "-loglevel", loglevel, *argv[1:]]


def _fit(w: int, h: int, aspect: str) -> tuple[str, str]:
    """scale's w/h expressions putting a picture of display aspect ``dar`` into w x h."""
    target = f"{w}/{h}"
    if aspect == "stretch":
        return str(w), str(h)
    if aspect == "pad":  # fit inside, keep display aspect ratio (dar)
        return (
            f"if(gt(dar,{target}),{w},max(1,min({w},round({h}*dar))))",
            f"if(gt(dar,{target}),max(1,min({h},round({w}/dar))),{h})",
        )
    # crop: fill, then cut the centre
    return (
        f"if(gt(dar,{target}),max({w},round({h}*dar)),{w})",
        f"if(gt(dar,{target}),{h},max({h},round({w}/dar)))",
    )


def _rotate(stream: Any, rotation: int) -> Any:
    if rotation == 90:
        return stream.filter("transpose", "clock")
    if rotation == 270:
        return stream.filter("transpose", "cclock")
    if rotation == 180:
        return stream.filter("hflip").filter("vflip")
    return stream


def _shape(stream: Any, config: DecodeConfig, plan: Plan, rotation: int, cuda: bool) -> Any:
    """Rotate, scale to ``config.size`` with the aspect policy, convert to rgb24.

    CPU: rotate after sampling (only sampled frames pay), then scale. CUDA: scale on the
    GPU first (``scale_cuda``; for a quarter turn into the transposed box, with the
    unrotated aspect ratio, which is the same fit), download the small frames, then
    rotate on the CPU (older ffmpeg builds have no transpose_cuda).
    """
    h, w = plan.out_hw
    if cuda:
        if config.size is not None:
            bw, bh = (h, w) if rotation in (90, 270) else (w, h)
            sw, sh = _fit(bw, bh, config.aspect)
        else:
            sw, sh = "iw", "ih"
        stream = stream.filter(
            "scale_cuda", w=sw, h=sh, interp_algo="bicubic", format="yuv420p", passthrough=0
        )
        stream = stream.filter("hwdownload").filter("format", "yuv420p")
        stream = _rotate(stream, rotation)
    else:
        stream = _rotate(stream, rotation)
        if config.size is not None:
            sw, sh = _fit(w, h, config.aspect)
            stream = stream.filter("scale", w=sw, h=sh, flags="bicubic")
    if config.size is not None:
        stream = stream.filter("format", "rgb24")
        if config.aspect == "pad":
            stream = stream.filter("pad", w, h, "(ow-iw)/2", "(oh-ih)/2", color="black")
        elif config.aspect == "crop":
            stream = stream.filter("crop", w, h)
        stream = stream.filter("setsar", 1)
    return stream


def plan_parts(
    uri: str | os.PathLike[str], config: DecodeConfig, source: VideoSource, plan: Plan
) -> tuple[list[Part], int]:
    """How an exact-mode decode splits into ffmpeg processes (one part: serial).

    Parts begin just after keyframes found by a packet scan, so each one's ffmpeg
    starts decoding right there; its seek keeps every frame from the keyframe at or
    before its start (``-noaccurate_seek``), so the frame on screen at its first tick
    is always among them, however long ago it started. That is what makes the frames
    identical to one ffmpeg's, and why only containers with a seek index are split.
    Returns the parts and how many run at once.
    """
    # one process decodes with the cores it was given (ffmpeg's default: all of them)
    one = [whole_part(plan, config.cpus)], 1
    if plan.keyframes or plan.span is None:
        return one
    cpus = config.cpus if config.cpus is not None else available_cpus()
    k = config.segments if config.segments is not None else auto_segments(plan.span, cpus)
    if k <= 1:
        return one
    scan = scan_keyframes(uri, timeout_s=max(config.timeout_s, plan.span / 20))
    if scan is None or not scan.seekable:
        return one
    # A part waiting for the consumer holds at most SEGMENT_QUEUE_BATCHES batches before
    # it stalls: parts about that long keep every process busy with bounded memory.
    # A multiple of k parts of equal length keeps all k processes busy to the end.
    fits = max(SEGMENT_QUEUE_BATCHES * config.batch_size * plan.step, MIN_PART_S)
    length = plan.span / (k * max(1, math.ceil(plan.span / (k * fits))))
    end = plan.start + plan.span
    bounds = split_points(scan.keyframes, plan.start, end, length, SEGMENT_AFTER_KEYFRAME_S)
    total = plan.num_frames
    pairs: list[tuple[int, float]] = []  # (first tick, seek) of parts 2..n
    for b in bounds:
        # first tick at which a frame starting at or after b may be on screen
        a = math.ceil((b - ON_SCREEN_TOLERANCE_S - plan.first_t) / plan.step - 1e-9)
        if a > (pairs[-1][0] if pairs else 0) and (total is None or a < total):
            pairs.append((a, round_us(b)))
    if not pairs:
        return one
    inflight = min(k, len(pairs) + 1)
    threads = max(1, cpus // inflight)
    parts = [replace(whole_part(plan), frames=pairs[0][0], last=False, threads=threads)]
    for i, (a, seek) in enumerate(pairs):
        nxt = pairs[i + 1][0] if i + 1 < len(pairs) else None
        frames = nxt - a if nxt is not None else (None if total is None else total - a)
        parts.append(Part(a, seek, False, frames, nxt is None, threads))
    return parts, inflight
