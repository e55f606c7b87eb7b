"""Stream sampled, resized RGB frames out of one ffmpeg process per video.

Design decisions:

* **One streaming ffmpeg per video** (or per time range, below). The command is built with ffmpeg-python and run
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
* **Keyframe mode** (``sample="keyframes"``): ``-skip_frame nokey`` makes the decoder
  skip all but keyframes, ``select`` keeps frames flagged key (for decoders that
  ignore skip_frame) and thins them to at most ``fps`` per second (greedy: a keyframe
  at least 1/fps after the last one kept). Timestamps are the frames' own pts, read
  from the ``showinfo`` filter's log line for each written frame (integer
  microseconds, in order), not a grid.
* **Segment-parallel exact mode** (``segments``): a long video is cut into time
  ranges starting just after keyframes, one ffmpeg each, run a few at a time and read
  in order (``pipeline.segments``). A range's ffmpeg starts at the keyframe before its
  first tick and keeps every frame from there (``-noaccurate_seek``), so the frame on
  screen at each tick is the same as one ffmpeg's; timestamps come from the global
  tick index. Frames, timestamps and frame indexes are identical to one process.
* **GPU decode** (``device="cuda"``): ``-hwaccel cuda`` keeps frames in GPU memory
  through sampling and ``scale_cuda``; only the small frames are downloaded (rotation
  and padding then run on the CPU). Frames still reach the encoder through host
  memory (the rawvideo pipe). A codec NVDEC cannot decode goes to the CPU before
  trying; an ffmpeg failure on the GPU path (no device, an unsupported profile, a
  failure mid-video) goes on on the CPU from the next frame; ``DecodeInfo`` records it.
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
* **Not handled**: display-matrix mirroring (only rotation is read, see
  ``pipeline.probe``); a truncated file whose index survived yields the frames before
  the cut when ffmpeg exits 0 (it usually exits non-zero, which raises DecodeError).
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import ffmpeg as ffmpeg_python
import numpy as np
from videomem.pipeline.errors import DecodeError
from videomem.pipeline.ffmpeg import CAPTURE_LOGLEVEL, FFmpegPipe, find_ffmpeg, tail_lines
from videomem.pipeline.probe import probe
from videomem.pipeline.segments import (
    MIN_PART_S,
    SEGMENT_AFTER_KEYFRAME_S,
    SEGMENT_QUEUE_BATCHES,
    OrderedParallel,
    auto_segments,
    available_cpus,
    scan_keyframes,
    split_points,
)
from videomem.pipeline.types import DecodeConfig, FrameBatch, VideoSource

__all__ = [
    "NVDEC_CODECS",
    "DecodeInfo",
    "build_command",
    "check_video",
    "decode",
    "plan_parts",
    "sample_timestamps",
]

#: ffmpeg's log level while decoding: errors only, so stderr stays small and the tail
#: we keep for DecodeError is the interesting part
LOGLEVEL = "error"

#: a frame whose timestamp is at most this much after a sampling time is taken as
#: on screen at that time (timestamps and frame rates are stored rounded)
ON_SCREEN_TOLERANCE_S: Final = 1e-3

#: seek this far before a window's start, so the frame on screen at the start is kept
SEEK_MARGIN_S: Final = 1.0

#: codecs NVDEC decodes (ffmpeg codec names); others go straight to the CPU. A profile
#: it cannot decode (4:4:4 H.264, 10-bit H.264) fails at run time and falls back then.
NVDEC_CODECS: Final = frozenset(
    {"h264", "hevc", "av1", "vp8", "vp9", "mpeg1video", "mpeg2video", "mpeg4", "vc1", "mjpeg"}
)

log = logging.getLogger(__name__)

_CORRUPT_RE = re.compile(r"partial file|Invalid NAL|error while decoding|corrupt", re.I)

# --------------------------------------------------------------------------- decode


@dataclass(frozen=True)
class _Plan:
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
class _Part:
    """What one ffmpeg process produces: the whole plan, or one time range of it."""

    first_tick: int  # index (in the whole plan) of its first output tick
    seek: float  # -ss value, seconds (0: none)
    accurate: bool  # drop frames before ``seek`` (ffmpeg's accurate seek), or start
    # at the keyframe at or before it (segments: the frame on screen is always kept)
    frames: int | None  # output frame limit (None: until the window ends)
    last: bool  # holds the end of the window (num_frames mode pads the end there)
    threads: int | None = None  # decoder threads (None: ffmpeg's default, all cores)


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
    if config.sample == "keyframes":
        step = 1.0 / config.fps if config.fps else 0.0
        return _Plan(start, span, step, 0.0, None, out_hw, keyframes=True)
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


def _whole(plan: _Plan) -> _Part:
    """The part of a single ffmpeg decoding the whole window."""
    if plan.keyframes:  # keyframes before the window are not wanted: seek exactly
        return _Part(0, _us(plan.start), True, None, True)
    seek = _us(max(0.0, plan.start - SEEK_MARGIN_S))
    return _Part(0, seek, True, plan.num_frames, True)


def sample_timestamps(config: DecodeConfig, source: VideoSource) -> np.ndarray | None:
    """The timestamps decode() will produce, float64 [N], when known in advance
    (num_frames mode); None in fps and keyframe modes, where they depend on the
    stream."""
    plan = _plan(config, source)
    if plan.num_frames is None:
        return None
    return plan.start + plan.offset + np.arange(plan.num_frames) * plan.step


def _fmt(x: float) -> str:
    return f"{x:.9g}"


def _us(x: float) -> float:
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
    plan = _plan(config, source)
    return _command(uri, config, source, plan, _whole(plan), output, ffmpeg_exe)


def _command(
    uri: str | os.PathLike[str],
    config: DecodeConfig,
    source: VideoSource,
    plan: _Plan,
    part: _Part,
    output: str = "pipe:",
    ffmpeg_exe: str | None = None,
    cuda: bool = False,
) -> list[str]:
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
        window_end = _us(plan.start + plan.span - part.seek)  # seconds after the seek
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
        # Last, so it logs exactly the frames written, after all the scaling (its
        # checksums then cost little): their pts, in microseconds from the seek point.
        stream = stream.filter("showinfo")

    out_args: dict[str, Any] = {
        "format": "rawvideo",
        "pix_fmt": "rgb24",
        "fps_mode": "passthrough",  # the fps filter already made the frames we want
        "avioflags": "direct",  # one write() per frame, not one per 32 KiB buffer
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


def _shape(stream: Any, config: DecodeConfig, plan: _Plan, rotation: int, cuda: bool) -> Any:
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


@dataclass
class DecodeInfo:
    """What one decode() did, filled in while it runs: for the video's row and logs."""

    device: str = "cpu"  # where the frames were decoded: "cpu" or "cuda"
    fallback: str | None = None  # why the requested device was not (fully) used
    parts: int = 1  # ffmpeg processes that decoded time ranges of the video


