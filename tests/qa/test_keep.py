"""QA over a memory with token dropping (``VideoMemory.keep``): prompts lay out only
the stored tokens, in grid order, per family; features are exactly those tokens;
``keep=None`` (and a memory built at tau = 0) answers as today; a QA-time merge keeps
the union of the merged slots' positions.

Tiny random checkpoints of the real architectures, fp32, CPU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from videomem.memory.config import MemoryConfig
from videomem.memory.redundancy import drop_tokens, position_distance
from videomem.memory.types import VideoMemory
from videomem.pipeline.types import FrameTokens

from tests.qa.test_answer import _loaded as loaded

QUESTION = "what happens in this video ?"
FAMILIES = ["llava", "llava_onevision", "llava_next_video", "smolvlm", "idefics3", "blip2"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-cache")


def _loaded(family: str, cache_dir: Path):  # type: ignore[no-untyped-def]
    """The family's tiny encoder and QA model (loaded once, shared with test_answer)."""
    return loaded(family, cache_dir)[1:]


def _memory(tokens: torch.Tensor, fp: str, keep: torch.Tensor | None) -> VideoMemory:
    n = int(tokens.shape[0])
    ts = torch.arange(n, dtype=torch.float64)
    return VideoMemory(
        video_id="v",
        tokens=tokens,
        sizes=torch.ones(n, dtype=torch.int64),
        start_s=ts,
        end_s=ts + 1,
        embedding=None,
        encoder_fingerprint=fp,
        memory_config=MemoryConfig(),
        frames_seen=n,
        keep=keep,
    )


def _tokens(enc, n: int = 4) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Frames sharing most of their content, so some positions barely change."""
    h, w = enc.input_size
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    frames = np.stack([0.8 * base + 0.2 * rng.integers(0, 256, (h, w, 3)) for _ in range(n)])
    return enc.encode(frames.astype(np.uint8), np.arange(n, dtype=np.float64)).tokens


def _dropped(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense tokens and keep at the median change between slots: a mixed mask."""
    tau = float(position_distance(tokens[1:], tokens[:-1]).median())
    dense, keep = drop_tokens(tokens, tau)
    assert keep is not None
    later = keep[1:]
    assert 0 < int(later.sum()) < later.numel(), "vacuous: nothing or everything dropped"
    return dense, keep


