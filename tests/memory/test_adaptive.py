"""The adaptive method and K-slot re-consolidation against naive reference loops,
uneven-scene recall, and the config change that made adaptive the default."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from videomem.memory import AdaptiveChain, MemoryBuilder, consolidate_memory
from videomem.memory.config import MemoryConfig
from videomem.memory.index_config import index_config_hash
from videomem.memory.merge import pair_similarity, ranking_metric
from videomem.memory.quality import scene_recall, slot_purity, synthetic_scenes
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import ConfigError
from videomem.pipeline.types import DecodeConfig, FrameTokens

from tests.memory.test_builder import build, video
from tests.memory.test_merge import naive_merge

# --------------------------------------------------------------------------- naive references


def naive_adaptive(
    x, ts, emb, budget, threshold, metric="cosine", weighting="size", max_span_s=None
):
    """The definition, written plainly: after each frame, recompute every adjacent
    similarity and merge the most similar pair (first maximum) while there are more
    than ``budget`` slots, or, under budget, merge the most similar pair whose union's
    frames lie within ``max_span_s`` (first to last) while it is at least ``threshold``."""
    xs: list[torch.Tensor] = []
    es: list[torch.Tensor] = []
    sz: list[int] = []
    st: list[float] = []
    last: list[float] = []
    for f in range(x.shape[0]):
        xs.append(x[f].float().clone())
        if emb is not None:
            es.append(emb[f].float().clone())
        sz.append(1)
        st.append(float(ts[f]))
        last.append(float(ts[f]))
        while len(xs) > 1:
            # over budget, the pair to merge is ranked by the metric's ranking metric
            rank = metric if len(xs) <= budget else ranking_metric(metric)
            sims = [
                float(pair_similarity(xs[i][None], xs[i + 1][None], rank))
                for i in range(len(xs) - 1)
            ]
            if len(xs) <= budget:
                if threshold is None:
                    break
                sims = [
                    s if max_span_s is None or last[i + 1] - st[i] < max_span_s else -math.inf
                    for i, s in enumerate(sims)
                ]
            best = max(sims)
            if len(xs) <= budget and best < threshold:
                break
            i = sims.index(best)
            if weighting == "size":
                wa = sz[i] / (sz[i] + sz[i + 1])
                wb = 1.0 - wa
            else:
                wa = wb = 0.5
            xs[i] = xs[i] * wa + xs[i + 1] * wb
            if es:
                es[i] = es[i] * wa + es[i + 1] * wb
                del es[i + 1]
            sz[i] += sz[i + 1]
            last[i] = last[i + 1]
            del xs[i + 1], sz[i + 1], st[i + 1], last[i + 1]
    return torch.stack(xs), sz, st, torch.stack(es) if es else None


CASES = [
    # (budget, threshold, metric, weighting, max_span_s): budget only, threshold only,
    # both, with and without a span limit (video() is 0.5 s per frame)
    (6, None, "cosine", "size", None),
    (200, 0.6, "cosine", "size", None),
    (200, 0.6, "cosine", "size", 7.0),
    (8, 0.7, "cosine", "size", None),
    (8, 0.7, "cosine", "size", 3.0),
    (5, 0.5, "token_cosine", "plain", None),
    (7, 40.0, "dot", "size", 2.0),
    (200, 0.99, "token_min", "size", 5.0),
    (30, 0.97, "token_min", "plain", 10.0),
    (6, 0.98, "token_min", "plain", None),
]


@pytest.mark.parametrize("budget,threshold,metric,weighting,max_span_s", CASES)
def test_adaptive_builder_matches_naive_loop(
    budget, threshold, metric, weighting, max_span_s
) -> None:
    cfg = MemoryConfig(
        long_term_len=budget,
        threshold=threshold,
        metric=metric,
        weighting=weighting,
        max_span_s=max_span_s,
    )
    x, ts, emb = video(90, seed=budget)
    mem = build(cfg, x, ts, emb, batch=7)
    want_x, want_sz, want_st, want_e = naive_adaptive(
        x, ts, emb, budget, threshold, metric, weighting, max_span_s
    )
    assert mem.sizes.tolist() == want_sz
    assert mem.start_s.tolist() == want_st
    torch.testing.assert_close(mem.tokens, want_x, rtol=1e-5, atol=1e-5)
    assert mem.embedding is not None
    torch.testing.assert_close(mem.embedding, want_e, rtol=1e-5, atol=1e-5)
    # the end state the definition promises
    assert len(mem) <= budget and int(mem.sizes.sum()) == 90
    assert torch.equal(mem.start_s[1:], mem.end_s[:-1])
    assert float(mem.end_s[-1]) == float(ts[-1]) + 0.5


def test_threshold_merges_under_budget_and_none_does_not() -> None:
    x, ts, emb = video(60, seed=3)
    loose = build(MemoryConfig(long_term_len=100, threshold=None), x, ts, emb)
    assert len(loose) == 60 and loose.sizes.tolist() == [1] * 60
    tight = build(MemoryConfig(long_term_len=100, threshold=0.7), x, ts, emb)
    assert 1 < len(tight) < 60
    # no two adjacent slots left are redundant
    sims = [
        float(pair_similarity(tight.tokens[i][None], tight.tokens[i + 1][None]))
        for i in range(len(tight) - 1)
    ]
    assert max(sims) < 0.7


def test_ties_go_to_the_earliest_pair_even_when_rows_are_reused() -> None:
    """Frames drawn from three exact vectors: many pairs tie exactly. Rows freed by
    merges are reused by later frames, so row order is not time order (with 30
    frames and 6 rows, a plain argmax over rows picks a later pair on the first of
    these sequences); the chain still merges the earliest pair, like the naive loop."""
    alphabet = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        seq = torch.randint(0, 3, (30,), generator=g).tolist()
        chain = AdaptiveChain.empty(5, 1, 2, threshold=None)
        for t, s in enumerate(seq):
            chain.push(alphabet[s][0], float(t))
        rows = chain.rows()
        _, sz, st, _ = naive_adaptive(alphabet[seq], torch.arange(30.0), None, 5, None)
        assert [chain.sizes[r] for r in rows] == sz
        assert [chain.starts[r] for r in rows] == st
    # identical frames: every pair ties, sizes pile up at the front
    chain = AdaptiveChain.empty(4, 2, 3, threshold=None)
    for t in range(12):
        chain.push(torch.ones(2, 3), float(t))
    assert [chain.sizes[r] for r in chain.rows()] == [9, 1, 1, 1]


def test_chain_guards() -> None:
    with pytest.raises(ConfigError):
        AdaptiveChain.empty(0, 2, 3)
    with pytest.raises(ConfigError):
        AdaptiveChain.empty(3, 2, 3, metric="l2")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- uneven scenes

#: 12 scenes from 1 to 2000 frames (the issue's synthetic video)
UNEVEN = [2000, 1, 300, 40, 1200, 5, 80, 600, 12, 150, 3, 900]


def _recall(cfg: MemoryConfig, x, ts, bounds) -> tuple[int, float, float]:
    b = MemoryBuilder(cfg)
    for i in range(0, x.shape[0], 64):
        b.add(FrameTokens(x[i : i + 64], ts[i : i + 64]))
    m = b.finish("uneven", "none")
    return len(m), scene_recall(m.start_s, m.end_s, bounds), slot_purity(m.start_s, m.end_s, bounds)


@pytest.mark.slow  # a long synthetic video per budget and threshold, ~15 s each
@pytest.mark.parametrize("budget", [12, 32, 256])
def test_adaptive_keeps_every_scene_when_the_budget_holds_them(budget: int) -> None:
    x, ts, bounds = synthetic_scenes(UNEVEN, n=32, d=64, noise=0.7, seed=budget)
    for threshold in (None, MemoryConfig().threshold):
        slots, recall, purity = _recall(
            MemoryConfig(long_term_len=budget, threshold=threshold), x, ts, bounds
        )
        assert slots <= budget
        assert recall == 1.0, (budget, threshold, slots)
        assert purity == 1.0, (budget, threshold, slots)
    # MovieChat's 18 -> 2 window at the same budget loses short scenes
    mc = dataclasses.replace(MemoryConfig.preset("moviechat"), long_term_len=budget)
    _, mc_recall, _ = _recall(mc, x, ts, bounds)
    assert mc_recall < 1.0


# --------------------------------------------------------------------------- consolidate_memory


def stored_like(cfg: MemoryConfig, t: int = 70, seed: int = 0) -> VideoMemory:
    """A memory as the store gives it back: float16 tokens, recent frames."""
    x, ts, emb = video(t, seed=seed)
    mem = build(cfg, x, ts, emb)
    mem.tokens = mem.tokens.half()
    return mem


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize(
    "cfg",
    [
        MemoryConfig(long_term_len=40, threshold=None, keep_recent=4),
        MemoryConfig(method="moviechat", long_term_len=20, metric="dot", keep_recent=2),
    ],
    ids=["adaptive", "moviechat-dot"],
)
def test_consolidate_memory_matches_naive_merge(cfg: MemoryConfig, k: int) -> None:
    mem = stored_like(cfg)
    n0 = len(mem)
    got = consolidate_memory(mem, k)
    spans = torch.stack([mem.start_s, mem.end_s], 1)
    want_x, want_sz, want_sp, want_e = naive_merge(
        mem.tokens.float(),
        mem.sizes.tolist(),
        spans,
        k,
        ranking_metric(cfg.metric),
        "size",
        mem.embedding,
    )
    assert len(got) == k < n0
    assert got.sizes.tolist() == want_sz  # the merge order of the naive loop
    assert torch.stack([got.start_s, got.end_s], 1).tolist() == want_sp
    assert got.tokens.dtype == torch.float16
    torch.testing.assert_close(got.tokens.float(), want_x, rtol=2e-3, atol=2e-3)
    assert got.embedding is not None
    torch.testing.assert_close(got.embedding, want_e, rtol=1e-5, atol=1e-5)
    # sizes sum; spans ordered, contiguous, same extent
    assert int(got.sizes.sum()) == int(mem.sizes.sum()) == mem.frames_seen
    assert torch.equal(got.start_s[1:], got.end_s[:-1])
    assert (got.end_s > got.start_s).all()
    assert got.start_s[0] == mem.start_s[0] and got.end_s[-1] == mem.end_s[-1]
    # recent frames and identity untouched; the input is not modified
    assert got.recent_tokens is mem.recent_tokens and got.recent_timestamps is mem.recent_timestamps
    assert (got.video_id, got.frames_seen, got.memory_config) == (
        mem.video_id,
        mem.frames_seen,
        mem.memory_config,
    )
    assert len(mem) == n0
    # deterministic
    again = consolidate_memory(mem, k)
    assert torch.equal(again.tokens, got.tokens) and torch.equal(again.sizes, got.sizes)


def test_consolidate_memory_metric_and_guards() -> None:
    mem = stored_like(MemoryConfig(long_term_len=30, threshold=None, metric="dot"), seed=2)
    assert consolidate_memory(mem, len(mem)) is mem
    assert consolidate_memory(mem, 100) is mem
    with pytest.raises(ConfigError):
        consolidate_memory(mem, 0)
    # default metric is the memory's own; an explicit one can differ
    by_dot = consolidate_memory(mem, 5)
    by_dot_explicit = consolidate_memory(mem, 5, metric="dot")
    by_cos = consolidate_memory(mem, 5, metric="cosine")
    assert torch.equal(by_dot.sizes, by_dot_explicit.sizes)
    assert not torch.equal(by_dot.sizes, by_cos.sizes)


def test_consolidating_twice_equals_consolidating_once() -> None:
    """Re-consolidation continues the greedy merge: stopping at 12 slots and
    resuming to 4 is the same as going straight to 4 (same ties, same weights)."""
    mem = stored_like(MemoryConfig(long_term_len=40, threshold=None), seed=4)
    mem.tokens = mem.tokens.float()
    a = consolidate_memory(consolidate_memory(mem, 12), 4)
    b = consolidate_memory(mem, 4)
    assert a.sizes.tolist() == b.sizes.tolist()
    torch.testing.assert_close(a.tokens, b.tokens, rtol=1e-5, atol=1e-5)


def test_consolidated_memory_keeps_the_uneven_scenes() -> None:
    """An adaptive memory consolidated to K = #scenes slots keeps each scene's slot."""
    x, ts, bounds = synthetic_scenes(UNEVEN, n=8, d=32, noise=0.7, seed=5)
    b = MemoryBuilder(MemoryConfig(long_term_len=64, threshold=None))
    for i in range(0, x.shape[0], 64):
        b.add(FrameTokens(x[i : i + 64], ts[i : i + 64]))
    mem = consolidate_memory(b.finish("uneven", "none"), len(UNEVEN))
    assert scene_recall(mem.start_s, mem.end_s, bounds) == 1.0
    assert slot_purity(mem.start_s, mem.end_s, bounds) == 1.0


