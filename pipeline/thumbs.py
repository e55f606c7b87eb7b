"""Small JPEG thumbnails of decoded frames (for the per-slot pictures of a memory)."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

#: pixels on the long side: a few KB per JPEG, enough to recognise a scene
THUMB_SIDE = 160
#: JPEG quality of stored thumbnails
THUMB_QUALITY = 80


def jpeg_thumbnails(
    frames: np.ndarray | torch.Tensor, side: int = THUMB_SIDE, quality: int = THUMB_QUALITY
) -> list[bytes]:
    """uint8 frames [B, H, W, 3] (RGB) -> B JPEGs scaled to ``side`` px on the long side.
    Frames in GPU memory are scaled there first: only the thumbnails are copied out."""
    from PIL import Image

    if isinstance(frames, torch.Tensor):
        frames = _small_on_device(frames, side).cpu().numpy()
    out = []
    for f in np.asarray(frames):
        img = Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8))
        scale = side / max(img.size)
        if scale < 1:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def _small_on_device(frames: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 [B, H, W, 3] scaled (bilinear, antialiased) to ``side`` on the long side,
    where it is; unchanged when already that small."""
    h, w = int(frames.shape[1]), int(frames.shape[2])
    scale = side / max(h, w)
    if scale >= 1 or frames.device.type == "cpu":
        return frames
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
