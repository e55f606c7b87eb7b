"""memory.builder against naive whole-list reference builders, plus properties and edges."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from videomem.memory.builder import MemoryBuilder
from videomem.memory.config import MemoryConfig
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import ConfigError, DecodeError, EncoderError
from videomem.pipeline.types import FrameTokens

from tests.memory.test_merge import malmm_step, naive_merge


def video(t: int, n: int = 4, d: int = 16, e: int | None = 5, seed: int = 0, fps: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.cumsum(torch.randn(t, n, d, generator=g), 0) * 0.3 + torch.randn(n, d, generator=g)
    ts = torch.arange(t, dtype=torch.float64) / fps + 3.0
    emb = None if e is None else torch.randn(t, e, generator=g)
    return x, ts, emb


def build(cfg: MemoryConfig, x, ts, emb, batch: int = 7) -> VideoMemory:
    b = MemoryBuilder(cfg)
    for i in range(0, x.shape[0], batch):
        b.add(
            FrameTokens(
                x[i : i + batch], ts[i : i + batch], None if emb is None else emb[i : i + batch]
            )
        )
    assert b.frames_seen == x.shape[0]
    return b.finish("vid", "enc")


# --------------------------------------------------------------------------- naive references


def reference_moviechat_code(
    x: torch.Tensor, window: int, short_len: int, merge_to: int, long_len: int
):
    """MovieChat's released loop: per window of frames, FIFO into the short buffer, merge
    with mean(a @ b.T) similarity and (a + b) / 2 until ``merge_to`` remain, append to
    long memory, clear the buffer; keep the newest ``long_len`` long-memory frames."""
    long_mem: list[torch.Tensor] = []
    for w in range(0, x.shape[0], window):
        buf: list[torch.Tensor] = []
        for frame in x[w : w + window]:
            if len(buf) == short_len:
                buf.pop(0)
            buf.append(frame)
        while len(buf) > merge_to:
            sims = [float(torch.mean(buf[i] @ buf[i + 1].T)) for i in range(len(buf) - 1)]
            k = sims.index(max(sims))
            buf[k] = (buf[k] + buf[k + 1]) / 2
            del buf[k + 1]
        long_mem.extend(buf)
        long_mem = long_mem[-long_len:]
    return torch.stack(long_mem)


def reference_builder(cfg: MemoryConfig, x: torch.Tensor, ts: torch.Tensor, emb):
    """Whole-list reference of the moviechat method (recomputes every similarity)."""
    cap = cfg.window or cfg.short_term_len
    t = x.shape[0]
    step = float(ts[-1] - ts[0]) / (t - 1) if t > 1 else 0.0
    ends = torch.cat([ts[1:], ts[-1:] + step])
    spans = torch.stack([ts, ends], 1)
    lt_x, lt_sz, lt_sp, lt_e = [], [], [], []
    for w in range(0, t, cap):
        sl = slice(w, w + cap)
        m = x[sl].shape[0]
        mx, msz, msp, me = naive_merge(
            x[sl],
            [1] * m,
            spans[sl],
            cfg.merge_to,
            cfg.metric,
            cfg.weighting,
            None if emb is None else emb[sl],
        )
        lt_x += list(mx)
        lt_sz += msz
        lt_sp += msp
        lt_e += [] if me is None else list(me)
        if len(lt_x) > cfg.long_term_len:
            if cfg.overflow == "drop_oldest":
                k = len(lt_x) - cfg.long_term_len
                lt_x, lt_sz, lt_sp, lt_e = lt_x[k:], lt_sz[k:], lt_sp[k:], lt_e[k:]
            else:
                mx, lt_sz, lt_sp, me = naive_merge(
                    torch.stack(lt_x),
                    lt_sz,
                    torch.tensor(lt_sp, dtype=torch.float64),
                    cfg.long_term_len,
                    cfg.metric,
                    cfg.weighting,
                    torch.stack(lt_e) if lt_e else None,
                )
                lt_x = list(mx)
                lt_e = [] if me is None else list(me)
    return (
        torch.stack(lt_x),
        lt_sz,
        torch.tensor(lt_sp, dtype=torch.float64),
        torch.stack(lt_e) if lt_e else None,
    )


# --------------------------------------------------------------------------- equivalence


def test_reference_preset_reproduces_moviechat_code() -> None:
    # The preset with a small long-term budget so that dropping the oldest is exercised.
    cfg = dataclasses.replace(MemoryConfig.preset("moviechat_reference"), long_term_len=10)
    x, ts, emb = video(61, n=8, d=12)
    mem = build(cfg, x, ts, emb)
    want = reference_moviechat_code(x, window=8, short_len=18, merge_to=2, long_len=10)
    torch.testing.assert_close(mem.tokens, want, rtol=1e-5, atol=1e-5)
    # every window of 8 frames became 2 slots (the last window had 5 frames)
    assert mem.sizes.view(5, 2).sum(1).tolist() == [8, 8, 8, 8, 5]
    assert int(mem.sizes.sum()) < mem.frames_seen  # oldest slots were dropped


def test_reference_preset_values() -> None:
    cfg = MemoryConfig.preset("moviechat_reference")
    assert (cfg.metric, cfg.weighting, cfg.window, cfg.short_term_len, cfg.merge_to) == (
        "dot",
        "plain",
        8,
        18,
        2,
    )
    assert (cfg.long_term_len, cfg.overflow) == (256, "drop_oldest")


MC = "moviechat"
CONFIGS = [
    MemoryConfig(method=MC, long_term_len=12),
    MemoryConfig(method=MC, long_term_len=12, metric="dot", weighting="plain"),
    MemoryConfig(method=MC, long_term_len=9, metric="token_cosine", short_term_len=6, merge_to=3),
    MemoryConfig(method=MC, long_term_len=7, overflow="drop_oldest", window=5),
    MemoryConfig(method=MC, long_term_len=5, short_term_len=4, merge_to=4),
]


@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: f"{c.metric}-{c.weighting}-{c.overflow}-{c.window}"
)
def test_moviechat_builder_matches_reference(cfg: MemoryConfig) -> None:
    x, ts, emb = video(131, seed=cfg.long_term_len)
    mem = build(cfg, x, ts, emb)
    want_x, want_sz, want_sp, want_e = reference_builder(cfg, x, ts, emb)
    assert mem.sizes.tolist() == want_sz
    torch.testing.assert_close(torch.stack([mem.start_s, mem.end_s], 1), want_sp)
    torch.testing.assert_close(mem.tokens, want_x, rtol=1e-4, atol=1e-4)
    assert mem.embedding is not None
    torch.testing.assert_close(mem.embedding, want_e, rtol=1e-4, atol=1e-4)


def test_mbc_builder_matches_naive_malmm() -> None:
    cfg = MemoryConfig(method="mbc", long_term_len=6)
    x, ts, emb = video(20, n=3, d=8)
    mem = build(cfg, x, ts, emb, batch=3)
    bank, size = x[:6].clone(), torch.ones(6, 3)
    ebank, esize = emb[:6, None].clone(), torch.ones(6, 1)
    for f in range(6, 20):
        bank, size = malmm_step(
            torch.cat([bank, x[f : f + 1]]), torch.cat([size, torch.ones(1, 3)])
        )
        ebank, esize = malmm_step(
            torch.cat([ebank, emb[f : f + 1, None]]), torch.cat([esize, torch.ones(1, 1)])
        )
    torch.testing.assert_close(mem.tokens, bank, rtol=1e-5, atol=1e-5)
    assert mem.embedding is not None
    torch.testing.assert_close(mem.embedding, ebank[:, 0], rtol=1e-5, atol=1e-5)
    assert int(mem.sizes.sum()) == 20
    assert (mem.sizes - size.mean(1)).abs().max() < 1.0  # rounded mean counts


# --------------------------------------------------------------------------- properties

ALL = [
    *CONFIGS,
    MemoryConfig(method="mbc", long_term_len=10),
    MemoryConfig.preset("moviechat_reference"),
    MemoryConfig(long_term_len=10, keep_recent=4),  # adaptive, the default
    MemoryConfig(long_term_len=6, threshold=None, metric="dot"),
    MemoryConfig(),
]


@pytest.mark.parametrize(
    "cfg", ALL, ids=lambda c: f"{c.method}-{c.metric}-{c.overflow}-{c.long_term_len}"
)
@pytest.mark.parametrize("t", [1, 3, 17, 18, 19, 100])
def test_properties(cfg: MemoryConfig, t: int) -> None:
    x, ts, emb = video(t, seed=t)
    mem = build(cfg, x, ts, emb)
    L = len(mem)
    assert 1 <= L <= cfg.long_term_len
    assert mem.tokens.shape == (L, 4, 16) and mem.tokens.dtype == torch.float32
    assert mem.sizes.dtype == torch.int64 and (mem.sizes >= 1).all()
    assert mem.start_s.dtype == mem.end_s.dtype == torch.float64
    assert mem.embedding is not None and mem.embedding.shape == (L, 5)
    assert torch.isfinite(mem.tokens).all()
    assert mem.frames_seen == t
    assert (mem.start_s[1:] > mem.start_s[:-1]).all(), "order preserved"
    assert (mem.end_s >= mem.start_s).all()
    step = 0.5 if t > 1 else 0.0
    assert float(mem.end_s[-1]) == pytest.approx(float(ts[-1]) + step)
    if cfg.overflow == "consolidate":
        assert int(mem.sizes.sum()) == t
        assert float(mem.start_s[0]) == float(ts[0])
    if cfg.method != "mbc":
        assert torch.equal(mem.start_s[1:], mem.end_s[:-1]), "contiguous, no gaps or overlaps"
    keep = min(cfg.keep_recent, t)
    if keep == 0:
        assert mem.recent_tokens is None and mem.recent_timestamps is None
        return
    assert mem.recent_tokens is not None and mem.recent_timestamps is not None
    assert torch.equal(mem.recent_tokens, x[t - keep :])
    assert torch.equal(mem.recent_timestamps, ts[t - keep :])


@pytest.mark.parametrize(
    "cfg",
    [
        MemoryConfig(long_term_len=8),
        MemoryConfig(method=MC, long_term_len=8),
        MemoryConfig(method="mbc", long_term_len=8),
    ],
)
def test_batching_does_not_change_the_result(cfg: MemoryConfig) -> None:
    x, ts, emb = video(77)
    a, b, c = (build(cfg, x, ts, emb, batch=k) for k in (1, 13, 77))
    for m in (b, c):
        assert torch.equal(a.tokens, m.tokens) and torch.equal(a.sizes, m.sizes)
        assert torch.equal(a.start_s, m.start_s) and torch.equal(a.end_s, m.end_s)


def test_memory_is_bounded() -> None:
    """Tensors the builder holds do not grow with the number of frames."""

    def held_bytes(b: MemoryBuilder) -> int:
        seen: set[int] = set()
        total = 0
        stack: list[object] = list(vars(b).values())
        while stack:
            o = stack.pop()
            if isinstance(o, torch.Tensor):
                if o.untyped_storage().data_ptr() not in seen:
                    seen.add(o.untyped_storage().data_ptr())
                    total += o.untyped_storage().nbytes()
            elif isinstance(o, list | tuple) or type(o).__name__ == "deque":
                stack.extend(o)  # type: ignore[arg-type]
            elif dataclasses.is_dataclass(o) and not isinstance(o, type):
                stack.extend(vars(o).values())
        return total

    for cfg in [
        MemoryConfig(long_term_len=16),
        MemoryConfig(long_term_len=16, keep_recent=5),
        MemoryConfig(method=MC, long_term_len=16),
        MemoryConfig(method="mbc", long_term_len=16),
        MemoryConfig.preset("moviechat_reference"),
    ]:
        b = MemoryBuilder(cfg)
        sizes = []
        for i in range(0, 2000, 10):
            x = torch.randn(10, 4, 8)
            b.add(FrameTokens(x, torch.arange(i, i + 10, dtype=torch.float64)))
            if i in (500, 1990):
                sizes.append(held_bytes(b))
        assert sizes[0] == sizes[1] and sizes[0] > 0


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("method", ["adaptive", "moviechat"])
def test_fewer_frames_than_buffer_and_one_frame(method: str) -> None:
    cfg = MemoryConfig(method=method, threshold=None)  # type: ignore[arg-type]
    x, ts, emb = video(5)
    mem = build(cfg, x, ts, emb)
    # moviechat merges a short video's frames down to merge_to; adaptive keeps them
    assert len(mem) == (5 if method == "adaptive" else 2) and mem.sizes.sum() == 5
    one = build(cfg, x[:1], ts[:1], emb[:1])
    assert len(one) == 1 and one.sizes.tolist() == [1]
    assert torch.equal(one.tokens[0], x[0])
    assert one.start_s.tolist() == one.end_s.tolist() == [3.0]


def test_no_frames_is_a_readable_decode_error() -> None:
    b = MemoryBuilder(MemoryConfig())
    b.add(FrameTokens(torch.zeros(0, 4, 8), torch.zeros(0, dtype=torch.float64)))
    with pytest.raises(DecodeError, match="no frames"):
        b.finish("vid", "enc")


@pytest.mark.parametrize("method", ["adaptive", "moviechat", "mbc"])
def test_identical_and_zero_frames(method: str) -> None:
    cfg = MemoryConfig(method=method, long_term_len=4)  # type: ignore[arg-type]
    for x in (torch.ones(50, 3, 4), torch.zeros(50, 3, 4)):
        ts = torch.arange(50, dtype=torch.float64)
        mem = build(cfg, x, ts, None)
        assert torch.isfinite(mem.tokens).all()
        torch.testing.assert_close(mem.tokens, x[: len(mem)])
        assert int(mem.sizes.sum()) == 50 and mem.embedding is None


def test_bad_input_is_encoder_error() -> None:
    b = MemoryBuilder(MemoryConfig())
    b.add(FrameTokens(torch.zeros(2, 4, 8), torch.tensor([0.0, 1.0], dtype=torch.float64)))
    with pytest.raises(EncoderError, match="non-decreasing"):
        b.add(FrameTokens(torch.zeros(1, 4, 8), torch.tensor([0.5], dtype=torch.float64)))
    with pytest.raises(EncoderError, match="changed shape"):
        b.add(FrameTokens(torch.zeros(1, 4, 9), torch.tensor([2.0], dtype=torch.float64)))
    with pytest.raises(EncoderError, match="changed shape"):
        b.add(
            FrameTokens(
                torch.zeros(1, 4, 8), torch.tensor([2.0], dtype=torch.float64), torch.zeros(1, 3)
            )
        )
    with pytest.raises(EncoderError, match=r"\[B, N, D\]"):
        b.add(FrameTokens(torch.zeros(4, 8), torch.tensor([2.0], dtype=torch.float64)))
    with pytest.raises(EncoderError, match="finite"):
        b.add(FrameTokens(torch.zeros(1, 4, 8), torch.tensor([float("nan")], dtype=torch.float64)))
    b.finish("v", "e")
    with pytest.raises(RuntimeError):
        b.add(FrameTokens(torch.zeros(1, 4, 8), torch.tensor([3.0], dtype=torch.float64)))


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="window"):
        MemoryConfig(method=MC, window=19)
    with pytest.raises(ConfigError, match="mbc"):
        MemoryConfig(method="mbc", overflow="drop_oldest")
    with pytest.raises(ConfigError, match="adaptive"):
        MemoryConfig(window=4)
    with pytest.raises(ConfigError, match="threshold"):
        MemoryConfig(threshold=float("nan"))
    with pytest.raises(ConfigError, match="merge_to"):
        MemoryConfig(merge_to=0)


def test_half_precision_input_and_memory_fields() -> None:
    x, ts, emb = video(30)
    cfg = MemoryConfig.preset("moviechat")
    mem = build(cfg, x.half(), ts, emb)
    assert mem.tokens.dtype == torch.float32
    assert mem.video_id == "vid" and mem.encoder_fingerprint == "enc"
    assert mem.memory_config == cfg
    # the merged embedding is the size-weighted mean of its frames' embeddings
    first = int(mem.sizes[0])
    assert mem.embedding is not None
    torch.testing.assert_close(mem.embedding[0], emb[:first].mean(0), rtol=1e-5, atol=1e-5)
    assert F.cosine_similarity(mem.tokens[0].flatten(), x[:first].mean(0).flatten(), dim=0) > 0.999
