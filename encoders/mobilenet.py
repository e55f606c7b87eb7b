"""MobileNetV2 (ImageNet classifier backbones) as a frame encoder.

Tokens: the final feature map — the output of the last 1x1 convolution, which is
exactly what the classifier's average pooler sees (``last_hidden_state``, 1280
channels for the standard 1.0 width) — flattened row-major to N = h·w tokens of
width D (7x7 = 49 at 224 px), optionally average-pooled to a k x k grid with
``pool=k`` (CLIP's :func:`~videomem.encoders.clip.pool_patch_grid`). The pooled
per-frame embedding is the model's own ``pooler_output`` (the vector the classifier
head sees), L2-normalised so cosine similarity is a dot product, as for CLIP.

Design decisions:

* **Which class.** ``MobileNetV2ForImageClassification`` is loaded and its backbone
  ``.mobilenet_v2`` runs the frames; the 1000x1280 head costs ~1.3M parameters and
  gives :meth:`MobileNetEncoder.labels` (top-k class names per frame, e.g. tags for
  a text timeline) for free. A backbone-only checkpoint (``MobileNetV2Model``)
  loads too; its head would be random, so it is marked absent from the load report
  and ``labels`` refuses (an :class:`EncoderError`), never inventing tags.
* **Input size and preprocessing.** The checkpoint's image processor (PIL backend:
  no torchvision) resizes the shortest edge to 256 and centre-crops 224, the
  ImageNet "centre 87.5 %" convention for still photos. ``input_size`` is the crop
  (224x224): ffmpeg scales the whole frame to it (with the decoder's aspect policy)
  and we only rescale + normalise with the processor's constants — i.e. the
  processor with ``do_resize=False``, whose crop is then the identity. We do not
  imitate the 256 upscale-and-crop: it would cut 12.5 % off every edge of every
  frame, and a fully convolutional net trained with random-resized crops is
  indifferent to that 1.14x change of scale.
* **Grid.** Every stride-2 convolution maps a side ``s`` to ``ceil(s / 2)`` with
  either padding mode (``tf_padding`` "same" or symmetric ``kernel // 2``), and
  strides stop accumulating at ``output_stride`` (dilation takes over), so the
  grid is ``input_size`` divided by ``min(32, output_stride)``, rounded up.
* The ``config.image_size`` field is not used: the network is fully convolutional
  and the image processor says what it was trained on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from videomem.encoders.batched import BatchedEncoder
from videomem.encoders.clip import checked_pool, pool_patch_grid
from videomem.encoders.fingerprint import checkpoint_fingerprint
from videomem.encoders.hf import LoadSettings, load_pretrained
from videomem.encoders.preprocess import as_frame_tensor, load_image_spec
from videomem.encoders.registry import reject_unknown_options
from videomem.pipeline.errors import EncoderError

#: MobileNetV2's total downsampling when output_stride does not cap it
_FULL_STRIDE = 32


def feature_grid(config: Any, input_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the final feature map for frames of ``input_size`` (H, W)."""
    stride = min(_FULL_STRIDE, int(getattr(config, "output_stride", _FULL_STRIDE)))
    halvings = int(math.log2(stride))
    h, w = input_size
    for _ in range(halvings):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


class MobileNetEncoder(BatchedEncoder):
    """A MobileNetV2 checkpoint: feature-map tokens [B, h·w (or k²), C] + the pooled,
    L2-normalised feature [B, C] (C = 1280 for width 1.0)."""

    def __init__(
        self,
        path: str,
        config: Any,
        settings: LoadSettings,
        *,
        pool: int | None = None,
        **unknown: Any,
    ) -> None:
        reject_unknown_options("mobilenet_v2", unknown, ("pool",))
        self.path = path
        self.settings = settings
        self.config = config
        self.image_spec = load_image_spec(path, settings)
        self.input_size = self.image_spec.input_size
        self.grid = feature_grid(config, self.input_size)
        self.pool = checked_pool("mobilenet_v2", pool, self.grid)

        classifier, info = load_pretrained(
            "MobileNetV2ForImageClassification", path, settings, output_loading_info=True
        )
        missing = info.get("missing_keys", ()) if isinstance(info, dict) else ()
        # a backbone-only checkpoint gets a random head: never use it for labels
        self.has_classifier = not any(str(k).startswith("classifier") for k in missing)
        self.classifier = classifier
        self.model = classifier.mobilenet_v2

        self.dim = int(self.model.conv_1x1.convolution.out_channels)
        self.embed_dim = self.dim
        self.tokens_per_frame = self.pool**2 if self.pool else self.grid[0] * self.grid[1]
        self.fingerprint = checkpoint_fingerprint(
            path,
            config,
            settings,
            pool=self.pool,
        )

    def _encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """pixels [b, 3, H, W] -> (feature-map tokens [b, N, C], pooled feature [b, C])."""
        out = self.model(pixel_values=pixels)
        fmap = out.last_hidden_state  # [b, C, h, w]
        tokens = fmap.flatten(2).transpose(1, 2)  # row-major grid, as pool_patch_grid expects
        if self.pool is not None:
            tokens = pool_patch_grid(tokens, self.grid, self.pool)
        return tokens, F.normalize(out.pooler_output.float(), dim=-1)

    def labels(self, frames: np.ndarray | torch.Tensor, k: int = 5) -> list[list[str]]:
        """Top-``k`` class names per frame from the checkpoint's classifier head.

        frames: uint8 [B, H, W, 3] at ``input_size`` -> B lists of k names, most
        probable first. Raises :class:`EncoderError` when the checkpoint has no
        trained head.
        """
        if not self.has_classifier:
            raise EncoderError(f"{self.path}: this checkpoint has no trained classifier head")
        x = as_frame_tensor(frames)
        if tuple(x.shape[1:3]) != tuple(self.input_size):
            raise EncoderError(
                f"frames are {x.shape[1]}x{x.shape[2]} but this encoder needs "
                f"{self.input_size[0]}x{self.input_size[1]} (H x W)"
            )
        id2label = self.config.id2label
        k = max(0, min(int(k), len(id2label)))
        names: list[list[str]] = []
        with torch.inference_mode():
            for i in range(0, x.shape[0], self.settings.batch_size):
                logits = self.classifier(
                    pixel_values=self.pixels(x[i : i + self.settings.batch_size])
                )
                top = logits.logits.float().topk(k, dim=-1).indices.cpu().tolist()
                names += [[str(id2label[j]) for j in row] for row in top]
        return names


def load_mobilenet(
    path: str, config: Any, settings: LoadSettings, **options: Any
) -> MobileNetEncoder:
    """Registry factory for MobileNetV2 checkpoints (option: ``pool``)."""
    return MobileNetEncoder(path, config, settings, **options)
