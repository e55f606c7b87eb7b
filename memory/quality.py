"""How well a consolidated memory keeps a video's scenes: synthetic scenes and two scores.

Used by ``tests/memory/test_quality.py`` and ``bench/memory.py``; pure functions.

* :func:`synthetic_scenes`: K scenes, each a random prototype ``[N, D]`` plus
  per-frame noise, with given (typically very uneven) lengths, sampled at 1 fps.
* :func:`static_scene`: a fixed camera (one background plus noise) in which short
  events change a few token positions, the case a whole-frame similarity misses.
* :func:`event_kept`: whether an event's seconds have a slot of their own.
* :func:`scene_recall`: fraction of scenes that keep at least one slot lying wholly
  inside them (a question about that scene can be answered from a clean slot).
* :func:`slot_purity`: fraction of slots that do not straddle a scene cut.

Spans are half-open ``[start_s, end_s)``, as the builder defines them; a scene with
frames ``a..b-1`` at 1 fps covers ``[a, b)``.
Baselines with the same slot budget L, each slot one raw frame ``[t_k, t_k + 1)``:
:func:`uniform_spans` (every k-th frame) and :func:`fifo_spans` (the last L frames).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def synthetic_scenes(
    lengths: Sequence[int], n: int = 8, d: int = 32, noise: float = 0.5, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """tokens ``[T, N, D]`` float32, timestamps ``[T]`` float64 (1 fps), scene starts ``[K+1]``
    (seconds, the last entry is the end of the video)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(len(lengths), n, d, generator=g)
    parts = [protos[k] + noise * torch.randn(m, n, d, generator=g) for k, m in enumerate(lengths)]
    tokens = torch.cat(parts)
    ts = torch.arange(tokens.shape[0], dtype=torch.float64)
    bounds = torch.tensor([0, *torch.tensor(list(lengths)).cumsum(0).tolist()], dtype=torch.float64)
    return tokens, ts, bounds


def scene_recall(start_s: torch.Tensor, end_s: torch.Tensor, bounds: torch.Tensor) -> float:
    """Fraction of scenes ``[bounds[k], bounds[k+1])`` containing a whole slot."""
    k = bounds.shape[0] - 1
    inside = (start_s[None, :] >= bounds[:-1, None]) & (end_s[None, :] <= bounds[1:, None])
    return float(inside.any(dim=1).sum()) / k


def slot_purity(start_s: torch.Tensor, end_s: torch.Tensor, bounds: torch.Tensor) -> float:
    """Fraction of slots with no scene cut strictly inside their span."""
    if start_s.numel() == 0:
        return 1.0
    cuts = bounds[1:-1]
    straddle = (start_s[:, None] < cuts[None, :]) & (cuts[None, :] < end_s[:, None])
    return float((~straddle.any(dim=1)).sum()) / start_s.numel()


def uniform_spans(ts: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every k-th frame, k = ceil(T / budget): at most ``budget`` one-frame slots."""
    k = max(1, math.ceil(ts.shape[0] / budget))
    start = ts[::k]
    return start, start + 1.0


def fifo_spans(ts: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``budget`` frames as one-frame slots."""
    start = ts[-budget:]
    return start, start + 1.0


def static_scene(
    frames: int,
    events: Sequence[tuple[int, int, int]],
    n: int = 49,
    d: int = 64,
    noise: float = 0.15,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed camera: one background ``[N, D]`` plus per-frame noise for ``frames``
    frames at 1 fps, with ``events`` ``(first frame, frames, positions)``: for that many
    frames, that many token positions (chosen at random, the same for the whole event)
    show something else (a random "person" token per position, plus the same noise).

    Returns tokens ``[T, N, D]`` float32 and timestamps ``[T]`` float64 (1 fps).
    """
    g = torch.Generator().manual_seed(seed)
    background = torch.randn(n, d, generator=g)
    tokens = background + noise * torch.randn(frames, n, d, generator=g)
    for first, length, positions in events:
        where = torch.randperm(n, generator=g)[:positions]
        person = torch.randn(positions, d, generator=g)
        tokens[first : first + length, where] = person + noise * torch.randn(
            length, positions, d, generator=g
        )
    return tokens, torch.arange(frames, dtype=torch.float64)


def event_kept(start_s: torch.Tensor, end_s: torch.Tensor, start: float, end: float) -> bool:
    """Whether some slot lies wholly inside ``[start, end)``: it holds only event frames."""
    return bool(((start_s >= start) & (end_s <= end)).any())
