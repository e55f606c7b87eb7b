"""MovieChat's own model (rese1f/MovieChat): its frame side as a frame encoder, and its
video side (hierarchical positions + video Q-Former + ``llama_proj``) as a module.

A converted MovieChat checkpoint (:mod:`videomem.encoders.moviechat_convert`) is one
safetensors directory whose ``config.json`` has ``model_type = "moviechat"``
(:class:`MovieChatConfig`, a :class:`~transformers.Blip2Config` plus the video side's
fields). Its tensors are named after the attributes of :class:`MovieChatModel`.

Design decisions:

* The frame side is BLIP-2's, held by transformers' own BLIP-2 classes (ViT + query
  tokens + Q-Former, the same networks LAVIS's ``visual_encoder``/``ln_vision``/``Qformer``
  are). The stored tokens are the Q-Former outputs, [32, 768] per frame, not projected:
  what MovieChat keeps in its short- and long-term memory. Only the frame side's
  tensors are read when indexing (the 7B LLM is never loaded there).
* One difference to transformers' BLIP-2 port: LAVIS's ``ln_vision`` is a plain
  ``nn.LayerNorm`` (eps 1e-5) while transformers' ``post_layernorm`` uses the vision
  config's eps (1e-6). The loader sets the module's eps from ``ln_vision_eps`` so
  frame tokens match MovieChat's, not transformers' approximation of it.
* Positions: MovieChat expands its 32-entry ``video_frame_position_embedding`` into a
  16x16 hierarchical table, q[i*16+j] = a*u_i + (1-a)*u_j with u_i = (p_i - a*p_0)/(1-a),
  a = 0.01 (:func:`hierarchical_table`). MovieChat computes it in ``__init__``, *before*
  its checkpoint is loaded, so its released inference adds positions built from the
  embedding's random initial weights. Here the table is built from the checkpoint's
  trained embedding (``position_table = "trained"``, the only choice: MovieChat's random
  draw cannot be reproduced outside its process); README says so.
* The video side runs in float32 like BLIP-2's Q-Former (transformers keeps Q-Formers in
  float32); ``llama_proj``'s output is cast to the LM's dtype by the caller.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from videomem.encoders.batched import BatchedEncoder
from videomem.encoders.blip2 import vision_image_spec
from videomem.encoders.fingerprint import checkpoint_fingerprint
from videomem.encoders.hf import LoadSettings, freeze
from videomem.encoders.moviechat_config import MovieChatConfig
from videomem.encoders.registry import reject_unknown_options
from videomem.pipeline.errors import EncoderError


def hierarchical_table(weight: torch.Tensor, n: int, alpha: float) -> torch.Tensor:
    """MovieChat's expanded positions: weight [P, D] (P >= n) -> table [n*n, D],
    row i*n + j = alpha*u_i + (1-alpha)*u_j, u_i = (p_i - alpha*p_0) / (1-alpha)."""
    if weight.shape[0] < n:
        raise EncoderError(f"the position embedding has {weight.shape[0]} rows, fewer than {n}")
    p = weight[:n]
    u = (p - alpha * p[0]) / (1 - alpha)
    return (alpha * u[:, None, :] + (1 - alpha) * u[None, :, :]).reshape(n * n, -1)


class MovieChatModel(nn.Module):
    """Every part of MovieChat, with the checkpoint's tensor names as attributes.
    ``parts`` picks which to build: "frames", "video", "llm"."""

    def __init__(self, config: MovieChatConfig, parts: tuple[str, ...], dtype: torch.dtype) -> None:
        super().__init__()
        from transformers import Blip2QFormerModel, Blip2VisionModel

        self.config = config
        q = config.qformer_config.hidden_size
        if "frames" in parts:
            self.vision_model = Blip2VisionModel._from_config(config.vision_config, dtype=dtype)
            self.vision_model.post_layernorm.eps = config.ln_vision_eps
            self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, q))
            self.qformer = Blip2QFormerModel._from_config(
                config.qformer_config, dtype=torch.float32
            )
        if "video" in parts:
            self.video_frame_position_embedding = nn.Embedding(config.max_frame_pos, q)
            self.video_query_tokens = nn.Parameter(torch.zeros(1, config.num_video_query_tokens, q))
            self.video_qformer = Blip2QFormerModel._from_config(
                config.video_qformer_config, dtype=torch.float32
            )
            self.llama_proj = nn.Linear(q, config.text_config.hidden_size)
        if "llm" in parts:
            from transformers import LlamaForCausalLM

            self.language_model = LlamaForCausalLM._from_config(config.text_config, dtype=dtype)

    # ------------------------------------------- what the QA stage asks of a VLM

    @property
    def dtype(self) -> torch.dtype:
        """The LLM's dtype (the video side stays float32)."""
        return self.language_model.dtype  # type: ignore[no-any-return]

    @property
    def generation_config(self) -> Any:
        return self.language_model.generation_config

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- frame side

    def frame_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, H, W] -> Q-Former outputs [B, Q, Dq] float32 (``encode_image``)."""
        image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state
        mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        return self.qformer(
            query_embeds=self.query_tokens.expand(image_embeds.shape[0], -1, -1),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=mask,
        ).last_hidden_state

    # ---------------------------------------------------------------- video side

    def position_table(self) -> torch.Tensor:
        """The hierarchical table [n*n, Dq] from the trained embedding."""
        c = self.config
        return hierarchical_table(self.video_frame_position_embedding.weight, c.n_position, c.alpha)

    def video_hidden(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [T, Q, Dq] (T <= n*n) -> video Q-Former outputs [Vq, Dq] float32:
        positions added per frame, then all frames' tokens attended at once
        (``encode_long_video``)."""
        table = self.position_table()
        if frames.shape[0] > table.shape[0]:
            raise EncoderError(
                f"{frames.shape[0]} frames exceed MovieChat's {table.shape[0]} positions"
            )
        dev = table.device
        x = frames.to(dev, torch.float32) + table[: frames.shape[0], None, :]
        x = x.reshape(1, -1, x.shape[-1])
        mask = torch.ones(x.shape[:-1], dtype=torch.long, device=dev)
        out = self.video_qformer(
            query_embeds=self.video_query_tokens,
            encoder_hidden_states=x,
            encoder_attention_mask=mask,
        ).last_hidden_state
        return out[0]

    def video_embeds(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [T, Q, Dq] -> the LLM's input rows for the video [Vq, D_lm] float32."""
        hidden = self.video_hidden(frames)
        return F.linear(hidden, self.llama_proj.weight.float(), self.llama_proj.bias.float())


def read_parts(
    path: str, config: MovieChatConfig, parts: tuple[str, ...], settings: LoadSettings
) -> MovieChatModel:
    """Build ``parts`` of the model and fill them with exactly their tensors from the
    checkpoint's safetensors files (a missing tensor is an error naming it)."""
    from safetensors import safe_open
    from transformers.initialization import no_init_weights
    from videomem.encoders.blip2 import safetensors_files

    with no_init_weights():  # every tensor is overwritten below
        model = MovieChatModel(config, parts, settings.dtype)
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for file in safetensors_files(path, lambda k: k in expected):
        with safe_open(file, framework="pt", device="cpu") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key in expected:
                    state[key] = f.get_tensor(key).to(expected[key].dtype)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise EncoderError(f"{path}: the MovieChat checkpoint lacks {missing[:5]}")
    model.load_state_dict(state, strict=True)
    return freeze(model, settings.device)  # type: ignore[no-any-return]


class MovieChatEncoder(BatchedEncoder):
    """MovieChat's frame side: frames -> Q-Former tokens [B, 32, 768], embedding = their
    L2-normalised mean (as the BLIP-2 family)."""

    def __init__(self, path: str, config: Any, settings: LoadSettings, **unknown: Any) -> None:
        reject_unknown_options("moviechat", unknown, (), "its stored tokens are fixed")
        self.settings = settings
        self.config = config
        self.image_spec = vision_image_spec(path, config, settings)
        self.model = read_parts(path, config, ("frames",), settings)
        self.input_size = self.image_spec.input_size
        self.tokens_per_frame = int(config.num_query_tokens)
        self.dim = self.embed_dim = int(config.qformer_config.hidden_size)
        self.fingerprint = checkpoint_fingerprint(path, config, settings)

    def _encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        query = self.model.frame_tokens(pixels)
        return query, F.normalize(query.float().mean(dim=1), dim=-1)


def load_moviechat(
    path: str, config: Any, settings: LoadSettings, **options: Any
) -> MovieChatEncoder:
    """Registry factory for converted MovieChat checkpoints (no options)."""
    return MovieChatEncoder(path, config, settings, **options)


def breakpoint_keep(n_long: int, n_short: int, limit: int) -> list[int]:
    """Which of long-term (0..n_long-1), short-term (next n_short) and the frame at t
    (last) MovieChat's breakpoint mode (``encode_long_video(middle_video=True)``) keeps:
    while there are more than ``limit``, the oldest short-term frame goes first, then
    the oldest long-term one. As MovieChat does, when no long-term frame is left the
    frame at t is not added (only the short-term frames go in)."""
    long = list(range(n_long))
    short = list(range(n_long, n_long + n_short))
    excess = n_long + n_short + 1 - limit
    cut_short = min(max(excess, 0), n_short)
    short = short[cut_short:]
    excess -= cut_short
    if excess > 0:
        long = long[excess:]
    if not long:
        return short
    return [*long, *short, n_long + n_short]


def breakpoint_frames(
    long: torch.Tensor, short: torch.Tensor, current: torch.Tensor, limit: int
) -> torch.Tensor:
    """:func:`breakpoint_keep` on tensors: long [Lm, Q, D], short [S, Q, D], the frame
    at t [1, Q, D] -> the frames the video Q-Former sees."""
    frames = torch.cat([long, short, current])
    return frames[breakpoint_keep(len(long), len(short), limit)]