# --------------------------------------------------------------------------- config


#: MemoryConfig JSON as the previous version stored it beside every memory (its
#: default, which was MovieChat's window), and the config hash it was stored under.
OLD_DEFAULT_JSON = (
    '{"keep_recent": 18, "long_term_len": 256, "merge_to": 2, "method": "moviechat", '
    '"metric": "cosine", "overflow": "consolidate", "short_term_len": 18, '
    '"weighting": "size", "window": null}'
)
OLD_HASHES = {
    "moviechat": "6504f1193936a39a",
    "moviechat_reference": "85d2e93c6006f22c",
    "mbc": "b960b38438678e32",
}


#: The adaptive default before the local criterion (whole-frame cosine, no span
#: limit), as stored beside its memories (no max_span_s field), and its key.
OLD_ADAPTIVE_JSON = (
    '{"keep_recent": 0, "long_term_len": 256, "merge_to": 2, "method": "adaptive", '
    '"metric": "cosine", "overflow": "consolidate", "short_term_len": 18, '
    '"threshold": 0.85, "token_dtype": "float16", "token_scale": "token", '
    '"weighting": "size", "window": null}'
)
OLD_ADAPTIVE = MemoryConfig(metric="cosine", threshold=0.85, max_span_s=None)
OLD_ADAPTIVE_HASH = "f2297515bf956aac"


