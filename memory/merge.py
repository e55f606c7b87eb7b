"""Merging temporally adjacent frames: MovieChat consolidation and MA-LMM compression.

Pure tensor functions in the style of ToMe's ``merge.py``: tensors in, tensors out, no
I/O, no device moves, no model code. Everything works on whatever device and float
dtype the tokens arrive in; similarities are computed in float32.

Shapes: ``T`` frames (or memory slots), ``N`` tokens per frame, ``D`` token width,
``E`` width of a pooled per-frame embedding.

Design decisions:

* **Similarity of adjacent frames** (``metric``):

  - ``"cosine"`` (default, the paper): cosine of the two frames' mean-pooled tokens.
  - ``"dot"`` (MovieChat's released code): dot product of the mean-pooled tokens. The
    reference computes ``mean(a @ b.T)`` over the N×N token dot-product matrix;
    ``mean_ij(a_i · b_j) = mean_i(a_i) · mean_j(b_j)``, so this is the same number
    at 1/N of the cost.
  - ``"token_cosine"``: mean over the N position-aligned token pairs of their cosine.
  - ``"token_min"`` (the default): the lowest per-position similarity, position n's
    being ``1 - |a_n - b_n|^2 / (mean_m |a_m|^2 + mean_m |b_m|^2)`` clamped to
    [-1, 1], i.e. the cosine of the two tokens if every token had its frame's RMS
    norm. Any whole-frame average (the three above) hides a change in a few
    positions: a person crossing a fixed camera's view changes a tenth of the
    feature cells and the frame similarity stays above any useful threshold. The
    minimum sees it, so that event keeps its own slot. Normalising by the frames'
    mean norm instead of each token's own keeps near-empty positions (flat wall,
    sky: tiny activations whose direction is noise) from reading as change.
    Identical frames (all-zero ones included) have similarity 1.

  Cosines use an epsilon on the norms, so all-zero frames have similarity 0, never NaN.
* **Greedy adjacent merge** (:func:`merge_adjacent`): repeatedly merge the most similar
  adjacent pair; ties go to the earliest pair (``argmax`` returns the first maximum,
  as the reference's ``list.index(max(...))`` does). Only the merged slot's two
  neighbour similarities are recomputed per step (a linked list over the slots,
  dead slots marked with ``-inf``), and survivors are compacted once at the end.
* **Weighting**: ``"size"`` averages weighted by the frames each side already holds
  (repeated merges stay a true mean of the frames, old content does not decay);
  ``"plain"`` is ``(a + b) / 2`` as in MovieChat's code. Sizes add either way.
  A per-frame pooled ``embedding`` is merged with exactly the same weights.
* **Spans**: each slot carries ``[start_s, end_s]``; a merge of slot i with its right
  neighbour j covers ``[start_i, end_j]``. With contiguous, ordered input spans the
  output stays contiguous and ordered.
* **MA-LMM memory-bank compression** (:func:`mbc_compress`): for every token position
  separately, the most similar pair of temporally adjacent tokens (cosine) is
  replaced by its count-weighted average (the right one folded into the left, as in
  MA-LMM's ``memory_bank_compress``), and T shrinks by one per step. Also done with
  per-position linked lists so a multi-step compression costs one compaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from videomem.memory.config import Metric, Weighting
from videomem.pipeline.errors import ConfigError

METRICS: tuple[str, ...] = ("cosine", "dot", "token_cosine", "token_min")
#: metrics that compare tokens position by position, so pooled frames cannot give them
TOKEN_METRICS: tuple[str, ...] = ("token_cosine", "token_min")

#: Which pair a budget merges first, where it is not the metric itself. ``token_min``
#: decides whether two slots are redundant (one changed position is enough to keep
#: them apart), but ranking forced merges by the lowest position puts cuts of busy
#: footage (every position moves) next to motion inside a scene: on the three real
#: sample clips joined, budgets of 3 and 6 slots then kept 1 of 3 clips at 1 fps,
#: against 3 of 3 when the mean per-position cosine ranks them (bench/memory.py).
RANKING: dict[str, Metric] = {"token_min": "token_cosine"}


def ranking_metric(metric: Metric) -> Metric:
    """The similarity that orders merges a budget forces, for a memory's ``metric``."""
    return RANKING.get(metric, metric)


WEIGHTINGS: tuple[str, ...] = ("size", "plain")

