"""Which slots stay whole when a view is cut to K for a question: the plan, not the merge.

Pure functions over a score per slot (how relevant it is to the question; see
:mod:`videomem.qa.relevance`), so the VLM path (``qa.fit``) and the text timeline
(``qa.timeline``) cut the same way.

Design decisions:

* **How many stay whole: those clearly above the rest, at most a quarter of K.**
  The scores are sorted; among the best ``K + 1`` the largest drop between two
  consecutive scores splits the relevant slots from the rest, and only when that
  drop is at least the scores' standard deviation (a needle: one or a few slots far
  above the haystack). The best ``max(1, K // 4)`` of the slots above it stay whole.
  A question about the whole video (flat or evenly spread scores) keeps none, so it
  gets today's uniform merge. The quarter leaves three quarters of the context to the
  rest of the video: the answer may need what happens around the moment, and a wrong
  score must not cost the whole view.
* **The rest is merged between them, in time order.** The slots between two kept ones
  (a *gap*) are merged down among themselves only, so spans stay ordered and
  contiguous and a kept slot never absorbs a neighbour. Every gap keeps at least one
  slot; the ``K - kept`` remaining slots are shared by largest ratio of gap length to
  slots given (ties: the earliest gap), i.e. in proportion to the slots each gap
  holds. A kept slot that would leave too few slots for its gaps is skipped (the
  next best is tried).
* Deterministic: ties in score go to the earlier slot, so the same scores and K give
  the same plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from videomem.pipeline.errors import ConfigError


@dataclass(frozen=True)
class Part:
    """Slots ``[start, stop)`` of the view shown as ``slots`` slots (``whole``: one kept
    slot, shown as it is)."""

    start: int
    stop: int
    slots: int
    whole: bool = False


def choose_whole(scores: torch.Tensor | Sequence[float], k: int) -> list[int]:
    """Indices (ascending) of the slots that stay whole when ``len(scores)`` slots are
    cut to ``k`` (see the module docstring); [] when none is clearly above the rest,
    the scores are not all finite, or nothing needs cutting."""
    s = torch.as_tensor(scores, dtype=torch.float64).flatten()
    n = int(s.numel())
    if k < 1:
        raise ConfigError(f"choose_whole: k must be >= 1, got {k}")
    if n <= k or not bool(torch.isfinite(s).all()):
        return []
    spread = float(s.std(unbiased=False))
    if spread <= 0:
        return []
    # stable sort on -score: ties keep index order, so the earlier slot ranks first
    order = sorted(range(n), key=lambda i: (-float(s[i]), i))
    top = [float(s[i]) for i in order[: k + 1]]
    drops = [top[j] - top[j + 1] for j in range(len(top) - 1)]
    best = max(range(len(drops)), key=lambda j: (drops[j], -j))
    if drops[best] < spread:
        return []
    kept: list[int] = []
    for i in order[: best + 1]:  # the relevant ones, best first
        if len(kept) < max(1, k // 4) and _needed(sorted([*kept, i]), n) <= k:
            kept.append(i)
    return sorted(kept)


def _gaps(kept: Sequence[int], n: int) -> list[tuple[int, int]]:
    """The maximal runs ``[a, b)`` of slots not in ``kept`` (ascending)."""
    out, start = [], 0
    for i in [*kept, n]:
        if i > start:
            out.append((start, i))
        start = i + 1
    return out


def _needed(kept: Sequence[int], n: int) -> int:
    """Fewest slots a view can be cut to with ``kept`` whole: each gap needs one."""
    return len(kept) + len(_gaps(kept, n))


def plan(kept: Sequence[int], n: int, k: int) -> list[Part]:
    """The parts of a view of ``n`` slots cut to ``k`` with ``kept`` whole, in time
    order: each kept slot alone, each gap with its share of the ``k - len(kept)``
    remaining slots. Raises when ``kept`` leaves its gaps no room."""
    kept = sorted(set(kept))
    if any(not 0 <= i < n for i in kept):
        raise ConfigError(f"plan: kept slots {kept} outside 0..{n - 1}")
    gaps = _gaps(kept, n)
    room = k - len(kept)
    if room < len(gaps):
        raise ConfigError(f"plan: {len(kept)} kept slots and {len(gaps)} gaps exceed k={k}")
    given = [1] * len(gaps)
    for _ in range(room - len(gaps)):
        open_ = [j for j, (a, b) in enumerate(gaps) if given[j] < b - a]
        if not open_:
            break
        j = max(open_, key=lambda j: ((gaps[j][1] - gaps[j][0]) / given[j], -j))
        given[j] += 1
    parts = [Part(i, i + 1, 1, whole=True) for i in kept]
    parts += [Part(a, b, g) for (a, b), g in zip(gaps, given, strict=True)]
    return sorted(parts, key=lambda p: p.start)
