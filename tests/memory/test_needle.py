"""Needles in hour-long token streams (memory.needle) and token-level redundancy
(memory.redundancy)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from videomem.memory.builder import MemoryBuilder
from videomem.memory.config import MemoryConfig
from videomem.memory.needle import (
    TokenStream,
    insert_needles,
    looped_stream,
    needle_hits,
    needle_recall,
    synthetic_stream,
    uneven_lengths,
    uniform_memory,
)
from videomem.memory.redundancy import kept_fraction, kept_positions, position_distance
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import ConfigError
from videomem.pipeline.types import FrameTokens

HOUR = 3600
#: 12 very uneven scenes making an hour at 1 fps
LENGTHS = uneven_lengths(12, HOUR, seed=0)


def _build(cfg: MemoryConfig, stream: TokenStream) -> VideoMemory:
    b = MemoryBuilder(cfg)
    for x, ts in stream.batches(64):
        b.add(FrameTokens(x, ts))
    return b.finish("needle", "none")


def _recall(mem: VideoMemory, stream: TokenStream) -> float:
    return needle_recall(mem.tokens, mem.start_s, mem.end_s, stream)


def test_uneven_lengths_make_the_hour_with_long_and_short_scenes() -> None:
    assert sum(LENGTHS) == HOUR and len(LENGTHS) == 12
    assert min(LENGTHS) >= 3 and max(LENGTHS) > 20 * min(LENGTHS)
    assert uneven_lengths(12, HOUR, seed=1) != LENGTHS
    with pytest.raises(ConfigError):
        uneven_lengths(10, 20)


def test_needles_are_frames_of_another_scene() -> None:
    base = synthetic_stream(LENGTHS, seed=0)
    stream = insert_needles(base, 3, frames=2, seed=5)
    assert len(stream) == len(base) == HOUR
    assert torch.equal(stream.timestamps, base.timestamps)
    changed = torch.nonzero(stream.index != base.index).flatten().tolist()
    assert changed == [i for nd in stream.needles for i in range(nd.first, nd.first + 2)]
    for nd in stream.needles:
        rows = stream.index[nd.first : nd.first + 2]
        assert (base.scenes[rows] == nd.source).all()  # a run of the source scene
        assert int(rows[1] - rows[0]) == 1
        near = set(base.scenes[nd.first - 1 : nd.first + 3].tolist())
        assert nd.source not in near
        assert (nd.start_s, nd.end_s) == (float(nd.first), float(nd.first + 2))
    again = insert_needles(base, 3, frames=2, seed=5)  # seeded
    assert again.needles == stream.needles and torch.equal(again.index, stream.index)
    with pytest.raises(ConfigError):
        insert_needles(base, 2, at=[100, 101])


def test_looped_clips_take_needles_from_another_clip() -> None:
    clips = torch.randn(6, 4, 8)  # clips of 3, 1 and 2 frames
    stream = looped_stream(clips, [3, 1, 2], seconds=60, fps=1.0)
    assert len(stream) == 60 and stream.num_scenes == 30
    assert stream.index[:8].tolist() == [0, 1, 2, 3, 4, 5, 0, 1]
    with_needles = insert_needles(stream, 3, seed=0)
    clip_of = torch.tensor([0, 0, 0, 1, 2, 2])
    for nd in with_needles.needles:
        host = {int(clip_of[stream.index[i]]) for i in range(nd.first - 1, nd.first + 2)}
        assert int(clip_of[with_needles.index[nd.first]]) not in host


def test_recall_on_hand_made_memories() -> None:
    """A slot holding the needle alone recalls it; a slot averaging it into 100 haystack
    frames looks like the haystack and misses; slots not covering it miss."""
    stream = insert_needles(synthetic_stream(LENGTHS, seed=0), 1, at=[1500])
    nd = stream.needles[0]
    x = stream.frames(1400, 1600)
    alone = (x[100:101], torch.tensor([1500.0]), torch.tensor([1501.0]))
    averaged = (x.mean(0, keepdim=True), torch.tensor([1400.0]), torch.tensor([1600.0]))
    elsewhere = (x[:1], torch.tensor([1400.0]), torch.tensor([1401.0]))
    assert (nd.start_s, nd.end_s) == (1500.0, 1501.0)
    assert needle_hits(*alone, stream) == [True]
    assert needle_hits(*averaged, stream) == [False]
    assert needle_hits(*elsewhere, stream) == [False]
    # a slot of 3 frames, 2 of them the needle's neighbours: the needle does not dominate
    three = (x[99:102].mean(0, keepdim=True), torch.tensor([1499.0]), torch.tensor([1502.0]))
    assert needle_hits(*three, stream) == [False]
    # what a slot stores decides: with no position kept it can tell nothing apart
    none_kept = torch.zeros(1, x.shape[1], dtype=torch.bool)
    assert needle_hits(*alone, stream, keep=none_kept) == [False]
    assert needle_hits(*alone, stream, keep=~none_kept) == [True]
    assert needle_recall(*averaged, synthetic_stream(LENGTHS, seed=0)) == 1.0  # no needles


def test_a_uniform_memory_loses_a_needle_between_its_slots() -> None:
    """Uniform sampling at L = 32 keeps every 113th frame: a needle half-way between two
    of them is lost, one on a sampled frame is kept. The measure can fail."""
    base = synthetic_stream(LENGTHS, seed=0)
    tokens, start, end = uniform_memory(base, 32)
    assert tokens.shape[0] == 32 and float(start[1]) == 113.0
    between = insert_needles(base, 1, at=[113 * 10 + 56])
    on_slot = insert_needles(base, 1, at=[113 * 10])
    assert needle_recall(*uniform_memory(between, 32), between) == 0.0
    assert needle_recall(*uniform_memory(on_slot, 32), on_slot) == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_adaptive_keeps_every_needle_when_the_budget_holds_every_piece(seed: int) -> None:
    """An hour at 1 fps, 12 uneven scenes, 3 one-frame needles: each needle cuts its host
    scene in two, so the stream has K + 2n = 18 runs of content. With L >= 18 the
    default keeps every needle in a slot of its own (recall 1.00); uniform sampling and
    MovieChat's 18-frame windows lose most of them at every L."""
    stream = insert_needles(synthetic_stream(LENGTHS, seed=seed), 3, seed=seed)
    runs = stream.num_scenes + 2 * len(stream.needles)
    for budget in (runs, 64, 256):
        mem = _build(MemoryConfig(long_term_len=budget), stream)
        assert len(mem) <= budget and int(mem.sizes.sum()) == HOUR
        assert _recall(mem, stream) == 1.0, (seed, budget)
    moviechat = dataclasses.replace(MemoryConfig.preset("moviechat"), long_term_len=256)
    assert _recall(_build(moviechat, stream), stream) < 1.0
    assert needle_recall(*uniform_memory(stream, 64), stream) < 1.0


