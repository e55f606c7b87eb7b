"""CLIP and SigLIP as frame encoders (and text encoders in the same space).

Tokens: the vision tower's patch tokens from one layer, optionally average-pooled
to a k x k grid. The pooled per-frame embedding is the model's own image embedding,
and :meth:`ContrastiveEncoder.encode_text` gives text embeddings in the same space,
so text -> frame search is a dot product.

Design decisions:

* ``layer`` indexes the vision tower's ``hidden_states`` exactly as transformers
  returns them with ``output_hidden_states=True`` (0 = patch embeddings, -1 = the
  last block's output, *before* ``post_layernorm``) — the same convention as LLaVA's
  ``vision_feature_layer``, so tokens line up with what a VLM built on the tower
  sees. Defaults: CLIP -2 (the penultimate layer, as LLaVA uses: the last layer is
  tuned for the CLS/contrastive objective, the one before keeps more spatial
  detail); SigLIP -1 (as LLaVA-OneVision uses; SigLIP has no CLS token). The layer
  is stored normalised (non-negative) in the fingerprint, so ``-2`` and the default
  name the same encoder.
* CLIP's CLS token is dropped from the tokens (it is summarised by the embedding);
  N = patches = (H/p)·(W/p), or k² with ``pool=k``.
* ``pool=k`` is ``adaptive_avg_pool2d`` over the patch grid (row-major, as the
  patch convolution flattens it): an exact mean of (grid/k)² patches when k divides
  the grid. It cuts tokens per frame (e.g. 576 -> 16 with k=4) for long videos.
* Embedding: ``get_image_features`` (CLIP: projected CLS; SigLIP: the attention-
  pooling head), L2-normalised. Text: ``get_text_features``, L2-normalised. Both
  normalised so cosine similarity is a dot product; SigLIP's logit scale/bias only
  shift and scale that product, so the ranking is the same.
* Text padding follows each model's training: CLIP pads to the longest text (it
  pools at the EOS token), SigLIP pads to ``max_length`` and is given no attention
  mask (it pools the last position, and was trained that way).
* The whole CLIPModel/SiglipModel is loaded (the text tower is small next to the
  vision tower). The tokenizer is loaded on the first ``encode_text`` call, so a
  checkpoint whose tokenizer needs an absent package (SigLIP's SentencePiece) still
  encodes frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from videomem.encoders.batched import BatchedEncoder
from videomem.encoders.fingerprint import checkpoint_fingerprint
from videomem.encoders.hf import LoadSettings, load_pretrained, local_files_only
from videomem.encoders.preprocess import load_image_spec
from videomem.encoders.registry import reject_unknown_options
from videomem.pipeline.errors import EncoderError


@dataclass(frozen=True)
class _Family:
    model_class: str  # transformers class holding both towers
    default_layer: int  # index into hidden_states
    prefix_tokens: int  # CLS tokens before the patches
    pad_to_max_length: bool  # text padding the model was trained with
    text_attention_mask: bool  # whether the text tower is given a mask


_FAMILIES = {
    "clip": _Family("CLIPModel", -2, 1, False, True),
    "siglip": _Family("SiglipModel", -1, 0, True, False),
}


def checked_pool(family: str, pool: int | None, grid: tuple[int, int]) -> int | None:
    """The ``pool=k`` option as an int, checked against the token grid (None = no pooling)."""
    if pool is not None and not 1 <= int(pool) <= min(grid):
        raise EncoderError(
            f"{family}: pool={pool} must be in 1..{min(grid)} (the token grid is "
            f"{grid[0]}x{grid[1]})"
        )
    return None if pool is None else int(pool)


def pool_patch_grid(patches: torch.Tensor, grid: tuple[int, int], k: int) -> torch.Tensor:
    """Average-pool patch tokens to a k x k grid.

    patches: [B, gh*gw, D] in row-major grid order -> [B, k*k, D].
    """
    b, n, d = patches.shape
    gh, gw = grid
    x = patches.transpose(1, 2).reshape(b, d, gh, gw)
    return F.adaptive_avg_pool2d(x, (k, k)).flatten(2).transpose(1, 2)


class ContrastiveEncoder(BatchedEncoder):
    """A CLIP or SigLIP checkpoint: patch tokens [B, N, D] + image embedding [B, E],
    and text embeddings [T, E] in the image embedding's space."""

    def __init__(
        self,
        path: str,
        config: Any,
        settings: LoadSettings,
        *,
        layer: int | None = None,
        pool: int | None = None,
        **unknown: Any,
    ) -> None:
        model_type = str(config.model_type)
        family = _FAMILIES[model_type]
        reject_unknown_options(model_type, unknown, ("layer", "pool"))
        vision = config.vision_config
        n_states = int(vision.num_hidden_layers) + 1  # embeddings + every block
        layer = family.default_layer if layer is None else int(layer)
        if not -n_states <= layer < n_states:
            raise EncoderError(
                f"{model_type}: layer {layer} out of range; the vision tower has "
                f"{n_states} hidden states (-{n_states}..{n_states - 1})"
            )
        self.layer = layer % n_states
        self.grid = (
            int(vision.image_size) // int(vision.patch_size),
            int(vision.image_size) // int(vision.patch_size),
        )
        self.pool = checked_pool(model_type, pool, self.grid)
        self.family = family
        self.path = path
        self.settings = settings
        self.image_spec = load_image_spec(path, settings)
        if self.image_spec.input_size != (int(vision.image_size), int(vision.image_size)):
            raise EncoderError(
                f"{path}: the image processor makes {self.image_spec.input_size} images "
                f"but the vision tower takes {vision.image_size}x{vision.image_size}"
            )
        self.model = load_pretrained(family.model_class, path, settings)
        self.config = config
        self._tokenizer: Any = None

        self.input_size = self.image_spec.input_size
        self.tokens_per_frame = self.pool**2 if self.pool else self.grid[0] * self.grid[1]
        self.dim = int(vision.hidden_size)
        self.embed_dim = (
            int(config.projection_dim) if model_type == "clip" else int(vision.hidden_size)
        )
        self.fingerprint = checkpoint_fingerprint(
            path,
            config,
            settings,
            layer=self.layer,
            pool=self.pool,
        )

    # ------------------------------------------------------------------ frames

    def _encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """pixels [b, 3, H, W] -> (patch tokens [b, N, D], image embedding [b, E])."""
        out = self.model.get_image_features(pixel_values=pixels, output_hidden_states=True)
        tokens = out.hidden_states[self.layer][:, self.family.prefix_tokens :]
        if self.pool is not None:
            tokens = pool_patch_grid(tokens, self.grid, self.pool)
        embedding = out.pooler_output
        if embedding is None:  # SigLIP without its pooling head: no text-aligned vector
            embedding = out.last_hidden_state.mean(dim=1)
        return tokens, F.normalize(embedding.float(), dim=-1)

    # ------------------------------------------------------------------ text

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(
                    self.path,
                    trust_remote_code=self.settings.trust_remote_code,
                    local_files_only=local_files_only(self.path),
                )
            except (OSError, ValueError, ImportError) as e:
                raise EncoderError(
                    f"{self.path}: cannot load the tokenizer for text search ({e}); "
                    "SigLIP's SentencePiece tokenizer needs `pip install sentencepiece`"
                ) from e
        return self._tokenizer

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """texts -> L2-normalised embeddings [T, E], CPU float32, in the space of
        the frames' ``embedding`` (cosine similarity = dot product)."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return torch.zeros(0, self.embed_dim)
        if self.config.model_type == "siglip" and not self.model.vision_model.use_head:
            raise EncoderError(f"{self.path}: this SigLIP has no image-text pooling head")
        max_len = int(self.config.text_config.max_position_embeddings)
        out: list[torch.Tensor] = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.settings.batch_size):
                enc = self.tokenizer(
                    list(texts[i : i + self.settings.batch_size]),
                    padding="max_length" if self.family.pad_to_max_length else True,
                    truncation=True,
                    max_length=max_len,
                    return_tensors="pt",
                )
                kwargs = {"input_ids": enc["input_ids"].to(self.settings.device)}
                if self.family.text_attention_mask:
                    kwargs["attention_mask"] = enc["attention_mask"].to(self.settings.device)
                feats = self.model.get_text_features(**kwargs).pooler_output
                out.append(F.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)


def load_contrastive(
    path: str, config: Any, settings: LoadSettings, **options: Any
) -> ContrastiveEncoder:
    """Registry factory for CLIP and SigLIP checkpoints (options: ``layer``, ``pool``)."""
    return ContrastiveEncoder(path, config, settings, **options)
