"""How each model family lays out a video's visual tokens in its prompt.

Every supported VLM consumes visual features the same way: the prompt holds one
placeholder token per visual token, and the model scatters the features into those
positions in order. A family differs only in

* which chat-template content items stand for the video (LLaVA-1.5 and Idefics3 have
  no video path: one ``image`` item per slot; the video families: one ``video`` item),
* what text each rendered placeholder expands to (how many placeholder tokens, the
  wrappers and frame times around them),
* which key of ``mm_encoder_outputs`` carries the features, and any extra feature rows
  (LLaVA-OneVision's one ``image_newline`` after the last frame of a video).

``style="native"`` reproduces, byte for byte, the text the family's own processor
builds for the same frames (so parity with the model's own pixel path can be tested);
``style="timestamped"`` (the default) precedes each slot with the time span it covers,
which the native layouts cannot express (they assume one frame per position).
With subtitles (:mod:`videomem.qa.subtitles`) each slot's visual block is followed by
the words said in its span, `` [speech] "…"`` and a newline; where a native layout
is one block for every frame (LLaVA-NeXT-Video, OneVision, BLIP-2), the subtitles
follow it as one line per slot with its span. Without subtitles (the default) every
layout is unchanged, byte for byte.

Token dropping (``VideoMemory.keep``): a slot shows only the tokens it stores, in grid
(index) order, so ``tokens_per_slot`` is then one count per slot
(:meth:`Layout.slot_counts`); with ``keep=None`` it stays the one int of every slot and
every layout is unchanged, byte for byte. LLaVA-OneVision: a newline row
(``image_newline``) ends each row of the slot's square pooled grid that has kept
tokens, the video's one trailing newline kept as well; the other families: just the
kept tokens (BLIP-2's queries are no grid: index order). MovieChat reads the dense
tokens (its video Q-Former consumes every position of every frame): its prompt does
not change.

Nothing here touches a model: layouts are strings and counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import torch

PromptStyle = Literal["native", "timestamped"]
PROMPT_STYLES: tuple[str, ...] = ("native", "timestamped")


@dataclass(frozen=True)
class Span:
    """The time span of one slot, seconds."""

    start_s: float
    end_s: float


def span_text(span: Span) -> str:
    """A slot's time span as the timestamped style writes it, e.g. ``"3.0s-7.5s:"``."""
    return f"{span.start_s:.1f}s-{span.end_s:.1f}s:"


def subtitle_text(said: str) -> str:
    """What follows a slot's visual block when words were said in its span."""
    return f' [speech] "{said}"\n' if said else ""


def _subs(subtitles: Sequence[str] | None, n: int) -> list[str]:
    """The rendered subtitle of each of ``n`` slots ("" for none)."""
    if subtitles is None:
        return [""] * n
    if len(subtitles) != n:
        raise ValueError(f"{len(subtitles)} subtitles for {n} slots")
    return [subtitle_text(x) for x in subtitles]


def _counts(tokens_per_slot: int | Sequence[int], n: int) -> list[int]:
    """Placeholders of each of ``n`` slots: one int for all, or one count per slot."""
    if isinstance(tokens_per_slot, int):
        return [tokens_per_slot] * n
    counts = [int(c) for c in tokens_per_slot]
    if len(counts) != n:
        raise ValueError(f"{len(counts)} token counts for {n} slots")
    return counts


def grid_side(n: int) -> int:
    """The side of a square grid of ``n`` tokens (LLaVA-OneVision's pooled grid)."""
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} tokens per slot are not a square grid")
    return side


def row_counts(keep: torch.Tensor) -> torch.Tensor:
    """Rows of each slot's square grid that hold kept tokens: ``keep [L, N] -> [L]``."""
    side = grid_side(int(keep.shape[1]))
    return keep.reshape(keep.shape[0], side, side).any(-1).sum(-1)


def _sub_lines(spans: Sequence[Span], subs: Sequence[str]) -> str:
    """Subtitles after a single block: one line per slot that has any, with its span."""
    lines = "".join(f"{span_text(s)}{x}" for s, x in zip(spans, subs, strict=True) if x)
    return "\n" + lines if lines else ""


def mmss(seconds: float) -> str:
    """``MM:SS`` as SmolVLM's processor writes frame times (whole seconds, floored)."""
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """English cardinal as ``num2words(n)`` writes it (``21 -> "twenty-one"``,
    ``105 -> "one hundred and five"``), for 0 <= n < 10**6: the frame count in SmolVLM's
    video intro. Implemented here so the QA stage does not need ``num2words``."""
    if not 0 <= n < 10**6:
        raise ValueError(f"number_words: {n} out of range [0, 1e6)")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    head = f"{number_words(thousands)} thousand"
    if not rest:
        return head
    return head + (" and " if rest < 100 else ", ") + number_words(rest)


