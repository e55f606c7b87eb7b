"""Re-consolidation of a stored memory to K slots (to fit an LLM's context at QA time).

The same greedy adjacent merge as indexing (``memory.merge.merge_adjacent``): the most
similar pair of temporally adjacent slots is merged, weighted by the frames each
already holds, until K remain. Deterministic (ties go to the earliest pair), so the
same stored memory and K always give the same slots.

Design decisions:

* **The memory's own budget criterion** (``merge.ranking_metric`` of its
  ``memory_config.metric``: the mean per-position cosine for the adaptive default's
  ``token_min``), the order in which indexing merges when its budget forces it. No
  span limit: reaching K is a budget, and the budget wins over the span.
* **Always size-weighted**, whatever the memory was built with: a re-consolidated slot
  is then the mean of the frames it covers, and its embedding the mean of theirs.
* **Computed in float32**, returned in the stored dtype (float16 from the store):
  repeated float16 averaging would add rounding at every merge.
* **Spans**: a merged slot runs from the first slot's start to the last one's end, so
  ordered, contiguous spans stay ordered and contiguous; sizes add up.
* **Kept positions** (``keep``, token dropping): a merged slot keeps the union (OR)
  of its slots' positions; the dense tokens merge as usual (a position dropped in all
  of them stays equal to its fill). Which slots a merged slot holds is read from the
  sizes (merges are of adjacent slots, so each merged slot is a run of consecutive
  slots whose sizes add up to its own).
* **Recent frames** (breakpoint mode) are raw frames, not slots: left untouched.
* The result keeps the source's ``memory_config`` and ``config_hash`` (it is a view of
  that stored memory for one reader, not a memory to store again).
"""

from __future__ import annotations

import dataclasses

import torch
from videomem.memory.config import Metric
from videomem.memory.merge import merge_adjacent, ranking_metric
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import ConfigError


def consolidate_memory(mem: VideoMemory, k: int, metric: Metric | None = None) -> VideoMemory:
    """``mem`` with at most ``k`` slots: ``tokens [L, N, D] -> [min(L, k), N, D]``.

    metric: similarity of adjacent slots; default ``mem.memory_config.metric``.
    ``len(mem) <= k`` returns ``mem`` itself.
    """
    if k < 1:
        raise ConfigError(f"consolidate_memory: k must be >= 1, got {k}")
    if len(mem) <= k:
        return mem
    metric = ranking_metric(mem.memory_config.metric) if metric is None else metric
    spans = torch.stack([mem.start_s, mem.end_s], dim=1)
    emb = None if mem.embedding is None else mem.embedding.float()
    out = merge_adjacent(mem.tokens.float(), mem.sizes, spans, k, metric, "size", embedding=emb)
    return dataclasses.replace(
        mem,
        tokens=out.tokens.to(mem.tokens.dtype),
        keep=None if mem.keep is None else union_keep(mem.keep, mem.sizes, out.sizes),
        sizes=out.sizes,
        start_s=out.spans[:, 0].contiguous(),
        end_s=out.spans[:, 1].contiguous(),
        embedding=None
        if out.embedding is None or mem.embedding is None
        else out.embedding.to(mem.embedding.dtype),
    )


def union_keep(keep: torch.Tensor, sizes: torch.Tensor, merged_sizes: torch.Tensor) -> torch.Tensor:
    """The kept positions of merged slots: ``keep [L, N]`` of the slots, ``sizes [L]``
    their frames, ``merged_sizes [K]`` the frames of the K merged runs of consecutive
    slots -> ``[K, N]``, each the OR of its run's rows."""
    ends = torch.cumsum(sizes.long(), 0)
    bounds = torch.searchsorted(ends, torch.cumsum(merged_sizes.long(), 0)) + 1
    starts = torch.cat([bounds.new_zeros(1), bounds[:-1]])
    return torch.stack(
        [keep[a:b].any(0) for a, b in zip(starts.tolist(), bounds.tolist(), strict=True)]
    )