def test_the_old_adaptive_default_reads_back_and_is_not_reused() -> None:
    """Memories stored with the adaptive default before ``token_min`` and
    ``max_span_s`` read back as what they were (no span limit, whole-frame cosine)
    under the key they were stored with; the new default has another key, so an
    index run with it rebuilds them instead of silently reusing them."""
    old = MemoryConfig.from_dict(json.loads(OLD_ADAPTIVE_JSON))
    assert old == OLD_ADAPTIVE and old.max_span_s is None and old.metric == "cosine"
    assert index_config_hash(DecodeConfig(), old) == OLD_ADAPTIVE_HASH
    new = MemoryConfig()
    assert (new.metric, new.max_span_s) == ("token_min", 20.0)
    assert index_config_hash(DecodeConfig(), new) != OLD_ADAPTIVE_HASH
    # each new field is part of an adaptive key
    for change in ({"max_span_s": 30.0}, {"max_span_s": None}, {"metric": "cosine"}):
        other = dataclasses.replace(new, **change)  # type: ignore[arg-type]
        assert index_config_hash(DecodeConfig(), other) != index_config_hash(DecodeConfig(), new)
    # and of no other method's key: the presets keep theirs (test above)
    mc = MemoryConfig.preset("moviechat")
    assert index_config_hash(DecodeConfig(), mc) == index_config_hash(
        DecodeConfig(), dataclasses.replace(mc, max_span_s=5.0)
    )
    assert MemoryConfig.from_dict(json.loads(new.to_json())) == new
    with pytest.raises(ConfigError, match="max_span_s"):
        MemoryConfig(max_span_s=0.0)
    with pytest.raises(ConfigError, match="max_span_s"):
        MemoryConfig(max_span_s=math.inf)