def decode(
    uri: str | os.PathLike[str],
    config: DecodeConfig,
    source: VideoSource | None = None,
    *,
    info: DecodeInfo | None = None,
) -> Iterator[FrameBatch]:
    """Stream a video as batches of sampled frames.

    Yields FrameBatch with frames uint8 [B, H, W, 3] (B <= config.batch_size, H×W =
    config.size or the rotated native size), timestamps float64 [B] seconds,
    frame_index int64 [B]. Probes first when ``source`` is None. Probing and
    command-building errors raise here; ffmpeg runs (and its errors raise) only while
    the result is iterated. Long videos in exact mode are decoded by several ffmpeg
    processes at once (``config.segments``), with the same output. With
    ``config.device="cuda"``, a codec NVDEC cannot decode, or an NVDEC failure, falls
    back to the CPU; ``info`` records it. Raises DecodeError.
    """
    if source is None:
        source = probe(uri)
    elif not Path(uri).exists():
        raise DecodeError(str(uri), "file not found")
    if not source.has_video:
        raise DecodeError(str(uri), "no video stream")
    info = info if info is not None else DecodeInfo()
    plan = _plan(config, source)
    if config.device == "cuda":
        if source.codec in NVDEC_CODECS:
            return _checked(_decode_cuda(str(uri), config, source, plan, info), str(uri), plan)
        info.fallback = f"NVDEC cannot decode {source.codec or 'this codec'}: decoded on the CPU"
        log.warning("%s: %s", uri, info.fallback)
    if not plan.keyframes:
        parts, inflight = plan_parts(uri, config, source, plan)
        if len(parts) > 1:
            info.parts = len(parts)
            return _segmented(str(uri), config, source, plan, parts, inflight)
    cmd = _command(uri, config, source, plan, _whole(plan))
    return _checked(_read(cmd, str(uri), plan, _whole(plan), config, source), str(uri), plan)


