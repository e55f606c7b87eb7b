"""Hugging Face loading the videomem way, shared by the encoders and the QA stage.

Design decisions:

* Weights are safetensors only; remote code runs only when asked.
* A local directory never touches the network. A hub id is resolved offline-first:
  when the files are cached they are used without a request; when they are not and the
  hub cannot be reached, one quick attempt fails with an :class:`EncoderError` that
  names the remedy (no retry storm).
* Models are frozen: ``eval()``, ``requires_grad_(False)``.
* A VLM loaded for its vision side skips the language model's decoder layers
  (:func:`vision_only_config`); the QA stage loads the whole model.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from videomem.encoders.gpu import half_dtype
from videomem.pipeline.errors import EncoderError


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
        return half_dtype(device) if device.type == "cuda" else torch.float32
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
    s = str(model)
    # A hub id is "name" or "org/name"; anything else that does not exist is a typo'd
    # directory, and saying so beats a confusing hub error.
    if p.is_absolute() or s.startswith((".", "~")) or s.count("/") > 1 or "\\" in s:
        raise EncoderError(f"{model}: no such checkpoint directory")
    return s, False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _cached(model: str) -> bool:
    """Whether a hub id's config is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(model, "config.json"), str)
    except Exception:  # a malformed id: not cached
        return False


def local_files_only(path: str) -> bool:
    """Never touch the network for a local directory or a cached hub id, nor when
    HF_HUB_OFFLINE is set: a cached model loads the same with the network down."""
    return Path(path).is_dir() or _offline() or _cached(path)


def check_hub(model: str, timeout_s: float = 10.0) -> None:
    """For a hub id that is not cached: one quick request, so an unreachable hub fails
    at once with the clear error instead of a storm of retries (the hub client retries
    each file five times with backoff, ~40 s per load without a network)."""
    if local_files_only(model):
        if not Path(model).is_dir() and _offline() and not _cached(model):
            raise unreachable_hub_error(model, RuntimeError("HF_HUB_OFFLINE is set"))
        return
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(model, timeout=timeout_s)
    except Exception as e:  # connection, DNS, 404, 401 …: one answer, no retries
        raise unreachable_hub_error(model, e) from e


def unreachable_hub_error(model: str, cause: BaseException | None = None) -> EncoderError:
    """The error for a hub id that is neither a directory nor fetchable; names the remedy."""
    why = f" ({cause})" if cause is not None else ""
    return EncoderError(
        f"cannot load model {model!r}: it is not a local directory and could not be "
        "fetched from the Hugging Face hub (offline, or not cached). Pass a local "
        "checkpoint directory (e.g. one saved with save_pretrained or downloaded "
        "with `huggingface-cli download`), or populate the HF cache (HF_HOME) first." + why
    )


def load_config(model: str | os.PathLike[str], trust_remote_code: bool = False) -> Any:
    """The checkpoint's transformers config, offline-first with a clear error."""
    import videomem.encoders.moviechat_config  # noqa: F401 (registers model_type "moviechat")
    from transformers import AutoConfig

    path, local = resolve_checkpoint(model)
    if not local:
        check_hub(path)
    try:
        return AutoConfig.from_pretrained(
            path,
            trust_remote_code=trust_remote_code,
            local_files_only=local_files_only(path),
        )
    except (OSError, ValueError) as e:
        # ValueError: a config.json without a model_type transformers knows
        if local or isinstance(e, ValueError):
            raise EncoderError(f"{path}: not a usable Hugging Face checkpoint ({e})") from e
        raise unreachable_hub_error(str(model)) from e


#: why a checkpoint without safetensors weights is refused, and the remedy
SAFETENSORS_ONLY = (
    "videomem reads safetensors weights only (pickled .bin files can run code when "
    "loaded); convert once with transformers: from_pretrained(dir, "
    "use_safetensors=False) then save_pretrained(new_dir)."
)


def load_pretrained(class_name: str, path: str, settings: LoadSettings, **kwargs: Any) -> Any:
    """``transformers.<class_name>.from_pretrained`` the videomem way: safetensors only,
    remote code only if asked, offline for local directories, frozen, on device/dtype.

    Failures become :class:`EncoderError` with the reason (e.g. only ``.bin`` weights).
    """
    import transformers
    from transformers.utils import logging as hf_logging

    cls = getattr(transformers, class_name)
    # transformers draws a "Loading weights" bar per load; a job loads one encoder
    # per worker and logs its own progress, so keep the bar out of job logs.
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = cls.from_pretrained(
            path,
            use_safetensors=True,
            trust_remote_code=settings.trust_remote_code,
            local_files_only=local_files_only(path),
            dtype=settings.dtype,
            **kwargs,
        )
    except (OSError, ValueError) as e:
        if not Path(path).is_dir() and "safetensors" not in str(e):
            raise unreachable_hub_error(path, e) from e
        raise EncoderError(f"{path}: cannot load {class_name} ({e}). {SAFETENSORS_ONLY}") from e
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    if isinstance(model, tuple):  # output_loading_info=True
        model, info = model
        return freeze(model, settings.device), info
    return freeze(model, settings.device)


def freeze(module: torch.nn.Module, device: torch.device) -> Any:
    """eval mode, no gradients, on ``device`` (dtype is left as loaded)."""
    return module.eval().requires_grad_(False).to(device)


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
    """:func:`load_pretrained` of a whole VLM (``*ForConditionalGeneration``) with its
    language model's decoder layers skipped (:func:`vision_only_config`): a 7B VLM
    costs its vision tower, projector and embedding/head matrices, not 7B
    parameters. ``config`` (the checkpoint's own) is left untouched."""
    from transformers.utils import logging as hf_logging

    # The skipped LM layers show up as "unexpected keys" in transformers' load
    # report; that is by design here, so keep the report quiet during this load.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return load_pretrained(class_name, path, settings, config=vision_only_config(config))
    finally:
        hf_logging.set_verbosity(verbosity)
