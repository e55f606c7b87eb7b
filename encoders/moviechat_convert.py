"""Convert MovieChat's released weights into one safetensors checkpoint directory.

Inputs, as MovieChat's inference reads them (``eval_configs/MovieChat.yaml``):

* ``--qformer``: a LAVIS BLIP-2 / MiniGPT-4 ``.pth`` with the frame side,
  ``visual_encoder.*`` (EVA ViT-g), ``ln_vision.*``, ``Qformer.*``, ``query_tokens``.
* ``--checkpoint``: MovieChat's finetuned ``.pth`` with the video side,
  ``video_Qformer.*``, ``video_query_tokens``, ``video_frame_position_embedding.*``,
  ``llama_proj.*``. MovieChat loads it after the frame side with ``strict=False``, so a
  tensor present in both comes from this file.
* ``--llm``: the Vicuna-7B v0 (LLaMA) directory, and its tokenizer.

Design decisions:

* Every input key is either mapped (:data:`FRAME_RULES`, :data:`VIDEO_RULES`: LAVIS's
  names onto transformers' BLIP-2 names, as transformers' own
  ``convert_blip_2_original_to_pytorch.py`` maps them) or dropped for a stated reason
  (:data:`DROPPED`). An unknown key, a missing tensor or a wrong shape stops the
  conversion with its name: a silently ignored tensor is a wrong model.
* Pickles are read with ``torch.load(weights_only=True)`` only; a file that needs code
  to unpickle is refused. The LLM is read from safetensors when it has them, else its
  ``.bin`` shards the same way. No remote code anywhere.
* Shapes are checked against the model built on the ``meta`` device (no memory), and
  the head counts, which weights do not show, are MovieChat's (EVA ViT-g 16, BERT 12)
  unless the caller says otherwise (the tiny test inputs do).
* The directory is written into a temporary folder and renamed into place.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from videomem.encoders.moviechat_config import IMAGE_PLACEHOLDER, MovieChatConfig
from videomem.pipeline.errors import VideomemError


class ConvertError(VideomemError):
    """MovieChat's inputs cannot be converted (the message names the problem)."""


#: (pattern, replacement) of the frame side: LAVIS BLIP-2 -> transformers BLIP-2
_LAYER = r"encoder\.layer\.(\d+)\."
_QF = (
    (r"bert\.embeddings\.LayerNorm\.(weight|bias)", r"layernorm.\1"),
    (
        _LAYER + r"(attention|crossattention)\.self\.(query|key|value)\.(weight|bias)",
        r"encoder.layer.\1.\2.attention.\3.\4",
    ),
    (
        _LAYER + r"(attention|crossattention)\.output\.(dense|LayerNorm)\.(weight|bias)",
        r"encoder.layer.\1.\2.output.\3.\4",
    ),
    (
        _LAYER + r"(intermediate_query|output_query)\.(dense|LayerNorm)\.(weight|bias)",
        r"encoder.layer.\1.\2.\3.\4",
    ),
)


def _qformer_rules(src: str, dst: str) -> list[tuple[str, str]]:
    out = []
    for pat, rep in _QF:
        pat = pat if pat.startswith("bert") else "bert\\." + pat
        out.append((re.escape(src) + r"\." + pat, f"{dst}.{rep}"))
    return out


_VIT = r"visual_encoder\.blocks\.(\d+)\."
_VL = r"vision_model.encoder.layers.\1."
FRAME_RULES: list[tuple[str, str]] = [
    (r"visual_encoder\.cls_token", "vision_model.embeddings.class_embedding"),
    (r"visual_encoder\.pos_embed", "vision_model.embeddings.position_embedding"),
    (
        r"visual_encoder\.patch_embed\.proj\.(weight|bias)",
        r"vision_model.embeddings.patch_embedding.\1",
    ),
    (_VIT + r"norm1\.(weight|bias)", _VL + r"layer_norm1.\2"),
    (_VIT + r"norm2\.(weight|bias)", _VL + r"layer_norm2.\2"),
    (_VIT + r"attn\.qkv\.weight", _VL + "self_attn.qkv.weight"),
    (_VIT + r"attn\.proj\.(weight|bias)", _VL + r"self_attn.projection.\2"),
    (_VIT + r"mlp\.(fc1|fc2)\.(weight|bias)", _VL + r"mlp.\2.\3"),
    (r"ln_vision\.(weight|bias)", r"vision_model.post_layernorm.\1"),
    (r"query_tokens", "query_tokens"),
    *_qformer_rules("Qformer", "qformer"),
]
#: EVA's separate q and v biases become BLIP-2's one qkv bias (q, zeros, v)
_QV_BIAS = re.compile(_VIT + r"attn\.(q_bias|v_bias)")

