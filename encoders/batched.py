"""What every frame-encoder family shares: frame checks, batching, output as CPU
float32. A family only says how one batch of pixels becomes tokens."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from videomem.encoders.gpu import PinnedStager, is_out_of_memory
from videomem.encoders.hf import LoadSettings
from videomem.encoders.preprocess import ImageSpec, as_frame_tensor, timestamps_tensor
from videomem.pipeline.errors import EncoderError
from videomem.pipeline.types import FrameTokens

log = logging.getLogger(__name__)


class BatchedEncoder:
    """What every family shares: frame checks, batching, ``inference_mode``, output
    as CPU float32. A family sets the attributes below and implements
    :meth:`_encode_pixels`.
    """

    input_size: tuple[int, int]
    tokens_per_frame: int
    dim: int
    embed_dim: int
    fingerprint: str
    settings: LoadSettings
    image_spec: ImageSpec
    #: pinned host buffer for uploads to the GPU (made on first use)
    _stager: PinnedStager | None = None
    #: frames per forward after an out-of-memory retry (None: settings.batch_size)
    _chunk: int | None = None

    def _encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """pixels: [b, 3, H, W] in the model dtype on the model device ->
        (tokens [b, N, D], embedding [b, E] or None), any dtype/device."""
        raise NotImplementedError

    def pixels(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> the model's pixel input [B, 3, H, W] (device, dtype)."""
        device = self.settings.device
        if device.type == "cuda":  # upload the uint8 frames asynchronously, pinned
            if self._stager is None:
                self._stager = PinnedStager()
            frames = self._stager.to_device(as_frame_tensor(frames), device)
        return self.image_spec.pixels(frames, device, self.settings.dtype)

    def encode(
        self, frames: np.ndarray | torch.Tensor, timestamps: Sequence[float] | None = None
    ) -> FrameTokens:
        """frames: uint8 [B, H, W, 3] RGB at ``input_size``; timestamps [B] seconds.

        Returns ``FrameTokens`` with tokens [B, N, D] and embedding [B, E], CPU float32,
        computed in chunks of ``settings.batch_size`` frames.
        """
        x = as_frame_tensor(frames)
        b, h, w = (int(s) for s in x.shape[:3])
        if (h, w) != tuple(self.input_size):
            raise EncoderError(
                f"frames are {h}x{w} but this encoder needs {self.input_size[0]}x"
                f"{self.input_size[1]} (H x W); decode with size=encoder.input_size"
            )
        ts = timestamps_tensor(timestamps, b)
        tokens: list[torch.Tensor] = []
        embeds: list[torch.Tensor] = []
        has_embedding = True
        # chunk size: the batch size, halved for good when a chunk runs out of GPU memory
        chunk = self._chunk or self.settings.batch_size
        with torch.inference_mode():
            i = 0
            while i < b:
                n = min(chunk, b - i)
                try:
                    tok, emb = self._encode_pixels(self.pixels(x[i : i + n]))
                except RuntimeError as err:
                    if n == 1 or not is_out_of_memory(err):
                        raise
                    del err  # its traceback holds the tensors that filled the GPU
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    chunk = self._chunk = max(1, n // 2)
                    log.warning("%r: out of GPU memory at %d frames, retrying %d", self, n, chunk)
                    continue
                tokens.append(tok.to("cpu", torch.float32))
                if emb is None:
                    has_embedding = False
                else:
                    embeds.append(emb.to("cpu", torch.float32))
                i += n
        if b == 0:
            return FrameTokens(
                tokens=torch.zeros(0, self.tokens_per_frame, self.dim),
                timestamps=ts,
                embedding=torch.zeros(0, self.embed_dim),
            )
        return FrameTokens(
            tokens=torch.cat(tokens),
            timestamps=ts,
            embedding=torch.cat(embeds) if has_embedding else None,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fingerprint})"
