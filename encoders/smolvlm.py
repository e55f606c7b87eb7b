"""SmolVLM / Idefics3 as frame encoders: tokens after the connector.

The tokens of a frame are what the language model receives at the frame's
``<image>`` positions: SigLIP-style vision tower (last hidden state, post-layernorm),
then the connector (pixel shuffle by ``scale_factor`` + linear projection).
N = (S/p)² / scale², D = the LM's hidden size (SmolVLM2-256M: 512 px, patch 16,
scale 4 -> 64 tokens of width 576).

Frames are treated the way SmolVLM's *video* path treats them: one frame = one
image resized straight to the vision encoder's size (``max_image_size``), no image
splitting into tiles. ``input_size`` is therefore (L, L) with L =
``max_image_size["longest_edge"]``; the image processor with
``do_image_splitting=False`` and ``size={"longest_edge": L}`` gives the same pixels.

We call ``vision_model`` and ``connector`` directly instead of
``get_image_features``: the latter drops any image whose normalised pixels are all
exactly zero (it treats them as batch padding), which would silently change the
number of frames for a checkpoint whose mean makes a flat frame normalise to 0.
With no such frame both paths are the same computation (tests check this).

Loading, preprocessing and the pooled embedding follow :mod:`videomem.encoders.llava`
(LM decoder layers skipped at load; rescale + normalise in torch with the
checkpoint's constants; embedding = mean of the N tokens, E = D).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from videomem.encoders.base import (
    LoadSettings,
    fingerprint,
    register,
    to_pixel_tensor,
    weights_identity,
)
from videomem.encoders.llava import encode_in_batches, load_image_processor, load_vlm
from videomem.pipeline.errors import EncoderError
from videomem.pipeline.types import FrameTokens

_CLASSES = {
    "smolvlm": "SmolVLMForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
}


def _longest_edge(size: Any) -> int | None:
    if size is None:
        return None
    get = size.get if hasattr(size, "get") else lambda k: getattr(size, k, None)
    v = get("longest_edge")
    return int(v) if v else None


class SmolVLMEncoder:
    """Frames -> connector output, tokens [B, N, D]; embedding [B, D] (mean)."""

    def __init__(self, path: str, config: Any, settings: LoadSettings, **options: Any) -> None:
        if options:
            raise EncoderError(
                f"{config.model_type}: unknown encoder options {sorted(options)}; the tokens "
                "are fixed by the checkpoint's config"
            )
        self.model_type: str = config.model_type
        self.settings = settings
        self.dtype = settings.dtype
        self.batch_size = max(1, int(settings.batch_size))

        proc = load_image_processor(path, settings.trust_remote_code)
        edge = _longest_edge(getattr(proc, "max_image_size", None))
        edge = edge or int(config.vision_config.image_size)
        self.input_size: tuple[int, int] = (edge, edge)
        self._mean = [float(v) for v in proc.image_mean]
        self._std = [float(v) for v in proc.image_std]
        self._rescale = float(getattr(proc, "rescale_factor", 1 / 255))

        vlm = load_vlm(_CLASSES[self.model_type], path, config, settings)
        core = vlm.model
        core.text_model = None  # decoder-less after load_vlm; not needed
        self._vision = core.vision_model
        self._connector = core.connector

        patch = int(config.vision_config.patch_size)
        if edge % patch:
            raise EncoderError(f"input size {edge} is not a multiple of the patch size {patch}")
        side = edge // patch
        self._patch_mask = torch.ones(1, side, side, dtype=torch.bool, device=settings.device)
        self.tokens_per_frame: int = side * side // int(config.scale_factor) ** 2
        self.dim: int = int(config.text_config.hidden_size)
        self.embed_dim: int = self.dim
        self.fingerprint: str = fingerprint(
            settings.source,
            config,
            self.dtype,
            weights_identity(path),
            family=self.model_type,
            path="frame",
            pooled="mean",
        )

    def _features(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [b, 3, L, L] (model dtype, device) -> tokens [b, N, D]."""
        # All-ones pixel mask, as the model builds when no pixel_attention_mask is given.
        mask = self._patch_mask.expand(pixels.shape[0], -1, -1)
        hidden = self._vision(
            pixel_values=pixels, patch_attention_mask=mask, return_dict=True
        ).last_hidden_state
        return self._connector(hidden)

    def pixel_values(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [B, L, L, 3] -> normalised [B, 3, L, L] in the model dtype, on device."""
        x = torch.as_tensor(frames)
        if x.ndim == 4 and tuple(x.shape[1:3]) != self.input_size:
            raise EncoderError(
                f"frames are {tuple(x.shape[1:3])}, this encoder needs {self.input_size} "
                "(scale them in the decoder)"
            )
        return to_pixel_tensor(
            x, self._mean, self._std, self._rescale, device=self.settings.device, dtype=self.dtype
        )

    def encode(
        self, frames: np.ndarray | torch.Tensor, timestamps: Sequence[float] | None = None
    ) -> FrameTokens:
        """frames uint8 [B, L, L, 3] -> tokens [B, N, D] and embedding [B, D], float32
        on the CPU; runs in chunks of ``batch_size`` frames."""
        return encode_in_batches(self, frames, timestamps, self.batch_size, self._features)


@register(*_CLASSES)
def _factory(path: str, config: Any, settings: LoadSettings, **options: Any) -> SmolVLMEncoder:
    return SmolVLMEncoder(path, config, settings, **options)
