"""Stream sampled, resized RGB frames out of one ffmpeg process per video.

What is sampled and the ffmpeg command that does it are planned in
:mod:`videomem.pipeline.plan`; this module runs the processes and reads their frames.

Design decisions:

* **One streaming ffmpeg per video** (or per time range, below), run with our own
  ``Popen`` (:class:`~videomem.pipeline.ffmpeg.FFmpegPipe`): rawvideo ``rgb24`` on
  stdout, read in exact frame-size chunks straight into the batch array; stderr drained
  by a thread; a read that sees nothing for ``timeout_s`` kills ffmpeg; the child is
  killed and reaped in ``finally`` (normal end, early ``break``, error). Only one batch
  is allocated at a time, so memory is bounded by ``batch_size`` and whatever the
  caller keeps, however long the video.
* **Timestamps are computed, not parsed**, in exact mode: tick ``k`` of the plan is at
  ``first_t + k * step``. ``frame_index = floor((t + 1 ms) * native_fps)``: the index
  of the on-screen frame for constant-frame-rate video (an approximation for variable
  frame rate). In keyframe mode they are the frames' own pts, read from the
  ``showinfo`` filter's log line for each written frame (integer microseconds, in
  order), not a grid.
* **Segment-parallel exact mode** (``segments``): the parts of
  :func:`~videomem.pipeline.plan.plan_parts` run a few at a time and are read in order
  (``pipeline.segments``). Frames, timestamps and frame indexes are identical to one
  process.
* **GPU decode** (``device="cuda"``) with ffmpeg: NVDEC and ``scale_cuda``, then the
  small frames come through host memory (the rawvideo pipe). A codec NVDEC cannot
  decode goes to the CPU before trying; an ffmpeg failure on the GPU path (no device,
  an unsupported profile, a failure mid-video) goes on on the CPU from the next frame;
  ``DecodeInfo`` records it.
* **torchcodec** (``decoder="torchcodec"``, exact mode): frames decoded in process as
  torch tensors on ``device`` (``pipeline.torch_decode``), so on a GPU they reach the
  encoder without a host copy; same timestamps as ffmpeg. Where torchcodec cannot run
  (not installed, no FFmpeg libraries, no CUDA build) ffmpeg decodes the video; where
  it fails part way, ffmpeg goes on from the next tick; ``DecodeInfo`` records why.
* **Not handled**: display-matrix mirroring (only rotation is read, see
  ``pipeline.probe``); a truncated file whose index survived yields the frames before
  the cut when ffmpeg exits 0 (it usually exits non-zero, which raises DecodeError).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from videomem.pipeline.errors import DecodeError
from videomem.pipeline.ffmpeg import FFmpegPipe, tail_lines
from videomem.pipeline.plan import (
    ON_SCREEN_TOLERANCE_S,
    SEEK_MARGIN_S,
    Part,
    Plan,
    frame_index,
    make_plan,
    part_command,
    plan_parts,
    round_us,
    whole_part,
)
from videomem.pipeline.probe import probe
from videomem.pipeline.segments import SEGMENT_QUEUE_BATCHES, OrderedParallel
from videomem.pipeline.torch_decode import TorchcodecUnavailable, decode_torchcodec
from videomem.pipeline.types import DecodeConfig, FrameBatch, VideoSource

__all__ = ["NVDEC_CODECS", "DecodeInfo", "check_video", "decode"]

#: codecs NVDEC decodes (ffmpeg codec names); others go straight to the CPU. A profile
#: it cannot decode (4:4:4 H.264, 10-bit H.264) fails at run time and falls back then.
NVDEC_CODECS: Final = frozenset(
    {"h264", "hevc", "av1", "vp8", "vp9", "mpeg1video", "mpeg2video", "mpeg4", "vc1", "mjpeg"}
)

log = logging.getLogger(__name__)

_CORRUPT_RE = re.compile(r"partial file|Invalid NAL|error while decoding|corrupt", re.I)


@dataclass
class DecodeInfo:
    """What one decode() did, filled in while it runs: for the video's row and logs."""

    device: str = "cpu"  # where the frames were decoded: "cpu" or "cuda"
    fallback: str | None = None  # why the requested device was not (fully) used
    parts: int = 1  # ffmpeg processes that decoded time ranges of the video
    sample: str = "exact"  # sampling mode: "exact" (a time grid) or "keyframes"
    decoder: str = "ffmpeg"  # what decoded the frames: "ffmpeg" or "torchcodec"

    def fall_back(self, why: str) -> None:
        """Record why what was asked for was not (fully) used; reasons accumulate."""
        self.fallback = why if not self.fallback else f"{self.fallback}; {why}"


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
    info.sample = config.sample
    plan = make_plan(config, source)
    # torchcodec on a GPU decodes with NVDEC too: other codecs go to ffmpeg on the CPU
    on_gpu_ok = config.device != "cuda" or source.codec in NVDEC_CODECS
    if config.decoder == "torchcodec" and not plan.keyframes and on_gpu_ok:
        return _checked(_decode_torchcodec(str(uri), config, source, plan, info), str(uri), plan)
    return _by_ffmpeg(uri, config, source, plan, info)