def _expected_rows(qa, dense: torch.Tensor, keep: torch.Tensor, fp: str) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The dense features at the kept positions, slot by slot, in grid order (OneVision:
    a newline after each grid row with kept tokens, and its one trailing newline)."""
    L, N = keep.shape
    full = qa.visual_features(dense, fp)
    grid = full[: L * N].reshape(L, N, -1)
    if not qa.layout.suffix_rows:
        return torch.cat([grid[s, i][None] for s in range(L) for i in range(N) if keep[s, i]])
    side = int(round(N**0.5))
    newline = full[-1:]
    rows = []
    for s in range(L):
        for r in range(side):
            cols = [c for c in range(side) if keep[s, r * side + c]]
            rows += [grid[s, r * side + c][None] for c in cols]
            if cols:
                rows.append(newline)
    return torch.cat([*rows, newline])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_and_features_hold_only_the_kept_tokens(family: str, cache_dir: Path) -> None:
    from videomem.qa import GenerationSettings, answer
    from videomem.qa.layout import Span, row_counts

    enc, qa = _loaded(family, cache_dir)
    dense, keep = _dropped(_tokens(enc))
    fp = enc.fingerprint
    spans = [Span(float(i), float(i) + 1) for i in range(len(keep))]
    counts = qa.layout.slot_counts(keep, int(keep.shape[1]))
    for style in ("native", "timestamped"):
        prompt = qa.prompts.build(QUESTION, spans, counts, style=style, duration_s=4.0)  # type: ignore[arg-type]
        want = int(keep.sum())
        if qa.layout.suffix_rows:  # OneVision: + a newline per grid row with tokens, + 1
            want += int(row_counts(keep).sum()) + 1
        assert prompt.n_visual == want
    feats = qa.visual_features(dense, fp, keep)
    assert feats.shape[0] == want
    assert torch.equal(feats, _expected_rows(qa, dense, keep, fp))
    full_len = len(qa.prompts.build(QUESTION, spans, int(keep.shape[1])).ids)
    assert len(prompt.ids) < full_len
    (a,) = answer(qa, _memory(dense, fp, keep), [QUESTION], GenerationSettings(max_new_tokens=6))
    assert a.status == "answered", a.error
    assert a.prompt_tokens == len(prompt.ids)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llava", "llava_onevision", "smolvlm", "blip2"])
def test_a_memory_built_at_tau_zero_answers_as_today(family: str, cache_dir: Path) -> None:
    from videomem.qa import GenerationSettings, answer

    enc, qa = _loaded(family, cache_dir)
    tokens = _tokens(enc)
    dense, keep = drop_tokens(tokens, 0.0)
    assert keep is None and dense is tokens
    settings = GenerationSettings(max_new_tokens=8)
    qs = [QUESTION, "describe the frame"]
    today = answer(qa, _memory(tokens, enc.fingerprint, None), qs, settings)
    dropped = answer(qa, _memory(dense, enc.fingerprint, keep), qs, settings)
    assert [a.tokens for a in dropped] == [a.tokens for a in today]
    assert [a.prompt_tokens for a in dropped] == [a.prompt_tokens for a in today]
    assert all(len(a.tokens) >= 2 for a in today), "vacuous: the tiny LM stopped at once"
    if not qa.layout.suffix_rows:  # every position kept lays out as keep=None
        full = torch.ones(tokens.shape[:2], dtype=torch.bool)
        every = answer(qa, _memory(tokens, enc.fingerprint, full), qs, settings)
        assert [a.tokens for a in every] == [a.tokens for a in today]
        assert torch.equal(
            qa.visual_features(tokens, enc.fingerprint, full),
            qa.visual_features(tokens, enc.fingerprint),
        )


def test_int_and_per_slot_counts_lay_out_the_same() -> None:
    from videomem.qa.layout import Span, layout_for

    spans = [Span(0.0, 1.0), Span(1.0, 2.0)]
    for kind in ("llava", "llava_onevision", "llava_next_video", "smolvlm", "idefics3", "blip-2"):
        layout = layout_for(kind)
        for style in ("native", "timestamped"):
            one = layout.expand(spans, 4, style, 2.0)  # type: ignore[arg-type]
            per = layout.expand(spans, [4, 4], style, 2.0)  # type: ignore[arg-type]
            assert one == per
            fewer = layout.expand(spans, [4, 1], style, 2.0)  # type: ignore[arg-type]
            ft = layout.feature_token
            assert "".join(fewer).count(ft) == "".join(one).count(ft) - 3


def test_slot_counts_per_family() -> None:
    from videomem.qa.layout import layout_for

    keep = torch.zeros(2, 9, dtype=torch.bool)
    keep[0] = True
    keep[1, [0, 1, 7]] = True  # rows 0 and 2 of a 3x3 grid
    assert layout_for("llava").slot_counts(None, 9) == 9
    assert layout_for("llava").slot_counts(keep, 9) == [9, 3]
    assert layout_for("blip-2").slot_counts(keep, 9) == [9, 3]
    assert layout_for("llava_onevision").slot_counts(keep, 9) == [9 + 3, 3 + 2]
    assert layout_for("llava_onevision").slot_counts(None, 9) == 9
    assert layout_for("moviechat").slot_counts(keep, 9) == 9  # reads the dense tokens
    with pytest.raises(ValueError, match="square"):
        layout_for("llava_onevision").slot_counts(torch.ones(1, 8, dtype=torch.bool), 8)


def test_qa_time_merge_keeps_the_union_of_positions() -> None:
    from videomem.memory import consolidate_memory

    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(6, 4, 8, generator=g)
    keep = torch.rand(6, 4, generator=g) > 0.5
    keep[0] = True
    mem = _memory(tokens, "", keep)
    mem = dataclasses.replace(mem, sizes=torch.tensor([1, 2, 1, 3, 1, 1]))
    out = consolidate_memory(mem, 3)
    assert out.keep is not None and out.keep.shape == (3, 4)
    ends = torch.cumsum(mem.sizes, 0).tolist()
    a = 0
    for j, size in enumerate(torch.cumsum(out.sizes, 0).tolist()):
        b = ends.index(size) + 1
        assert torch.equal(out.keep[j], keep[a:b].any(0))
        a = b
    assert a == 6
    assert consolidate_memory(_memory(tokens, "", None), 3).keep is None


def test_fit_and_views_carry_keep() -> None:
    from videomem.qa.fit import _merged, limit_slots
    from videomem.qa.visual import breakpoint_visual, global_visual

    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(5, 4, 8, generator=g)
    keep = torch.rand(5, 4, generator=g) > 0.5
    keep[0] = True
    mem = _memory(tokens, "", keep)
    view = global_visual(mem)
    assert view.keep is keep
    merged = _merged(view, 2, MemoryConfig())
    assert merged.keep is not None and merged.keep.shape == (2, 4)
    assert int(merged.keep.sum()) >= int(keep.any(0).sum())
    assert limit_slots(view, 2).keep.shape == (2, 4)  # type: ignore[union-attr]
    recent = dataclasses.replace(
        mem,
        recent_tokens=torch.randn(2, 4, 8, generator=g),
        recent_timestamps=torch.tensor([5.2, 5.5], dtype=torch.float64),
    )
    bp = breakpoint_visual(recent, 5.5)
    assert bp.recent == 2 and bp.keep is not None
    assert torch.equal(bp.keep[:5], keep) and bool(bp.keep[5:].all())
    assert breakpoint_visual(_memory(tokens, "", None), 3.0).keep is None


def test_a_question_aware_cut_keeps_each_slots_positions() -> None:
    """A relevant slot kept whole keeps its own positions; each merged gap the union
    of its slots'."""
    from videomem.qa.fit import cut_view
    from videomem.qa.visual import global_visual

    g = torch.Generator().manual_seed(2)
    tokens = torch.randn(12, 4, 8, generator=g)
    keep = torch.rand(12, 4, generator=g) > 0.5
    keep[0] = True
    view = global_visual(_memory(tokens, "", keep))
    scores = torch.zeros(12)
    scores[7] = 1.0  # one slot far above the rest
    cut = cut_view(view, 4, MemoryConfig(), scores)
    assert cut.kept_slots == (7,) and cut.keep is not None and cut.keep.shape == (4, 4)
    shown = [round(s.start_s) for s in cut.spans]
    assert 7 in shown
    j = shown.index(7)
    assert torch.equal(cut.keep[j], keep[7]) and torch.equal(cut.tokens[j], tokens[7])
    assert torch.equal(cut.keep[j + 1], keep[8:].any(0))  # the gap after it, merged to one
    assert (
        cut_view(global_visual(_memory(tokens, "", None)), 4, MemoryConfig(), scores).keep is None
    )


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llava_onevision", "smolvlm"])
def test_fitting_and_breakpoints_over_a_memory_with_keep(family: str, cache_dir: Path) -> None:
    from videomem.qa import GenerationSettings, Question, answer

    enc, qa = _loaded(family, cache_dir)
    dense, keep = _dropped(_tokens(enc, n=6))
    mem = _memory(dense, enc.fingerprint, keep)
    (whole,) = answer(qa, mem, [QUESTION], GenerationSettings(max_new_tokens=4))
    assert whole.status == "answered" and whole.k is None
    budget = whole.prompt_tokens + 4 - 1  # one token short: QA-time merge must run
    (fitted,) = answer(
        qa, mem, [QUESTION], GenerationSettings(max_new_tokens=4, max_context=budget)
    )
    assert fitted.status == "answered", fitted.error
    assert fitted.k is not None and fitted.k < len(mem)
    assert fitted.prompt_tokens + 4 <= budget
    (at,) = answer(qa, mem, [Question(QUESTION, time_s=3.0)], GenerationSettings(max_new_tokens=4))
    assert at.status == "answered", at.error
    assert at.slots < len(mem)


