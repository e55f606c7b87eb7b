"""Content-adaptive consolidation: frames go straight to long-term memory.

MovieChat compresses every 18-frame window to 2 slots whatever the budget: a scene
shorter than a window rarely keeps a slot of its own, and slot boundaries fall on
window edges. Here every frame enters long-term memory as a slot of its own, and the
most similar pair of temporally adjacent slots is merged (size-weighted, as in
``memory.merge``) while

* the memory holds more than ``budget`` slots (any pair may merge), or
* its similarity is at least ``threshold`` (the two slots are redundant: near-duplicate
  frames carry nothing new) and the merged slot's frames would lie within
  ``max_span_s`` seconds (first to last); the most similar such pair is merged.

After each frame the memory is the fixed point of that loop, so the number of slots
follows how much the content changes, and never exceeds the budget.

Shapes: ``C = budget + 1`` physical rows, ``N`` tokens per frame, ``D`` token width,
``E`` embedding width.

Design decisions:

* **No row ever moves.** Slots form a doubly linked list over ``C`` preallocated rows;
  a merge folds the right slot into the left one and frees the right row, which the
  next frame reuses. Compacting after each merge (as ``merge_adjacent_`` does once per
  call) would copy up to L rows of ``[N, D]`` per frame. Per frame the cost is one new
  similarity, one ``max`` over C and, per merge, the two neighbour similarities of the
  merged slot (the incremental update of ``memory.merge``): O(C), independent of the
  video's length.
* **Ties go to the earliest pair in time**, as in ``merge_adjacent`` and the naive
  loop (``list.index(max(...))``). Rows are reused out of order, so a row's temporal
  rank is its first frame's index, not its row number.
* **Pooled vectors are kept per row** for the ``cosine`` and ``dot`` metrics (they
  only see mean-pooled frames), computed from the row's tokens exactly as
  ``pair_similarity`` does, so a neighbour's similarity costs O(D), not O(N·D), and
  gives the same bits as the naive loop. A merge is done in place.
* **Threshold in the metric's units** (``cosine``/``token_cosine``/``token_min`` in
  [-1, 1]; ``dot`` unbounded); ``None`` merges only past the budget. The default
  metric, ``token_min`` (``memory.merge``), is the lowest per-position similarity: a
  whole-frame similarity averaged a person crossing a fixed camera's view (a tenth
  of the positions) into "unchanged", and 10 minutes of such footage became one slot.
* **Span limit under budget** (``max_span_s``): near-duplicates are merged, but a
  static shot still gets a slot every ``max_span_s`` seconds, so "when" questions
  and the timeline have something to point at and the unused budget is spent on
  time resolution. Over budget the limit does not apply: the budget always wins,
  and the most similar pairs (long static stretches) are merged first. The spans
  are kept as a second similarity vector (``esims``: ``sims`` or -inf where the
  union would be too long), updated with ``sims``, so it costs one more ``max``.
* **Short events** (``keep_events``, opt-in): a merge the budget forces (no pair is
  redundant) takes the most similar pair as above, unless one of its two slots is a
  short event interrupting a scene: at most ``EVENT_FRAMES`` frames whose two
  neighbours are more alike with each other than either is with it (by
  ``EVENT_MARGIN``, in the ranking metric's units). Then the next most similar pair
  is taken. Without it, a one-second event inside a long scene splits the scene in
  two, every forced merge is between unrelated neighbours, and the noise in their
  similarities picks whether the event is folded into its host (bench/needle.py).
  The event is recognised once the scene resumes after it (its second neighbour
  exists); the check costs two more similarities per forced merge, and more only
  when the most similar pair is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from videomem.memory.config import Metric, Weighting
from videomem.memory.merge import (
    _NO_PAIR,
    TOKEN_METRICS,
    _check_metric,
    _check_weighting,
    pair_similarity,
    pooled,
    pooled_similarity,
    ranking_metric,
)
from videomem.pipeline.errors import ConfigError

_END = -1  # "no next/previous slot" in the links
#: ``keep_events``: a slot of at most this many frames can be a short event (a
#: needle of one frame, or a second at 1-3 fps), and how much more alike its two
#: neighbours must be with each other than with it (ranking metric units)
EVENT_FRAMES = 3
EVENT_MARGIN = 0.1


@dataclass
class AdaptiveChain:
    """Streaming state of the adaptive method: at most ``budget`` slots in ``budget + 1`` rows.

    x      [C, N, D] float32  slot tokens (row order is not time order)
    emb    [C, E] float32     slot embeddings, or None
    pool   [C, 1, D] float32  mean-pooled ``x`` (cosine/dot metrics), or None
    sims   [C] float32        similarity of a slot with the next one; -inf: none/free
    esims  [C] float32        ``sims`` where the pair's union fits ``max_span_s``, else
                              -inf; None when there is no span limit
    rsims  [C] float32        the pair's ``ranking_metric`` similarity, which orders the
                              merges a budget forces; None when that is ``metric`` itself
    sizes, starts, last, first  per row: frames merged, start time, last frame's
                              time, first frame's index
    nxt, prv                  per row: next/previous slot's row, ``-1`` at the ends
    free                      rows not holding a slot
    """

    x: torch.Tensor
    emb: torch.Tensor | None
    pool: torch.Tensor | None
    sims: torch.Tensor
    esims: torch.Tensor | None
    rsims: torch.Tensor | None
    sizes: list[int]
    starts: list[float]
    last: list[float]
    first: list[int]
    nxt: list[int]
    prv: list[int]
    free: list[int]
    budget: int
    threshold: float | None
    max_span_s: float | None
    metric: Metric
    weighting: Weighting
    keep_events: bool = False
    head: int = _END
    tail: int = _END
    length: int = 0
    frames: int = 0

    @classmethod
    def empty(
        cls,
        budget: int,
        n: int,
        d: int,
        *,
        emb_dim: int | None = None,
        threshold: float | None = None,
        max_span_s: float | None = None,
        metric: Metric = "cosine",
        weighting: Weighting = "size",
        keep_events: bool = False,
        device: torch.device | str = "cpu",
    ) -> AdaptiveChain:
        """Allocate (and zero-fill, so the pages are committed) every buffer up front."""
        _check_metric(metric)
        _check_weighting(weighting)
        if budget < 1:
            raise ConfigError(f"AdaptiveChain: budget must be >= 1, got {budget}")
        if max_span_s is not None and not max_span_s > 0:
            raise ConfigError(f"AdaptiveChain: max_span_s must be > 0, got {max_span_s}")
        c = budget + 1
        no_pair = torch.full((c,), _NO_PAIR, dtype=torch.float32, device=device)
        return cls(
            x=torch.zeros(c, n, d, dtype=torch.float32, device=device),
            emb=None
            if emb_dim is None
            else torch.zeros(c, emb_dim, dtype=torch.float32, device=device),
            pool=None
            if metric in TOKEN_METRICS
            else torch.zeros(c, 1, d, dtype=torch.float32, device=device),
            sims=no_pair,
            esims=None if max_span_s is None else no_pair.clone(),
            rsims=None if ranking_metric(metric) == metric else no_pair.clone(),
            sizes=[0] * c,
            starts=[0.0] * c,
            last=[0.0] * c,
            first=[0] * c,
            nxt=[_END] * c,
            prv=[_END] * c,
            free=list(range(c - 1, -1, -1)),  # pop() hands out row 0 first
            budget=budget,
            threshold=threshold,
            max_span_s=max_span_s,
            metric=metric,
            weighting=weighting,
            keep_events=keep_events,
        )

    def push(self, frame: torch.Tensor, t: float, emb: torch.Tensor | None = None) -> None:
        """Append frame ``[N, D]`` at time ``t`` (embedding ``[E]``), then merge to the fixed point."""
        r = self.free.pop()
        self.x[r].copy_(frame)
        self._pool(r)
        if self.emb is not None and emb is not None:
            self.emb[r].copy_(emb)
        self.sizes[r], self.starts[r], self.last[r], self.first[r] = 1, t, t, self.frames
        self.frames += 1
        self.nxt[r], self.prv[r] = _END, self.tail
        self._pair(r, _END)
        if self.tail == _END:
            self.head = r
        else:
            self.nxt[self.tail] = r
            self._pair(self.tail, r)
        self.tail = r
        self.length += 1
        self._settle()

    def rows(self) -> list[int]:
        """Physical row of each slot, in time order."""
        out, r = [], self.head
        while r != _END:
            out.append(r)
            r = self.nxt[r]
        return out

    # ------------------------------------------------------------------ internals

    def _pool(self, r: int) -> None:
        if self.pool is not None:
            self.pool[r] = pooled(self.x[r : r + 1])

    def _sim(self, a: int, b: int) -> torch.Tensor:
        if self.pool is None:
            return pair_similarity(self.x[a : a + 1], self.x[b : b + 1], self.metric)[0]
        return pooled_similarity(self.pool[a], self.pool[b], self.metric)[0]

    def _settle(self) -> None:
        threshold = self.threshold
        while self.length > 1:
            over = self.length > self.budget
            if not over and threshold is None:
                return
            # Under budget only pairs whose union stays within max_span_s may merge;
            # over budget every pair may (the budget wins over the span).
            if over:
                sims = self.sims if self.rsims is None else self.rsims
            else:
                sims = self.sims if self.esims is None else self.esims
            best = sims.max()
            if not (over or (threshold is not None and float(best) >= threshold)):
                return  # (-inf, no pair that may merge, is never >= threshold)
            ties = torch.nonzero(sims == best).flatten().tolist()
            i = ties[0] if len(ties) == 1 else min(ties, key=self.first.__getitem__)
            if over and self.keep_events and self._forced() and self._is_event_pair(i, sims):
                i = self._forced_pair(sims)
            self._merge_next(i)

    def _forced(self) -> bool:
        """No pair is redundant: a merge now is forced by the budget alone (a redundant
        pair is merged as always; only a forced merge spares short events)."""
        return self.threshold is None or float(self.sims.max()) < self.threshold

    def _is_event_pair(self, i: int, sims: torch.Tensor) -> bool:
        """Would merging slot ``i`` with its next fold a short event away?"""
        return self._is_event(i, sims) or self._is_event(self.nxt[i], sims)

    def _is_event(self, j: int, sims: torch.Tensor) -> bool:
        """Slot ``j`` is short and interrupts a scene: its neighbours are more alike
        with each other than with it (``sims``: the similarities that rank merges)."""
        p, q = self.prv[j], self.nxt[j]
        if p == _END or q == _END or self.sizes[j] > EVENT_FRAMES:
            return False
        across = float(self._rank_sim(p, q))
        return across > max(float(sims[p]), float(sims[j])) + EVENT_MARGIN

    def _forced_pair(self, sims: torch.Tensor) -> int:
        """The most similar pair (ties: earliest) that folds no short event away; the
        most similar pair when every pair would."""
        values = sims.tolist()
        rows = [r for r in self.rows() if self.nxt[r] != _END]
        rows.sort(key=lambda r: (-values[r], self.first[r]))
        return next((r for r in rows if not self._is_event_pair(r, sims)), rows[0])

    def _rank_sim(self, a: int, b: int) -> torch.Tensor:
        """Similarity of slots ``a`` and ``b`` in the units that rank forced merges."""
        if self.rsims is None:
            return self._sim(a, b)
        rank = ranking_metric(self.metric)
        return pair_similarity(self.x[a : a + 1], self.x[b : b + 1], rank)[0]

    def _pair(self, i: int, k: int) -> None:
        """Set the similarity of slot ``i`` with its next slot ``k`` (``_END``: none)."""
        if k == _END:
            self.sims[i] = _NO_PAIR
            if self.esims is not None:
                self.esims[i] = _NO_PAIR
            if self.rsims is not None:
                self.rsims[i] = _NO_PAIR
            return
        s = self._sim(i, k)
        self.sims[i] = s
        if self.rsims is not None:
            self.rsims[i] = self._rank_sim(i, k)
        if self.esims is not None and self.max_span_s is not None:
            fits = self.last[k] - self.starts[i] < self.max_span_s
            self.esims[i] = s if fits else _NO_PAIR

    def _merge_next(self, i: int) -> None:
        """Fold slot ``i``'s next slot into it; recompute only ``i``'s two neighbour pairs."""
        j = self.nxt[i]
        if self.weighting == "size":
            wa = self.sizes[i] / (self.sizes[i] + self.sizes[j])
            wb = 1.0 - wa
        else:
            wa = wb = 0.5
        # x*wa + y*wb, rounded as written, with one temporary instead of three
        self.x[i].mul_(wa).add_(self.x[j] * wb)
        self._pool(i)
        if self.emb is not None:
            self.emb[i].mul_(wa).add_(self.emb[j] * wb)
        self.sizes[i] += self.sizes[j]
        self.last[i] = self.last[j]
        self._pair(j, _END)
        k = self.nxt[j]
        self.nxt[i] = k
        if k == _END:
            self.tail = i
        else:
            self.prv[k] = i
        self._pair(i, k)
        p = self.prv[i]
        if p != _END:
            self._pair(p, i)
        self.nxt[j] = self.prv[j] = _END
        self.free.append(j)
        self.length -= 1
