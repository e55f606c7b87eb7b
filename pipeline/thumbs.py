"""Small JPEG thumbnails of decoded frames (for the per-slot pictures of a memory)."""

from __future__ import annotations

import io

import numpy as np

#: pixels on the long side: a few KB per JPEG, enough to recognise a scene
THUMB_SIDE = 160
#: JPEG quality of stored thumbnails
THUMB_QUALITY = 80


def jpeg_thumbnails(
    frames: np.ndarray, side: int = THUMB_SIDE, quality: int = THUMB_QUALITY
) -> list[bytes]:
    """uint8 frames [B, H, W, 3] (RGB) -> B JPEGs scaled to ``side`` px on the long side."""
    from PIL import Image

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
