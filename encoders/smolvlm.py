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
(LM decoder layers skipped at load by :func:`~videomem.encoders.hf.load_vlm`;
rescale + normalise in torch with the checkpoint's constants; embedding = mean of
the N tokens, E = D).
"""

from __future__ import annotations

from typing import Any

import torch
from videomem.encoders.batched import BatchedEncoder
from videomem.encoders.fingerprint import checkpoint_fingerprint
from videomem.encoders.hf import LoadSettings, load_vlm
from videomem.encoders.preprocess import load_image_spec
from videomem.encoders.registry import reject_unknown_options
from videomem.pipeline.errors import EncoderError

_CLASSES = {
    "smolvlm": "SmolVLMForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
}


def _frame_size(image_processor: Any, config: Any) -> tuple[int, int]:
    """(L, L): the vision encoder's own size, ``max_image_size["longest_edge"]`` (the
    config's ``vision_config.image_size`` if the processor does not say), which is
    what SmolVLM's video path resizes every frame to."""
    size = getattr(image_processor, "max_image_size", None)
    edge = (
        size.get("longest_edge") if isinstance(size, dict) else getattr(size, "longest_edge", None)
    )
    edge = int(edge) if edge else int(config.vision_config.image_size)
    return edge, edge


class SmolVLMEncoder(BatchedEncoder):
    """Frames -> connector output, tokens [B, N, D]; embedding [B, D] (mean)."""

    #: uint8 [B, L, L, 3] -> the model's pixel input [B, 3, L, L], under transformers' name
    pixel_values = BatchedEncoder.pixels

    def __init__(self, path: str, config: Any, settings: LoadSettings, **options: Any) -> None:
        reject_unknown_options(
            config.model_type, options, (), "the tokens are fixed by the checkpoint's config"
        )
        self.model_type: str = config.model_type
        self.settings = settings
        self.image_spec = load_image_spec(path, settings, lambda proc: _frame_size(proc, config))
        self.input_size = self.image_spec.input_size

        core = load_vlm(_CLASSES[self.model_type], path, config, settings).model
        core.text_model = None  # decoder-less after load_vlm; not needed
        self._vision = core.vision_model
        self._connector = core.connector

        edge = self.input_size[0]
        patch = int(config.vision_config.patch_size)
        if edge % patch:
            raise EncoderError(f"input size {edge} is not a multiple of the patch size {patch}")
        side = edge // patch
        self._patch_mask = torch.ones(1, side, side, dtype=torch.bool, device=settings.device)
        self.tokens_per_frame = side * side // int(config.scale_factor) ** 2
        self.dim = int(config.text_config.hidden_size)
        self.embed_dim = self.dim
        self.fingerprint = checkpoint_fingerprint(
            path,
            config,
            settings,
            family=self.model_type,
            path="frame",
            pooled="mean",
        )

    def _encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels [b, 3, L, L] (model dtype, device) -> (tokens [b, N, D],
        embedding [b, D] = mean of tokens)."""
        # All-ones pixel mask, as the model builds when no pixel_attention_mask is given.
        mask = self._patch_mask.expand(pixels.shape[0], -1, -1)
        hidden = self._vision(
            pixel_values=pixels, patch_attention_mask=mask, return_dict=True
        ).last_hidden_state
        tokens = self._connector(hidden)
        return tokens, tokens.float().mean(dim=1)


def load_smolvlm(path: str, config: Any, settings: LoadSettings, **options: Any) -> SmolVLMEncoder:
    return SmolVLMEncoder(path, config, settings, **options)
