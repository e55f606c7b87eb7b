"""BLIP-2 as a frame encoder: the Q-Former's query outputs, MovieChat's representation.

A frame goes through the ViT, then the Q-Former's learned queries cross-attend to
its patch tokens; the query outputs are the frame's tokens (N = ``num_query_tokens``,
32 in released checkpoints). ``language_projection`` maps them into the language
model's input space — the tokens its LM consumes.

Design decisions:

* ``tokens="qformer"`` (default) returns the Q-Former outputs, D = Q-Former width
  (768): what MovieChat stores and consolidates. ``tokens="projected"`` returns
  the projected tokens, D = the LM's width (2560 for OPT-2.7b). The projection is
  affine, so it commutes with the (weighted) averages that consolidation takes:
  projecting a merged memory equals merging the projected frames. Storing Q-Former
  tokens is therefore exact and 3x smaller; :meth:`Blip2Encoder.project` applies the
  projection later, at QA time.
* Only the parts that make tokens are loaded: the ViT, the query tokens, the
  Q-Former and ``language_projection``, built from the checkpoint's config and
  filled with *only their tensors*, read by name from the safetensors shards. The
  language model (2.7B-7B parameters, >90% of a checkpoint) is never read. If the
  checkpoint's tensor names do not match (an older naming that transformers renames
  on load), we fall back to ``Blip2ForConditionalGeneration.from_pretrained`` and
  keep its parts, so any checkpoint transformers can load still works.
* As in transformers (``_keep_in_fp32_modules``), the Q-Former and query tokens stay
  float32 whatever the model dtype; its output is cast to the model dtype before the
  projection, exactly as ``Blip2ForConditionalGeneration.get_image_features`` does.
  ``tokens="qformer"`` returns the Q-Former's float32 output before that cast.
* Embedding (for search): the mean of the frame's Q-Former query outputs,
  L2-normalised, E = Q-Former width. BLIP-2 generation checkpoints have no
  text tower in a shared space, so this family offers no ``encode_text``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from videomem.encoders.batched import BatchedEncoder
from videomem.encoders.fingerprint import checkpoint_fingerprint
from videomem.encoders.hf import (
    SAFETENSORS_ONLY,
    LoadSettings,
    freeze,
    load_pretrained,
    local_files_only,
    unreachable_hub_error,
)
from videomem.encoders.preprocess import ImageSpec, load_image_spec
from videomem.encoders.registry import reject_unknown_options
from videomem.pipeline.errors import EncoderError

TokenChoice = Literal["qformer", "projected"]

#: checkpoint tensor-name prefixes of the parts that make visual tokens
_PARTS = ("vision_model.", "qformer.", "language_projection.", "query_tokens")


def vision_image_spec(path: str, config: Any, settings: LoadSettings) -> ImageSpec:
    """The checkpoint's image preprocessing, checked against its vision tower's size
    (BLIP-2's, and MovieChat's, which is BLIP-2's frame side)."""
    spec = load_image_spec(path, settings)
    size = int(config.vision_config.image_size)
    if spec.input_size != (size, size):
        raise EncoderError(
            f"{path}: the image processor makes {spec.input_size} images "
            f"but the vision tower takes {size}x{size}"
        )
    return spec


class Blip2Visual(nn.Module):
    """ViT + query tokens + Q-Former + language projection, with the same attribute
    names as ``Blip2ForConditionalGeneration`` so checkpoint tensors load by name."""

    def __init__(self, config: Any, dtype: torch.dtype, build: bool = True) -> None:
        super().__init__()
        if not build:
            return
        from transformers import Blip2QFormerModel, Blip2VisionModel

        self.vision_model = Blip2VisionModel._from_config(config.vision_config, dtype=dtype)
        self.query_tokens = nn.Parameter(
            torch.zeros(1, config.num_query_tokens, config.qformer_config.hidden_size)
        )
        # float32 regardless of dtype, as transformers keeps them
        self.qformer = Blip2QFormerModel._from_config(config.qformer_config, dtype=torch.float32)
        self.language_projection = nn.Linear(
            config.qformer_config.hidden_size, config.text_config.hidden_size, dtype=dtype
        )

    @classmethod
    def from_parts(cls, model: Any) -> Blip2Visual:
        """Take the parts of a loaded ``Blip2ForConditionalGeneration`` (its language
        model is left behind and freed with it)."""
        visual = cls(None, torch.float32, build=False)
        visual.vision_model = model.vision_model
        visual.query_tokens = model.query_tokens
        visual.qformer = model.qformer
        visual.language_projection = model.language_projection
        return visual

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values [B, 3, H, W] -> (Q-Former outputs [B, Q, Dq] float32,
        projected tokens [B, Q, Dlm] in the model dtype)."""
        image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state
        # the same all-ones mask the native path passes (keeps its attention kernel)
        mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        query = self.qformer(
            query_embeds=self.query_tokens.expand(image_embeds.shape[0], -1, -1),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=mask,
        ).last_hidden_state
        projected = self.language_projection(query.to(image_embeds.dtype))
        return query, projected


def safetensors_files(path: str, wanted: Callable[[str], bool]) -> list[str]:
    """Local paths of the safetensors files that hold the tensors whose names are
    ``wanted`` (for a sharded checkpoint, only the shards that hold them)."""
    from transformers.utils import cached_file

    def fetch(name: str) -> str | None:
        try:
            return cached_file(
                path,
                name,
                local_files_only=local_files_only(path),
                _raise_exceptions_for_missing_entries=False,
            )
        except OSError as e:
            if Path(path).is_dir():
                raise EncoderError(f"{path}: cannot read {name} ({e})") from e
            raise unreachable_hub_error(path, e) from e

    index = fetch("model.safetensors.index.json")
    if index is not None:
        weight_map: dict[str, str] = json.loads(Path(index).read_text())["weight_map"]
        shards = sorted({f for k, f in weight_map.items() if wanted(k)})
        files = [fetch(s) for s in shards]
    else:
        files = [fetch("model.safetensors")]
    if not files or any(f is None for f in files):
        raise EncoderError(f"{path}: no safetensors weights found. {SAFETENSORS_ONLY}")
    return [str(f) for f in files]


def _weight_files(path: str) -> list[str]:
    """The safetensors files that hold BLIP-2's visual parts."""
    return safetensors_files(path, lambda k: k.startswith(_PARTS))


def load_visual_lean(path: str, config: Any, settings: LoadSettings) -> Blip2Visual | None:
    """Build the visual parts from the config and fill them with only their tensors.

    Returns None when the checkpoint's tensor names do not match the parts (the
    caller then falls back to a full load).
    """
    from safetensors import safe_open
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every tensor is overwritten below; skip random init
        visual = Blip2Visual(config, settings.dtype)
    expected = visual.state_dict()
    state: dict[str, torch.Tensor] = {}
    for file in _weight_files(path):
        with safe_open(file, framework="pt", device="cpu") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key in expected:
                    state[key] = f.get_tensor(key).to(expected[key].dtype)
    if set(state) != set(expected):
        return None
    visual.load_state_dict(state, strict=True)
    return freeze(visual, settings.device)


def load_visual_full(path: str, settings: LoadSettings) -> Blip2Visual:
    """``Blip2ForConditionalGeneration.from_pretrained`` (handles every naming
    transformers knows), keeping only the visual parts."""
    model, info = load_pretrained(
        "Blip2ForConditionalGeneration", path, settings, output_loading_info=True
    )
    missing = [k for k in info.get("missing_keys", ()) if k.startswith(_PARTS)]
    if missing:
        raise EncoderError(f"{path}: checkpoint lacks BLIP-2 visual weights {missing[:5]}")
    return Blip2Visual.from_parts(model)


class Blip2Encoder(BatchedEncoder):
    """BLIP-2 checkpoint -> Q-Former tokens [B, Q, Dq] (or projected [B, Q, Dlm]) and
    a pooled embedding [B, Dq]."""

    def __init__(
        self,
        path: str,
        config: Any,
        settings: LoadSettings,
        *,
        tokens: TokenChoice = "qformer",
        **unknown: Any,
    ) -> None:
        reject_unknown_options("blip-2", unknown, ("tokens",))
        if tokens not in ("qformer", "projected"):
            raise EncoderError(f"blip-2: tokens must be 'qformer' or 'projected', not {tokens!r}")
        self.tokens = tokens
        self.settings = settings
        self.config = config
        self.image_spec = vision_image_spec(path, config, settings)
        visual = load_visual_lean(path, config, settings)
        self.loaded_lean = visual is not None
        self.visual = visual if visual is not None else load_visual_full(path, settings)

        self.input_size = self.image_spec.input_size
        self.tokens_per_frame = int(config.num_query_tokens)
        self.qformer_dim = int(config.qformer_config.hidden_size)
        self.lm_dim = int(config.text_config.hidden_size)
        self.dim = self.qformer_dim if tokens == "qformer" else self.lm_dim
        self.embed_dim = self.qformer_dim
        self.fingerprint = checkpoint_fingerprint(
            path,
            config,
            settings,
            tokens=tokens,
        )

    def _encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """pixels [b, 3, H, W] -> (tokens [b, Q, D], embedding [b, Dq])."""
        query, projected = self.visual(pixels)
        embedding = F.normalize(query.float().mean(dim=1), dim=-1)
        return (query if self.tokens == "qformer" else projected), embedding

    def project(self, qformer_tokens: torch.Tensor) -> torch.Tensor:
        """Q-Former tokens [..., Dq] -> the LM's input embeddings [..., Dlm], CPU float32
        (e.g. a stored memory of ``tokens="qformer"`` on its way into the LM)."""
        proj = self.visual.language_projection
        with torch.inference_mode():
            x = qformer_tokens.to(proj.weight.device, proj.weight.dtype)
            return proj(x).to("cpu", torch.float32)


def load_blip2(path: str, config: Any, settings: LoadSettings, **options: Any) -> Blip2Encoder:
    """Registry factory for BLIP-2 checkpoints (option: ``tokens``)."""
    return Blip2Encoder(path, config, settings, **options)
