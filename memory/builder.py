"""Streaming construction of a video's long-term memory from its frame tokens.

``MemoryBuilder(config)`` takes ``FrameTokens`` batches in time order (``add``) and
returns a ``VideoMemory`` at the end (``finish``). It never holds all frames: its
buffers are allocated once, at the first frame, with fixed sizes, so peak memory
does not grow with video length (a 3-hour video costs what a 3-minute one does).

Methods (``MemoryConfig.method``):

* ``"adaptive"`` (default): every frame enters long-term memory as a slot; the most
  similar adjacent pair is merged while the memory holds more than ``long_term_len``
  slots, or, under budget, while its similarity is at least ``threshold`` and the
  merged slot would span at most ``max_span_s`` seconds (``memory.adaptive``). No
  short-term buffer: ``short_term_len``, ``merge_to`` and ``window`` do not apply.
* ``"moviechat"``: frames enter a short-term buffer of ``short_term_len`` frames (or
  ``window`` frames when set). When it is full, it is merged down to ``merge_to``
  slots with the greedy adjacent merge (``memory.merge``), those slots move to
  long-term memory and the buffer is cleared. When long-term memory exceeds
  ``long_term_len`` slots, ``overflow="consolidate"`` merges long-term memory itself
  with the same adjacent merge (so any length fits the budget), ``"drop_oldest"``
  forgets the oldest slots. The long-term adjacent similarities are kept between
  flushes, so each flush costs O(new slots + merges), not O(memory length).
* ``"mbc"``: MA-LMM memory-bank compression. Every frame is appended to a bank of
  ``long_term_len`` slots; when the bank is one over, one compression step runs
  (per token position, the most similar adjacent pair is merged). The short-term
  buffer, ``merge_to`` and ``window`` do not apply.

The ``moviechat_reference`` preset (``MemoryConfig.preset``) reproduces MovieChat's
released code: ``dot`` similarity, ``plain`` averaging, windows of 8 frames into the
18-frame buffer merged to 2 slots at the end of each window (so 8 frames -> 2 slots),
256 long-term slots, oldest dropped past that.

Design decisions:

* **Spans.** Frame k sampled at ``t_k`` covers ``[t_k, t_(k+1))``; the last frame
  covers ``[t_last, t_last + step)`` where ``step`` is the mean sampling step
  ``(t_last - t_first) / (frames - 1)`` (0 for a one-frame video, whose single slot
  is then the instant ``[t, t]``). A slot covers the union of its frames, so for
  ``adaptive`` and ``moviechat`` consecutive slots are contiguous (``end_s[l] == start_s[l+1]``),
  ordered, and cover ``[t_first, t_last + step]`` without gaps or overlaps (from the
  first kept slot's start under ``drop_oldest``). While streaming only slot starts
  are kept; ends are the next start, filled in by ``finish``.
* **Embedding.** The per-frame pooled ``embedding`` is merged with exactly the same
  weights as the tokens, so a slot's embedding is the (size-weighted or plain) mean of
  its frames' embeddings. If the encoder gives none (``FrameTokens.embedding is
  None``), ``VideoMemory.embedding`` is ``None``: inventing a vector (e.g. mean-pooled
  tokens) would put it in a different space than other encoders' embeddings; a
  reader that wants one can use ``memory.merge.pooled(memory.tokens)``.
  For ``mbc`` the embedding is compressed as one more MBC position (its own adjacent
  cosine), so it stays the count-weighted mean of a contiguous run of frames.
* **MBC slots.** Each token position is merged independently, so slot l's tokens come
  from different frame runs at different positions. ``sizes[l]`` is the mean over
  positions of the frame counts, rounded by largest remainder so sizes still sum to
  the frames seen; the span is the union of the positions' runs, ``start_s`` = the
  earliest position start, ``end_s`` = the latest position end. MBC spans are ordered
  (strictly increasing starts) but neighbouring spans may overlap.
* **Recent frames.** The last ``keep_recent`` raw, unmerged frames are kept for
  breakpoint-mode questions (``VideoMemory.recent_tokens`` / ``recent_timestamps``).
* **Output dtype.** Tokens are consolidated and returned in float32 (the store casts
  to float16); sizes int64, spans float64, embedding float32.
* **No frames.** ``finish`` on a builder that saw no frame raises ``DecodeError``: an
  empty memory has no meaningful ``[0, N, D]`` shape, and a video that yields no frames
  is a failed video for the job runner, recorded with a readable reason.
* **Bad input** (shapes that change between batches, embeddings that come and go,
  timestamps going backwards or not finite) raises ``EncoderError``.
* No device moves: buffers live on the device of the first batch's tokens.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TypeVar

import torch
from videomem.memory.adaptive import AdaptiveChain
from videomem.memory.config import MemoryConfig
from videomem.memory.merge import LinkedBank, adjacent_similarity, merge_adjacent_, pair_similarity
from videomem.memory.redundancy import drop_tokens
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import DecodeError, EncoderError
from videomem.pipeline.types import FrameTokens


class MemoryBuilder:
    """Consolidates a stream of frame tokens into a bounded ``VideoMemory``.

    Holds O(short_term_len + long_term_len + keep_recent) frames of tokens, plus the
    encoder batches the recent frames are views of.
    """

    def __init__(self, config: MemoryConfig) -> None:
        self.config = config
        self._frames = 0
        self._t_first = 0.0
        self._t_last = -math.inf
        self._shape: tuple[int, int] | None = None  # (N, D) fixed by the first batch
        self._emb_dim: int | None = None  # E, or None when the encoder has no embedding
        self._finished = False
        self._recent: deque[tuple[torch.Tensor, float]] = deque(maxlen=config.keep_recent)
        # moviechat: short-term buffer flushes at this many frames
        self._cap = config.window if config.window is not None else config.short_term_len
        self._st: torch.Tensor | None = None  # [cap, N, D]
        self._st_emb: torch.Tensor | None = None  # [cap, E]
        self._st_starts: list[float] = []
        # moviechat: long-term memory, room for one flush over budget
        self._lt: torch.Tensor | None = None  # [long_term_len + cap, N, D]
        self._lt_emb: torch.Tensor | None = None
        self._lt_sizes: list[int] = []
        self._lt_starts: list[float] = []
        self._lt_sims: torch.Tensor | None = None  # [len - 1], only for "consolidate"
        # adaptive: long-term memory as a linked list over long_term_len + 1 rows
        self._chain: AdaptiveChain | None = None
        # mbc: per-position linked banks of long_term_len + 1 rows
        self._bank: LinkedBank | None = None
        self._emb_bank: LinkedBank | None = None
        self._free: torch.Tensor | None = None  # [N] row freed by the last step
        self._emb_free: torch.Tensor | None = None

    # ------------------------------------------------------------------ public API

    @property
    def frames_seen(self) -> int:
        """Frames added so far."""
        return self._frames

    def add(self, tokens: FrameTokens) -> None:
        """Add a batch: tokens ``[B, N, D]``, timestamps ``[B]`` seconds (non-decreasing,
        continuing the previous batch), embedding ``[B, E]`` or None."""
        if self._finished:
            raise RuntimeError("MemoryBuilder.add called after finish")
        x, ts, emb = self._validate(tokens)
        if not ts:
            return
        if self._shape is None:
            self._allocate(x, emb)
        for b, t in enumerate(ts):
            self._add_frame(x[b], t, None if emb is None else emb[b])

    def finish(self, video_id: str, encoder_fingerprint: str) -> VideoMemory:
        """Flush the short-term buffer and return the memory (builder is then spent)."""
        if self._finished:
            raise RuntimeError("MemoryBuilder.finish called twice")
        if self._frames == 0:
            raise DecodeError(
                video_id,
                "no frames reached the memory builder (empty video, or a time window "
                "outside it), so there is nothing to remember",
            )
        self._finished = True
        step = (self._t_last - self._t_first) / (self._frames - 1) if self._frames > 1 else 0.0
        t_end = self._t_last + step
        if self.config.method == "mbc":
            tokens, sizes, start_s, end_s, embedding = self._finish_mbc(t_end)
        elif self.config.method == "adaptive":
            tokens, sizes, start_s, end_s, embedding = self._finish_adaptive(t_end)
        else:
            tokens, sizes, start_s, end_s, embedding = self._finish_moviechat(t_end)
        # Token dropping runs once on the final slots (at most long_term_len of them,
        # so memory stays bounded); raw recent frames are never dropped.
        tokens, keep = drop_tokens(tokens, self.config.token_tau)
        recent_tokens = recent_ts = None
        if self._recent:
            recent_tokens = torch.stack([f for f, _ in self._recent]).float()
            recent_ts = torch.tensor([t for _, t in self._recent], dtype=torch.float64)
        return VideoMemory(
            video_id=video_id,
            tokens=tokens,
            sizes=sizes,
            start_s=start_s,
            end_s=end_s,
            embedding=embedding,
            encoder_fingerprint=encoder_fingerprint,
            memory_config=self.config,
            frames_seen=self._frames,
            recent_tokens=recent_tokens,
            recent_timestamps=recent_ts,
            keep=keep,
        )

    def slot_view(self) -> tuple[list[float], torch.Tensor] | None:
        """The slots so far, in time order: (start times [L], mean-pooled tokens
        [L, D]), covering every frame added (moviechat: long-term slots, then the
        short-term frames, one slot each). None before the first frame and for
        ``mbc``, whose slots are not runs of frames. For thumbnails (``memory.thumbs``)."""
        if self._shape is None or self.config.method == "mbc":
            return None
        if self.config.method == "adaptive":
            chain = _need(self._chain)
            rows = chain.rows()
            idx = torch.tensor(rows, dtype=torch.long, device=chain.x.device)
            return [chain.starts[r] for r in rows], chain.x.index_select(0, idx).mean(1)
        n, m = len(self._lt_sizes), len(self._st_starts)
        pooled = torch.cat([_need(self._lt)[:n].mean(1), _need(self._st)[:m].mean(1)])
        return self._lt_starts + self._st_starts, pooled

    # ------------------------------------------------------------------ input

    def _validate(self, ft: FrameTokens) -> tuple[torch.Tensor, list[float], torch.Tensor | None]:
        x, ts, emb = ft.tokens, ft.timestamps, ft.embedding
        if x.dim() != 3:
            raise EncoderError(f"FrameTokens.tokens must be [B, N, D], got {tuple(x.shape)}")
        b = x.shape[0]
        if ts.dim() != 1 or ts.shape[0] != b:
            raise EncoderError(f"FrameTokens.timestamps must be [{b}], got {tuple(ts.shape)}")
        if emb is not None and (emb.dim() != 2 or emb.shape[0] != b):
            raise EncoderError(f"FrameTokens.embedding must be [{b}, E], got {tuple(emb.shape)}")
        if b == 0:
            return x, [], emb
        shape = (int(x.shape[1]), int(x.shape[2]))
        emb_dim = None if emb is None else int(emb.shape[1])
        if self._shape is not None and (shape != self._shape or emb_dim != self._emb_dim):
            raise EncoderError(
                f"FrameTokens changed shape mid-video: tokens [*, {shape[0]}, {shape[1]}] "
                f"embedding {emb_dim} after [*, {self._shape[0]}, {self._shape[1]}] / "
                f"{self._emb_dim}"
            )
        times = [float(t) for t in ts.tolist()]
        prev = self._t_last
        for t in times:
            if not math.isfinite(t) or t < prev:
                raise EncoderError(
                    f"frame timestamps must be finite and non-decreasing; got {t} after {prev}"
                )
            prev = t
        return x.detach(), times, None if emb is None else emb.detach()

    def _allocate(self, x: torch.Tensor, emb: torch.Tensor | None) -> None:
        # Everything is allocated (and zero-filled, so the pages are really committed)
        # once, here: peak memory is reached early and then stays flat.
        n, d = int(x.shape[1]), int(x.shape[2])
        self._shape = (n, d)
        self._emb_dim = None if emb is None else int(emb.shape[1])
        dev = x.device
        cfg = self.config
        if cfg.method == "mbc":
            like = torch.empty(0, dtype=torch.float32, device=dev)
            self._bank = LinkedBank.empty(cfg.long_term_len + 1, n, d, like, with_starts=True)
            if emb is not None:
                self._emb_bank = LinkedBank.empty(
                    cfg.long_term_len + 1, 1, int(emb.shape[1]), like, with_starts=False
                )
            return
        if cfg.method == "adaptive":
            self._chain = AdaptiveChain.empty(
                cfg.long_term_len,
                n,
                d,
                emb_dim=self._emb_dim,
                threshold=cfg.threshold,
                max_span_s=cfg.max_span_s,
                metric=cfg.metric,
                weighting=cfg.weighting,
                keep_events=cfg.keep_events,
                device=dev,
            )
            return
        self._st = torch.zeros(self._cap, n, d, dtype=torch.float32, device=dev)
        self._lt = torch.zeros(cfg.long_term_len + self._cap, n, d, dtype=torch.float32, device=dev)
        if emb is not None:
            e = int(emb.shape[1])
            self._st_emb = torch.zeros(self._cap, e, dtype=torch.float32, device=emb.device)
            self._lt_emb = torch.zeros(
                cfg.long_term_len + self._cap, e, dtype=torch.float32, device=emb.device
            )

    def _add_frame(self, frame: torch.Tensor, t: float, emb: torch.Tensor | None) -> None:
        if self._frames == 0:
            self._t_first = t
        self._frames += 1
        self._t_last = t
        if self.config.keep_recent > 0:
            self._recent.append((frame, t))
        if self.config.method == "mbc":
            self._add_mbc(frame, t, emb)
            return
        if self.config.method == "adaptive":
            _need(self._chain).push(frame, t, emb)
            return
        k = len(self._st_starts)
        _need(self._st)[k].copy_(frame)
        if self._st_emb is not None and emb is not None:
            self._st_emb[k].copy_(emb)
        self._st_starts.append(t)
        if len(self._st_starts) == self._cap:
            self._flush()

    # ------------------------------------------------------------------ moviechat

    def _flush(self) -> None:
        """Merge the short-term buffer down to ``merge_to`` slots, move them to long-term."""
        m = len(self._st_starts)
        if m == 0 or self._st is None:
            return
        cfg = self.config
        x = self._st[:m]
        emb = None if self._st_emb is None else self._st_emb[:m]
        sizes = [1] * m
        # Ends are the next frame's start; the last one is provisional (its true end is
        # the next frame's time, known later) and is never read back.
        spans = _spans_from_starts(self._st_starts)
        sim = adjacent_similarity(x, cfg.metric)
        merge_adjacent_(x, sizes, spans, cfg.merge_to, cfg.metric, cfg.weighting, emb, sim)
        k = len(sizes)
        self._append_long(x[:k], sizes, [s for s, _ in spans], None if emb is None else emb[:k])
        self._st_starts = []

    def _append_long(
        self, x: torch.Tensor, sizes: list[int], starts: list[float], emb: torch.Tensor | None
    ) -> None:
        cfg = self.config
        lt, n0, k = _need(self._lt), len(self._lt_sizes), x.shape[0]
        lt[n0 : n0 + k].copy_(x)
        if self._lt_emb is not None and emb is not None:
            self._lt_emb[n0 : n0 + k].copy_(emb)
        self._lt_sizes += sizes
        self._lt_starts += starts
        n1 = n0 + k
        if cfg.overflow == "consolidate":
            # Extend the cached adjacent similarities by the new pairs only.
            parts = [] if self._lt_sims is None else [self._lt_sims]
            if n0 > 0:
                parts.append(pair_similarity(lt[n0 - 1 : n0], lt[n0 : n0 + 1], cfg.metric))
            parts.append(adjacent_similarity(lt[n0:n1], cfg.metric))
            self._lt_sims = torch.cat(parts)
        budget = cfg.long_term_len
        if n1 <= budget:
            return
        if cfg.overflow == "drop_oldest":
            drop = n1 - budget
            # Rows only move towards the front: a forward row copy needs no scratch.
            for dst in range(budget):
                lt[dst].copy_(lt[dst + drop])
                if self._lt_emb is not None:
                    self._lt_emb[dst].copy_(self._lt_emb[dst + drop])
            del self._lt_sizes[:drop]
            del self._lt_starts[:drop]
            return
        spans = _spans_from_starts(self._lt_starts)
        emb_view = None if self._lt_emb is None else self._lt_emb[:n1]
        self._lt_sims = merge_adjacent_(
            lt[:n1],
            self._lt_sizes,
            spans,
            budget,
            cfg.metric,
            cfg.weighting,
            emb_view,
            _need(self._lt_sims),
        )
        self._lt_starts = [s for s, _ in spans]

    def _finish_moviechat(
        self, t_end: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        self._flush()
        n = len(self._lt_sizes)
        tokens = _need(self._lt)[:n].clone()
        embedding = None if self._lt_emb is None else self._lt_emb[:n].clone()
        sizes = torch.tensor(self._lt_sizes, dtype=torch.int64)
        start_s = torch.tensor(self._lt_starts, dtype=torch.float64)
        end_s = torch.tensor(self._lt_starts[1:] + [t_end], dtype=torch.float64)
        return tokens, sizes, start_s, end_s, embedding

    # ------------------------------------------------------------------ adaptive

    def _finish_adaptive(
        self, t_end: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        chain = _need(self._chain)
        rows = chain.rows()
        idx = torch.tensor(rows, dtype=torch.long, device=chain.x.device)
        tokens = chain.x.index_select(0, idx)
        embedding = None
        if chain.emb is not None:
            embedding = chain.emb.index_select(0, idx.to(chain.emb.device))
        starts = [chain.starts[r] for r in rows]
        sizes = torch.tensor([chain.sizes[r] for r in rows], dtype=torch.int64)
        start_s = torch.tensor(starts, dtype=torch.float64)
        end_s = torch.tensor(starts[1:] + [t_end], dtype=torch.float64)
        return tokens, sizes, start_s, end_s, embedding

    # ------------------------------------------------------------------ mbc

    def _add_mbc(self, frame: torch.Tensor, t: float, emb: torch.Tensor | None) -> None:
        bank = _need(self._bank)
        bank.append(frame, 1.0, t, row=self._free)
        if self._emb_bank is not None and emb is not None:
            self._emb_bank.append(emb[None], 1.0, row=self._emb_free)
        if bank.length > self.config.long_term_len:
            self._free = bank.step()
            if self._emb_bank is not None:
                self._emb_free = self._emb_bank.step()

    def _finish_mbc(
        self, t_end: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        bank = _need(self._bank)
        order = bank.order()  # [L, N]
        d = bank.x.shape[2]
        tokens = bank.x.gather(0, order[:, :, None].expand(-1, -1, d))
        counts = bank.counts.gather(0, order).double().cpu()  # [L, N]
        starts = _need(bank.starts).gather(0, order.cpu())  # [L, N]
        ends = torch.cat([starts[1:], torch.full_like(starts[:1], t_end)])
        sizes = _round_preserving_sum(counts.mean(dim=1), self._frames)
        embedding = None
        if self._emb_bank is not None:
            eo = self._emb_bank.order()  # [L, 1]
            e = self._emb_bank.x.shape[2]
            embedding = self._emb_bank.x.gather(0, eo[:, :, None].expand(-1, -1, e))[:, 0]
        return tokens, sizes, starts.min(dim=1).values, ends.max(dim=1).values, embedding


_T = TypeVar("_T")


def _need(value: _T | None) -> _T:
    """A buffer that ``add`` allocates at the first frame (None only on a bug)."""
    if value is None:
        raise RuntimeError("MemoryBuilder: buffer used before the first frame allocated it")
    return value


def _spans_from_starts(starts: list[float]) -> list[list[float]]:
    """Contiguous spans: each slot ends where the next starts; the last end is a
    placeholder (its start) that the merge carries but nobody reads."""
    return [[s, e] for s, e in zip(starts, [*starts[1:], starts[-1]], strict=True)]


def _round_preserving_sum(values: torch.Tensor, total: int) -> torch.Tensor:
    """Round ``values [L]`` (>= 1, summing to ``total``) to int64 with the same sum
    (largest remainder; ties go to the earliest slot)."""
    floor = torch.floor(values + 1e-9)
    frac = values - floor
    missing = int(round(total - float(floor.sum())))
    out = floor.to(torch.int64)
    if missing > 0:
        # stable sort on -frac: largest remainders first, earliest first among ties
        idx = torch.sort(-frac, stable=True).indices[:missing]
        out[idx] += 1
    return out
