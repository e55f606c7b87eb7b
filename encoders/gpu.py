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
* **Out of memory**: a chunk that runs the GPU out of memory is retried as two
  halves (down to one frame), and later chunks keep the smaller size, so a batch
  size too large for the card costs one failed forward, not the job.
"""

from __future__ import annotations

import logging

import torch

__all__ = ["PinnedStager", "half_dtype", "is_out_of_memory"]

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
