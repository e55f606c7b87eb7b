"""memory.merge against naive reference loops (recompute everything, every step)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from videomem.memory.merge import (
    adjacent_similarity,
    mbc_compress,
    merge_adjacent,
    pair_similarity,
)
from videomem.pipeline.errors import ConfigError

METRICS = ["cosine", "dot", "token_cosine", "token_min"]


def naive_sim(a: torch.Tensor, b: torch.Tensor, metric: str) -> float:
    """One pair, written the way the papers/reference code state it."""
    if metric == "dot":  # MovieChat code: mean of the N x N token dot-product matrix
        return float((a.double() @ b.double().T).mean())
    if metric == "cosine":
        return float(F.cosine_similarity(a.mean(0), b.mean(0), dim=0, eps=1e-8))
    if metric == "token_min":  # the lowest position's cosine at the frames' RMS norm
        n = a.shape[0]
        scale = sum(float(a[i] @ a[i]) + float(b[i] @ b[i]) for i in range(n)) / n
        return min(max(-1.0, 1.0 - float((a[i] - b[i]) @ (a[i] - b[i])) / scale) for i in range(n))
    return float(
        sum(F.cosine_similarity(a[i], b[i], dim=0, eps=1e-8) for i in range(a.shape[0]))
        / a.shape[0]
    )


def naive_merge(tokens, sizes, spans, target, metric, weighting, emb=None):
    """MovieChat's loop: recompute all adjacent similarities after every merge."""
    xs = [t.clone() for t in tokens]
    sz = [int(s) for s in sizes]
    sp = [list(s) for s in spans.tolist()]
    es = None if emb is None else [e.clone() for e in emb]
    while len(xs) > target:
        sims = [
            float(pair_similarity(xs[i][None], xs[i + 1][None], metric)) for i in range(len(xs) - 1)
        ]
        i = sims.index(max(sims))  # first maximum
        if weighting == "plain":
            new = (xs[i] + xs[i + 1]) / 2
            enew = None if es is None else (es[i] + es[i + 1]) / 2
        else:
            a, b = sz[i], sz[i + 1]
            new = (xs[i] * a + xs[i + 1] * b) / (a + b)
            enew = None if es is None else (es[i] * a + es[i + 1] * b) / (a + b)
        xs[i] = new
        del xs[i + 1]
        if es is not None:
            es[i] = enew
            del es[i + 1]
        sz[i] += sz[i + 1]
        del sz[i + 1]
        sp[i][1] = sp[i + 1][1]
        del sp[i + 1]
    return torch.stack(xs), sz, sp, None if es is None else torch.stack(es)


