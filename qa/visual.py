"""What a question sees of a video: global view (the long-term slots) and breakpoint
view at time t.

Breakpoint view at t, following MovieChat: the long-term slots that end by t, then the
short-term frames just before t and the frame at t, decoded again from the video's
stored uri with the stored decode settings and encoded by the memory's encoder. It
therefore uses only what precedes t. When the file can no longer be read (moved,
deleted, changed content), it falls back to the stored slots that start by t (the slot
covering t may hold frames after t) plus stored raw recent frames up to t, and says so
(``source="memory"``).

Token dropping: ``Visual.keep`` carries the memory's kept positions (``None``: every
token). Stored slots keep theirs; frames decoded again or stored raw recent frames keep
every position, so a view mixing both gets a full mask for those rows.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import VideomemError
from videomem.qa.layout import Span

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Visual:
    """Slots a prompt shows, in time order: tokens [L, N, D] and their spans."""

    tokens: torch.Tensor
    spans: tuple[Span, ...]
    #: frames merged into each slot [L] (1 for a frame decoded again)
    sizes: torch.Tensor
    #: where the slots came from: "memory" (stored) or "video" (decoded again at t)
    source: str = "memory"
    #: slots of the stored memory before any QA-time consolidation
    slots: int = 0
    #: slots after QA-time consolidation to fit the context (None: not needed)
    k: int | None = None
    #: why the breakpoint view fell back to stored slots (None otherwise)
    note: str | None = None
    #: trailing slots that are short-term frames, the last one the frame at t
    #: (breakpoint views; 0: all slots are long-term memory)
    recent: int = 0
    #: slots (indices into the view before fitting) kept whole by a question-aware
    #: cut to K (None: no cut, or the uniform merge; see ``qa.selection``)
    kept_slots: tuple[int, ...] | None = None
    #: the token positions each slot shows [L, N] bool (token dropping); None: all
    keep: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def select(self, rows: slice | list[int]) -> Visual:
        """The slots ``rows`` (a slice, or indices in order) of this view: their tokens,
        spans, sizes and kept positions; the rest of the view as it is."""
        idx = rows if isinstance(rows, slice) else torch.tensor(rows, dtype=torch.long)
        spans = self.spans[rows] if isinstance(rows, slice) else tuple(self.spans[i] for i in rows)
        return replace(
            self,
            tokens=self.tokens[idx],
            spans=spans,
            sizes=self.sizes[idx],
            keep=None if self.keep is None else self.keep[idx],
        )


def _spans(start: torch.Tensor, end: torch.Tensor) -> tuple[Span, ...]:
    return tuple(
        Span(float(s), float(e)) for s, e in zip(start.tolist(), end.tolist(), strict=True)
    )


def global_visual(memory: VideoMemory) -> Visual:
    """The long-term memory, all slots."""
    spans = _spans(memory.start_s, memory.end_s)
    return Visual(memory.tokens, spans, memory.sizes, "memory", len(memory), keep=memory.keep)


def _with_full(keep: torch.Tensor | None, extra: int, n: int) -> torch.Tensor | None:
    """Stored slots' ``keep`` followed by ``extra`` rows that keep all ``n`` positions."""
    if keep is None:
        return None
    return torch.cat([keep, torch.ones((extra, n), dtype=torch.bool, device=keep.device)])


def _sample_step(video: object) -> float:
    decode = video.decode  # type: ignore[attr-defined]
    if decode.fps:
        return 1.0 / float(decode.fps)
    duration = video.duration_s or 0.0  # type: ignore[attr-defined]
    lo = decode.start_s or 0.0
    hi = decode.end_s if decode.end_s is not None else duration
    return max(hi - lo, 1e-3) / float(decode.num_frames or 1)