class Layout:
    """A family's prompt layout. Subclasses set the class attributes and ``expand``."""

    #: chat-template content type that stands for the video ("image" per slot, or
    #: "video" once); None: the family has no chat template (BLIP-2)
    item: Literal["image", "video"] | None = "video"
    #: the placeholder string the chat template renders for ``item``
    placeholder: str = "<video>"
    #: the token whose positions receive visual features
    feature_token: str = "<video>"
    #: key of ``mm_encoder_outputs`` (None: features are spliced into inputs_embeds)
    modality: Literal["image", "video"] | None = "video"
    #: feature rows appended after a video's slot tokens (OneVision's newline)
    suffix_rows: int = 0
    #: with token dropping, a newline row ends each grid row that has kept tokens
    row_newlines: bool = False
    #: the family reads every position of every slot (MovieChat): ``keep`` is ignored
    dense: bool = False

    def slot_counts(self, keep: torch.Tensor | None, n: int) -> int | list[int]:
        """Placeholders per slot for ``n`` tokens per slot: ``n`` when ``keep`` is None
        (every slot whole), else one count per slot: its kept tokens (plus its grid rows
        that hold any, for OneVision)."""
        if keep is None or self.dense:
            return n
        counts = keep.sum(-1)
        if self.row_newlines:
            counts = counts + row_counts(keep)
        return [int(c) for c in counts.tolist()]

    def items(self, n_slots: int) -> list[dict[str, str]]:
        """Chat-template content items standing for the video."""
        if self.item is None:
            return []
        return [{"type": self.item}] * (n_slots if self.item == "image" else 1)

    def expand(
        self,
        spans: Sequence[Span],
        tokens_per_slot: int | Sequence[int],
        style: PromptStyle,
        duration_s: float | None,
        subtitles: Sequence[str] | None = None,
    ) -> list[str]:
        """One replacement text per rendered placeholder, in order (``tokens_per_slot``:
        one count for every slot, or one per slot; ``subtitles``: the words said in each
        slot's span, see the module docstring)."""
        raise NotImplementedError

    def special_strings(self) -> set[str]:
        """Strings a question must not contain (they would add placeholders)."""
        return {self.placeholder, self.feature_token}


class LlavaImages(Layout):
    """LLaVA-1.5: no video path; a video is several images. The processor expands each
    ``<image>`` to N image tokens (the patch grid, CLS dropped)."""

    item = "image"
    placeholder = feature_token = "<image>"
    modality = "image"

    def expand(self, spans, tokens_per_slot, style, duration_s, subtitles=None):  # type: ignore[no-untyped-def]
        blocks = [self.feature_token * c for c in _counts(tokens_per_slot, len(spans))]
        subs = _subs(subtitles, len(spans))
        if style == "native":
            return [b + x for b, x in zip(blocks, subs, strict=True)]
        return [f"{span_text(s)} {b}{x}" for s, b, x in zip(spans, blocks, subs, strict=True)]


class VideoTokens(Layout):
    """LLaVA-NeXT-Video (``suffix_rows=0``) and LLaVA-OneVision (``suffix_rows=1``):
    one ``<video>`` expanded to frames x pooled tokens (+ OneVision's newline token)."""

    def __init__(self, suffix_rows: int) -> None:
        self.suffix_rows = suffix_rows
        self.row_newlines = suffix_rows > 0

    def expand(self, spans, tokens_per_slot, style, duration_s, subtitles=None):  # type: ignore[no-untyped-def]
        blocks = [self.feature_token * c for c in _counts(tokens_per_slot, len(spans))]
        tail = self.feature_token * self.suffix_rows
        subs = _subs(subtitles, len(spans))
        if style == "native":
            return ["".join(blocks) + tail + _sub_lines(spans, subs)]
        return [
            "".join(f"{span_text(s)} {b}{x}" for s, b, x in zip(spans, blocks, subs, strict=True))
            + tail
        ]


#: SmolVLM's processor strings (transformers ``processing_smolvlm``)
_SMOL_INTRO = (
    "You are provided the following series of {frame_count} frames "
    "from a {video_duration} [H:MM:SS] video.\n"
)
_SMOL_FRAME = "\nFrame from {timestamp}:"
_SMOL_OUTRO = "\n\n"


