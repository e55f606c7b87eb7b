"""Consolidation quality on synthetic scenes (memory.quality)."""

from __future__ import annotations

import pytest
import torch
from videomem.memory.builder import MemoryBuilder
from videomem.memory.config import MemoryConfig
from videomem.memory.quality import (
    fifo_spans,
    scene_recall,
    slot_purity,
    synthetic_scenes,
    uniform_spans,
)
from videomem.pipeline.types import FrameTokens

# very uneven scenes: three long ones and three short ones between them
LENGTHS = [300, 9, 250, 14, 400, 11]


def _build(cfg: MemoryConfig, x: torch.Tensor, ts: torch.Tensor):
    b = MemoryBuilder(cfg)
    for i in range(0, x.shape[0], 32):
        b.add(FrameTokens(x[i : i + 32], ts[i : i + 32]))
    return b.finish("synthetic", "none")


def test_scores_on_hand_made_spans() -> None:
    bounds = torch.tensor([0.0, 10.0, 12.0, 30.0], dtype=torch.float64)
    start = torch.tensor([0.0, 5.0, 11.0], dtype=torch.float64)
    end = torch.tensor([5.0, 11.0, 30.0], dtype=torch.float64)
    assert scene_recall(start, end, bounds) == 1 / 3  # only scene 0 holds a whole slot
    assert slot_purity(start, end, bounds) == 1 / 3  # [5, 11) and [11, 30) straddle cuts


@pytest.mark.parametrize("method", ["adaptive", "moviechat"])
def test_cosine_consolidation_beats_uniform_sampling_on_uneven_scenes(method: str) -> None:
    budget = 12  # >= number of scenes
    for seed in range(2):
        x, ts, bounds = synthetic_scenes(LENGTHS, n=8, d=32, noise=0.5, seed=seed)
        mem = _build(MemoryConfig(method=method, long_term_len=budget), x, ts)  # type: ignore[arg-type]
        assert len(mem) <= budget
        recall = scene_recall(mem.start_s, mem.end_s, bounds)
        uni = scene_recall(*uniform_spans(ts, budget), bounds)
        fifo = scene_recall(*fifo_spans(ts, budget), bounds)
        assert recall > uni and recall > fifo, (recall, uni, fifo)
        assert slot_purity(mem.start_s, mem.end_s, bounds) >= 0.75
