"""Decoding into torch tensors on the encoder's device, with torchcodec.

Design decisions:

* **Why**: ffmpeg's NVDEC path (``pipeline.decode``, ``device="cuda"``) keeps frames on
  the GPU through sampling and scaling, then downloads them to pipe them to Python,
  and the encoder uploads them again. torchcodec's CUDA decoder leaves the frames in
  GPU memory: ``FrameBatch.frames`` is then a CUDA uint8 tensor [B, H, W, 3], which
  the encoder takes as it is (no host copy either way). On the CPU the same code runs
  on torchcodec's CPU decoder, which is how it is tested without a GPU.
* **Same timestamps as ffmpeg**: the ticks are the :class:`~videomem.pipeline.plan.Plan`'s
  (``first_t + k * step``), and ``get_frames_played_at(t + ON_SCREEN_TOLERANCE_S)``
  is the frame on screen at tick ``t``, as ffmpeg's ``fps`` filter (``round=up``)
  picks it. In fps mode the ticks stop at the end of the last frame that starts before
  the window's end (``-t`` keeps that frame, the fps filter shows it to its end), or
  at the end of the stream; in num_frames mode a tick past the end of the stream
  repeats the last frame, as ffmpeg's ``tpad`` does.
* **Same geometry, torch's pixels**: rotation (``rot90``), a resize into the box that
  ffmpeg's ``scale`` expressions compute (``plan._fit``), then centred pad or crop;
  the resize is torch's bicubic with antialiasing, so pixel values differ from
  ffmpeg's swscale by interpolation rounding (tested within a bound), not in content.
  The display aspect ratio uses torchcodec's pixel aspect ratio (the probe does not
  report it); newer torchcodec rotates by the display matrix itself, which the
  frames' shape (or its ``rotation`` metadata) tells.
* **Bounded memory**: frames are decoded ``batch_size`` ticks at a time, so at most one
  batch is held at the native resolution.
* **Exact mode only**: keyframe sampling stays with ffmpeg (``-skip_frame nokey``).
  torchcodec missing or unable to load (it needs FFmpeg's shared libraries, and a
  CUDA build of itself for ``cuda``) raises :class:`TorchcodecUnavailable`; decode()
  then falls back to ffmpeg and records why.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from videomem.pipeline.errors import DecodeError
from videomem.pipeline.plan import ON_SCREEN_TOLERANCE_S, Plan, frame_index
from videomem.pipeline.types import DecodeConfig, FrameBatch, VideoSource

__all__ = ["TorchcodecUnavailable", "decode_torchcodec", "fit_box", "shape_frames"]


class TorchcodecUnavailable(RuntimeError):
    """torchcodec cannot decode here (not installed, no FFmpeg libraries, no CUDA build)."""


def fit_box(w: int, h: int, dar: float, aspect: str) -> tuple[int, int]:
    """(width, height) a picture of display aspect ``dar`` is scaled to for an output of
    ``w`` x ``h``: ffmpeg's ``scale`` expressions of ``plan._fit``, evaluated."""
    if aspect == "stretch":
        return w, h
    wider = dar > w / h
    if aspect == "pad":  # fit inside
        if wider:
            return w, max(1, min(h, round(w / dar)))
        return max(1, min(w, round(h * dar))), h
    if wider:  # crop: fill, then cut the centre
        return max(w, round(h * dar)), h
    return w, max(h, round(w / dar))