@pytest.mark.xfail(
    strict=True,
    reason="issue 21's bound L >= scenes + needles is not enough: a needle inside a scene "
    "leaves K + 2n runs, the n merges L = K + n forces are between unrelated neighbours "
    "(mean per-position cosine ~0 for all of them) and the noise picks which; a needle "
    "merged into its host scene is lost (seeds 1 and 2: 2 of 3 needles kept); the opt-in "
    "keep_events reaches it on these seeds (below)",
)
def test_adaptive_keeps_every_needle_at_scenes_plus_needles_slots() -> None:
    """The issue's goal as stated: recall 1.00 for the default at L = K + n."""
    for seed in range(3):
        stream = insert_needles(synthetic_stream(LENGTHS, seed=seed), 3, seed=seed)
        budget = stream.num_scenes + len(stream.needles)
        assert _recall(_build(MemoryConfig(long_term_len=budget), stream), stream) == 1.0, seed


@pytest.mark.parametrize("seed", [1, 2])
def test_keep_events_keeps_the_needle_the_default_folds_away(seed: int) -> None:
    """The same goal with ``keep_events``: at L = K + n the default folds a needle into
    its host (seeds 1 and 2 lose one each, above), the opt-in keeps all three, paying
    with scenes whose slots are merged instead (scene recall falls; the budget holds)."""
    from videomem.memory.quality import scene_recall

    stream = insert_needles(synthetic_stream(LENGTHS, seed=seed), 3, seed=seed)
    budget = stream.num_scenes + len(stream.needles)
    default = _build(MemoryConfig(long_term_len=budget), stream)
    events = _build(MemoryConfig(long_term_len=budget, keep_events=True), stream)
    assert _recall(default, stream) < 1.0 and _recall(events, stream) == 1.0
    assert len(events) <= budget and int(events.sizes.sum()) == HOUR
    bounds = stream.bounds
    assert scene_recall(events.start_s, events.end_s, bounds) <= scene_recall(
        default.start_s, default.end_s, bounds
    )


