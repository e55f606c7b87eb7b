"""Needles in long token streams: does a short event survive consolidation?

Used by ``tests/memory/test_needle.py`` and ``bench/needle.py``; pure tensor code.

* :class:`TokenStream`: a long stream whose frame ``t`` is ``base[index[t]]``, so an
  hour of tokens looped from a few real clips costs the clips' tokens plus one index
  per frame, and a needle is a change of index, not a copy.
* :func:`synthetic_stream`: scenes of given lengths, each a random prototype
  ``[N, D]`` plus per-frame noise (``memory.quality.synthetic_scenes``) at 1 fps;
  :func:`uneven_lengths` draws very uneven scene lengths for a given duration.
* :func:`looped_stream`: encoded clips (tokens and clip starts) looped to a duration.
* :func:`insert_needles`: 1-3 needles of ``frames`` frames each at random (seeded)
  places: the frames of another scene (never the host scene nor its neighbours)
  replace the haystack there, so the stream keeps its length and timestamps.
* :func:`needle_hits` / :func:`needle_recall`: a needle is recalled when some slot
  whose span overlaps the needle's seconds has tokens closer to the needle's frames
  than to the haystack frames of that same span (the mean per-position cosine). A
  slot that averages one needle frame into a long scene looks like the scene and
  misses; a one-frame slot elsewhere does not cover the needle and misses.
* :func:`uniform_memory`: the content-blind baseline, every k-th raw frame as a slot.

Design decisions:

* **The haystack is the slot's own.** Comparing with the frames around the needle
  would let a slot that averages a whole looped hour (all clips mixed) count as
  "closer to the needle" by chance; comparing with the haystack the slot itself
  averages asks the real question: does the needle dominate the slot?
* **Dropped tokens** (``keep [L, N]``, ``memory.redundancy.kept_positions``): the
  comparison runs over the slot's kept positions only, an approximation of what a
  memory storing only those tokens can still tell; a slot with none kept misses.
* **Spans** are half-open ``[start_s, end_s)`` as the builder makes them; a frame at
  ``t`` belongs to the slot with ``start_s <= t < end_s``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from videomem.memory.merge import position_cosine
from videomem.memory.quality import synthetic_scenes
from videomem.pipeline.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Needle:
    """A needle's frames ``[first, first + frames)`` and seconds ``[start_s, end_s)``;
    ``source`` is the scene its frames were taken from."""

    first: int
    frames: int
    start_s: float
    end_s: float
    source: int


@dataclass(frozen=True, slots=True)
class TokenStream:
    """Frame ``t`` of the stream has tokens ``base[index[t]]`` at ``timestamps[t]``.

    base        [P, N, D] float32  distinct frames
    index       [T] int64          row of ``base`` per frame
    timestamps  [T] float64        seconds, evenly spaced by ``step``
    scenes      [T] int64          scene of each frame of the haystack (a needle's
                                   frames keep their host scene's number)
    bounds      [K + 1] float64    scene starts in seconds, the last is the end
    needles     the needles placed in it, in time order
    """

    base: torch.Tensor
    index: torch.Tensor
    timestamps: torch.Tensor
    scenes: torch.Tensor
    bounds: torch.Tensor
    step: float
    needles: tuple[Needle, ...] = ()

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def num_scenes(self) -> int:
        """Scenes of the haystack (before needles split any of them)."""
        return int(self.bounds.shape[0]) - 1

    def frames(self, first: int, last: int) -> torch.Tensor:
        """Tokens of frames ``[first, last)``: ``[last - first, N, D]``."""
        return self.base.index_select(0, self.index[first:last])

    def batches(self, size: int = 32) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(tokens [B, N, D], timestamps [B])`` in time order, ``size`` frames each."""
        for i in range(0, len(self), size):
            yield self.frames(i, i + size), self.timestamps[i : i + size]

    def mean(self, frames: torch.Tensor) -> torch.Tensor:
        """Mean tokens ``[N, D]`` of the frames numbered ``frames [F]`` (F > 0), as a
        weighted sum of ``base`` rows (no copy of the frames)."""
        w = torch.bincount(self.index[frames], minlength=self.base.shape[0]).to(self.base.dtype)
        flat = (w / w.sum()) @ self.base.flatten(1)
        return flat.view(self.base.shape[1:])


def uneven_lengths(scenes: int, frames: int, seed: int = 0, shortest: int = 3) -> list[int]:
    """``scenes`` lengths summing to ``frames``, log-uniform over two decades (each
    at least ``shortest``): a few long scenes, many short ones, in random order."""
    if scenes < 1 or frames < scenes * shortest:
        raise ConfigError(f"uneven_lengths: cannot fit {scenes} scenes of >= {shortest} frames")
    g = torch.Generator().manual_seed(seed)
    raw = torch.exp(torch.rand(scenes, generator=g, dtype=torch.float64) * math.log(100.0))
    spare = frames - scenes * shortest
    parts = torch.floor(raw / raw.sum() * spare).long()
    parts[torch.argmax(raw)] += spare - int(parts.sum())  # rounding goes to the longest
    return [shortest + int(p) for p in parts]


def synthetic_stream(
    lengths: Sequence[int], n: int = 16, d: int = 32, noise: float = 0.5, seed: int = 0
) -> TokenStream:
    """Scenes of ``lengths`` frames at 1 fps (``memory.quality.synthetic_scenes``);
    every frame is its own row of ``base``."""
    tokens, ts, bounds = synthetic_scenes(lengths, n=n, d=d, noise=noise, seed=seed)
    scenes = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(list(lengths)))
    return TokenStream(tokens, torch.arange(tokens.shape[0]), ts, scenes, bounds, 1.0)