VIDEO_RULES: list[tuple[str, str]] = [
    (r"video_query_tokens", "video_query_tokens"),
    (r"video_frame_position_embedding\.weight", "video_frame_position_embedding.weight"),
    (r"llama_proj\.(weight|bias)", r"llama_proj.\1"),
    *_qformer_rules("video_Qformer", "video_qformer"),
]

_Q_TEXT = r"(Qformer|video_Qformer)\."
#: (pattern, why it is dropped): what MovieChat itself never uses
DROPPED: list[tuple[str, str]] = [
    (
        _Q_TEXT + r"bert\.embeddings\.(word_embeddings|position_embeddings)\.weight",
        "Q-Former text embeddings (MovieChat sets them to None)",
    ),
    (_Q_TEXT + r"bert\.embeddings\.position_ids", "a BERT buffer, rebuilt from the config"),
    (
        _Q_TEXT + r"bert\." + _LAYER + r"(intermediate|output)\.(dense|LayerNorm)\.(weight|bias)",
        "Q-Former text-branch feed-forward (MovieChat sets it to None; queries use *_query)",
    ),
    (_Q_TEXT + r"cls\..*", "Q-Former language-model head (MovieChat sets it to None)"),
    (r"(vision_proj|text_proj|itm_head)\..*", "BLIP-2 stage-1 contrastive/matching heads"),
    (r"temp", "BLIP-2 stage-1 contrastive temperature"),
    (r"(t5_proj|opt_proj)\..*", "another LLM's BLIP-2 projection"),
    (r"(t5_model|opt_model)\..*", "another LLM's weights"),
]
#: llama_proj in the frame-side file: MovieChat takes the finetuned checkpoint's
QFORMER_FILE_LLAMA_PROJ = "MiniGPT-4's llama_proj, replaced by the finetuned checkpoint's"
#: rotary buffers some older LLaMA .bin shards carry: rebuilt from the config
_ROTARY = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")


@dataclass(frozen=True)
class Heads:
    """Attention heads, which the weights do not show: MovieChat's by default."""

    vision: int = 16  # EVA ViT-g/14
    qformer: int = 12  # bert-base-uncased
    video_qformer: int = 12  # bert-base-uncased


@dataclass
class ConversionReport:
    """What became of every input key."""

    #: output key -> the input key(s) it came from
    mapped: dict[str, list[str]] = field(default_factory=dict)
    #: input key -> why it was dropped
    dropped: dict[str, str] = field(default_factory=dict)
    #: output keys taken from the finetuned checkpoint over the frame-side file
    overridden: list[str] = field(default_factory=list)


