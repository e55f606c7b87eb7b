"""The frame-encoder contract, shared loading/preprocessing, and the family registry.

Design decisions:

* A frame encoder is anything that satisfies :class:`FrameEncoder`: uint8 frames in,
  ``FrameTokens`` out. The memory algorithms never see a model.
* The family is picked from the checkpoint's own ``config.model_type`` in exactly one
  place (:data:`FAMILY_MODULES` + :func:`register`), never from user strings.
  Family modules are imported lazily, so loading CLIP never imports BLIP-2 code.
* Frames arrive already resized by ffmpeg to ``input_size``; preprocessing is only
  rescale + normalise with the checkpoint's own constants, done on the whole batch
  in torch (no PIL loop, no torchvision).
* Models are frozen: ``eval()``, ``requires_grad_(False)``, ``torch.inference_mode``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from videomem.pipeline.errors import EncoderError
from videomem.pipeline.types import FrameTokens

# --------------------------------------------------------------------------- contract


@runtime_checkable
class FrameEncoder(Protocol):
    """Turns decoded frames into visual tokens."""

    #: (height, width) the decoder should scale frames to
    input_size: tuple[int, int]
    #: N, tokens per frame
    tokens_per_frame: int
    #: D, token width
    dim: int
    #: E, width of the pooled per-frame embedding
    embed_dim: int
    #: stable identity: model, config/weights hash, dtype, layer/pooling choices
    fingerprint: str

    def encode(
        self, frames: np.ndarray | torch.Tensor, timestamps: Sequence[float] | None = None
    ) -> FrameTokens:
        """frames: uint8 [B, H, W, 3] RGB at ``input_size``; timestamps: [B] seconds
        (None -> frame order 0..B-1). Returns tokens [B, N, D] and embedding [B, E]
        on the CPU in float32."""
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """Encodes text into the same space as a frame encoder's pooled embedding."""

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Returns float32 [T, E] on the CPU, in the frame embedding's space."""
        ...


# --------------------------------------------------------------------------- registry

#: model_type (from the checkpoint's config.json) -> module that implements it.
#: The module calls :func:`register` for its model types when imported.
FAMILY_MODULES: dict[str, str] = {
    "clip": "videomem.encoders.clip",
    "siglip": "videomem.encoders.clip",
    "blip-2": "videomem.encoders.blip2",
    "llava": "videomem.encoders.llava",
    "llava_onevision": "videomem.encoders.llava",
    "llava_next_video": "videomem.encoders.llava",
    "smolvlm": "videomem.encoders.smolvlm",
    "idefics3": "videomem.encoders.smolvlm",
}

EncoderFactory = Callable[..., FrameEncoder]
_FACTORIES: dict[str, EncoderFactory] = {}


def register(*model_types: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Class/function decorator: ``factory(path, config, settings, **options)``."""

    def wrap(factory: EncoderFactory) -> EncoderFactory:
        for mt in model_types:
            _FACTORIES[mt] = factory
        return factory

    return wrap


@dataclass(frozen=True)
class LoadSettings:
    """Resolved runtime settings handed to a family factory."""

    device: torch.device
    dtype: torch.dtype
    batch_size: int
    trust_remote_code: bool
    source: str  # what the user passed (hub id or directory), for the fingerprint


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EncoderError(f"device {device!r} requested but CUDA is not available")
    return dev


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """fp32 on CPU, bf16 on GPU unless asked otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise EncoderError(f"unknown dtype {dtype!r}; choose from {sorted(_DTYPES)}") from None


def resolve_checkpoint(model: str | os.PathLike[str]) -> tuple[str, bool]:
    """Returns (path_or_id, is_local_dir)."""
    p = Path(model).expanduser()
    if p.is_dir():
        return str(p.resolve()), True
    if p.exists():
        raise EncoderError(f"{model}: expected a checkpoint directory, got a file")
    return str(model), False


def load_config(model: str | os.PathLike[str], trust_remote_code: bool = False) -> Any:
    """The checkpoint's transformers config, offline-first with a clear error."""
    from transformers import AutoConfig

    path, local = resolve_checkpoint(model)
    try:
        return AutoConfig.from_pretrained(
            path,
            trust_remote_code=trust_remote_code,
            local_files_only=local or _offline(),
        )
    except OSError as e:
        if local:
            raise EncoderError(f"{path}: not a Hugging Face checkpoint directory ({e})") from e
        raise EncoderError(
            f"cannot load model {model!r}: it is not a local directory and could not be "
            "fetched from the Hugging Face hub (offline, or not cached). Pass a local "
            "checkpoint directory (e.g. one saved with save_pretrained or downloaded "
            "with `huggingface-cli download`), or populate the HF cache (HF_HOME) first."
        ) from e


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


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
    config = load_config(model, trust_remote_code=trust_remote_code)
    model_type = getattr(config, "model_type", None)
    module = FAMILY_MODULES.get(str(model_type))
    if module is None:
        raise EncoderError(
            f"{model}: model_type {model_type!r} is not a supported frame-encoder family; "
            f"supported: {sorted(FAMILY_MODULES)}"
        )
    importlib.import_module(module)  # registers its factories
    dev = resolve_device(device)
    settings = LoadSettings(
        device=dev,
        dtype=resolve_dtype(dtype, dev),
        batch_size=batch_size,
        trust_remote_code=trust_remote_code,
        source=str(model),
    )
    path, _ = resolve_checkpoint(model)
    return _FACTORIES[str(model_type)](path, config, settings, **options)


# --------------------------------------------------------------------------- helpers


def fingerprint(
    source: str, config: Any, dtype: torch.dtype, weights_id: str, **choices: Any
) -> str:
    """A stable string naming the exact encoder: same string <=> same tokens.

    ``weights_id`` identifies the weights without hashing gigabytes (e.g. the
    safetensors files' names, sizes and mtimes, or a hub commit hash).
    """
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    for k in ("_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype"):
        cfg.pop(k, None)
    blob = json.dumps(
        {"config": cfg, "weights": weights_id, "choices": choices},
        sort_keys=True,
        default=str,
    ).encode()
    digest = hashlib.sha256(blob).hexdigest()[:12]
    name = Path(source).name if Path(source).is_dir() else source
    parts = [f"{name}", digest, str(dtype).removeprefix("torch.")]
    parts += [f"{k}={v}" for k, v in sorted(choices.items()) if v is not None]
    return ":".join(parts)


def weights_identity(path: str) -> str:
    """Names, sizes and modification times of a local checkpoint's weight files."""
    p = Path(path)
    if not p.is_dir():
        return path
    files = sorted(p.glob("*.safetensors"))
    return ";".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)


def to_pixel_tensor(
    frames: np.ndarray | torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    rescale: float = 1 / 255,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W], on the whole batch.

    Rescale and normalise happen in float32 (as the reference processors do) and the
    result is cast to the model dtype last.
    """
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise EncoderError(f"expected uint8 frames [B, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).to(torch.float32) * rescale
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x - m) / s).to(dtype)


def timestamps_tensor(timestamps: Sequence[float] | None, n: int) -> torch.Tensor:
    if timestamps is None:
        return torch.arange(n, dtype=torch.float64)
    t = torch.as_tensor(np.asarray(timestamps, dtype=np.float64))
    if t.shape != (n,):
        raise EncoderError(f"expected {n} timestamps, got shape {tuple(t.shape)}")
    return t