# Norm floor for cosines: zero vectors get similarity 0 instead of NaN.
_EPS = 1e-8
# Marks "no pair here" (dead slot, or last slot); real similarities are clamped above it.
_NO_PAIR = float("-inf")
_BIG = 3.0e38


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigError(f"unknown similarity metric {metric!r}; choose from {METRICS}")


def _check_weighting(weighting: str) -> None:
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"unknown weighting {weighting!r}; choose from {WEIGHTINGS}")


def pooled(tokens: torch.Tensor) -> torch.Tensor:
    """Mean-pool the token axis in float32: ``[..., N, D] -> [..., D]``."""
    return tokens.float().mean(dim=-2)


def _finite(sim: torch.Tensor) -> torch.Tensor:
    # Overflowing dots or NaN inputs must not collide with the -inf "no pair" marker.
    return torch.nan_to_num(sim, nan=-_BIG, posinf=_BIG, neginf=-_BIG)


def pair_similarity(a: torch.Tensor, b: torch.Tensor, metric: Metric = "cosine") -> torch.Tensor:
    """Similarity of frames ``a`` and ``b``: ``[..., N, D] x [..., N, D] -> [...]`` float32."""
    _check_metric(metric)
    if metric == "token_cosine":
        return _finite(F.cosine_similarity(a.float(), b.float(), dim=-1, eps=_EPS).mean(dim=-1))
    if metric == "token_min":
        return _finite(position_similarity(a, b).amin(dim=-1))
    return pooled_similarity(pooled(a), pooled(b), metric)


