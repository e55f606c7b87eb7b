"""Frozen frame encoders: uint8 frames -> visual tokens [B, N, D] (+ a pooled embedding).

``load_encoder(model)`` picks the family from the checkpoint's own config; family
modules (``clip``, ``blip2``, ``llava``, ``smolvlm``) are imported only when used, so
importing this package does not import transformers.
"""

from videomem.encoders.base import FrameEncoder, TextEncoder, load_encoder

__all__ = ["FrameEncoder", "TextEncoder", "load_encoder"]
