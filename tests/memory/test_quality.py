"""Consolidation quality on synthetic scenes (memory.quality)."""

from __future__ import annotations

import pytest
import torch
from videomem.memory.builder import MemoryBuilder
from videomem.memory.config import MemoryConfig
from videomem.memory.quality import (
    event_kept,
    fifo_spans,
    scene_recall,
    slot_purity,
    static_scene,
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


#: (first frame, frames, positions of 49) in 10 minutes of a fixed camera at 1 fps:
#: events of 1, 3 and 10 frames covering 2 to 5 positions (4-10% of the picture)
EVENTS = [(100, 1, 2), (200, 3, 4), (300, 10, 5), (450, 1, 5), (500, 10, 2), (550, 3, 3)]


@pytest.mark.parametrize("budget", [256, 64, 32])
def test_events_on_a_static_camera_keep_slots_of_their_own(budget: int) -> None:
    """The issue's static scene (49 tokens x 64, noise 0.15): every event has a slot
    holding only its frames, within the budget. The whole-frame cosine default this
    replaced averaged the 10 minutes into one slot and lost them all."""
    for seed in range(2):
        x, ts = static_scene(600, EVENTS, seed=seed)
        mem = _build(MemoryConfig(long_term_len=budget), x, ts)
        assert len(mem) <= budget
        kept = [event_kept(mem.start_s, mem.end_s, a, a + n) for a, n, _ in EVENTS]
        assert all(kept), (seed, kept, len(mem))
        assert int(mem.sizes.sum()) == 600
        if budget == 256:  # under budget: static stretches stop at max_span_s
            span = MemoryConfig().max_span_s
            assert span is not None and float((mem.end_s - mem.start_s).max()) <= span
            assert len(mem) >= 600 / span
        old = MemoryConfig(long_term_len=budget, metric="cosine", max_span_s=None)
        before = _build(old, x, ts)
        assert len(before) == 1  # the defect: one averaged moment
        assert not any(event_kept(before.start_s, before.end_s, a, a + n) for a, n, _ in EVENTS)


def test_reconsolidation_to_k_keeps_the_events() -> None:
    """QA-time re-consolidation merges by the memory's own criterion (token_min for the
    default): down to one slot per event and per static stretch between them (13),
    every event still has a slot of its own."""
    from videomem.memory import consolidate_memory

    x, ts = static_scene(600, EVENTS, seed=0)
    mem = _build(MemoryConfig(), x, ts)
    assert len(mem) > 2 * len(EVENTS) + 1
    small = consolidate_memory(mem, 2 * len(EVENTS) + 1)
    assert len(small) == 2 * len(EVENTS) + 1 and int(small.sizes.sum()) == 600
    assert all(event_kept(small.start_s, small.end_s, a, a + n) for a, n, _ in EVENTS)