def position_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-position similarity of ``token_min``: ``[..., N, D] x [..., N, D] -> [..., N]``
    float32, ``1 - |a_n - b_n|^2 / (mean_m |a_m|^2 + mean_m |b_m|^2)`` in [-1, 1]."""
    a, b = a.float(), b.float()
    change = (a - b).square().sum(dim=-1)
    scale = a.square().sum(dim=-1).mean(dim=-1) + b.square().sum(dim=-1).mean(dim=-1)
    return (1.0 - change / scale.clamp_min(_EPS)[..., None]).clamp(-1.0, 1.0)


def pooled_similarity(pa: torch.Tensor, pb: torch.Tensor, metric: Metric) -> torch.Tensor:
    """``pair_similarity`` from mean-pooled frames ``[..., D] x [..., D] -> [...]`` (the
    ``cosine`` and ``dot`` metrics only), for callers that keep the pooled vectors."""
    if metric == "cosine":
        return _finite(F.cosine_similarity(pa, pb, dim=-1, eps=_EPS))
    if metric == "dot":
        return _finite((pa * pb).sum(dim=-1))
    raise ConfigError(f"pooled_similarity: metric {metric!r} needs the tokens, not pooled frames")


def adjacent_similarity(tokens: torch.Tensor, metric: Metric = "cosine") -> torch.Tensor:
    """Similarity of each frame with the next one: ``tokens [T, N, D] -> [max(T-1, 0)]``."""
    _check_metric(metric)
    if tokens.shape[0] < 2:
        return torch.zeros(0, dtype=torch.float32, device=tokens.device)
    return pair_similarity(tokens[:-1], tokens[1:], metric)


class Merged(NamedTuple):
    """Result of :func:`merge_adjacent` (``L`` = slots left)."""

    tokens: torch.Tensor  # [L, N, D]
    sizes: torch.Tensor  # [L] frames merged into each slot
    spans: torch.Tensor  # [L, 2] (start_s, end_s)
    embedding: torch.Tensor | None  # [L, E], merged with the same weights as tokens
    similarity: torch.Tensor  # [L-1] float32, slot i vs slot i+1 (reusable next call)


def merge_adjacent(
    tokens: torch.Tensor,
    sizes: torch.Tensor,
    spans: torch.Tensor,
    target_len: int,
    metric: Metric = "cosine",
    weighting: Weighting = "size",
    *,
    embedding: torch.Tensor | None = None,
    similarity: torch.Tensor | None = None,
) -> Merged:
    """Greedily merge the most similar adjacent slots until ``target_len`` remain.

    tokens:     [T, N, D]  slot tokens, in time order
    sizes:      [T]        frames already merged into each slot (1 for raw frames)
    spans:      [T, 2]     (start_s, end_s) of each slot
    target_len: slots to keep; ``T <= target_len`` returns the input unchanged
    embedding:  [T, E]     optional pooled embedding, merged with the same weights
    similarity: [T-1]      optional precomputed ``adjacent_similarity(tokens, metric)``
                           (a streaming caller keeps it between calls)

    The inputs are not modified. Returns :class:`Merged`.
    """
    _check_metric(metric)
    _check_weighting(weighting)
    if target_len < 1:
        raise ConfigError(f"merge_adjacent: target_len must be >= 1, got {target_len}")
    t = tokens.shape[0]
    if tokens.dim() != 3 or tuple(sizes.shape) != (t,) or tuple(spans.shape) != (t, 2):
        raise ConfigError(
            "merge_adjacent: expected tokens [T, N, D], sizes [T], spans [T, 2]; got "
            f"{tuple(tokens.shape)}, {tuple(sizes.shape)}, {tuple(spans.shape)}"
        )
    if embedding is not None and embedding.shape[0] != t:
        raise ConfigError("merge_adjacent: embedding must have one row per slot")
    if similarity is None:
        similarity = adjacent_similarity(tokens, metric)
    elif tuple(similarity.shape) != (max(t - 1, 0),):
        raise ConfigError("merge_adjacent: similarity must have shape [T-1]")
    if t <= target_len:
        return Merged(tokens, sizes, spans, embedding, similarity)

    x = tokens.clone()
    emb = None if embedding is None else embedding.clone()
    size_list = [int(s) for s in sizes.tolist()]
    span_list = [[float(a), float(b)] for a, b in spans.tolist()]
    sim = merge_adjacent_(x, size_list, span_list, target_len, metric, weighting, emb, similarity)
    return Merged(
        x[:target_len],
        torch.tensor(size_list, dtype=sizes.dtype, device=sizes.device),
        torch.tensor(span_list, dtype=spans.dtype, device=spans.device),
        None if emb is None else emb[:target_len],
        sim,
    )


def merge_adjacent_(
    x: torch.Tensor,
    sizes: list[int],
    spans: list[list[float]],
    target_len: int,
    metric: Metric,
    weighting: Weighting,
    emb: torch.Tensor | None,
    similarity: torch.Tensor,
) -> torch.Tensor:
    """In-place core of :func:`merge_adjacent`, for callers that own their buffers.

    Merges rows of ``x [T, N, D]`` (and ``emb [T, E]``) in place and compacts the
    survivors into rows ``[:target_len]``; ``sizes``/``spans`` (Python lists of length T)
    are edited in place to length ``target_len``. ``similarity [T-1]`` is read, not
    modified. Returns the survivors' adjacent similarity ``[target_len-1]``.
    The streaming builder uses this on preallocated buffers so consolidation never
    allocates memory proportional to the memory length.
    """
    t = x.shape[0]
    if t <= target_len:
        return similarity
    # sims[i]: similarity of slot i with the next alive slot; _NO_PAIR if none/dead.
    sims = torch.cat([similarity.float(), similarity.new_full((1,), _NO_PAIR).float()])
    nxt = list(range(1, t + 1))
    prv = list(range(-1, t - 1))
    alive = [True] * t
    for _ in range(t - target_len):
        i = int(torch.argmax(sims))  # first maximum: ties go to the earliest pair
        j = nxt[i]
        if weighting == "size":
            wa = sizes[i] / (sizes[i] + sizes[j])
            wb = 1.0 - wa
        else:
            wa = wb = 0.5
        x[i] = x[i] * wa + x[j] * wb
        if emb is not None:
            emb[i] = emb[i] * wa + emb[j] * wb
        sizes[i] += sizes[j]
        spans[i][1] = spans[j][1]
        alive[j] = False
        sims[j] = _NO_PAIR
        k = nxt[j]
        nxt[i] = k
        if k < t:
            prv[k] = i
            sims[i] = pair_similarity(x[i : i + 1], x[k : k + 1], metric)[0]
        else:
            sims[i] = _NO_PAIR
        p = prv[i]
        if p >= 0:
            sims[p] = pair_similarity(x[p : p + 1], x[i : i + 1], metric)[0]

    keep = [i for i in range(t) if alive[i]]
    # Survivors move only towards the front, so a forward row-by-row copy is safe
    # and needs no scratch buffer.
    for dst, src in enumerate(keep):
        if dst != src:
            x[dst].copy_(x[src])
            if emb is not None:
                emb[dst].copy_(emb[src])
    sizes[:] = [sizes[i] for i in keep]
    spans[:] = [spans[i] for i in keep]
    return sims[keep[:-1]]


# --------------------------------------------------------------------------- MA-LMM


class Compressed(NamedTuple):
    """Result of :func:`mbc_compress` (``L`` = slots left)."""

    bank: torch.Tensor  # [L, N, D]
    counts: torch.Tensor  # [L, N] frames merged into each (slot, position)
    starts: torch.Tensor | None  # [L, N] start time of each (slot, position), if given
    similarity: torch.Tensor  # [L-1, N] float32 cosine of slot l vs l+1 per position


def position_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-position cosine ``[..., N, D] x [..., N, D] -> [..., N]`` float32 (MA-LMM's metric)."""
    return _finite(F.cosine_similarity(a.float(), b.float(), dim=-1, eps=_EPS))


