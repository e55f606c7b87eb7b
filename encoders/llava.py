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
constants on the whole batch in torch (frames are already at ``input_size``, scaled
by ffmpeg); the processor is read with the PIL backend so torchvision is never
needed.

Loading: the full ``*ForConditionalGeneration`` checkpoint is read with
``from_pretrained`` (safetensors only), but with the language model's decoder layers
set to zero in the config, so their weights are skipped rather than materialised —
a 7B LLaVA costs the vision tower, projector and the embedding/head matrices, not
7B parameters. The fingerprint is computed from the checkpoint's *unmodified*
config. The decoder-less language model is then detached.

Pooled embedding (for search): the mean of a frame's N projected tokens, [B, D]
(E = D). It lives in the LM's input-embedding space, so it is comparable across
frames of the same encoder only — not with a text encoder.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from videomem.encoders.base import (
    LoadSettings,
    fingerprint,
    register,
    timestamps_tensor,
    to_pixel_tensor,
    weights_identity,
)
from videomem.pipeline.errors import EncoderError
from videomem.pipeline.types import FrameTokens

# model_type -> (transformers class name, feature path)
_FAMILIES: dict[str, tuple[str, str]] = {
    "llava": ("LlavaForConditionalGeneration", "image"),
    "llava_onevision": ("LlavaOnevisionForConditionalGeneration", "video"),
    "llava_next_video": ("LlavaNextVideoForConditionalGeneration", "video"),
}


def load_image_processor(path: str, trust_remote_code: bool = False) -> Any:
    """The checkpoint's own image processor, PIL backend (no torchvision needed)."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(
            path,
            backend="pil",
            trust_remote_code=trust_remote_code,
            local_files_only=Path(path).is_dir(),
        )
    except (OSError, ValueError) as e:
        raise EncoderError(f"{path}: cannot load the image processor ({e})") from e


def processor_input_size(image_processor: Any) -> tuple[int, int]:
    """(H, W) the processor feeds the vision tower: the crop if it crops, else the
    resize target. Frames scaled to exactly this size pass its resize/crop unchanged."""
    for attr in ("crop_size", "size"):
        if attr == "crop_size" and not getattr(image_processor, "do_center_crop", False):
            continue
        size = getattr(image_processor, attr, None)
        if size is None:
            continue
        get = size.get if hasattr(size, "get") else lambda k, s=size: getattr(s, k, None)
        if get("height") and get("width"):
            return int(get("height")), int(get("width"))
        if get("shortest_edge"):
            e = int(get("shortest_edge"))
            return e, e
    raise EncoderError(f"cannot tell the input size from {type(image_processor).__name__}")


def vision_only_config(config: Any) -> Any:
    """A copy of a VLM config whose language model has no decoder layers, so
    ``from_pretrained`` skips (never materialises) the LM's layer weights."""
    cfg = copy.deepcopy(config)
    text = cfg.text_config
    text.num_hidden_layers = 0
    if getattr(text, "layer_types", None) is not None:
        text.layer_types = []
    return cfg


def load_vlm(class_name: str, path: str, config: Any, settings: LoadSettings) -> Any:
    """``class_name.from_pretrained`` with the LM layers skipped; frozen, on device."""
    import transformers
    from transformers.utils import logging as hf_logging

    cls = getattr(transformers, class_name)
    # The skipped LM layers show up as "unexpected keys" in transformers' load
    # report; that is by design here, so keep the report quiet during this load.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = cls.from_pretrained(
            path,
            config=vision_only_config(config),
            dtype=settings.dtype,
            use_safetensors=True,
            trust_remote_code=settings.trust_remote_code,
            local_files_only=Path(path).is_dir(),
        )
    except (OSError, ValueError) as e:
        raise EncoderError(f"{path}: cannot load {class_name} from safetensors ({e})") from e
    finally:
        hf_logging.set_verbosity(verbosity)
    model.eval().requires_grad_(False)
    return model.to(settings.device)


class LlavaEncoder:
    """Frames -> the tokens a LLaVA-family LM receives at its visual placeholders.

    tokens [B, N, D] (D = the LM's hidden size), embedding [B, D] (mean of tokens).
    """

    def __init__(self, path: str, config: Any, settings: LoadSettings, **options: Any) -> None:
        if options:
            raise EncoderError(
                f"{config.model_type}: unknown encoder options {sorted(options)}; the tokens "
                "are fixed by the checkpoint's config (vision_feature_layer/strategy)"
            )
        class_name, self.path_kind = _FAMILIES[config.model_type]
        self.model_type: str = config.model_type
        self.settings = settings
        self.dtype = settings.dtype
        self.batch_size = max(1, int(settings.batch_size))

        proc = load_image_processor(path, settings.trust_remote_code)
        self.input_size: tuple[int, int] = processor_input_size(proc)
        self._mean = [float(v) for v in proc.image_mean]
        self._std = [float(v) for v in proc.image_std]
        self._rescale = float(getattr(proc, "rescale_factor", 1 / 255))

        vlm = load_vlm(class_name, path, config, settings)
        core = vlm.model
        core.language_model = None  # decoder-less after vision_only_config; not needed
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
                torch.zeros(1, 3, *self.input_size, dtype=self.dtype, device=settings.device)
            )
        self.tokens_per_frame: int = int(probe.shape[1])
        self.dim: int = int(probe.shape[2])
        self.embed_dim: int = self.dim
        self.fingerprint: str = fingerprint(
            settings.source,
            config,
            self.dtype,
            weights_identity(path),
            family=self.model_type,
            path=self.path_kind,
            pooled="mean",
        )

    # ------------------------------------------------------------------ core

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

    def pixel_values(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> normalised [B, 3, H, W] in the model dtype, on device."""
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
        """frames uint8 [B, H, W, 3] at ``input_size`` -> tokens [B, N, D] and embedding
        [B, D], float32 on the CPU; runs in chunks of ``batch_size`` frames."""
        return encode_in_batches(self, frames, timestamps, self.batch_size, self._features)


def encode_in_batches(
    enc: Any,
    frames: np.ndarray | torch.Tensor,
    timestamps: Sequence[float] | None,
    batch_size: int,
    features: Callable[[torch.Tensor], torch.Tensor],
) -> FrameTokens:
    """Shared batching loop: preprocess a chunk, run ``features``, mean-pool.

    ``features``: pixels [b, 3, H, W] -> tokens [b, N, D].
    """
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise EncoderError(f"expected uint8 frames [B, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    n = int(x.shape[0])
    ts = timestamps_tensor(timestamps, n)
    tokens = torch.empty(n, enc.tokens_per_frame, enc.dim, dtype=torch.float32)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            chunk = enc.pixel_values(x[start : start + batch_size])
            tokens[start : start + chunk.shape[0]] = features(chunk).float().cpu()
    return FrameTokens(tokens=tokens, timestamps=ts, embedding=tokens.mean(dim=1))


@register(*_FAMILIES)
def _factory(path: str, config: Any, settings: LoadSettings, **options: Any) -> LlavaEncoder:
    return LlavaEncoder(path, config, settings, **options)
