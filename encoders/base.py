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
* :class:`BatchedEncoder` holds what every family shares (frame checks, batching,
  CPU float32 output); a family only says how one batch of pixels becomes tokens.
* Weights are safetensors only; a hub id is resolved offline-first and a missing one
  fails with an :class:`EncoderError` that names the remedy.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from videomem.encoders.gpu import PinnedStager, half_dtype, is_out_of_memory
from videomem.pipeline.errors import EncoderError
from videomem.pipeline.types import EncoderConfig, FrameTokens

log = logging.getLogger(__name__)

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
    "mobilenet_v2": "videomem.encoders.mobilenet",
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


def local_files_only(path: str) -> bool:
    """Never touch the network for a local directory, nor when HF_HUB_OFFLINE is set."""
    return Path(path).is_dir() or _offline()


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
    from transformers import AutoConfig

    path, local = resolve_checkpoint(model)
    try:
        return AutoConfig.from_pretrained(
            path,
            trust_remote_code=trust_remote_code,
            local_files_only=local or _offline(),
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


def load_encoder_from_config(config: EncoderConfig) -> FrameEncoder:
    """:func:`load_encoder` from an ``EncoderConfig`` (what jobs pass to workers).

    ``model="tiny"`` is the smoke-test preset: the cached tiny random LLaVA checkpoint
    of ``encoders.tiny`` (its tokens are meaningless; shapes and code paths are real).
    """
    model = config.model
    if model == "tiny":
        from videomem.encoders.tiny import tiny_checkpoint

        model = str(tiny_checkpoint("llava"))
    return load_encoder(
        model,
        config.device,
        config.dtype,
        batch_size=config.batch_size,
        trust_remote_code=config.trust_remote_code,
        **config.options,
    )


# --------------------------------------------------------------------------- helpers


def checkpoint_fingerprint(
    checkpoint: str, config: Any, settings: LoadSettings, /, **choices: Any
) -> str:
    """:func:`fingerprint` of a loaded checkpoint: what the user passed, its config,
    the run dtype, its weights' identity (hub revision when known) and ``choices``."""
    return fingerprint(
        settings.source,
        config,
        settings.dtype,
        weights_identity(checkpoint, getattr(config, "_commit_hash", None)),
        **choices,
    )


def fingerprint(
    source: str, config: Any, dtype: torch.dtype, weights_id: str, **choices: Any
) -> str:
    """A stable string naming the exact encoder: same string <=> same tokens.

    ``weights_id`` identifies the weights without hashing gigabytes (see
    :func:`weights_identity`).
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


#: bytes read per sample and samples per file by :func:`weights_identity`
_SAMPLE_BYTES = 4096
_SAMPLES = 16


def weights_identity(path: str, commit: str | None = None) -> str:
    """A content identity of a checkpoint's weights that is cheap on gigabyte files.

    Local directory: per ``*.safetensors`` file its name, size, the SHA-256 of its
    JSON header (tensor names, dtypes, shapes, offsets) and of 16 evenly spaced 4 KiB
    samples of the data. It reads ~64 KiB per file, and unlike modification times
    it survives copying the checkpoint to another machine, so every worker of a
    cluster computes the same fingerprint. Hub id: ``id@commit`` (pass the config's
    ``_commit_hash``), which names the weights exactly.
    """
    p = Path(path)
    if not p.is_dir():
        return f"{path}@{commit}" if commit else path
    parts = []
    for f in sorted(p.glob("*.safetensors")):
        h = hashlib.sha256()
        size = f.stat().st_size
        with f.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            h.update(fh.read(min(n, size)))
            for i in range(_SAMPLES):
                fh.seek(max(0, (size - _SAMPLE_BYTES) * i // max(1, _SAMPLES - 1)))
                h.update(fh.read(_SAMPLE_BYTES))
        parts.append(f"{f.name}:{size}:{h.hexdigest()[:16]}")
    return ";".join(parts)


def as_frame_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] as a torch tensor without a copy when possible."""
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        # Frames read from ffmpeg's pipe are read-only views; torch warns on those
        # (it cannot promise not to write). We never write into them, so wrapping is
        # safe — but keep torch quiet without copying the batch.
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            x = torch.from_numpy(frames)
    else:
        x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise EncoderError(f"expected uint8 frames [B, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    return x


def to_pixel_tensor(
    frames: np.ndarray | torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    rescale: float = 1 / 255,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W], on the whole batch.

    The uint8 batch is moved to ``device`` first (4x less to transfer than floats);
    rescale and normalise happen in float32 (as the reference processors do) and the
    result is cast to the model dtype last.
    """
    x = as_frame_tensor(frames)
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


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class ImageSpec:
    """What a checkpoint's image processor does to a frame already at ``input_size``:
    rescale, then normalise. Resizing/cropping is ffmpeg's job (and is the identity
    for frames at ``input_size``, which the parity tests check)."""

    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale: float

    def pixels(
        self, frames: np.ndarray | torch.Tensor, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> float [B, 3, H, W] on ``device`` in ``dtype``."""
        return to_pixel_tensor(frames, self.mean, self.std, self.rescale, device, dtype)


def processor_input_size(image_processor: Any) -> tuple[int, int]:
    """(H, W) the processor feeds the model: the crop if it crops, else the resize
    target. Frames scaled to exactly this size pass its resize/crop unchanged."""

    def get(size: Any, key: str) -> Any:
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    if getattr(image_processor, "do_center_crop", False):
        crop = getattr(image_processor, "crop_size", None)
        if crop is not None and get(crop, "height") and get(crop, "width"):
            return int(get(crop, "height")), int(get(crop, "width"))
    size = getattr(image_processor, "size", None)
    if size is not None:
        if get(size, "height") and get(size, "width"):
            return int(get(size, "height")), int(get(size, "width"))
        if get(size, "shortest_edge"):
            edge = int(get(size, "shortest_edge"))
            return edge, edge
    raise EncoderError(f"cannot tell the input size from {type(image_processor).__name__}")


def load_image_spec(
    path: str,
    settings: LoadSettings,
    input_size: Callable[[Any], tuple[int, int]] = processor_input_size,
) -> ImageSpec:
    """The checkpoint's own preprocessing constants, read through its image processor
    with the PIL backend (so torchvision is never needed), defaults included.

    ``input_size(image_processor) -> (H, W)`` is the frame size; a family whose frames
    do not take the processor's still-image path (e.g. SmolVLM) passes its own.
    """
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(
            path,
            backend="pil",
            trust_remote_code=settings.trust_remote_code,
            local_files_only=local_files_only(path),
        )
    except (OSError, ValueError) as e:
        raise EncoderError(f"{path}: cannot load the image processor ({e})") from e
    rescale = float(proc.rescale_factor) if getattr(proc, "do_rescale", True) else 1.0
    if getattr(proc, "do_normalize", True):
        mean, std = proc.image_mean, proc.image_std
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return ImageSpec(
        input_size=input_size(proc),
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
        rescale=rescale,
    )


# --------------------------------------------------------------------------- shared encode


class BatchedEncoder:
    """What every family shares: frame checks, batching, ``inference_mode``, output
    as CPU float32. A family sets the attributes below and implements
    :meth:`_encode_pixels`.
    """

    input_size: tuple[int, int]
    tokens_per_frame: int
    dim: int
    embed_dim: int
    fingerprint: str
    settings: LoadSettings
    image_spec: ImageSpec
    #: pinned host buffer for uploads to the GPU (made on first use)
    _stager: PinnedStager | None = None
    #: frames per forward after an out-of-memory retry (None: settings.batch_size)
    _chunk: int | None = None

    def _encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """pixels: [b, 3, H, W] in the model dtype on the model device ->
        (tokens [b, N, D], embedding [b, E] or None), any dtype/device."""
        raise NotImplementedError

    def pixels(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> the model's pixel input [B, 3, H, W] (device, dtype)."""
        device = self.settings.device
        if device.type == "cuda":  # upload the uint8 frames asynchronously, pinned
            if self._stager is None:
                self._stager = PinnedStager()
            frames = self._stager.to_device(as_frame_tensor(frames), device)
        return self.image_spec.pixels(frames, device, self.settings.dtype)

    def encode(
        self, frames: np.ndarray | torch.Tensor, timestamps: Sequence[float] | None = None
    ) -> FrameTokens:
        """frames: uint8 [B, H, W, 3] RGB at ``input_size``; timestamps [B] seconds.

        Returns ``FrameTokens`` with tokens [B, N, D] and embedding [B, E], CPU float32,
        computed in chunks of ``settings.batch_size`` frames.
        """
        x = as_frame_tensor(frames)
        b, h, w = (int(s) for s in x.shape[:3])
        if (h, w) != tuple(self.input_size):
            raise EncoderError(
                f"frames are {h}x{w} but this encoder needs {self.input_size[0]}x"
                f"{self.input_size[1]} (H x W); decode with size=encoder.input_size"
            )
        ts = timestamps_tensor(timestamps, b)
        tokens: list[torch.Tensor] = []
        embeds: list[torch.Tensor] = []
        has_embedding = True
        # chunk size: the batch size, halved for good when a chunk runs out of GPU memory
        chunk = self._chunk or self.settings.batch_size
        with torch.inference_mode():
            i = 0
            while i < b:
                n = min(chunk, b - i)
                try:
                    tok, emb = self._encode_pixels(self.pixels(x[i : i + n]))
                except RuntimeError as err:
                    if n == 1 or not is_out_of_memory(err):
                        raise
                    del err  # its traceback holds the tensors that filled the GPU
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    chunk = self._chunk = max(1, n // 2)
                    log.warning("%r: out of GPU memory at %d frames, retrying %d", self, n, chunk)
                    continue
                tokens.append(tok.to("cpu", torch.float32))
                if emb is None:
                    has_embedding = False
                else:
                    embeds.append(emb.to("cpu", torch.float32))
                i += n
        if b == 0:
            return FrameTokens(
                tokens=torch.zeros(0, self.tokens_per_frame, self.dim),
                timestamps=ts,
                embedding=torch.zeros(0, self.embed_dim),
            )
        return FrameTokens(
            tokens=torch.cat(tokens),
            timestamps=ts,
            embedding=torch.cat(embeds) if has_embedding else None,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fingerprint})"
