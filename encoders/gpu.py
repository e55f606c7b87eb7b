"""GPU-side helpers of the frame encoders, kept apart from the families.

Design decisions:

* **Half precision by device**: bf16 where the GPU computes it natively (compute
  capability 8.0+: A100, H100, L4 …), else fp16 (V100, T4): bf16 on those runs in
  slow emulation or not at all. CPUs keep fp32.
* **Pinned staging**: frames arrive as pageable NumPy memory; a copy from pageable
  memory to the GPU is synchronous and goes through a driver bounce buffer. One pinned
  host buffer per encoder, reused, makes the upload a real asynchronous DMA
  (``non_blocking=True``); an event recorded after each upload guards the buffer
  against being overwritten while the copy is still in flight.
* **Copies overlap compute** (:class:`SideStreamUploader`): while chunk k runs on the
  compute stream, chunk k+1 is staged into the other of two pinned buffers and copied
  on a side stream; the compute stream waits on that copy's event only when it gets to
  chunk k+1, and ``record_stream`` tells the caching allocator the tensor is used
  there. On the CPU the same loop runs with :class:`HostUploader`, which copies
  nothing, so the lookahead logic is exercised everywhere.
* **Out of memory**: a chunk that runs the GPU out of memory is retried as two
  halves (down to one frame), and later chunks keep the smaller size, so a batch
  size too large for the card costs one failed forward, not the job.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch

__all__ = [
    "HostUploader",
    "PinnedStager",
    "SideStreamUploader",
    "Upload",
    "half_dtype",
    "is_out_of_memory",
]

log = logging.getLogger(__name__)


def half_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs with native bf16 (compute capability >= 8.0), else fp16; bf16 when
    there is no GPU to ask (the device is then refused later, where it is used)."""
    if not torch.cuda.is_available():
        return torch.bfloat16
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, _ = torch.cuda.get_device_capability(index)
    return torch.bfloat16 if major >= 8 else torch.float16


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA out-of-memory error (torch's class, or its message on older builds)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(err, oom):
        return True
    return isinstance(err, RuntimeError) and "CUDA out of memory" in str(err)


class PinnedStager:
    """Uploads uint8 CPU tensors to a CUDA device through one reused pinned buffer."""

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None
        self._done: torch.cuda.Event | None = None

    def to_device(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``x`` on ``device``; CPU targets and tensors already on a GPU pass through."""
        if device.type != "cuda" or x.device.type != "cpu":
            return x.to(device)
        n = x.numel()
        if self._done is not None:
            self._done.synchronize()  # the previous upload has left the buffer
        if self._buffer is None or self._buffer.numel() < n or self._buffer.dtype != x.dtype:
            self._buffer = torch.empty(n, dtype=x.dtype, pin_memory=True)
        staged = self._buffer[:n].view(x.shape)
        staged.copy_(x)
        out = staged.to(device, non_blocking=True)
        self._done = torch.cuda.Event()
        self._done.record(torch.cuda.current_stream(device))
        return out


class Upload(NamedTuple):
    """One chunk of frames on its way to the device."""

    key: tuple[int, int]  # (first frame, frame count) of the chunk in the batch
    frames: torch.Tensor  # uint8 [n, H, W, 3]: on the device (copy maybe in flight)
    ready: torch.cuda.Event | None  # recorded on the side stream after the copy


class HostUploader:
    """The CPU stand-in of :class:`SideStreamUploader`: frames stay where they are."""

    def put(self, x: torch.Tensor, key: tuple[int, int]) -> Upload:
        return Upload(key, x, None)

    def take(self, up: Upload) -> torch.Tensor:
        return up.frames


class SideStreamUploader:
    """Uploads uint8 CPU frames to ``device`` on a side stream, through two pinned
    buffers used in turn, so one chunk's copy overlaps the previous chunk's compute."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self._buffers: list[torch.Tensor | None] = [None, None]
        self._copied: list[torch.cuda.Event | None] = [None, None]
        self._next = 0

    def put(self, x: torch.Tensor, key: tuple[int, int]) -> Upload:
        """Start copying ``x`` (uint8 CPU [n, H, W, 3]); returns at once. Frames already
        on the device (decoded there) are used as they are."""
        if x.device.type == "cuda":
            return Upload(key, x.to(self.device), None)
        k, self._next = self._next, 1 - self._next
        last = self._copied[k]
        if last is not None:
            last.synchronize()  # buffer k's previous copy has left it
        n = x.numel()
        buf = self._buffers[k]
        if buf is None or buf.numel() < n or buf.dtype != x.dtype:
            buf = self._buffers[k] = torch.empty(n, dtype=x.dtype, pin_memory=True)
        staged = buf[:n].view(x.shape)
        staged.copy_(x)
        with torch.cuda.stream(self.stream):
            out = staged.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.stream)
        self._copied[k] = done
        return Upload(key, out, done)

    def take(self, up: Upload) -> torch.Tensor:
        """The uploaded frames, usable on the current (compute) stream."""
        compute = torch.cuda.current_stream(self.device)
        if up.ready is not None:
            compute.wait_event(up.ready)
        up.frames.record_stream(compute)  # allocated on the side stream, used here
        return up.frames