def test_keep_events_changes_nothing_without_forced_merges() -> None:
    """Under budget (and where the budget holds every run) keep_events builds the
    default's memory bit for bit: it only reorders merges the budget forces."""
    stream = insert_needles(synthetic_stream(LENGTHS, seed=0), 3, seed=0)
    for budget in (stream.num_scenes + 2 * len(stream.needles), 256):
        a = _build(MemoryConfig(long_term_len=budget), stream)
        b = _build(MemoryConfig(long_term_len=budget, keep_events=True), stream)
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.end_s, b.end_s), budget


def test_keep_events_is_an_adaptive_option_hashed_only_when_on() -> None:
    base = MemoryConfig()
    on = dataclasses.replace(base, keep_events=True)
    assert "keep_events" not in base.hashed_dict() and "keep_events" not in base.to_dict()
    assert on.hashed_dict()["keep_events"] is True and on.hashed_dict() != base.hashed_dict()
    assert MemoryConfig.from_dict(on.to_dict()) == on
    with pytest.raises(ConfigError, match="keep_events"):
        dataclasses.replace(MemoryConfig.preset("moviechat"), keep_events=True)


# --------------------------------------------------------------------------- redundancy


def test_tau_zero_keeps_every_token() -> None:
    x = torch.randn(5, 7, 16)
    x[3] = x[2]  # even an identical slot
    for against in ("previous", "kept"):
        keep = kept_positions(x, 0.0, against=against)  # type: ignore[arg-type]
        assert keep.shape == (5, 7) and bool(keep.all())
        assert kept_fraction(keep) == 1.0


@pytest.mark.parametrize("against", ["previous", "kept"])
def test_identical_slots_keep_nothing_after_the_first(against: str) -> None:
    x = torch.randn(1, 7, 16).expand(4, 7, 16).clone()
    x[:, 3] = 0.0  # an all-zero position is unchanged too, not "far"
    keep = kept_positions(x, 0.05, against=against)  # type: ignore[arg-type]
    assert bool(keep[0].all()) and not bool(keep[1:].any())
    assert kept_fraction(keep) == pytest.approx(1 / 4)
    # one position turned around in slot 2 is kept there, and only there
    x[2, 5] = -x[2, 5]
    keep = kept_positions(x, 0.05, against=against)  # type: ignore[arg-type]
    assert torch.nonzero(keep[1:]).tolist() == [[1, 5], [2, 5]]  # changed, then changed back


def test_previous_matches_a_naive_loop_and_kept_catches_slow_drift() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 8, generator=g)
    naive = torch.ones(6, 5, dtype=torch.bool)
    for slot in range(1, 6):
        for pos in range(5):
            cos = torch.nn.functional.cosine_similarity(x[slot, pos], x[slot - 1, pos], dim=0)
            naive[slot, pos] = bool(1 - cos > 0.3)
    assert torch.equal(kept_positions(x, 0.3), naive)
    # a token turning by 2 degrees a slot: never 0.01 from the previous slot, but 0.01
    # from the last kept one after a few slots
    angles = torch.deg2rad(torch.arange(10.0) * 2)
    drift = torch.stack([angles.cos(), angles.sin()], dim=1)[:, None, :]  # [10, 1, 2]
    assert not bool(kept_positions(drift, 0.01)[1:].any())
    kept = kept_positions(drift, 0.01, against="kept")[:, 0].tolist()
    assert kept == [True, False, False, False, False, True, False, False, False, False]


def test_bad_thresholds_are_refused() -> None:
    x = torch.randn(3, 4, 8)
    for tau in (-0.1, float("nan"), 3.0):
        with pytest.raises(ConfigError):
            kept_positions(x, tau)
    with pytest.raises(ConfigError):
        kept_positions(x[0], 0.1)
    with pytest.raises(ConfigError):
        kept_positions(x, 0.1, against="next")  # type: ignore[arg-type]
    assert bool((position_distance(x, x) < 1e-6).all())
