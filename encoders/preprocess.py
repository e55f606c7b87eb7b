"""Image preprocessing on whole batches in torch, with the checkpoint's own constants.

Frames arrive already resized by ffmpeg to ``input_size``; preprocessing is only rescale
+ normalise, done on the whole batch (no PIL loop, no torchvision). The constants are
read through the checkpoint's image processor with the PIL backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from videomem.encoders.hf import LoadSettings, local_files_only
from videomem.pipeline.errors import EncoderError


def as_frame_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] as a torch tensor without a copy when possible."""
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        # Frames read from ffmpeg's pipe are read-only views; torch warns on those
        # (it cannot promise not to write). We never write into them, so wrapping is
        # safe — but keep torch quiet without copying the batch.
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            x = torch.from_numpy(frames)
    else:
        x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise EncoderError(f"expected uint8 frames [B, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    return x


def to_pixel_tensor(
    frames: np.ndarray | torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    rescale: float = 1 / 255,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W], on the whole batch.

    The uint8 batch is moved to ``device`` first (4x less to transfer than floats);
    rescale and normalise happen in float32 (as the reference processors do) and the
    result is cast to the model dtype last.
    """
    x = as_frame_tensor(frames)
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).to(torch.float32) * rescale
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x - m) / s).to(dtype)


def timestamps_tensor(timestamps: Sequence[float] | None, n: int) -> torch.Tensor:
    if timestamps is None:
        return torch.arange(n, dtype=torch.float64)
    t = torch.as_tensor(np.asarray(timestamps, dtype=np.float64))
    if t.shape != (n,):
        raise EncoderError(f"expected {n} timestamps, got shape {tuple(t.shape)}")
    return t


@dataclass(frozen=True)
class ImageSpec:
    """What a checkpoint's image processor does to a frame already at ``input_size``:
    rescale, then normalise. Resizing/cropping is ffmpeg's job (and is the identity
    for frames at ``input_size``, which the parity tests check)."""

    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale: float

    def pixels(
        self, frames: np.ndarray | torch.Tensor, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> float [B, 3, H, W] on ``device`` in ``dtype``."""
        return to_pixel_tensor(frames, self.mean, self.std, self.rescale, device, dtype)


def processor_input_size(image_processor: Any) -> tuple[int, int]:
    """(H, W) the processor feeds the model: the crop if it crops, else the resize
    target. Frames scaled to exactly this size pass its resize/crop unchanged."""

    def get(size: Any, key: str) -> Any:
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    if getattr(image_processor, "do_center_crop", False):
        crop = getattr(image_processor, "crop_size", None)
        if crop is not None and get(crop, "height") and get(crop, "width"):
            return int(get(crop, "height")), int(get(crop, "width"))
    size = getattr(image_processor, "size", None)
    if size is not None:
        if get(size, "height") and get(size, "width"):
            return int(get(size, "height")), int(get(size, "width"))
        if get(size, "shortest_edge"):
            edge = int(get(size, "shortest_edge"))
            return edge, edge
    raise EncoderError(f"cannot tell the input size from {type(image_processor).__name__}")


def load_image_spec(
    path: str,
    settings: LoadSettings,
    input_size: Callable[[Any], tuple[int, int]] = processor_input_size,
) -> ImageSpec:
    """The checkpoint's own preprocessing constants, read through its image processor
    with the PIL backend (so torchvision is never needed), defaults included.

    ``input_size(image_processor) -> (H, W)`` is the frame size; a family whose frames
    do not take the processor's still-image path (e.g. SmolVLM) passes its own.
    """
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(
            path,
            backend="pil",
            trust_remote_code=settings.trust_remote_code,
            local_files_only=local_files_only(path),
        )
    except (OSError, ValueError) as e:
        raise EncoderError(f"{path}: cannot load the image processor ({e})") from e
    rescale = float(proc.rescale_factor) if getattr(proc, "do_rescale", True) else 1.0
    if getattr(proc, "do_normalize", True):
        mean, std = proc.image_mean, proc.image_std
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return ImageSpec(
        input_size=input_size(proc),
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
        rescale=rescale,
    )