def load_pickle_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A ``.pth`` state dict (LAVIS wraps it as ``{"model": ...}``), loaded with
    ``weights_only=True``: a pickle that needs code is refused."""
    p = Path(path)
    if not p.is_file():
        raise ConvertError(f"{p}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as e:
        raise ConvertError(
            f"{p}: refused: it cannot be read with torch.load(weights_only=True) "
            f"(a pickle that holds code or objects other than tensors): {e}"
        ) from e
    state = obj.get("model", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not state:
        raise ConvertError(f"{p}: holds no state dict ({type(state).__name__})")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConvertError(f"{p}: entries that are not tensors: {sorted(map(str, bad))[:5]}")
    return state


def _match(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pat, rep in rules:
        m = re.fullmatch(pat, key)
        if m:
            return m.expand(rep)
    return None


def _dropped(key: str) -> str | None:
    return next((why for pat, why in DROPPED if re.fullmatch(pat, key)), None)


def map_state(
    state: dict[str, torch.Tensor],
    rules: list[tuple[str, str]],
    where: str,
    report: ConversionReport,
    extra_drop: Callable[[str], str | None] = lambda k: None,
) -> dict[str, torch.Tensor]:
    """Rename ``state``'s keys by ``rules``; drop what :data:`DROPPED` names; stop on
    any other key."""
    out: dict[str, torch.Tensor] = {}
    biases: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state.items():
        qv = _QV_BIAS.fullmatch(key)
        if qv:
            biases.setdefault(qv.group(1), {})[qv.group(2)] = value
            continue
        new = _match(key, rules)
        if new is not None:
            out[new] = value
            report.mapped.setdefault(new, []).append(f"{where}:{key}")
            continue
        why = _dropped(key) or extra_drop(key)
        if why is None:
            unknown.append(key)
        else:
            report.dropped[f"{where}:{key}"] = why
    if unknown:
        raise ConvertError(
            f"{where}: unknown keys {sorted(unknown)[:8]} (neither mapped nor dropped)"
        )
    for layer, parts in sorted(biases.items(), key=lambda kv: int(kv[0])):
        if set(parts) != {"q_bias", "v_bias"}:
            raise ConvertError(
                f"{where}: visual_encoder.blocks.{layer}.attn lacks q_bias or v_bias"
            )
        q, v = parts["q_bias"], parts["v_bias"]
        new = f"vision_model.encoder.layers.{layer}.self_attn.qkv.bias"
        out[new] = torch.cat([q, torch.zeros_like(v), v])
        report.mapped[new] = [
            f"{where}:visual_encoder.blocks.{layer}.attn.{b}" for b in ("q_bias", "v_bias")
        ]
    return out


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.fullmatch(pattern, k))})


def _qformer_config(
    state: dict[str, torch.Tensor], prefix: str, heads: int, enc: int
) -> dict[str, Any]:
    layers = _count(state, re.escape(prefix) + r"\.encoder\.layer\.(\d+)\..*")
    cross = sorted(
        int(m.group(1))
        for k in state
        if (
            m := re.fullmatch(
                re.escape(prefix)
                + r"\.encoder\.layer\.(\d+)\.crossattention\.attention\.query\.weight",
                k,
            )
        )
    )
    if not layers or not cross:
        raise ConvertError(f"{prefix}: no Q-Former layers with cross-attention found")
    freq = cross[1] - cross[0] if len(cross) > 1 else layers
    return dict(
        hidden_size=int(state[f"{prefix}.layernorm.weight"].shape[0]),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=int(
            state[f"{prefix}.encoder.layer.0.intermediate_query.dense.weight"].shape[0]
        ),
        encoder_hidden_size=enc,
        cross_attention_frequency=freq,
    )


def infer_config(state: dict[str, torch.Tensor], text_config: Any, heads: Heads) -> MovieChatConfig:
    """The checkpoint's config from its (mapped) tensors' shapes and the LLM's config."""
    need = (
        "vision_model.embeddings.position_embedding",
        "vision_model.embeddings.patch_embedding.weight",
        "vision_model.encoder.layers.0.mlp.fc1.weight",
        "query_tokens",
        "qformer.layernorm.weight",
        "video_qformer.layernorm.weight",
        "video_query_tokens",
        "video_frame_position_embedding.weight",
        "llama_proj.weight",
    )
    missing = [k for k in need if k not in state]
    if missing:
        raise ConvertError(f"the inputs lack {missing}")
    patch = state["vision_model.embeddings.patch_embedding.weight"]
    positions = int(state["vision_model.embeddings.position_embedding"].shape[1]) - 1
    grid = math.isqrt(positions)
    width = int(patch.shape[0])
    vision = dict(
        hidden_size=width,
        intermediate_size=int(state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=_count(state, r"vision_model\.encoder\.layers\.(\d+)\..*"),
        num_attention_heads=heads.vision,
        image_size=grid * int(patch.shape[-1]),
        patch_size=int(patch.shape[-1]),
        layer_norm_eps=1e-6,  # EVA's norm_layer = partial(nn.LayerNorm, eps=1e-6)
        qkv_bias=True,
    )
    qdim = int(state["query_tokens"].shape[-1])
    return MovieChatConfig(
        vision_config=vision,
        qformer_config=_qformer_config(state, "qformer", heads.qformer, width),
        video_qformer_config=_qformer_config(state, "video_qformer", heads.video_qformer, qdim),
        text_config=text_config.to_dict(),
        num_query_tokens=int(state["query_tokens"].shape[1]),
        num_video_query_tokens=int(state["video_query_tokens"].shape[1]),
        max_frame_pos=int(state["video_frame_position_embedding.weight"].shape[0]),
    )


def load_llm_state(llm_dir: Path) -> dict[str, torch.Tensor]:
    """The LLaMA's tensors: safetensors files, else ``.bin`` shards (weights only)."""
    files = sorted(llm_dir.glob("*.safetensors"))
    state: dict[str, torch.Tensor] = {}
    if files:
        from safetensors.torch import load_file

        for f in files:
            state.update(load_file(str(f)))
    else:
        bins = sorted(llm_dir.glob("pytorch_model*.bin"))
        if not bins:
            raise ConvertError(f"{llm_dir}: no *.safetensors or pytorch_model*.bin weights")
        for f in bins:
            state.update(load_pickle_state(f))
    return state


def check_shapes(state: dict[str, torch.Tensor], config: MovieChatConfig) -> None:
    """Every tensor the model has is present with its shape, and nothing else."""
    from videomem.encoders.moviechat import MovieChatModel

    with torch.device("meta"):
        model = MovieChatModel(config, ("frames", "video", "llm"), torch.float16)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing:
        raise ConvertError(f"the inputs lack tensors the model needs: {missing[:8]}")
    if extra:
        raise ConvertError(f"tensors the model has no place for: {extra[:8]}")
    wrong = [
        f"{k}: {tuple(state[k].shape)}, expected {expected[k]}"
        for k in sorted(expected)
        if tuple(state[k].shape) != expected[k]
    ]
    if wrong:
        raise ConvertError(f"wrong shapes: {wrong[:5]}")


def _image_processor(size: int) -> Any:
    """MovieChat's frame preprocessing (Blip2ImageEvalProcessor / alpro_video_eval):
    bicubic resize to size x size, CLIP's mean and std."""
    from transformers import BlipImageProcessorPil

    return BlipImageProcessorPil(
        size={"height": size, "width": size},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )


def convert_moviechat(
    checkpoint: str | Path,
    qformer: str | Path,
    llm: str | Path,
    out: str | Path,
    *,
    heads: Heads = Heads(),
    force: bool = False,
) -> tuple[Path, ConversionReport]:
    """Write the converted checkpoint directory ``out``; returns it and the report."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoTokenizer
    from videomem.pipeline.cache import build_folder

    out = Path(out)
    if out.exists() and not force:
        raise ConvertError(f"{out} exists; pass force to replace it")
    llm_dir = Path(llm)
    if not (llm_dir / "config.json").is_file():
        raise ConvertError(f"{llm_dir}: not a LLaMA checkpoint directory (no config.json)")
    text_config = AutoConfig.from_pretrained(llm_dir, local_files_only=True)
    if text_config.model_type != "llama":
        raise ConvertError(f"{llm_dir}: a {text_config.model_type!r} model, not LLaMA (Vicuna)")

    report = ConversionReport()
    frame = map_state(
        load_pickle_state(qformer),
        FRAME_RULES,
        "qformer",
        report,
        lambda k: (
            QFORMER_FILE_LLAMA_PROJ if re.fullmatch(r"llama_proj\.(weight|bias)", k) else None
        ),
    )
    video = map_state(
        load_pickle_state(checkpoint), VIDEO_RULES + FRAME_RULES, "checkpoint", report
    )
    report.overridden = sorted(set(frame) & set(video))
    state = {**frame, **video}
    proj = state.get("llama_proj.weight")
    if proj is not None and int(proj.shape[0]) != int(text_config.hidden_size):
        raise ConvertError(
            f"{llm_dir}: the LLM is {text_config.hidden_size} wide but MovieChat's llama_proj "
            f"projects to {proj.shape[0]} (Vicuna-7B is 4096): the wrong Vicuna"
        )
    for key, value in load_llm_state(llm_dir).items():
        if _ROTARY.fullmatch(key):
            report.dropped[f"llm:{key}"] = "rotary buffer, rebuilt from the config"
            continue
        state[f"language_model.{key}"] = value
        report.mapped[f"language_model.{key}"] = [f"llm:{key}"]
    if "language_model.lm_head.weight" not in state and text_config.tie_word_embeddings:
        state["language_model.lm_head.weight"] = state["language_model.model.embed_tokens.weight"]
    config = infer_config(state, text_config, heads)
    check_shapes(state, config)

    tokenizer = AutoTokenizer.from_pretrained(llm_dir, local_files_only=True)
    # as MovieChat: its placeholders become tokens (never embedded: the video rows go there)
    tokenizer.add_tokens([IMAGE_PLACEHOLDER, "<AudioHere>"], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def build(tmp: Path) -> None:
        config.save_pretrained(tmp)
        tensors = {k: v.contiguous() for k, v in state.items()}
        # tied tensors must be stored once each
        if tensors.get("language_model.lm_head.weight") is tensors.get(
            "language_model.model.embed_tokens.weight"
        ):
            tensors["language_model.lm_head.weight"] = tensors[
                "language_model.lm_head.weight"
            ].clone()
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        _image_processor(int(config.vision_config.image_size)).save_pretrained(tmp)
        gen = llm_dir / "generation_config.json"
        if gen.is_file():
            (tmp / "generation_config.json").write_text(gen.read_text())

    return build_folder(out, build, lambda p: (p / "model.safetensors").is_file(), force), report