def frames(t: int, n: int = 4, d: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # a slow random walk, so adjacent frames are similar but not equal (like video)
    steps = torch.randn(t, n, d, generator=g)
    return torch.cumsum(steps, dim=0) * 0.3 + torch.randn(n, d, generator=g)


def unit_spans(t: int) -> torch.Tensor:
    ts = torch.arange(t + 1, dtype=torch.float64)
    return torch.stack([ts[:-1], ts[1:]], dim=1)


# --------------------------------------------------------------------------- similarity


@pytest.mark.parametrize("metric", METRICS)
def test_adjacent_similarity_matches_naive(metric: str) -> None:
    x = frames(9)
    got = adjacent_similarity(x, metric)
    want = torch.tensor([naive_sim(x[i], x[i + 1], metric) for i in range(8)])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_token_min_sees_a_change_in_a_few_positions() -> None:
    """Two of 49 positions replaced: every whole-frame average stays high, the lowest
    position does not. Noise on near-empty positions (tiny activations, random
    direction) is not read as change, since positions are scaled by the frame's norm."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(49, 64, generator=g)
    a[40:] *= 1e-3  # near-empty cells
    b = a + 0.05 * torch.randn(49, 64, generator=g) * a.norm(dim=-1, keepdim=True) / 8
    b[40:] = 1e-3 * torch.randn(9, 64, generator=g)  # their direction is noise
    assert float(pair_similarity(a, b, "token_min")) > 0.95
    assert float(pair_similarity(a, b, "token_cosine")) < 0.9  # the noise dominates it
    c = b.clone()
    c[[3, 17]] = torch.randn(2, 64, generator=g)  # something walks into two cells
    for metric in ("cosine", "token_cosine"):
        assert float(pair_similarity(a, c, metric)) > float(pair_similarity(a, c, "token_min"))
    assert float(pair_similarity(b, c, "cosine")) > 0.95
    assert float(pair_similarity(b, c, "token_min")) < 0.3
    assert float(pair_similarity(a, a, "token_min")) == 1.0


def test_dot_is_movichat_mean_token_dot_matrix() -> None:
    x = frames(2, n=32, d=64, seed=3)
    ref = (x[0] @ x[1].T).mean()
    torch.testing.assert_close(pair_similarity(x[0], x[1], "dot"), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("metric", METRICS)
def test_zero_tokens_have_finite_similarity(metric: str) -> None:
    x = torch.zeros(4, 3, 8)
    s = adjacent_similarity(x, metric)
    assert torch.isfinite(s).all() and s.shape == (3,)


def test_unknown_metric_is_config_error() -> None:
    with pytest.raises(ConfigError, match="metric"):
        adjacent_similarity(frames(3), "euclid")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- merge_adjacent


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("weighting", ["size", "plain"])
@pytest.mark.parametrize("t,target", [(18, 2), (30, 7), (5, 1), (12, 11)])
def test_merge_adjacent_matches_naive(metric: str, weighting: str, t: int, target: int) -> None:
    x = frames(t, seed=t)
    g = torch.Generator().manual_seed(1)
    sizes = torch.randint(1, 5, (t,), generator=g)
    spans = unit_spans(t)
    emb = torch.randn(t, 6, generator=g)
    x0 = x.clone()
    got = merge_adjacent(x, sizes, spans, target, metric, weighting, embedding=emb)  # type: ignore[arg-type]
    want_x, want_sz, want_sp, want_e = naive_merge(x, sizes, spans, target, metric, weighting, emb)
    assert got.sizes.tolist() == want_sz
    assert got.spans.tolist() == want_sp
    torch.testing.assert_close(got.tokens, want_x, rtol=1e-5, atol=1e-5)
    assert got.embedding is not None and want_e is not None
    torch.testing.assert_close(got.embedding, want_e, rtol=1e-5, atol=1e-5)
    # the carried similarity is exactly what a fresh computation gives
    torch.testing.assert_close(
        got.similarity, adjacent_similarity(got.tokens, metric), rtol=1e-5, atol=1e-5
    )
    assert torch.equal(x, x0), "input must not be modified"
    # properties: sizes sum, spans contiguous and ordered, dtype kept
    assert int(got.sizes.sum()) == int(sizes.sum())
    assert torch.equal(got.spans[1:, 0], got.spans[:-1, 1])
    assert got.spans[0, 0] == 0 and got.spans[-1, 1] == t
    assert got.sizes.dtype == sizes.dtype and got.spans.dtype == torch.float64


def test_size_weighting_is_the_mean_of_all_frames() -> None:
    x = frames(10)
    out = merge_adjacent(x, torch.ones(10, dtype=torch.long), unit_spans(10), 1)
    torch.testing.assert_close(out.tokens[0], x.mean(0), rtol=1e-5, atol=1e-5)


def test_precomputed_similarity_is_used() -> None:
    x = frames(8)
    sim = adjacent_similarity(x, "cosine")
    a = merge_adjacent(x, torch.ones(8, dtype=torch.long), unit_spans(8), 3)
    b = merge_adjacent(x, torch.ones(8, dtype=torch.long), unit_spans(8), 3, similarity=sim)
    assert torch.equal(a.tokens, b.tokens)
    # a deliberately different similarity changes the choice: it is really read
    fake = torch.zeros(7)
    fake[5] = 10.0
    c = merge_adjacent(x, torch.ones(8, dtype=torch.long), unit_spans(8), 7, similarity=fake)
    assert c.sizes.tolist() == [1, 1, 1, 1, 1, 2, 1]


def test_ties_go_to_the_earliest_pair() -> None:
    x = torch.ones(5, 2, 4)
    out = merge_adjacent(x, torch.ones(5, dtype=torch.long), unit_spans(5), 2, "dot", "plain")
    assert out.sizes.tolist() == [4, 1]
    assert out.spans.tolist() == [[0.0, 4.0], [4.0, 5.0]]


def test_merges_most_similar_pair_first() -> None:
    x = torch.stack([torch.full((2, 3), v) for v in [1.0, -1.0, -1.0, 1.0]])
    x[3, 0, 0] = 5.0  # frames 1 and 2 are identical: they merge first
    out = merge_adjacent(x, torch.ones(4, dtype=torch.long), unit_spans(4), 3)
    assert out.sizes.tolist() == [1, 2, 1]


def test_all_zero_tokens_no_nan() -> None:
    x = torch.zeros(6, 3, 5)
    out = merge_adjacent(x, torch.ones(6, dtype=torch.long), unit_spans(6), 2, "token_cosine")
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.similarity).all()
    assert int(out.sizes.sum()) == 6


def test_nothing_to_do_and_bad_arguments() -> None:
    x = frames(3)
    out = merge_adjacent(x, torch.ones(3, dtype=torch.long), unit_spans(3), 5)
    assert out.tokens is x and out.similarity.shape == (2,)
    empty = merge_adjacent(torch.zeros(0, 2, 2), torch.ones(0), torch.zeros(0, 2), 1)
    assert empty.tokens.shape == (0, 2, 2) and empty.similarity.shape == (0,)
    with pytest.raises(ConfigError, match="target_len"):
        merge_adjacent(x, torch.ones(3), unit_spans(3), 0)
    with pytest.raises(ConfigError, match="sizes"):
        merge_adjacent(x, torch.ones(4), unit_spans(3), 1)
    with pytest.raises(ConfigError, match="weighting"):
        merge_adjacent(x, torch.ones(3), unit_spans(3), 1, weighting="median")  # type: ignore[arg-type]


def test_half_precision_tokens() -> None:
    x = frames(10).half()
    out = merge_adjacent(x, torch.ones(10, dtype=torch.long), unit_spans(10), 3)
    assert out.tokens.dtype == torch.float16 and out.similarity.dtype == torch.float32


# --------------------------------------------------------------------------- MA-LMM


def malmm_step(bank: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MA-LMM's memory_bank_compress written out for one batch element, naively:
    per position, merge the most similar adjacent pair (right into left)."""
    t, n, _ = bank.shape
    out_bank, out_size = [], []
    for p in range(n):
        sims = [
            float(F.cosine_similarity(bank[i, p], bank[i + 1, p], dim=0, eps=1e-8))
            for i in range(t - 1)
        ]
        k = sims.index(max(sims))
        col = [bank[i, p] for i in range(t)]
        cnt = [size[i, p] for i in range(t)]
        col[k] = (col[k] * cnt[k] + col[k + 1] * cnt[k + 1]) / (cnt[k] + cnt[k + 1])
        cnt[k] = cnt[k] + cnt[k + 1]
        del col[k + 1], cnt[k + 1]
        out_bank.append(torch.stack(col))
        out_size.append(torch.stack(cnt))
    return torch.stack(out_bank, 1), torch.stack(out_size, 1)


@pytest.mark.parametrize("t,target", [(12, 6), (9, 8), (6, 1)])
def test_mbc_matches_naive_malmm_loop(t: int, target: int) -> None:
    x = frames(t, n=5, d=8, seed=t)
    counts = torch.randint(1, 4, (t, 5), generator=torch.Generator().manual_seed(2)).float()
    starts = torch.arange(t, dtype=torch.float64)[:, None].expand(t, 5).contiguous()
    got = mbc_compress(x, counts, target, starts=starts)
    wb, wc = x.clone(), counts.clone()
    for _ in range(t - target):
        wb, wc = malmm_step(wb, wc)
    torch.testing.assert_close(got.bank, wb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.counts, wc)
    assert got.bank.shape == (target, 5, 8)
    torch.testing.assert_close(got.counts.sum(0), counts.sum(0))
    assert got.starts is not None
    assert (got.starts[1:] > got.starts[:-1]).all(), "per position, runs stay ordered"
    if target > 1:
        want_sim = F.cosine_similarity(got.bank[:-1], got.bank[1:], dim=-1)
        torch.testing.assert_close(got.similarity, want_sim, rtol=1e-5, atol=1e-5)


def test_mbc_counts_dtype_ties_and_zeros() -> None:
    x = torch.zeros(5, 2, 3)
    c = torch.ones(5, 2, dtype=torch.long)
    out = mbc_compress(x, c, 2)
    assert out.counts.dtype == torch.long
    assert out.counts.tolist() == [[4, 4], [1, 1]]  # all ties: earliest pair every time
    assert torch.isfinite(out.bank).all()
    with pytest.raises(ConfigError):
        mbc_compress(x, c[:3], 2)
    with pytest.raises(ConfigError):
        mbc_compress(x, c, 0)
    same = mbc_compress(x, c, 9)
    assert same.bank is x
