"""Frozen frame encoders: uint8 frames -> visual tokens [B, N, D] (+ a pooled embedding).

``load_encoder(model)`` picks the family from the checkpoint's own config through the one
table in ``registry``; family modules (``clip``, ``blip2``, ``llava``, ``smolvlm``,
``mobilenet``) are imported only when used, so importing this package does not import
transformers.

Modules: ``contract`` (the FrameEncoder/TextEncoder protocols), ``registry`` (families,
``load_encoder``), ``hf`` (Hugging Face loading, shared with the QA stage),
``config`` (``EncoderConfig``), ``fingerprint``, ``preprocess`` (batch pixel
preprocessing), ``batched`` (the shared encode loop), one module per family, ``testing``
(tiny random test checkpoints, one module per family).
"""

from videomem.encoders.contract import FrameEncoder, TextEncoder
from videomem.encoders.registry import load_encoder

__all__ = ["FrameEncoder", "TextEncoder", "load_encoder"]
