"""The decode side's typed records and config, and the base of every config.

One record per hand-off, in pipeline order::

    VideoSource ──decode──► FrameBatch ──encode──► FrameTokens ──consolidate──► VideoMemory

This module holds the first three and ``DecodeConfig``; each subsystem's own types live
in its folder (``encoders.config.EncoderConfig``, ``memory.config.MemoryConfig``,
``memory.types.VideoMemory``, ``memory.index_config.index_config_hash``), so a folder
never reaches up for its own concepts. ``ConfigBase`` stays here, at the bottom of the
import graph, because every config derives from it.

Design decisions:

* ``FrameBatch`` holds NumPy arrays: it is what ffmpeg's pipe gives us and the decoder
  must not need torch. ``FrameTokens`` holds torch tensors: it is produced and
  consumed by tensor code (encoders, ``memory/``).
* Timestamps are seconds from the start of the video (float64), not frame numbers,
  so memories built at different sampling rates can be compared and plotted.
* Configs are small frozen dataclasses; every field says why it exists. Their JSON is
  stored beside every output and their hash is part of the key of a stored memory, so
  a changed setting never silently reuses an old memory. Fields that cannot change
  the output (batch sizes, timeouts) are left out of the hash.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from videomem.pipeline.errors import ConfigError

if TYPE_CHECKING:  # torch is only needed by code that builds these records
    import torch


# --------------------------------------------------------------------------- configs


class ConfigBase:
    """JSON round-trip of the frozen config dataclasses, and the fields that go into
    the stored-memory key (``memory.index_config.index_config_hash``)."""

    #: fields that do not change what is produced (speed knobs), left out of the hash
    _NOT_HASHED: ClassVar[tuple[str, ...]] = ()
    #: fields added after stores existed, hashed only when they differ from this value,
    #: so the keys of memories indexed before the field existed stay valid
    _HASHED_UNLESS: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    def hashed_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.to_dict().items()
            if k not in self._NOT_HASHED
            and not (k in self._HASHED_UNLESS and v == self._HASHED_UNLESS[k])
        }


AspectPolicy = Literal["pad", "crop", "stretch"]
SampleMode = Literal["exact", "keyframes"]
DecodeDevice = Literal["cpu", "cuda"]
Decoder = Literal["ffmpeg", "torchcodec"]


@dataclass(frozen=True, slots=True)
class DecodeConfig(ConfigBase):
    """How frames are sampled and shaped by ffmpeg."""

    _NOT_HASHED: ClassVar[tuple[str, ...]] = (
        "batch_size",
        "timeout_s",
        "segments",
        "device",
        "cpus",
        "decoder",
    )
    _HASHED_UNLESS: ClassVar[dict[str, Any]] = {"sample": "exact"}

    # Frames per second to sample. 1 fps is MovieChat's long-video setting: adjacent
    # frames are similar enough to merge, and a 3-hour video is ~10K frames.
    fps: float | None = 1.0
    # If set, sample exactly this many frames spread uniformly over [start_s, end_s]
    # instead of a fixed rate (MovieChat-style); overrides ``fps``.
    num_frames: int | None = None
    # Optional time window in seconds, so a clip of a long video can be indexed.
    start_s: float | None = None
    end_s: float | None = None
    # Output (height, width), normally the encoder's input size; scaling happens
    # inside ffmpeg so full-resolution frames never reach Python. None = native size.
    size: tuple[int, int] | None = None
    # How to fit a different aspect ratio into ``size``: "pad" keeps the whole frame
    # (letterbox, black bars), "crop" fills the frame and cuts the centre, "stretch"
    # distorts. Pad is the default: nothing on screen is lost.
    aspect: AspectPolicy = "pad"
    # Frames per yielded batch: bounds memory (a few batches in flight at most).
    batch_size: int = 16
    # Kill ffmpeg if it produces no frame bytes for this many seconds (hung input).
    timeout_s: float = 60.0
    # "exact": frames on a fixed time grid (``fps`` or ``num_frames``). "keyframes": only
    # the stream's keyframes, at their own timestamps, thinned to at most ``fps`` per
    # second (``fps=None``: every keyframe). Decodes one frame per GOP instead of all of
    # them (several times faster), and keyframes often sit on scene cuts.
    sample: SampleMode = "exact"
    # ffmpeg processes decoding time ranges of one video at once (exact mode), for long
    # videos on many cores; None picks from the cores and the video's length (1 for
    # short videos). The frames are identical, so it is not hashed.
    segments: int | None = None
    # Where ffmpeg decodes: "cpu", or "cuda" (NVDEC with scaling on the GPU, for hosts
    # whose CPUs cannot keep up); a codec NVDEC cannot decode falls back to the CPU.
    # Not hashed, like the encoder's device (GPU scaling differs only by rounding).
    device: DecodeDevice = "cpu"
    # Cores one video's decode may use (the automatic ``segments`` count and ffmpeg
    # threads follow it): a worker's share when several workers run on one machine,
    # so N workers do not each start one ffmpeg per core. None = every core this
    # process may run on. Not hashed: the frames are identical.
    cpus: int | None = None
    # What decodes exact-mode frames: "ffmpeg" (a process, frames through a pipe) or
    # "torchcodec" (in process, frames as torch tensors on ``device``: with "cuda" they
    # reach the encoder without a copy through host memory). Keyframe sampling always
    # uses ffmpeg. Not hashed: same frames, resizing differs only by rounding.
    decoder: Decoder = "ffmpeg"

    def __post_init__(self) -> None:
        if self.sample not in ("exact", "keyframes"):
            raise ConfigError(f"DecodeConfig: unknown sample mode {self.sample!r}")
        if self.sample == "keyframes" and self.num_frames is not None:
            raise ConfigError("DecodeConfig: num_frames cannot be used with sample='keyframes'")
        fps_ok = self.fps is None if self.sample == "keyframes" else False
        if self.num_frames is None and not (fps_ok or (self.fps is not None and self.fps > 0)):
            raise ConfigError("DecodeConfig: fps must be > 0 (or set num_frames)")
        if self.num_frames is not None and self.num_frames < 1:
            raise ConfigError("DecodeConfig: num_frames must be >= 1")
        if self.start_s is not None and self.start_s < 0:
            raise ConfigError("DecodeConfig: start_s must be >= 0")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ConfigError("DecodeConfig: end_s must be greater than start_s")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ConfigError("DecodeConfig: size must be (height, width) with both >= 1")
        if self.aspect not in ("pad", "crop", "stretch"):
            raise ConfigError(f"DecodeConfig: unknown aspect policy {self.aspect!r}")
        if self.batch_size < 1:
            raise ConfigError("DecodeConfig: batch_size must be >= 1")
        if not self.timeout_s > 0:
            raise ConfigError("DecodeConfig: timeout_s must be > 0")
        if self.segments is not None and self.segments < 1:
            raise ConfigError("DecodeConfig: segments must be >= 1 (or None for automatic)")
        if self.cpus is not None and self.cpus < 1:
            raise ConfigError("DecodeConfig: cpus must be >= 1 (or None for all of them)")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"DecodeConfig: unknown decode device {self.device!r}")
        if self.decoder not in ("ffmpeg", "torchcodec"):
            raise ConfigError(f"DecodeConfig: unknown decoder {self.decoder!r}")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class VideoSource:
    """A video file and what probing it found.

    ``video_id`` is derived from the content (see ``pipeline.files.content_video_id``),
    never from the path: the same file copied or moved keeps its memories.
    ``width``/``height`` are the coded size; ``display_size`` applies ``rotation``.
    """

    video_id: str
    uri: str
    size_bytes: int
    has_video: bool = True
    duration_s: float | None = None
    fps: float | None = None  # native average frame rate
    num_frames: int | None = None  # when the container knows it
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    rotation: int = 0  # clockwise degrees the player applies: 0, 90, 180, 270
    probed_with: str = "ffprobe"  # "ffprobe" or "ffmpeg" (no ffprobe available)
    # The first audio stream, if any: the speech track reads it (pipeline.audio), and a
    # video without one is "no audio", not a failure. None = no audio stream.
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    @property
    def display_size(self) -> tuple[int, int] | None:
        """(height, width) as shown to a viewer, after rotation."""
        if self.width is None or self.height is None:
            return None
        if self.rotation % 180 == 90:
            return (self.width, self.height)
        return (self.height, self.width)


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """Decoded frames.

    frames:      uint8  [B, H, W, 3]  RGB: a NumPy array, or a torch tensor where the
                                      decoder made one (torchcodec; on a GPU there)
    timestamps:  float64 [B]          seconds from the start of the video
    frame_index: int64  [B]           index of the source frame at the native rate
    """

    frames: np.ndarray | torch.Tensor
    timestamps: np.ndarray
    frame_index: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True, slots=True)
class FrameTokens:
    """Visual tokens of a batch of frames.

    tokens:     float [B, N, D]  N tokens of width D per frame
    timestamps: float64 [B]      seconds, copied from the FrameBatch
    embedding:  float [B, E]     pooled per-frame embedding for search (None if the
                                 encoder has none)
    """

    tokens: torch.Tensor
    timestamps: torch.Tensor
    embedding: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])