@pytest.mark.slow
def test_a_stored_memory_with_dropping_answers_from_its_kept_tokens(
    tmp_path: Path, cache_dir: Path
) -> None:
    """End to end: frames encoded by a tiny OneVision, built with ``token_tau``, committed
    to a real LanceDB store and read back; the answer is the in-process memory's, and the
    prompt is shorter than the same memory's without dropping by the tokens not stored."""
    from videomem.memory.builder import MemoryBuilder
    from videomem.memory.store import Store
    from videomem.memory.store.schema import VideoCommit
    from videomem.qa import GenerationSettings, answer

    from tests.memory.store.test_store import record

    enc, qa = _loaded("llava_onevision", cache_dir)
    x = _tokens(enc, n=6)
    tau = float(position_distance(x[1:], x[:-1]).median())
    cfg = MemoryConfig(threshold=None, long_term_len=6)

    def built(c: MemoryConfig) -> VideoMemory:
        b = MemoryBuilder(c)
        b.add(FrameTokens(x, torch.arange(6, dtype=torch.float64)))
        mem = b.finish("v", enc.fingerprint)
        mem.tokens = mem.tokens.half()  # what the store holds, bit for bit
        return mem

    off, on = built(cfg), built(dataclasses.replace(cfg, token_tau=tau))
    assert on.keep is not None and not bool(on.keep.all())
    with Store(tmp_path / "s", writer=True) as st:
        st.commit([VideoCommit(record("on", enc.fingerprint, "h1"), on)])
        st.commit([VideoCommit(record("off", enc.fingerprint, "h0"), off)])
        stored_on, stored_off = st.load_memory("on"), st.load_memory("off")
    assert stored_off.keep is None and stored_on.keep is not None
    assert torch.equal(stored_on.keep, on.keep)
    settings = GenerationSettings(max_new_tokens=4)
    (a_stored,) = answer(qa, stored_on, [QUESTION], settings)
    (a_built,) = answer(qa, on, [QUESTION], settings)
    (a_off,) = answer(qa, stored_off, [QUESTION], settings)
    assert a_stored.status == "answered", a_stored.error
    assert (a_stored.answer, a_stored.prompt_tokens) == (a_built.answer, a_built.prompt_tokens)
    side = int(round(on.keep.shape[1] ** 0.5))
    rows_with_tokens = int(on.keep.view(len(on), side, side).any(2).sum())
    # without dropping: every token, the one trailing newline; with: the kept ones plus
    # a newline after each grid row that has any, and the trailing one
    dropped = on.keep.numel() - int(on.keep.sum())
    assert a_off.prompt_tokens - a_stored.prompt_tokens == dropped - rows_with_tokens