def _decode_cuda(
    uri: str, config: DecodeConfig, source: VideoSource, plan: _Plan, info: DecodeInfo
) -> Iterator[FrameBatch]:
    """Decode on NVDEC; if ffmpeg fails there (no GPU, no CUDA build, an unsupported
    profile, a failure mid-video), go on on the CPU from where it stopped."""
    whole = _whole(plan)
    produced = 0
    last_t = 0.0
    try:
        cmd = _command(uri, config, source, plan, whole, cuda=True)
        for batch in _read(cmd, uri, plan, whole, config, source):
            produced += len(batch)
            last_t = float(batch.timestamps[-1])
            info.device = "cuda"
            yield batch
        info.device = "cuda"
        return
    except DecodeError as err:
        detail = tail_lines(err.stderr_tail, 1)
        why = err.reason + (f" ({detail})" if detail else "")
    if produced == 0:
        info.fallback = f"NVDEC decode failed, decoded on the CPU: {why}"
        rest = whole
    else:
        info.fallback = f"NVDEC failed after {last_t:.3f} s, the rest decoded on the CPU: {why}"
        if plan.keyframes:  # the next keyframe that thinning would keep
            nxt = last_t + max(plan.step - ON_SCREEN_TOLERANCE_S, 1e-6)
            rest = _Part(0, _us(nxt), True, None, True)
        else:
            tick = plan.first_t + produced * plan.step
            left = None if plan.num_frames is None else plan.num_frames - produced
            rest = _Part(produced, _us(max(0.0, tick - SEEK_MARGIN_S)), True, left, True)
    log.warning("%s: %s", uri, info.fallback)
    info.device = "cpu"
    if rest.frames == 0:
        return
    cmd = _command(uri, config, source, plan, rest)
    yield from _read(cmd, uri, plan, rest, config, source)


def _checked(batches: Iterator[FrameBatch], uri: str, plan: _Plan) -> Iterator[FrameBatch]:
    """``batches``, raising DecodeError at the end when there were none."""
    produced = 0
    for batch in batches:
        produced += len(batch)
        yield batch
    if produced == 0:
        if plan.keyframes:
            raise DecodeError(
                uri,
                "no keyframe was decoded: the stream has none the decoder can use"
                + (" in the time window" if plan.start > 0 or plan.span is not None else "")
                + " (decode it with sample='exact')",
            )
        raise DecodeError(uri, "ffmpeg decoded no frames from this video")


_PTS_RE = re.compile(r"\[Parsed_showinfo_\d+ @ [^\]]*\] (?:\[\w+\] )?n:\s*\d+ pts:\s*(\S+)")


def _frame_index(t: np.ndarray, source: VideoSource) -> np.ndarray:
    if not source.fps:
        return np.full(len(t), -1, dtype=np.int64)
    idx = np.floor((t + ON_SCREEN_TOLERANCE_S) * source.fps + 1e-9).astype(np.int64)
    if source.num_frames:
        np.clip(idx, 0, source.num_frames - 1, out=idx)
    return idx


def _read(
    cmd: list[str],
    uri: str,
    plan: _Plan,
    part: _Part,
    config: DecodeConfig,
    source: VideoSource,
    stop: threading.Event | None = None,
) -> Iterator[FrameBatch]:
    """Run one ffmpeg and yield its frames in batches; raises DecodeError when ffmpeg
    fails. ``stop``: checked between batches; when set, ffmpeg is killed and the
    generator ends."""
    h, w = plan.out_hw
    frame_bytes = h * w * 3
    produced = 0
    seek_us = round(part.seek * 1e6)
    with FFmpegPipe(
        cmd, uri, config.timeout_s, capture=_PTS_RE if plan.keyframes else None
    ) as pipe:
        while stop is None or not stop.is_set():
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
                if plan.keyframes:
                    t = _keyframe_times(pipe.captured(n), seek_us, uri)
                else:
                    ticks = part.first_tick + produced + np.arange(n, dtype=np.float64)
                    t = plan.first_t + ticks * plan.step
                produced += n
                yield FrameBatch(
                    frames=batch[:n] if n < len(batch) else batch,
                    timestamps=t,
                    frame_index=_frame_index(t, source),
                )
            if got < len(batch) * frame_bytes:
                break  # stdout ended
        else:
            return  # stopped: ``with`` kills ffmpeg
        rc = pipe.wait()
        if rc != 0:
            tail = pipe.stderr_tail()
            hint = "; the file looks truncated or corrupt" if _CORRUPT_RE.search(tail) else ""
            raise DecodeError(uri, f"ffmpeg failed while decoding (exit code {rc}){hint}", tail)