class IdeficsImages(Layout):
    """SmolVLM / Idefics3 frames: each frame is one unsplit image,
    ``<fake_token_around_image><global-img><image>*N<fake_token_around_image>``.

    ``video=True`` (SmolVLM): one ``<video>`` item expanded as SmolVLM's processor
    does: an intro naming the frame count (in words) and the duration, then per frame
    ``"\\nFrame from MM:SS:"`` and its image block, then a blank line. ``video=False``
    (Idefics3, no video path): one ``<image>`` item per slot.
    """

    feature_token = "<image>"
    modality = "image"
    fake = "<fake_token_around_image>"
    global_img = "<global-img>"

    def __init__(self, video: bool) -> None:
        self.item = "video" if video else "image"
        self.placeholder = "<video>" if video else "<image>"

    def _block(self, n: int) -> str:
        return self.fake + self.global_img + self.feature_token * n + self.fake

    def expand(self, spans, tokens_per_slot, style, duration_s, subtitles=None):  # type: ignore[no-untyped-def]
        blocks = [self._block(c) for c in _counts(tokens_per_slot, len(spans))]
        subs = _subs(subtitles, len(spans))
        if self.item == "image":
            if style == "native":
                return [b + x for b, x in zip(blocks, subs, strict=True)]
            return [f"{span_text(s)} {b}{x}" for s, b, x in zip(spans, blocks, subs, strict=True)]
        if duration_s is None:
            duration_s = spans[-1].start_s if spans else 0.0
        text = _SMOL_INTRO.format(
            frame_count=number_words(len(spans)),
            video_duration=str(timedelta(seconds=int(duration_s))),
        )
        for s, b, x in zip(spans, blocks, subs, strict=True):
            when = mmss(s.start_s) if style == "native" else f"{mmss(s.start_s)}-{mmss(s.end_s)}"
            text += _SMOL_FRAME.format(timestamp=when) + b + x
        return [text + _SMOL_OUTRO]

    def special_strings(self) -> set[str]:
        return {self.placeholder, self.feature_token, self.fake, self.global_img}


class Blip2Queries(Layout):
    """BLIP-2: no chat template; its processor puts the image's query tokens *before*
    the BOS token, then the text. L slots -> L x Q query tokens (MovieChat concatenates
    frames' queries the same way). With token dropping, only the kept queries, in index
    order."""

    item = None
    placeholder = feature_token = "<image>"
    modality = None

    def expand(self, spans, tokens_per_slot, style, duration_s, subtitles=None):  # type: ignore[no-untyped-def]
        blocks = [self.feature_token * c for c in _counts(tokens_per_slot, len(spans))]
        subs = _subs(subtitles, len(spans))
        if style == "native":
            return ["".join(blocks) + _sub_lines(spans, subs)]
        return [
            "".join(f"{span_text(s)} {b}{x}" for s, b, x in zip(spans, blocks, subs, strict=True))
        ]


class MovieChatVideo(Layout):
    """MovieChat: its fixed prompt with one ``<ImageHere>`` standing for the video Q-Former's
    query outputs (``queries`` of them, 32), however many slots the memory has: the
    slots go through the video Q-Former first, so no per-slot text exists: subtitles
    (``--subtitles``) follow the video as timed lines. Token dropping changes nothing
    here: the video Q-Former consumes every position of every frame, so it reads the
    dense tokens (``dense``) and the prompt stays the same."""

    item = None
    placeholder = feature_token = "<ImageHere>"
    modality = None
    dense = True

    def __init__(self, queries: int, prompt: str) -> None:
        self.queries = queries
        #: MovieChat's prompt: "{question}" and one placeholder to fill
        self.prompt = prompt

    def expand(self, spans, tokens_per_slot, style, duration_s, subtitles=None):  # type: ignore[no-untyped-def]
        subs = _subs(subtitles, len(spans))
        return [self.feature_token * self.queries + _sub_lines(spans, subs)]


def layout_for(model_type: str, config: object | None = None) -> Layout:
    """The layout of a checkpoint's ``model_type`` (``config``: MovieChat's prompt and
    query count)."""
    if model_type == "moviechat":
        queries = int(getattr(config, "num_video_query_tokens", 32))
        return MovieChatVideo(queries, str(getattr(config, "prompt", "")))
    layouts: dict[str, Layout] = {
        "llava": LlavaImages(),
        "llava_next_video": VideoTokens(suffix_rows=0),
        "llava_onevision": VideoTokens(suffix_rows=1),
        "smolvlm": IdeficsImages(video=True),
        "idefics3": IdeficsImages(video=False),
        "blip-2": Blip2Queries(),
    }
    try:
        return layouts[model_type]
    except KeyError:
        raise KeyError(model_type) from None