def decode_before(video: object, encoder: object, t: float, after: float) -> Visual:
    """Decode and encode the short-term frames just before ``t`` and the frame at ``t``
    (at the stored sampling step, none at or before ``after``). Raises on a bad file."""
    from videomem.pipeline.decode import decode
    from videomem.pipeline.files import content_video_id
    from videomem.pipeline.probe import probe

    uri, video_id = video.uri, video.video_id  # type: ignore[attr-defined]
    try:
        same = content_video_id(uri) == video_id
    except OSError as e:
        raise VideomemError(f"{uri}: cannot read ({e.strerror or e})") from e
    if not same:
        raise VideomemError(f"{uri}: the file changed since it was indexed")
    step = _sample_step(video)
    frames = video.memory.short_term_len  # type: ignore[attr-defined]
    room = math.floor((t - after) / step + 1e-9) if after >= 0 else math.floor(t / step + 1e-9)
    k = max(0, min(frames - 1, room))
    start = max(0.0, t - k * step)
    cfg = replace(
        video.decode,  # type: ignore[attr-defined]
        fps=1.0 / step,
        num_frames=None,
        start_s=start,
        end_s=t + step / 2,
        size=tuple(encoder.input_size),  # type: ignore[attr-defined]
    )
    source = probe(uri, video_id=video_id)
    toks, times = [], []
    for batch in decode(uri, cfg, source):
        keep = batch.timestamps <= t + 1e-6
        if keep.any():
            out = encoder.encode(batch.frames[keep], batch.timestamps[keep])  # type: ignore[attr-defined]
            toks.append(out.tokens)
            times.append(np.asarray(batch.timestamps[keep], dtype=np.float64))
    if not toks:
        raise VideomemError(f"{uri}: no frame decoded up to t={t:g}s")
    ts = torch.from_numpy(np.concatenate(times))
    return Visual(torch.cat(toks), _spans(ts, ts), torch.ones(len(ts), dtype=torch.int64), "video")


def breakpoint_visual(
    memory: VideoMemory, t: float, *, video: object | None = None, encoder: object | None = None
) -> Visual:
    """The view of a question at time ``t`` (seconds). ``video`` (a ``VideoContext``)
    and ``encoder`` let it decode the last frames again; without them, or when that
    fails, stored slots are used (see the module docstring)."""
    done = memory.end_s <= t
    before = memory.tokens[done]
    spans = _spans(memory.start_s[done], memory.end_s[done])
    after = float(memory.end_s[done].max()) if bool(done.any()) else -1.0
    note = "no video context given"
    if video is not None and encoder is not None:
        try:
            fresh = decode_before(video, encoder, t, after)
            tokens = torch.cat([before.to(fresh.tokens.dtype), fresh.tokens])
            sizes = torch.cat([memory.sizes[done], fresh.sizes])
            kept = _with_full(
                None if memory.keep is None else memory.keep[done], len(fresh), tokens.shape[1]
            )
            return Visual(
                tokens,
                spans + fresh.spans,
                sizes,
                "video",
                len(memory),
                recent=len(fresh),
                keep=kept,
            )
        except VideomemError as e:
            note = str(e)
            log.info("breakpoint at %.2fs falls back to stored slots: %s", t, e)
    keep = memory.start_s <= t
    tokens, spans = memory.tokens[keep], _spans(memory.start_s[keep], memory.end_s[keep])
    sizes = memory.sizes[keep]
    last = float(memory.end_s[keep].max()) if bool(keep.any()) else -1.0
    recent = 0
    kept = None if memory.keep is None else memory.keep[keep]
    if memory.recent_tokens is not None and memory.recent_timestamps is not None:
        rt = memory.recent_timestamps
        pick = (rt <= t) & (rt > last)
        if bool(pick.any()):
            tokens = torch.cat([tokens, memory.recent_tokens[pick].to(tokens.dtype)])
            spans = spans + _spans(rt[pick], rt[pick])
            sizes = torch.cat([sizes, torch.ones(int(pick.sum()), dtype=sizes.dtype)])
            recent = int(pick.sum())
            kept = _with_full(kept, recent, int(tokens.shape[1]))
    return Visual(tokens, spans, sizes, "memory", len(memory), note=note, recent=recent, keep=kept)
