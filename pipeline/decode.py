"""Stream sampled, resized RGB frames out of one ffmpeg process per video.

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

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import ffmpeg as ffmpeg_python
import numpy as np
from videomem.pipeline.errors import DecodeError
from videomem.pipeline.ffmpeg import FFmpegPipe, find_ffmpeg
from videomem.pipeline.probe import probe
from videomem.pipeline.types import DecodeConfig, FrameBatch, VideoSource

__all__ = [
    "build_command",
    "check_video",
    "decode",
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

_CORRUPT_RE = re.compile(r"partial file|Invalid NAL|error while decoding|corrupt", re.I)

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
