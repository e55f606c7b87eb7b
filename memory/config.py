"""The memory config: how a video's frame tokens are consolidated into a bounded
long-term memory and how its tokens are stored, and its named presets.

Fields added after memories were first stored are hashed only when they differ from
their old behaviour (``_HASHED_UNLESS``, ``_ADAPTIVE_ONLY``), so the keys of memories
stored before them stay valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from videomem.pipeline.errors import ConfigError
from videomem.pipeline.types import ConfigBase

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
_ADAPTIVE_ONLY: tuple[str, ...] = ("threshold", "max_span_s", "keep_events")


@dataclass(frozen=True, slots=True)
class MemoryConfig(ConfigBase):
    """How a video's frame tokens are consolidated into a bounded long-term memory,
    and how its tokens are stored."""

    # Added after memories were stored: hashed only when int8 (token_scale only then,
    # see hashed_dict), so float16 keys stay the same as before the fields existed.
    # max_span_s: None is how adaptive memories were built before the field existed.
    # token_tau: 0.0 (nothing dropped) is every memory stored before the field existed;
    # keep_events: False likewise.
    _HASHED_UNLESS: ClassVar[dict[str, Any]] = {
        "token_dtype": "float16",
        "max_span_s": None,
        "token_tau": 0.0,
        "keep_events": False,
    }

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
    # adaptive only, opt-in: a merge the budget forces never folds a short event (at
    # most 3 frames whose two neighbours are more alike with each other than with it)
    # into its neighbours while another pair can merge (memory.adaptive). More one-
    # second needles survive small budgets (bench/needle.py: real footage at L = 32,
    # 0/9 -> 7/9), at the price of the scenes whose slots are merged instead; off by
    # default until the scene tables (bench/memory.py) say otherwise.
    keep_events: bool = False
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
    # How the store encodes tokens (memory/codec.py): "float16" is bit-exact; "int8"
    # halves the stored bytes for a small error (reported per video). Part of the key
    # because it changes what is stored.
    token_dtype: TokenDtype = "float16"
    # int8 only: one scale per token ("token": tokens of one frame can differ in
    # magnitude by orders, and a shared scale rounds the small ones to zero) or one
    # per slot ("slot": 4 bytes a slot instead of 4 a token).
    token_scale: TokenScale = "token"
    # Token dropping (memory/redundancy.drop_tokens, every method): a long-term slot
    # stores only the token positions whose cosine distance to the last kept token at
    # that position exceeds token_tau (in [0, 2]; the first slot keeps all), readers
    # fill the rest from that kept token. Off (0.0) by default: it changes what a
    # reader of the stored tokens sees (an approximation, like int8), so a user opts
    # into it per corpus; part of the key only when on, so existing keys stay valid.
    token_tau: float = 0.0

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
        if not (math.isfinite(self.token_tau) and 0.0 <= self.token_tau <= 2.0):
            # a cosine distance is in [0, 2]: outside it every token or none is dropped
            raise ConfigError(
                f"MemoryConfig: token_tau {self.token_tau} is not a cosine distance in [0, 2]"
            )
        if self.keep_events and self.method != "adaptive":
            raise ConfigError("MemoryConfig: keep_events applies to the adaptive method only")
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
        return ConfigBase.from_dict.__func__(cls, data)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        # max_span_s came after memories were stored and only the adaptive method reads
        # it: the stored JSON of the other methods stays byte for byte as it was.
        out = ConfigBase.to_dict(self)
        if self.method != "adaptive":
            out.pop("max_span_s", None)
        if not self.keep_events:
            out.pop("keep_events", None)  # likewise: configs without it stay as they were
        if self.token_tau == 0.0:
            out.pop("token_tau", None)  # likewise: configs without dropping stay as they were
        return out

    def hashed_dict(self) -> dict[str, Any]:
        out = ConfigBase.hashed_dict(self)
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