@dataclass
class LinkedBank:
    """A memory bank as per-position doubly linked lists over ``C`` physical rows.

    MA-LMM removes a different row at every token position, so rows are never shifted:
    each position keeps its own list order and a dead row is reused by the next frame.

    x      [C, N, D]  tokens;  counts [C, N];  starts [C, N] float64 or None
    sims   [C, N]     cosine of a row with its next row at that position (-inf: none)
    nxt/prv [C, N]    int64 links; ``C`` means "end", ``-1`` "start"
    head/tail [N]     first and last row of each position's list
    length            logical slots per position (the same for every position)
    """

    x: torch.Tensor
    counts: torch.Tensor
    starts: torch.Tensor | None
    sims: torch.Tensor
    nxt: torch.Tensor
    prv: torch.Tensor
    head: torch.Tensor
    tail: torch.Tensor
    length: int

    @classmethod
    def empty(
        cls, capacity: int, n: int, d: int, like: torch.Tensor, with_starts: bool
    ) -> LinkedBank:
        """An empty bank of ``capacity`` rows (allocated and touched once, up front)."""
        dev = like.device
        idx = torch.zeros(capacity, n, dtype=torch.long, device=dev)
        return cls(
            x=torch.zeros(capacity, n, d, dtype=like.dtype, device=dev),
            counts=torch.zeros(capacity, n, dtype=torch.float32, device=dev),
            starts=torch.zeros(capacity, n, dtype=torch.float64) if with_starts else None,
            sims=torch.full((capacity, n), _NO_PAIR, dtype=torch.float32, device=dev),
            nxt=idx.clone(),
            prv=idx.clone(),
            head=torch.zeros(n, dtype=torch.long, device=dev),
            tail=torch.zeros(n, dtype=torch.long, device=dev),
            length=0,
        )

    @property
    def capacity(self) -> int:
        return int(self.x.shape[0])

    def append(
        self,
        frame: torch.Tensor,
        count: torch.Tensor | float = 1.0,
        start: torch.Tensor | float = 0.0,
        row: torch.Tensor | None = None,
    ) -> None:
        """Append ``frame [N, D]`` at the tail of every position's list.

        ``row [N]``: the free physical row per position (default: ``length``, valid
        while nothing has been merged yet).
        """
        c, n = self.capacity, self.x.shape[1]
        cols = torch.arange(n, device=self.x.device)
        if row is None:
            row = torch.full((n,), self.length, dtype=torch.long, device=self.x.device)
        self.x[row, cols] = frame.to(self.x.dtype)
        self.counts[row, cols] = torch.as_tensor(count, dtype=torch.float32, device=self.x.device)
        if self.starts is not None:
            self.starts[row.cpu(), cols.cpu()] = torch.as_tensor(start, dtype=torch.float64)
        self.sims[row, cols] = _NO_PAIR
        self.nxt[row, cols] = c
        if self.length == 0:
            self.prv[row, cols] = -1
            self.head = row.clone()
        else:
            self.prv[row, cols] = self.tail
            self.nxt[self.tail, cols] = row
            self.sims[self.tail, cols] = position_cosine(self.x[self.tail, cols], self.x[row, cols])
        self.tail = row.clone()
        self.length += 1

    def step(self) -> torch.Tensor:
        """One MA-LMM compression step at every position; returns the freed row ``[N]``."""
        c, n = self.capacity, self.x.shape[1]
        cols = torch.arange(n, device=self.x.device)
        i = torch.argmax(self.sims, dim=0)  # [N]; ties: first max = earliest physical row
        j = self.nxt[i, cols]
        ci, cj = self.counts[i, cols], self.counts[j, cols]
        tot = ci + cj
        # Same arithmetic as MA-LMM: (dst*size_dst + src*size_src) / (size_dst + size_src)
        merged = (self.x[i, cols] * ci[:, None] + self.x[j, cols] * cj[:, None]) / tot[:, None]
        self.x[i, cols] = merged.to(self.x.dtype)
        self.counts[i, cols] = tot
        self.sims[j, cols] = _NO_PAIR
        k = self.nxt[j, cols]
        self.nxt[i, cols] = k
        has_k = k < c
        self.prv[k[has_k], cols[has_k]] = i[has_k]
        kk = k.clamp(max=c - 1)
        right = position_cosine(self.x[i, cols], self.x[kk, cols])
        self.sims[i, cols] = torch.where(has_k, right, torch.full_like(right, _NO_PAIR))
        self.tail = torch.where(has_k, self.tail, i)
        p = self.prv[i, cols]
        has_p = p >= 0
        pp = p.clamp(min=0)
        left = position_cosine(self.x[pp, cols], self.x[i, cols])
        self.sims[pp[has_p], cols[has_p]] = left[has_p]
        # The merged-away row j is now free (its token is folded into row i).
        self.length -= 1
        return j

    def order(self) -> torch.Tensor:
        """Physical row of each logical slot per position: ``[length, N]`` int64."""
        n = self.x.shape[1]
        cols = torch.arange(n, device=self.x.device)
        out = torch.empty(self.length, n, dtype=torch.long, device=self.x.device)
        cur = self.head
        for l in range(self.length):  # noqa: E741 - l is the slot index, as in [L, N, D]
            out[l] = cur
            cur = self.nxt[cur, cols]
        return out


