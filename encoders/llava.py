"""LLaVA-style VLMs as frame encoders: llava, llava_onevision, llava_next_video.

The tokens of a frame are exactly what the checkpoint's language model receives at
its image/video placeholder positions: vision tower at ``vision_feature_layer`` (CLS
dropped for the "default" strategy), then the multimodal projector, then the family's
own video pooling where it has one. We call the model's *own* feature methods, so the
tokens follow transformers' implementation rather than a re-implementation of it:

* ``llava``: ``LlavaModel.get_image_features`` — one frame = one image at the base
  resolution (LLaVA-1.5 has no video path). N = (H/p)·(W/p).
* ``llava_onevision``: ``get_video_features`` — frames go through the *video* path
  (2x2 bilinear pooling after the projector), which is how OneVision consumes
  video. The anyres image path (tiles + unpadding) is for single stills at high
  resolution and is not used. N = ceil(H/2p)·ceil(W/2p). The video path appends one
  ``image_newline`` embedding after the *last frame of a clip*, not per frame; it
  is not part of any frame's tokens and is exposed as :attr:`LlavaEncoder.video_suffix`
  ([1, D]) for whoever builds the LM input.
* ``llava_next_video``: ``get_video_features`` — 2x2 average (or the configured)
  pooling before the projector. No newline.

Preprocessing is rescale + normalise with the checkpoint's own image-processor
constants on the whole batch in torch (:func:`~videomem.encoders.preprocess.load_image_spec`;
frames are already at ``input_size``, scaled by ffmpeg).

Loading: the full ``*ForConditionalGeneration`` checkpoint is read with
:func:`~videomem.encoders.hf.load_vlm` (safetensors only), with the language
model's decoder layers set to zero in the config, so their weights are skipped rather
than materialised — a 7B LLaVA costs the vision tower, projector and the
embedding/head matrices, not 7B parameters. The fingerprint is computed from the
checkpoint's *unmodified* config. The decoder-less language model is then detached.

Pooled embedding (for search): the mean of a frame's N projected tokens, [B, D]
(E = D). It lives in the LM's input-embedding space, so it is comparable across
frames of the same encoder only — not with a text encoder.
"""

from __future__ import annotations

from typing import Any

import torch
from videomem.encoders.batched import BatchedEncoder
from videomem.encoders.fingerprint import checkpoint_fingerprint
from videomem.encoders.hf import LoadSettings, load_vlm
from videomem.encoders.preprocess import load_image_spec
from videomem.encoders.registry import reject_unknown_options

# model_type -> (transformers class name, feature path)
_FAMILIES: dict[str, tuple[str, str]] = {
    "llava": ("LlavaForConditionalGeneration", "image"),
    "llava_onevision": ("LlavaOnevisionForConditionalGeneration", "video"),
    "llava_next_video": ("LlavaNextVideoForConditionalGeneration", "video"),
}


class LlavaEncoder(BatchedEncoder):
    """Frames -> the tokens a LLaVA-family LM receives at its visual placeholders.

    tokens [B, N, D] (D = the LM's hidden size), embedding [B, D] (mean of tokens).
    """

    #: uint8 [B, H, W, 3] -> the model's pixel input [B, 3, H, W], under transformers' name
    pixel_values = BatchedEncoder.pixels

    def __init__(self, path: str, config: Any, settings: LoadSettings, **options: Any) -> None:
        reject_unknown_options(
            config.model_type,
            options,
            (),
            "the tokens are fixed by the checkpoint's config (vision_feature_layer/strategy)",
        )
        class_name, self.path_kind = _FAMILIES[config.model_type]
        self.model_type: str = config.model_type
        self.settings = settings
        self.image_spec = load_image_spec(path, settings)
        self.input_size = self.image_spec.input_size

        core = load_vlm(class_name, path, config, settings).model
        core.language_model = None  # decoder-less after load_vlm; not needed
        self._core = core
        self._layer = config.vision_feature_layer
        self._strategy = config.vision_feature_select_strategy

        self._has_newline = self.model_type == "llava_onevision"
        self.video_suffix: torch.Tensor | None = None
        if self._has_newline:
            # [1, D]: appended once after the last frame of a clip by the native video path
            self.video_suffix = core.image_newline.detach().float().cpu()[None]

        # Shapes from one probe frame: exact for every pooling/strategy combination.
        with torch.inference_mode():
            probe = self._features(
                torch.zeros(1, 3, *self.input_size, dtype=settings.dtype, device=settings.device)
            )
        self.tokens_per_frame = int(probe.shape[1])
        self.dim = int(probe.shape[2])
        self.embed_dim = self.dim
        self.fingerprint = checkpoint_fingerprint(
            path,
            config,
            settings,
            family=self.model_type,
            path=self.path_kind,
            pooled="mean",
        )

    def _features(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [b, 3, H, W] (model dtype, device) -> tokens [b, N, D] (model dtype)."""
        b = pixels.shape[0]
        if self.path_kind == "image":
            out = self._core.get_image_features(
                pixel_values=pixels,
                vision_feature_layer=self._layer,
                vision_feature_select_strategy=self._strategy,
                return_dict=True,
            )
            return torch.stack(list(out.pooler_output))
        # One clip of b frames -> [1, b*N (+1 newline), D]; per-frame tokens are the
        # first b*N rows (the pooling is per frame, so batching frames is exact).
        out = self._core.get_video_features(
            pixel_values_videos=pixels[None],
            vision_feature_layer=self._layer,
            vision_feature_select_strategy=self._strategy,
            return_dict=True,
        )
        feats = out.pooler_output[0]
        if self._has_newline:
            feats = feats[:-1]
        return feats.reshape(b, -1, feats.shape[-1])

    def _encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels [b, 3, H, W] -> (tokens [b, N, D], embedding [b, D] = mean of tokens)."""
        tokens = self._features(pixels)
        return tokens, tokens.float().mean(dim=1)


def load_llava(path: str, config: Any, settings: LoadSettings, **options: Any) -> LlavaEncoder:
    return LlavaEncoder(path, config, settings, **options)