def shape_frames(
    frames: torch.Tensor,
    rotation: int,
    size: tuple[int, int] | None,
    aspect: str,
    pixel_aspect: float = 1.0,
) -> torch.Tensor:
    """uint8 [B, 3, H, W] as decoded -> uint8 [B, H', W', 3]: rotated clockwise by
    ``rotation`` degrees, fitted into ``size`` = (H', W') by ``aspect`` using the
    display aspect ratio (``pixel_aspect``: the width of a pixel over its height,
    before rotation), on the same device. ``size=None`` keeps the (rotated) coded size."""
    x = frames
    dar = pixel_aspect * int(x.shape[3]) / int(x.shape[2])
    if rotation % 360:
        x = torch.rot90(x, k=-(rotation // 90), dims=(2, 3))  # rot90 turns counter-clockwise
        if rotation % 180:
            dar = 1.0 / dar
    if size is not None:
        oh, ow = size
        ih, iw = int(x.shape[2]), int(x.shape[3])
        sw, sh = fit_box(ow, oh, dar, aspect)
        if (sh, sw) != (ih, iw):
            x = F.interpolate(x.float(), size=(sh, sw), mode="bicubic", antialias=True)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        if aspect == "pad" and (sh, sw) != (oh, ow):
            top, left = (oh - sh) // 2, (ow - sw) // 2  # ffmpeg's pad truncates
            x = F.pad(x, (left, ow - sw - left, top, oh - sh - top), value=0)
        elif aspect == "crop" and (sh, sw) != (oh, ow):
            # ffmpeg's crop centres with lrint: halves round to even, as round() does
            top, left = round((sh - oh) / 2), round((sw - ow) / 2)
            x = x[:, :, top : top + oh, left : left + ow]
    return x.permute(0, 2, 3, 1).contiguous()


def open_decoder(uri: str, device: str, threads: int | None) -> Any:
    """A torchcodec VideoDecoder on ``device`` ("cpu" or "cuda"); TorchcodecUnavailable
    when torchcodec cannot load or cannot decode on that device."""
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as err:  # ImportError, or OSError/RuntimeError loading its libraries
        raise TorchcodecUnavailable(f"torchcodec cannot be loaded: {_first_line(err)}") from err
    try:
        return VideoDecoder(uri, device=device, seek_mode="exact", num_ffmpeg_threads=threads or 0)
    except (RuntimeError, ValueError) as err:
        if device != "cpu":
            raise TorchcodecUnavailable(
                f"torchcodec cannot decode on {device}: {_first_line(err)}"
            ) from err
        raise DecodeError(uri, f"torchcodec cannot open this video: {_first_line(err)}") from err


def decode_torchcodec(
    uri: str | os.PathLike[str], config: DecodeConfig, source: VideoSource, plan: Plan
) -> Iterator[FrameBatch]:
    """The frames of ``plan`` (exact mode) decoded by torchcodec on ``config.device``, as
    uint8 tensors [B, H, W, 3] on that device; timestamps equal ffmpeg's decode().

    Raises TorchcodecUnavailable before the first batch when torchcodec cannot decode
    here, DecodeError when the video cannot be decoded.
    """
    if plan.keyframes:
        raise ValueError("decode_torchcodec decodes exact mode only")
    path = os.fspath(uri)
    decoder = open_decoder(path, config.device, config.cpus)
    meta = decoder.metadata
    stream_end = meta.end_stream_seconds
    if stream_end is None:
        raise DecodeError(path, "torchcodec reports no end for this stream")
    ticks = _tick_count(plan, decoder, float(stream_end))
    last_start = float(stream_end) - 1e-6  # a time within the last frame
    rotate: int | None = None
    par = 1.0
    for i in range(0, ticks, config.batch_size):
        k = np.arange(i, min(ticks, i + config.batch_size), dtype=np.float64)
        t = plan.first_t + k * plan.step
        asked = np.minimum(t + ON_SCREEN_TOLERANCE_S, last_start)
        try:
            got = decoder.get_frames_played_at(seconds=asked.tolist())
        except (RuntimeError, IndexError, ValueError) as err:
            raise DecodeError(
                path, f"torchcodec failed while decoding: {_first_line(err)}"
            ) from err
        data = got.data
        if rotate is None:  # does this torchcodec rotate by the display matrix itself?
            rotate = _rotation_left(data, source, meta)
            par = _pixel_aspect(meta, source, rotate)
        frames = shape_frames(data, rotate, config.size, config.aspect, par)
        yield FrameBatch(frames=frames, timestamps=t, frame_index=frame_index(t, source))


def _tick_count(plan: Plan, decoder: Any, stream_end: float) -> int:
    """How many ticks ffmpeg emits: num_frames exactly; in fps mode the ticks before the
    end of the last frame that starts before the window's end (``-t`` keeps that frame
    and the fps filter shows it to its end), or before the stream's end."""
    if plan.num_frames is not None:
        return plan.num_frames
    end = stream_end
    if plan.span is not None and plan.start + plan.span < stream_end:
        try:
            last = decoder.get_frame_played_at(seconds=plan.start + plan.span - 1e-6)
        except (RuntimeError, IndexError, ValueError):
            last = None
        if last is not None:
            end = min(stream_end, float(last.pts_seconds) + float(last.duration_seconds))
    return max(0, math.ceil((end - plan.first_t) / plan.step - 1e-9))


def _rotation_left(frames: torch.Tensor, source: VideoSource, meta: Any) -> int:
    """The rotation still to apply to torchcodec's frames: newer torchcodec applies the
    display matrix itself (and reports ``rotation``); a quarter turn shows in the shape."""
    rotation = source.rotation % 360
    if rotation == 0:
        return 0
    coded = (source.height, source.width)
    if rotation % 180:
        return rotation if tuple(int(s) for s in frames.shape[2:]) == coded else 0
    return 0 if getattr(meta, "rotation", None) is not None else rotation


def _pixel_aspect(meta: Any, source: VideoSource, rotate: int) -> float:
    """Width over height of a pixel of the frames as torchcodec hands them over."""
    par = getattr(meta, "pixel_aspect_ratio", None)
    value = float(par) if par else 1.0
    already_turned = source.rotation % 180 == 90 and rotate == 0
    return 1.0 / value if already_turned else value


def _first_line(err: BaseException) -> str:
    """The message of ``err``, first line, without torchcodec's C++ source location."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return re.sub(r"^.*\.cpp:\d+, ", "", line)