def _keyframe_times(pts: list[str], seek_us: int, uri: str) -> np.ndarray:
    """showinfo's pts (microseconds after the seek point) -> seconds in the video."""
    try:
        us = np.array([int(p) for p in pts], dtype=np.int64)
    except ValueError:
        raise DecodeError(uri, f"a keyframe has no timestamp (showinfo pts: {pts})") from None
    return (us + seek_us).astype(np.float64) / 1e6


# --------------------------------------------------------------------------- segments


def plan_parts(
    uri: str | os.PathLike[str], config: DecodeConfig, source: VideoSource, plan: _Plan
) -> tuple[list[_Part], int]:
    """How an exact-mode decode splits into ffmpeg processes (one part: serial).

    Parts begin just after keyframes found by a packet scan, so each one's ffmpeg
    starts decoding right there; its seek keeps every frame from the keyframe at or
    before its start (``-noaccurate_seek``), so the frame on screen at its first tick
    is always among them, however long ago it started. That is what makes the frames
    identical to one ffmpeg's, and why only containers with a seek index are split.
    Returns the parts and how many run at once.
    """
    if plan.keyframes or plan.span is None:
        return [_whole(plan)], 1
    k = config.segments if config.segments is not None else auto_segments(plan.span)
    if k <= 1:
        return [_whole(plan)], 1
    scan = scan_keyframes(uri, timeout_s=max(config.timeout_s, plan.span / 20))
    if scan is None or not scan.seekable:
        return [_whole(plan)], 1
    # A part waiting for the consumer holds at most SEGMENT_QUEUE_BATCHES batches before
    # it stalls: parts about that long keep every process busy with bounded memory.
    fits = SEGMENT_QUEUE_BATCHES * config.batch_size * plan.step
    length = min(plan.span / k, max(fits, MIN_PART_S))
    end = plan.start + plan.span
    bounds = split_points(scan.keyframes, plan.start, end, length, SEGMENT_AFTER_KEYFRAME_S)
    total = plan.num_frames
    pairs: list[tuple[int, float]] = []  # (first tick, seek) of parts 2..n
    for b in bounds:
        # first tick at which a frame starting at or after b may be on screen
        a = math.ceil((b - ON_SCREEN_TOLERANCE_S - plan.first_t) / plan.step - 1e-9)
        if a > (pairs[-1][0] if pairs else 0) and (total is None or a < total):
            pairs.append((a, _us(b)))
    if not pairs:
        return [_whole(plan)], 1
    inflight = min(k, len(pairs) + 1)
    threads = max(1, available_cpus() // inflight)
    parts = [replace(_whole(plan), frames=pairs[0][0], last=False, threads=threads)]
    for i, (a, seek) in enumerate(pairs):
        nxt = pairs[i + 1][0] if i + 1 < len(pairs) else None
        frames = nxt - a if nxt is not None else (None if total is None else total - a)
        parts.append(_Part(a, seek, False, frames, nxt is None, threads))
    return parts, inflight


def _segmented(
    uri: str,
    config: DecodeConfig,
    source: VideoSource,
    plan: _Plan,
    parts: list[_Part],
    inflight: int,
) -> Iterator[FrameBatch]:
    """The parts' frames, in order, as if one ffmpeg had decoded the window."""

    def task(part: _Part) -> Callable[[threading.Event], Iterator[FrameBatch]]:
        cmd = _command(uri, config, source, plan, part)
        return lambda stop: _read(cmd, uri, plan, part, config, source, stop)

    produced = 0
    last: FrameBatch | None = None
    tasks = [task(p) for p in parts]
    with OrderedParallel(tasks, inflight, SEGMENT_QUEUE_BATCHES) as runner:
        for part, batches in zip(parts, runner, strict=True):
            got = 0
            for batch in batches:
                got += len(batch)
                last = batch
                yield batch
            produced += got
            if not part.last and part.frames is not None and got < part.frames:
                break  # the stream ended inside this part: later parts have no frames
    if plan.num_frames is not None and last is not None and produced < plan.num_frames:
        # One ffmpeg would repeat its last frame (tpad) up to num_frames: so do we.
        frame = last.frames[-1]
        while produced < plan.num_frames:
            n = min(config.batch_size, plan.num_frames - produced)
            t = plan.first_t + (produced + np.arange(n, dtype=np.float64)) * plan.step
            frames = np.broadcast_to(frame, (n, *frame.shape)).copy()
            yield FrameBatch(frames=frames, timestamps=t, frame_index=_frame_index(t, source))
            produced += n
    if produced == 0:
        raise DecodeError(uri, "ffmpeg decoded no frames from this video")


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