def test_old_default_config_still_loads_with_the_same_key() -> None:
    old = MemoryConfig.from_dict(json.loads(OLD_DEFAULT_JSON))
    assert old == MemoryConfig.preset("moviechat")
    assert old.method == "moviechat" and old.keep_recent == 18
    # the stored-memory key is unchanged, so `--memory-preset moviechat` skips them
    for name, h in OLD_HASHES.items():
        assert index_config_hash(DecodeConfig(), MemoryConfig.preset(name)) == h, name
    assert index_config_hash(DecodeConfig(), old) == OLD_HASHES["moviechat"]


def test_presets_and_the_new_default() -> None:
    cfg = MemoryConfig()
    assert cfg.method == "adaptive" and cfg.keep_recent == 0 and cfg.threshold is not None
    assert MemoryConfig.preset("default") == cfg
    # the threshold is part of an adaptive key, and only of an adaptive key
    h = index_config_hash(DecodeConfig(), cfg)
    assert h != index_config_hash(DecodeConfig(), dataclasses.replace(cfg, threshold=0.5))
    mc = MemoryConfig.preset("moviechat")
    assert index_config_hash(DecodeConfig(), mc) == index_config_hash(
        DecodeConfig(), dataclasses.replace(mc, threshold=0.5)
    )
    mbc = MemoryConfig.preset("mbc")
    assert (mbc.method, mbc.long_term_len, mbc.keep_recent) == ("mbc", 256, 18)
    with pytest.raises(ConfigError, match="cosine"):
        MemoryConfig(threshold=1.5)  # would never merge: a cosine is at most 1
    assert MemoryConfig(metric="dot", threshold=40.0).threshold == 40.0
    # a new config round-trips through its JSON
    assert MemoryConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_a_memory_stored_with_the_old_default_loads_and_consolidates(tmp_path) -> None:
    """A store row whose config JSON is the old default (no threshold field) loads
    through the real store, and the QA-time consolidation works on it."""
    from videomem.memory.store import Store, VideoCommit, VideoRecord

    mem = stored_like(MemoryConfig.preset("moviechat"), t=100, seed=6)
    rec = VideoRecord(
        video_id="vid",
        encoder_fingerprint="enc",
        config_hash=OLD_HASHES["moviechat"],
        status="indexed",
        uri="/videos/old.mp4",
        config_json=json.dumps({"memory": json.loads(OLD_DEFAULT_JSON)}),
        frames_sampled=100,
    )
    with Store(tmp_path / "store", writer=True) as store:
        store.commit([VideoCommit(rec, mem)])
        got = store.load_memory("vid")
    assert got.memory_config == MemoryConfig.preset("moviechat")
    assert torch.equal(got.tokens, mem.tokens) and len(got) == len(mem) == 12
    small = consolidate_memory(got, 4)
    assert len(small) == 4 and int(small.sizes.sum()) == 100
    assert torch.equal(small.start_s[1:], small.end_s[:-1])


def test_token_storage_is_keyed_only_when_it_is_not_float16() -> None:
    # float16 (the default) leaves every key as it was before the fields existed
    assert index_config_hash(DecodeConfig(), OLD_ADAPTIVE) == OLD_ADAPTIVE_HASH
    for name, h in OLD_HASHES.items():
        assert index_config_hash(DecodeConfig(), MemoryConfig.preset(name)) == h, name
    base = OLD_ADAPTIVE
    fp16_slot = dataclasses.replace(base, token_scale="slot")  # scales unused by float16
    assert index_config_hash(DecodeConfig(), fp16_slot) == OLD_ADAPTIVE_HASH
    int8 = dataclasses.replace(base, token_dtype="int8")
    int8_slot = dataclasses.replace(int8, token_scale="slot")
    hashes = {index_config_hash(DecodeConfig(), c) for c in (base, int8, int8_slot)}
    assert len(hashes) == 3  # int8 is part of the key, and so is its scale
    assert MemoryConfig.from_dict(json.loads(int8_slot.to_json())) == int8_slot
    with pytest.raises(ConfigError, match="token dtype"):
        MemoryConfig(token_dtype="int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="token scale"):
        MemoryConfig(token_scale="row")  # type: ignore[arg-type]