def _by_ffmpeg(
    uri: str | os.PathLike[str],
    config: DecodeConfig,
    source: VideoSource,
    plan: Plan,
    info: DecodeInfo,
) -> Iterator[FrameBatch]:
    """decode() with ffmpeg: on NVDEC, on time ranges in parallel, or one process."""
    info.decoder = "ffmpeg"
    if config.device == "cuda":
        if source.codec in NVDEC_CODECS:
            return _checked(_decode_cuda(str(uri), config, source, plan, info), str(uri), plan)
        info.fall_back(f"NVDEC cannot decode {source.codec or 'this codec'}: decoded on the CPU")
        log.warning("%s: %s", uri, info.fallback)
    if not plan.keyframes:
        parts, inflight = plan_parts(uri, config, source, plan)
        if len(parts) > 1:
            info.parts = len(parts)
            return _segmented(str(uri), config, source, plan, parts, inflight)
    whole = whole_part(plan, config.cpus)
    return _checked(_read(str(uri), plan, whole, config, source), str(uri), plan)


def _decode_cuda(
    uri: str, config: DecodeConfig, source: VideoSource, plan: Plan, info: DecodeInfo
) -> Iterator[FrameBatch]:
    """Decode on NVDEC; if ffmpeg fails there (no GPU, no CUDA build, an unsupported
    profile, a failure mid-video), go on on the CPU from where it stopped."""
    whole = whole_part(plan, config.cpus)
    produced = 0
    last_t = 0.0
    try:
        for batch in _read(uri, plan, whole, config, source, cuda=True):
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
        info.fall_back(f"NVDEC decode failed, decoded on the CPU: {why}")
        rest = whole
    else:
        info.fall_back(f"NVDEC failed after {last_t:.3f} s, the rest decoded on the CPU: {why}")
        if plan.keyframes:  # the next keyframe that thinning would keep
            nxt = last_t + max(plan.step - ON_SCREEN_TOLERANCE_S, 1e-6)
            rest = Part(0, round_us(nxt), True, None, True, config.cpus)
        else:
            rest = _rest_part(plan, produced, config.cpus)
    log.warning("%s: %s", uri, info.fallback)
    info.device = "cpu"
    if rest.frames != 0:
        yield from _read(uri, plan, rest, config, source)


def _decode_torchcodec(
    uri: str, config: DecodeConfig, source: VideoSource, plan: Plan, info: DecodeInfo
) -> Iterator[FrameBatch]:
    """Decode with torchcodec; where it cannot run here, ffmpeg decodes the video, and
    if it fails part way (a GPU decoder error, data it cannot read), ffmpeg goes on
    from the next tick. Either way ``info`` says so."""
    produced = 0
    last_t = 0.0
    try:
        for batch in decode_torchcodec(uri, config, source, plan):
            info.decoder, info.device = "torchcodec", config.device
            produced += len(batch)
            last_t = float(batch.timestamps[-1])
            yield batch
        return
    except TorchcodecUnavailable as err:
        why = str(err)
    except DecodeError as err:
        why = err.reason
    if produced == 0:
        info.fall_back(f"{why}: decoded by ffmpeg")
        log.warning("%s: %s", uri, info.fallback)
        yield from _by_ffmpeg(uri, config, source, plan, info)
        return
    info.fall_back(f"torchcodec failed after {last_t:.3f} s, the rest decoded by ffmpeg: {why}")
    log.warning("%s: %s", uri, info.fallback)
    info.decoder, info.device = "ffmpeg", "cpu"
    rest = _rest_part(plan, produced, config.cpus)
    if rest.frames != 0:
        yield from _read(uri, plan, rest, config, source)


def _rest_part(plan: Plan, produced: int, cpus: int | None) -> Part:
    """The exact-mode part that goes on from tick ``produced`` (all before it done)."""
    tick = plan.first_t + produced * plan.step
    left = None if plan.num_frames is None else plan.num_frames - produced
    return Part(produced, round_us(max(0.0, tick - SEEK_MARGIN_S)), True, left, True, cpus)


def _checked(batches: Iterator[FrameBatch], uri: str, plan: Plan) -> Iterator[FrameBatch]:
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


def _read(
    uri: str,
    plan: Plan,
    part: Part,
    config: DecodeConfig,
    source: VideoSource,
    stop: threading.Event | None = None,
    *,
    cuda: bool = False,
) -> Iterator[FrameBatch]:
    """Run the ffmpeg of ``part`` (on NVDEC with ``cuda``) and yield its frames in
    batches; raises DecodeError when ffmpeg fails. ``stop``: checked between batches;
    when set, ffmpeg is killed and the generator ends."""
    cmd = part_command(uri, config, source, plan, part, cuda=cuda)
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
                    frame_index=frame_index(t, source),
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


def _segmented(
    uri: str,
    config: DecodeConfig,
    source: VideoSource,
    plan: Plan,
    parts: list[Part],
    inflight: int,
) -> Iterator[FrameBatch]:
    """The parts' frames, in order, as if one ffmpeg had decoded the window."""

    def task(part: Part) -> Callable[[threading.Event], Iterator[FrameBatch]]:
        return lambda stop: _read(uri, plan, part, config, source, stop)

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
            yield FrameBatch(frames=frames, timestamps=t, frame_index=frame_index(t, source))
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