def looped_stream(
    tokens: torch.Tensor, clip_frames: Sequence[int], seconds: float, fps: float
) -> TokenStream:
    """Clips joined (``tokens [P, N, D]``, ``clip_frames`` frames each, sampled at
    ``fps``) and looped until ``seconds``; every clip of every loop is a scene."""
    p = int(tokens.shape[0])
    if sum(clip_frames) != p or min(clip_frames, default=0) < 1:
        raise ConfigError("looped_stream: clip_frames must be positive and sum to the frames")
    t = max(1, round(seconds * fps))
    index = torch.arange(t) % p
    clip_of = torch.repeat_interleave(torch.arange(len(clip_frames)), torch.tensor(clip_frames))
    scenes = clip_of[index] + len(clip_frames) * (torch.arange(t) // p)
    starts = torch.nonzero(torch.diff(scenes, prepend=scenes[:1] - 1)).flatten()
    bounds = torch.cat([starts, torch.tensor([t])]).double() / fps
    ts = torch.arange(t, dtype=torch.float64) / fps
    return TokenStream(tokens.float(), index, ts, scenes, bounds, 1.0 / fps)


def insert_needles(
    stream: TokenStream,
    count: int,
    frames: int = 1,
    seed: int = 0,
    at: Sequence[int] | None = None,
) -> TokenStream:
    """``stream`` with ``count`` needles of ``frames`` consecutive frames each at random
    places (seeded), more than ``2 * frames`` frames apart and at least one frame from
    either end; ``at``: their first frames instead (``count`` is then ``len(at)``).
    A needle's frames are a random run of another scene's frames (neither the host
    scene nor the scene before or after it) whose content is not the host's (looped
    clips repeat: another clip, not another loop of the same clip).
    """
    t = len(stream)
    if at is not None:
        count = len(at)
    if count < 0 or frames < 1:
        raise ConfigError("insert_needles: count must be >= 0 and frames >= 1")
    if count * (2 * frames + 1) + 2 > t:
        raise ConfigError(f"insert_needles: {count} needles of {frames} frames do not fit {t}")
    g = torch.Generator().manual_seed(seed)
    content = _scene_content(stream)
    firsts: list[int] = [] if at is None else [int(a) for a in at]
    if any(not 1 <= a <= t - frames - 1 for a in firsts) or any(
        b - a <= 2 * frames for a, b in zip(sorted(firsts), sorted(firsts)[1:], strict=False)
    ):
        raise ConfigError(f"insert_needles: needles at {firsts} overlap or touch an end")
    while len(firsts) < count:
        a = 1 + int(torch.randint(t - frames - 1, (1,), generator=g))
        if all(abs(a - b) > 2 * frames for b in firsts):
            firsts.append(a)
    index = stream.index.clone()
    needles = []
    for a in sorted(firsts):
        near = {int(s) for s in stream.scenes[a - 1 : a + frames + 1]}
        banned = {content[s] for s in near}
        runs = [s for s in range(stream.num_scenes) if content[s] not in banned]
        runs = [s for s in runs if int((stream.scenes == s).sum()) >= frames]
        if not runs:
            raise ConfigError("insert_needles: no other scene to take a needle from")
        src = runs[int(torch.randint(len(runs), (1,), generator=g))]
        where = torch.nonzero(stream.scenes == src).flatten()
        off = int(torch.randint(where.numel() - frames + 1, (1,), generator=g))
        index[a : a + frames] = stream.index[where[off : off + frames]]
        start = float(stream.timestamps[a])
        needles.append(Needle(a, frames, start, start + frames * stream.step, src))
    return replace(stream, index=index, needles=tuple(needles))


def _scene_content(stream: TokenStream) -> list[int]:
    """Per scene, the ``base`` row of its first frame: equal for two loops of one clip."""
    first = torch.searchsorted(stream.timestamps, stream.bounds[:-1])
    return [int(stream.index[int(i)]) for i in first]


def needle_hits(
    tokens: torch.Tensor,
    start_s: torch.Tensor,
    end_s: torch.Tensor,
    stream: TokenStream,
    keep: torch.Tensor | None = None,
) -> list[bool]:
    """Per needle of ``stream``, whether the memory recalls it.

    tokens [L, N, D] slot tokens; start_s / end_s [L] slot spans (half-open);
    keep [L, N] bool, the token positions a slot stores (None: all of them).
    """
    if tokens.dim() != 3 or start_s.shape != end_s.shape or start_s.shape[0] != tokens.shape[0]:
        raise ConfigError("needle_hits: expected tokens [L, N, D] and spans [L]")
    if keep is not None and tuple(keep.shape) != tuple(tokens.shape[:2]):
        raise ConfigError("needle_hits: keep must be [L, N]")
    ts = stream.timestamps
    in_needle = torch.zeros(len(stream), dtype=torch.bool)
    for nd in stream.needles:
        in_needle[nd.first : nd.first + nd.frames] = True
    out = []
    for nd in stream.needles:
        needle = stream.mean(torch.arange(nd.first, nd.first + nd.frames))
        hit = False
        covering = torch.nonzero((start_s < nd.end_s) & (end_s > nd.start_s)).flatten()
        for slot in covering.tolist():
            mask = None if keep is None else keep[slot]
            if mask is not None and not bool(mask.any()):
                continue  # nothing stored: the slot can tell nothing apart
            a = int(torch.searchsorted(ts, start_s[slot]))
            b = int(torch.searchsorted(ts, end_s[slot]))
            span = torch.arange(a, max(a, b))
            hay = span[~in_needle[span]]
            if hay.numel() == 0:
                hit = True  # the slot holds needle frames only
                break
            x = tokens[slot].float()
            to_needle = _similarity(x, needle, mask)
            to_hay = _similarity(x, stream.mean(hay), mask)
            if to_needle > to_hay:
                hit = True
                break
        out.append(hit)
    return out


def needle_recall(
    tokens: torch.Tensor,
    start_s: torch.Tensor,
    end_s: torch.Tensor,
    stream: TokenStream,
    keep: torch.Tensor | None = None,
) -> float:
    """Fraction of the stream's needles the memory recalls (:func:`needle_hits`); 1.0
    for a stream without needles."""
    hits = needle_hits(tokens, start_s, end_s, stream, keep)
    return sum(hits) / len(hits) if hits else 1.0


def _similarity(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> float:
    """Mean per-position cosine of ``[N, D]`` tokens over the positions in ``mask``."""
    cos = position_cosine(x, y)
    return float(cos.mean() if mask is None else cos[mask].mean())


def uniform_memory(
    stream: TokenStream, budget: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every k-th raw frame, k = ceil(T / budget), as a one-frame slot: tokens
    ``[<= budget, N, D]``, start_s and end_s ``[<= budget]`` (``end = start + step``)."""
    if budget < 1:
        raise ConfigError(f"uniform_memory: budget must be >= 1, got {budget}")
    k = max(1, math.ceil(len(stream) / budget))
    rows = torch.arange(0, len(stream), k)
    start = stream.timestamps[rows]
    return stream.base.index_select(0, stream.index[rows]), start, start + stream.step
