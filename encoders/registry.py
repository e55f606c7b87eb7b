"""The one table of supported frame-encoder families, and loading by checkpoint.

The family is picked from the checkpoint's own ``config.model_type`` in exactly one
place, :data:`FAMILIES`, never from user strings. A family module is imported only when
a checkpoint of its family is loaded, so loading CLIP never imports BLIP-2 code.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from videomem.encoders.config import EncoderConfig
from videomem.encoders.contract import FrameEncoder
from videomem.encoders.hf import (
    LoadSettings,
    load_config,
    resolve_checkpoint,
    resolve_device,
    resolve_dtype,
)
from videomem.pipeline.errors import EncoderError

#: ``factory(path, config, settings, **options) -> FrameEncoder``
EncoderFactory = Callable[..., FrameEncoder]

#: model_type (from the checkpoint's config.json) -> "module:factory" that loads it.
FAMILIES: dict[str, str] = {
    "clip": "videomem.encoders.clip:load_contrastive",
    "siglip": "videomem.encoders.clip:load_contrastive",
    "blip-2": "videomem.encoders.blip2:load_blip2",
    "moviechat": "videomem.encoders.moviechat:load_moviechat",
    "llava": "videomem.encoders.llava:load_llava",
    "llava_onevision": "videomem.encoders.llava:load_llava",
    "llava_next_video": "videomem.encoders.llava:load_llava",
    "smolvlm": "videomem.encoders.smolvlm:load_smolvlm",
    "idefics3": "videomem.encoders.smolvlm:load_smolvlm",
    "mobilenet_v2": "videomem.encoders.mobilenet:load_mobilenet",
}


def family_factory(model_type: str) -> EncoderFactory:
    """The factory of a supported ``model_type`` (imports its module)."""
    try:
        target = FAMILIES[model_type]
    except KeyError:
        raise EncoderError(
            f"model_type {model_type!r} is not a supported frame-encoder family; "
            f"supported: {sorted(FAMILIES)}"
        ) from None
    module, _, name = target.partition(":")
    factory: EncoderFactory = getattr(importlib.import_module(module), name)
    return factory


def load_encoder(
    model: str | os.PathLike[str],
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    batch_size: int = 32,
    trust_remote_code: bool = False,
    **options: Any,
) -> FrameEncoder:
    """Load a frozen frame encoder from a hub id or a local checkpoint directory.

    ``options`` are family-specific (e.g. ``layer=-2, pool=4`` for CLIP/SigLIP) and
    are part of the encoder's fingerprint.
    """
    if batch_size < 1:
        raise EncoderError(f"batch_size must be >= 1, got {batch_size}")
    config = load_config(model, trust_remote_code=trust_remote_code)
    model_type = str(getattr(config, "model_type", None))
    if model_type not in FAMILIES:
        raise EncoderError(
            f"{model}: model_type {model_type!r} is not a supported frame-encoder family; "
            f"supported: {sorted(FAMILIES)}"
        )
    factory = family_factory(model_type)
    dev = resolve_device(device)
    settings = LoadSettings(
        device=dev,
        dtype=resolve_dtype(dtype, dev),
        batch_size=batch_size,
        trust_remote_code=trust_remote_code,
        source=str(model),
    )
    path, _ = resolve_checkpoint(model)
    return factory(path, config, settings, **options)


def reject_unknown_options(
    family: str, unknown: dict[str, Any], known: Sequence[str], hint: str = ""
) -> None:
    """Family factories take ``**options``; a typo must fail loudly, not be ignored.
    ``hint`` says why a family accepts what it does (e.g. nothing)."""
    if unknown:
        raise EncoderError(
            f"{family}: unknown encoder options {sorted(unknown)}; "
            f"this family accepts {sorted(known)}" + (f" ({hint})" if hint else "")
        )


def default_memory_preset(model: str | os.PathLike[str]) -> str | None:
    """The memory preset a local checkpoint names for itself in its ``config.json``
    (a converted MovieChat checkpoint names ``moviechat_reference``); None when it names
    none. Read as plain JSON: nothing is loaded."""
    import json
    from pathlib import Path

    config = Path(model) / "config.json"
    try:
        value = json.loads(config.read_text()).get("memory_preset") if config.is_file() else None
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


def resolve_model(model: str) -> str:
    """What ``EncoderConfig.model`` names, as a hub id or directory: ``"tiny"`` is the
    smoke-test preset, the cached tiny random LLaVA of ``encoders.testing`` (its tokens are
    meaningless; shapes and code paths are real). A named model of
    :data:`videomem.encoders.prepared.PREPARED` (``"smollm2"``) is its prepared
    checkpoint, converted on first use; every use of a name goes through here, so a
    missing package fails the same clear way wherever the name is passed."""
    from videomem.encoders.prepared import PREPARED, prepare

    if model == "tiny":
        from videomem.encoders.testing import tiny_checkpoint

        return str(tiny_checkpoint("llava"))
    if model in PREPARED:
        return str(prepare(model))
    return model


def load_encoder_from_config(config: EncoderConfig) -> FrameEncoder:
    """:func:`load_encoder` from an ``EncoderConfig`` (what jobs pass to workers);
    ``config.compile`` compiles its forward (checked against eager on the first batch)."""
    encoder = load_encoder(
        resolve_model(config.model),
        config.device,
        config.dtype,
        batch_size=config.batch_size,
        trust_remote_code=config.trust_remote_code,
        **config.options,
    )
    if config.compile:
        compile_forward = getattr(encoder, "compile_forward", None)
        if compile_forward is None:
            raise EncoderError(f"{config.model}: this encoder cannot run under torch.compile")
        compile_forward()
    return encoder
