"""The frame-encoder contract: what every family module provides.

A frame encoder is anything that satisfies :class:`FrameEncoder`: uint8 frames in,
``FrameTokens`` out. The memory algorithms never see a model; the index step and the
QA stage only see this contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from videomem.pipeline.types import FrameTokens


@runtime_checkable
class FrameEncoder(Protocol):
    """Turns decoded frames into visual tokens."""

    #: (height, width) the decoder should scale frames to
    input_size: tuple[int, int]
    #: N, tokens per frame
    tokens_per_frame: int
    #: D, token width
    dim: int
    #: E, width of the pooled per-frame embedding
    embed_dim: int
    #: stable identity: model, config/weights hash, dtype, layer/pooling choices
    fingerprint: str

    def encode(
        self, frames: np.ndarray | torch.Tensor, timestamps: Sequence[float] | None = None
    ) -> FrameTokens:
        """frames: uint8 [B, H, W, 3] RGB at ``input_size``; timestamps: [B] seconds
        (None -> frame order 0..B-1). Returns tokens [B, N, D] and embedding [B, E]
        on the CPU in float32."""
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """Encodes text into the same space as a frame encoder's pooled embedding."""

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Returns float32 [T, E] on the CPU, in the frame embedding's space."""
        ...