def mbc_compress(
    bank: torch.Tensor,
    counts: torch.Tensor,
    target_len: int,
    *,
    starts: torch.Tensor | None = None,
) -> Compressed:
    """MA-LMM memory-bank compression of ``bank`` down to ``target_len`` slots.

    bank:   [T, N, D]  per-slot tokens in time order
    counts: [T, N]     frames already merged into each (slot, position)
    starts: [T, N]     optional start time of each (slot, position); a merge keeps the
                       left one (so per position, slots stay contiguous runs of frames)

    One step: for every position n, cosine similarity between temporally adjacent
    tokens ``bank[t, n]`` and ``bank[t+1, n]``; the argmax pair (earliest on ties) is
    replaced by the count-weighted average and the counts add; T shrinks by one.
    Repeated ``T - target_len`` times. Returns :class:`Compressed`.
    """
    if target_len < 1:
        raise ConfigError(f"mbc_compress: target_len must be >= 1, got {target_len}")
    if bank.dim() != 3 or tuple(counts.shape) != tuple(bank.shape[:2]):
        raise ConfigError(
            "mbc_compress: expected bank [T, N, D] and counts [T, N]; got "
            f"{tuple(bank.shape)} and {tuple(counts.shape)}"
        )
    if starts is not None and tuple(starts.shape) != tuple(bank.shape[:2]):
        raise ConfigError("mbc_compress: starts must have shape [T, N]")
    t, n, d = bank.shape
    if t <= target_len:
        sim = position_cosine(bank[:-1], bank[1:]) if t > 1 else bank.new_zeros(0, n).float()
        return Compressed(bank, counts, starts, sim)

    lb = LinkedBank.empty(t, n, d, bank, with_starts=False)
    lb.x.copy_(bank)
    lb.counts.copy_(counts)
    rows = torch.arange(t, device=bank.device)
    lb.nxt.copy_((rows + 1)[:, None].expand(t, n))
    lb.prv.copy_((rows - 1)[:, None].expand(t, n))
    lb.sims[:-1] = position_cosine(bank[:-1], bank[1:])
    lb.head.zero_()
    lb.tail.fill_(t - 1)
    lb.length = t
    for _ in range(t - target_len):
        lb.step()
    order = lb.order()  # [L, N]
    out = lb.x.gather(0, order[:, :, None].expand(-1, -1, d))
    out_counts = lb.counts.gather(0, order).to(counts.dtype)
    out_starts = None if starts is None else starts.gather(0, order.to(starts.device))
    out_sim = lb.sims.gather(0, order[:-1])
    return Compressed(out, out_counts, out_starts, out_sim)
