"""Typed records that flow between the stages, and the per-subsystem configs.

One record per hand-off, in pipeline order::

    VideoSource ──decode──► FrameBatch ──encode──► FrameTokens ──consolidate──► VideoMemory

Design decisions:

* ``FrameBatch`` holds NumPy arrays: it is what ffmpeg's pipe gives us and the decoder
  must not need torch. ``FrameTokens`` and ``VideoMemory`` hold torch tensors: they
  are produced and consumed by tensor code (encoders, ``memory/``).
* Timestamps are seconds from the start of the video (float64), not frame numbers,
  so memories built at different sampling rates can be compared and plotted.
* Configs are small frozen dataclasses; every field says why it exists. Their JSON is
  stored beside every output and their hash is part of the key of a stored memory, so
  a changed setting never silently reuses an old memory. Fields that cannot change
  the output (batch sizes, timeouts) are left out of the hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from videomem.pipeline.errors import ConfigError

if TYPE_CHECKING:  # torch is only needed by code that builds these records
    import torch


# --------------------------------------------------------------------------- configs


class _Config:
    """JSON round-trip of the frozen config dataclasses, and the fields that go into
    the stored-memory key (:func:`index_config_hash`)."""

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
class DecodeConfig(_Config):
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


@dataclass(frozen=True, slots=True)
class EncoderConfig(_Config):
    """Which frozen model turns frames into tokens, and how it runs."""

    _NOT_HASHED: ClassVar[tuple[str, ...]] = ("device", "batch_size", "compile")

    # Hugging Face hub id or local checkpoint directory ("tiny" = the random smoke-test
    # model). Required: a default model would silently give a forgetful caller
    # meaningless tokens.
    model: str
    # "cuda", "cpu", "cuda:1" …; None picks CUDA when present.
    device: str | None = None
    # "float32", "bfloat16", "float16"; None = fp32 on CPU, bf16 on GPU.
    dtype: str | None = None
    # Frames per forward pass: the main speed/memory knob on a GPU.
    batch_size: int = 32
    # Family-specific choices (e.g. {"layer": -2, "pool": 4} for CLIP); part of the
    # encoder fingerprint because they change the tokens.
    options: dict[str, Any] = field(default_factory=dict)
    # Never run code shipped inside a checkpoint unless the user asks for it.
    trust_remote_code: bool = False
    # Run the forward under torch.compile (faster on GPUs once compiled), kept only if
    # its tokens match eager on the first batch; not in the fingerprint, like device.
    compile: bool = False


MemoryMethod = Literal["adaptive", "moviechat", "mbc"]
Metric = Literal["cosine", "dot", "token_cosine", "token_min"]
Weighting = Literal["size", "plain"]
Overflow = Literal["consolidate", "drop_oldest"]
TokenDtype = Literal["float16", "int8"]
TokenScale = Literal["slot", "token"]
TOKEN_DTYPES: tuple[str, ...] = ("float16", "int8")
TOKEN_SCALES: tuple[str, ...] = ("slot", "token")

#: Fields added after memories were first stored. A method they do not apply to
#: leaves them out of its hash, so keys of memories stored before they existed
#: (and configs read back from that JSON) stay the same.
_ADAPTIVE_ONLY: tuple[str, ...] = ("threshold", "max_span_s")


@dataclass(frozen=True, slots=True)
class MemoryConfig(_Config):
    """How a video's frame tokens are consolidated into a bounded long-term memory,
    and how its tokens are stored."""

    # Added after memories were stored: hashed only when int8 (token_scale only then,
    # see hashed_dict), so float16 keys stay the same as before the fields existed.
    # max_span_s: None is how adaptive memories were built before the field existed.
    _HASHED_UNLESS: ClassVar[dict[str, Any]] = {"token_dtype": "float16", "max_span_s": None}

    # "adaptive": frames go straight to long-term memory and the most similar adjacent
    # pair is merged while it is redundant (similarity >= threshold) or the memory is
    # over budget, so slots follow how much the content changes (no 18-frame window
    # that erases short scenes); "moviechat": MovieChat's short-term window merged to
    # merge_to slots per flush; "mbc": MA-LMM memory-bank compression per token position.
    method: MemoryMethod = "adaptive"
    # adaptive only: merge adjacent slots at least this similar even under budget
    # (near-duplicates carry nothing new); in the metric's units, None = merge only
    # past the budget. 0.85 with token_min (the default metric): on real MobileNetV2
    # features of a fixed camera, sensor noise keeps static frames at 0.95-0.99 and a
    # figure crossing a twentieth of the picture drops them to 0.2-0.74; 0.8 and 0.9
    # keep the same events on the synthetic and real static clips (bench/memory.py).
    # (With the old whole-frame cosine, 0.85 was chosen the same way; such a frame
    # stayed at 0.90-0.99 with the figure in it, so the event was merged away.)
    threshold: float | None = 0.85
    # adaptive only: under budget, a merge never makes a slot span more than this many
    # seconds (first to last frame), so static footage keeps a slot every
    # max_span_s for "when" questions instead of one averaged moment; None = no limit.
    # 20 s: 3 slots a minute of static footage (~0.4 MB/min with MobileNetV2 tokens),
    # 256 slots then hold 85 min of it before the budget merges further (10 s: 43 min).
    max_span_s: float | None = 20.0
    # Short-term FIFO capacity in frames (MovieChat default 18; moviechat only).
    short_term_len: int = 18
    # Frames the short-term buffer is merged down to before moving to long-term
    # memory (MovieChat's R_L, default 2; moviechat only).
    merge_to: int = 2
    # Long-term memory budget in slots: MovieChat's 256, kept as the default because
    # it holds every scene of long videos on the benchmark and QA can consolidate
    # further per model (memory.consolidate_memory); adaptive usually stores fewer.
    long_term_len: int = 256
    # Similarity of adjacent frames: cosine of mean-pooled tokens (paper), dot of
    # mean-pooled tokens (reference code), mean per-position cosine, or (default) the
    # lowest per-position similarity, which sees a change in a few positions that any
    # whole-frame average hides (memory/merge.py). The presets pin their own.
    metric: Metric = "token_min"
    # "size": average weighted by frames already merged (old content does not decay);
    # "plain": (a + b) / 2 as in MovieChat's reference code.
    weighting: Weighting = "size"
    # Past the long-term budget: "consolidate" merges long-term memory itself so any
    # length fits; "drop_oldest" forgets the oldest slots (reference code).
    overflow: Overflow = "consolidate"
    # If set, the short-term buffer is consolidated and cleared every ``window``
    # frames even when not full (the reference code feeds windows of 8 frames).
    window: int | None = None
    # Raw (unmerged) most recent frames kept for breakpoint-mode questions. 0: they
    # dominated the stored bytes of short videos, and breakpoint questions can decode
    # the frames before t again.
    keep_recent: int = 0
    # How the store encodes tokens (memory/store/codec.py): "float16" is bit-exact; "int8"
    # halves the stored bytes for a small error (reported per video). Part of the key
    # because it changes what is stored.
    token_dtype: TokenDtype = "float16"
    # int8 only: one scale per token ("token": tokens of one frame can differ in
    # magnitude by orders, and a shared scale rounds the small ones to zero) or one
    # per slot ("slot": 4 bytes a slot instead of 4 a token).
    token_scale: TokenScale = "token"

    def __post_init__(self) -> None:
        if self.method not in ("adaptive", "moviechat", "mbc"):
            raise ConfigError(f"MemoryConfig: unknown method {self.method!r}")
        if self.metric not in ("cosine", "dot", "token_cosine", "token_min"):
            raise ConfigError(f"MemoryConfig: unknown metric {self.metric!r}")
        if self.weighting not in ("size", "plain"):
            raise ConfigError(f"MemoryConfig: unknown weighting {self.weighting!r}")
        if self.overflow not in ("consolidate", "drop_oldest"):
            raise ConfigError(f"MemoryConfig: unknown overflow policy {self.overflow!r}")
        if self.short_term_len < 1 or self.long_term_len < 1 or self.keep_recent < 0:
            raise ConfigError("MemoryConfig: buffer lengths must be positive")
        if not 1 <= self.merge_to <= self.short_term_len:
            raise ConfigError("MemoryConfig: merge_to must be in [1, short_term_len]")
        if self.window is not None and not 1 <= self.window <= self.short_term_len:
            # A window longer than the FIFO would silently drop frames before merging.
            raise ConfigError("MemoryConfig: window must be in [1, short_term_len]")
        if self.max_span_s is not None and not (
            math.isfinite(self.max_span_s) and self.max_span_s > 0
        ):
            raise ConfigError("MemoryConfig: max_span_s must be a positive number or None")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ConfigError("MemoryConfig: threshold must be a finite number or None")
        if (
            self.threshold is not None
            and self.metric in ("cosine", "token_cosine", "token_min")
            and not -1.0 <= self.threshold <= 1.0
        ):
            # a cosine is never above 1: such a threshold would silently never merge
            raise ConfigError(
                f"MemoryConfig: threshold {self.threshold} is not a cosine (in [-1, 1])"
            )
        if self.token_dtype not in TOKEN_DTYPES:
            raise ConfigError(
                f"MemoryConfig: unknown token dtype {self.token_dtype!r}; choose from "
                f"{TOKEN_DTYPES}"
            )
        if self.token_scale not in TOKEN_SCALES:
            raise ConfigError(
                f"MemoryConfig: unknown token scale {self.token_scale!r}; choose from "
                f"{TOKEN_SCALES}"
            )
        if self.method in ("mbc", "adaptive") and (
            self.overflow != "consolidate" or self.window is not None
        ):
            # Both merge long-term memory itself to fit the budget and have no window.
            raise ConfigError(
                f"MemoryConfig: method {self.method!r} needs overflow='consolidate', window=None"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        # An adaptive memory stored before max_span_s existed had no span limit: read
        # back, its config says so (and hashes to the key it was stored under).
        if data.get("method", "adaptive") == "adaptive" and "max_span_s" not in data:
            data = {**data, "max_span_s": None}
        return _Config.from_dict.__func__(cls, data)  # type: ignore[attr-defined]

    def hashed_dict(self) -> dict[str, Any]:
        out = _Config.hashed_dict(self)
        if self.method != "adaptive":
            for name in _ADAPTIVE_ONLY:
                out.pop(name, None)
        if self.token_dtype != "int8":
            out.pop("token_scale", None)  # only int8 has scales
        return out

    @classmethod
    def preset(cls, name: str) -> MemoryConfig:
        """Named configurations; see ``MEMORY_PRESETS``."""
        try:
            return MEMORY_PRESETS[name]
        except KeyError:
            raise ConfigError(
                f"unknown memory preset {name!r}; choose from {sorted(MEMORY_PRESETS)}"
            ) from None


MEMORY_PRESETS: dict[str, MemoryConfig] = {
    "default": MemoryConfig(),
    "adaptive": MemoryConfig(),
    # The default before "adaptive": MovieChat's 18-frame window merged to 2 slots,
    # cosine, size-weighted, long-term memory consolidated past 256 slots, 18 raw
    # recent frames. Same config hash as memories stored with that default.
    "moviechat": MemoryConfig(
        method="moviechat",
        short_term_len=18,
        merge_to=2,
        long_term_len=256,
        metric="cosine",
        weighting="size",
        overflow="consolidate",
        window=None,
        keep_recent=18,
    ),
    # MovieChat's released code: dot similarity, plain average, windows of 8 frames
    # into an 18-frame buffer merged to 2 at each window's end (8 frames -> 2 slots),
    # 256 long-term slots, oldest dropped past that.
    "moviechat_reference": MemoryConfig(
        method="moviechat",
        short_term_len=18,
        merge_to=2,
        long_term_len=256,
        metric="dot",
        weighting="plain",
        overflow="drop_oldest",
        window=8,
        keep_recent=18,
    ),
    # MA-LMM memory-bank compression with a 256-slot bank (as before "adaptive").
    # metric pinned: the default changed to token_min after this preset was keyed.
    "mbc": MemoryConfig(method="mbc", long_term_len=256, keep_recent=18, metric="cosine"),
}


def index_config_hash(decode: DecodeConfig, memory: MemoryConfig) -> str:
    """The config part of a stored memory's key (the encoder fingerprint is the other)."""
    blob = json.dumps(
        {"decode": decode.hashed_dict(), "memory": memory.hashed_dict()}, sort_keys=True
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


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


@dataclass(slots=True)
class VideoMemory:
    """A video's consolidated long-term memory: L slots of N tokens of width D.

    tokens:    float16 (stored) [L, N, D]
    sizes:     int64   [L]   frames merged into each slot (sums to frames_seen, except
                             slots forgotten by ``overflow="drop_oldest"``)
    start_s:   float64 [L]   time span each slot covers; spans are ordered and
    end_s:     float64 [L]   contiguous for the "adaptive" and "moviechat" methods
    embedding: float32 [L, E] pooled embedding per slot for search, or None
    recent_tokens / recent_timestamps: the last ``keep_recent`` raw (unmerged)
        frames [S, N, D] / [S], for breakpoint-mode questions; may be None.
    thumbnails: [L] JPEG bytes (about 160 px on the long side) per slot, or None.
    """

    video_id: str
    tokens: torch.Tensor
    sizes: torch.Tensor
    start_s: torch.Tensor
    end_s: torch.Tensor
    embedding: torch.Tensor | None
    encoder_fingerprint: str
    memory_config: MemoryConfig
    frames_seen: int
    recent_tokens: torch.Tensor | None = None
    recent_timestamps: torch.Tensor | None = None
    config_hash: str = ""  # index_config_hash(decode, memory) once stored
    # one small JPEG per slot (the frame closest to the slot's tokens), or None
    thumbnails: list[bytes | None] | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])
