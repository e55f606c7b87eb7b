"""Question-aware cuts, unit level: which slots stay whole (``qa.selection``), how slots
are scored (``qa.relevance``, the real all-MiniLM-L6-v2 and a tiny CLIP's text tower),
the cut of a hand-made view (``qa.fit.cut_view``) against the uniform merge, the
timeline's question-aware fit, and the setting's resume key."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch
from videomem.memory.config import MemoryConfig
from videomem.pipeline.errors import ConfigError
from videomem.pipeline.transcript import SpeechSegment
from videomem.qa.fit import _merged, cut_view
from videomem.qa.layout import Span
from videomem.qa.relevance import (
    EmbeddingCache,
    Relevance,
    SlotText,
    slot_texts,
    span_scores,
    text_scores,
)
from videomem.qa.selection import choose_whole, plan
from videomem.qa.timeline import Line, fit_lines, fit_relevant, line_text, render_line
from videomem.qa.types import GenerationSettings, QAError
from videomem.qa.visual import Visual


@pytest.fixture(scope="module")
def minilm() -> EmbeddingCache:
    from videomem.encoders.text import sentence_embedder

    return EmbeddingCache(lambda: sentence_embedder("cpu"))


# --------------------------------------------------------------------------- selection


def test_the_slot_clearly_above_the_rest_stays_whole() -> None:
    haystack = [0.10, 0.12, 0.08, 0.11, 0.09, 0.13, 0.10, 0.12, 0.07, 0.11, 0.10, 0.09]
    needle = list(haystack)
    needle[7] = 0.62
    assert choose_whole(needle, 4) == [7]
    two = list(needle)
    two[2] = 0.60
    assert choose_whole(two, 8) == [2, 7]  # K // 4 = 2 may stay whole
    assert choose_whole(two, 4) == [7]  # K // 4 = 1: the best one only


def test_nothing_stands_out_or_nothing_to_cut_keeps_none() -> None:
    assert choose_whole([0.3] * 10, 4) == []  # flat: the uniform merge
    ramp = [i / 100 for i in range(10)]  # no drop as large as the spread
    assert choose_whole(ramp, 4) == []
    assert choose_whole([0.1, 0.9, 0.1], 3) == []  # fits as it is
    assert choose_whole([0.1, float("nan"), 0.9, 0.1], 2) == []
    with pytest.raises(ConfigError):
        choose_whole([0.1, 0.2], 0)


def test_ties_go_to_the_earlier_slot() -> None:
    s = [0.1] * 12
    s[3] = s[9] = 0.8
    assert choose_whole(s, 4) == [3]


def test_a_kept_slot_that_leaves_its_gaps_no_room_is_skipped() -> None:
    middle = [0.1] * 12
    middle[5] = 0.9
    end = [0.1] * 11 + [0.9]
    # K = 2: a slot in the middle would need two gaps beside it (3 slots); at the end, one
    assert choose_whole(middle, 2) == [] and choose_whole(end, 2) == [11]
    assert choose_whole(middle, 1) == [] and choose_whole(end, 1) == []
    assert [(p.start, p.stop, p.slots) for p in plan([11], 12, 2)] == [(0, 11, 1), (11, 12, 1)]
    both = list(middle)
    both[11] = 0.9  # as relevant as the middle one, which cannot stay: the end one does
    assert choose_whole(both, 2) == [11]


@pytest.mark.parametrize("seed", range(20))
def test_plan_tiles_the_view_in_order_and_hits_k(seed: int) -> None:
    """Naive reference: parts cover 0..n-1 once, in order; kept ones alone and whole;
    every gap has 1..its length slots; the slots add up to k; shares follow length."""
    rng = random.Random(seed)
    n = rng.randint(2, 60)
    k = rng.randint(1, n - 1)
    kept = sorted(rng.sample(range(n), rng.randint(0, max(0, k // 3))))
    gaps = sum(1 for i in range(n) if i not in kept and (i == 0 or i - 1 in kept))
    if len(kept) + gaps > k:
        with pytest.raises(ConfigError):
            plan(kept, n, k)
        return
    parts = plan(kept, n, k)
    assert [p.start for p in parts] == [0] + [p.stop for p in parts[:-1]]
    assert parts[-1].stop == n
    assert sum(p.slots for p in parts) == k
    assert sorted(p.start for p in parts if p.whole) == kept
    for p in parts:
        assert (p.stop - p.start == 1 and p.slots == 1) if p.whole else p.slots >= 1
        assert p.slots <= p.stop - p.start
    free = [p for p in parts if not p.whole]
    for a in free:  # shares in proportion to length (largest-ratio rounding)
        for b in free:
            if a.slots > 1 and b.slots < b.stop - b.start:
                assert (a.stop - a.start) / (a.slots - 1) >= (b.stop - b.start) / b.slots


# --------------------------------------------------------------------------- scoring


def test_span_scores_take_the_best_overlapping_line_and_not_the_neighbours() -> None:
    spans = [Span(0, 1), Span(2, 3), Span(4, 5), Span(6, 7)]  # frames 2 s apart
    items = torch.tensor([[2.0, 3.0], [4.5, 4.5], [5.5, 5.8], [0.0, 7.0]], dtype=torch.float64)
    sim = torch.tensor([0.9, 0.5, 0.7, 0.2])
    got = span_scores(sim, items, spans)
    assert got is not None
    # slot 1 [2, 4): the 0.9 line (it ends at 3, where slot 2 has not begun);
    # slot 2 [4, 6): the point at 4.5 and the line said between two frames (0.7)
    assert got.tolist() == pytest.approx([0.2, 0.9, 0.7, 0.2])
    assert span_scores(sim[:1], items[:1], [Span(10, 11)]) is None
    alone = span_scores(torch.tensor([0.8]), items[:1], spans)
    assert alone is not None and alone.tolist() == pytest.approx([0.8] * 4)  # unscored: lowest


def test_slot_texts_read_tags_dense_and_speech() -> None:
    rows = [
        {"kind": "global", "start_s": 0.0, "end_s": 9.0, "text": "a street"},
        {"kind": "tags", "start_s": 2.0, "end_s": 3.0, "text": "red umbrella 0.61, car 0.20"},
        {"kind": "dense", "start_s": 0.0, "end_s": 1.0, "text": "a man walks"},
        {"kind": "tags", "start_s": 4.0, "end_s": 5.0, "text": None},
    ]
    said = [SpeechSegment(1.0, 2.0, " the code is 4711 ", "en", -0.1, 0.0)]
    assert slot_texts(rows, said) == [
        SlotText(0.0, 1.0, "a man walks"),
        SlotText(1.0, 2.0, "the code is 4711"),
        SlotText(2.0, 3.0, "red umbrella, car"),
    ]


def test_minilm_scores_the_needle_slot_highest_and_embeds_lines_once() -> None:
    lines = [SlotText(float(i), float(i + 1), "street, car, tree") for i in range(20)]
    lines[13] = SlotText(13.0, 14.0, "red umbrella, street")
    from videomem.encoders.text import sentence_embedder

    calls: list[int] = []
    real = sentence_embedder("cpu")

    def counting(texts):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        return real(texts)

    cache = EmbeddingCache(lambda: counting)
    rel = Relevance(lines, cache)
    spans = [Span(float(i), float(i + 1)) for i in range(20)]
    s = rel.scores("Is there a red umbrella?", spans)
    assert rel.source == "text" and s is not None and int(s.argmax()) == 13
    assert choose_whole(s, 6) == [13]
    rel.scores("Where is the car?", spans)
    # the lines' two distinct texts embedded once, in one call; then each question
    assert calls == [2, 1, 1]
    # the same scores as a naive loop of cosines
    unit = lambda t: torch.nn.functional.normalize(real([t])[0], dim=0)  # noqa: E731
    q = unit("Is there a red umbrella?")
    ref = [float(unit(x.text) @ q) for x in lines]
    assert s.tolist() == pytest.approx(ref, abs=1e-5)


def test_nothing_to_score_is_none(minilm: EmbeddingCache) -> None:
    spans = [Span(0, 1), Span(1, 2)]
    assert Relevance([], minilm).scores("q", spans) is None
    assert Relevance([SlotText(0, 1, "dog")], None).scores("q", spans) is None
    assert Relevance([SlotText(0, 1, "dog")], None).source is None


def test_clip_text_tower_scores_the_slots(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without slot text, a CLIP memory's own embeddings score it against the question
    embedded by its text tower: equal to a naive loop of cosines, spread to the view."""
    import numpy as np
    from videomem.encoders import load_encoder
    from videomem.encoders.testing import tiny_checkpoint

    enc = load_encoder(tiny_checkpoint("clip", tmp_path), "cpu", "float32")
    h, w = enc.input_size
    frames = np.random.default_rng(0).integers(0, 256, (5, h, w, 3), dtype=np.uint8)
    out = enc.encode(frames, np.arange(5, dtype=np.float64))
    spans = torch.stack([torch.arange(5.0), torch.arange(5.0) + 1], 1).double()
    rel = Relevance([], None, slot_spans=spans, slot_embedding=out.embedding, tower=enc.encode_text)
    assert rel.source == "tower"
    s = rel.scores("a red umbrella", [Span(float(i), float(i + 1)) for i in range(5)])
    q = enc.encode_text(["a red umbrella"])[0].float()
    ref = [float(torch.nn.functional.cosine_similarity(e.float(), q, dim=0)) for e in out.embedding]
    assert s is not None and s.tolist() == pytest.approx(ref, abs=1e-5)
    # a view of two slots covering the five: each the best of the slots under it
    two = rel.scores("a red umbrella", [Span(0, 2), Span(3, 5)])
    assert two is not None and two.tolist() == pytest.approx([max(ref[:3]), max(ref[3:])], 1e-5)


def test_a_scorer_that_cannot_load_falls_back_to_none() -> None:
    from videomem.pipeline.errors import EncoderError

    def refuse(texts):  # type: ignore[no-untyped-def]
        raise EncoderError("no text tower")

    rel = Relevance(
        [], None, slot_spans=torch.zeros(1, 2), slot_embedding=torch.ones(1, 3), tower=refuse
    )
    assert rel.scores("q", [Span(0, 0)]) is None and rel.source is None


# --------------------------------------------------------------------------- the cut


def _view(n: int = 12, seed: int = 0) -> Visual:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 4, 8, generator=g)
    tokens = (base + 0.05 * torch.randn(n, 4, 8, generator=g)).half()
    spans = tuple(Span(float(i), float(i + 1)) for i in range(n))
    return Visual(tokens, spans, torch.ones(n, dtype=torch.int64), slots=n)


def _contiguous(v: Visual, n: int) -> bool:
    return (
        v.spans[0].start_s == 0
        and v.spans[-1].end_s == n
        and all(a.end_s == b.start_s for a, b in zip(v.spans, v.spans[1:], strict=False))
    )


@pytest.mark.parametrize("k", [3, 4, 6])
def test_the_needle_slot_stays_whole_and_spans_stay_ordered(k: int) -> None:
    view, cfg = _view(), MemoryConfig()
    scores = torch.full((12,), 0.1)
    scores[7] = 0.7
    cut = cut_view(view, k, cfg, scores)
    assert len(cut) == k and cut.k == k and cut.kept_slots == (7,)
    assert _contiguous(cut, 12)
    (i,) = [j for j, s in enumerate(cut.spans) if s == Span(7.0, 8.0)]
    assert torch.equal(cut.tokens[i], view.tokens[7])  # whole: its own tokens
    assert int(cut.sizes.sum()) == 12
    uniform = _merged(view, k, cfg)
    assert Span(7.0, 8.0) not in uniform.spans  # the uniform fit merges it away


@pytest.mark.parametrize("scores", [None, torch.full((12,), 0.3)])
def test_fallback_is_the_uniform_merge_slot_for_slot(scores: torch.Tensor | None) -> None:
    view, cfg = _view(seed=1), MemoryConfig()
    cut, uniform = cut_view(view, 5, cfg, scores), _merged(view, 5, cfg)
    assert torch.equal(cut.tokens, uniform.tokens) and cut.spans == uniform.spans
    assert torch.equal(cut.sizes, uniform.sizes) and cut.kept_slots is None


def test_gaps_merge_apart_from_each_other() -> None:
    """Each gap is the adjacent merge of its own slots: the same as merging that
    stretch alone (a naive reference)."""
    view, cfg = _view(seed=2), MemoryConfig()
    scores = torch.full((12,), 0.1)
    scores[4] = 0.9
    cut = cut_view(view, 4, cfg, scores)
    parts = plan([4], 12, 4)
    left = _merged(replace(view, tokens=view.tokens[:4], spans=view.spans[:4], sizes=view.sizes[:4]), parts[0].slots, cfg)  # fmt: skip
    assert cut.spans[: len(left)] == left.spans
    assert torch.equal(cut.tokens[: len(left)], left.tokens)


# --------------------------------------------------------------------------- timeline


def words(text: str) -> int:
    return len(text.split())


def _timeline(n: int = 40, needle: int = 23) -> list[Line]:
    lines = [
        Line(float(i), float(i + 1), f"street 0.5{i % 7}, car 0.2{i % 3}, tree 0.10")
        for i in range(n)
    ]
    lines[needle] = Line(float(needle), float(needle + 1), "red umbrella 0.61, street 0.20")
    return lines


def test_timeline_keeps_the_relevant_line_whole_and_the_ends(minilm: EmbeddingCache) -> None:
    lines = _timeline()

    def scores(shown):  # type: ignore[no-untyped-def]
        return text_scores(minilm, "Is there a red umbrella?", [line_text(x) for x in shown])

    uniform = fit_lines(lines, 60, words)
    got, kept = fit_relevant(lines, 60, words, scores)
    assert lines[23] not in uniform and kept == [23] and lines[23] in got
    assert sum(words(render_line(x) + "\n") for x in got) <= 60
    assert got[0].start_s == 0 and got[-1].end_s == 40
    assert all(a.end_s == b.start_s for a, b in zip(got, got[1:], strict=False))
    # fits as it is: nothing asked, nothing kept
    assert fit_relevant(lines, 10_000, words, scores) == (lines, None)
    # nothing can score: the uniform fit
    assert fit_relevant(lines, 60, words, lambda shown: None) == (uniform, None)


def test_line_text_drops_tag_scores_and_keeps_speech() -> None:
    assert line_text(Line(0, 1, "dog 0.52, cat 0.10", "tags", "hello")) == "dog, cat hello"
    assert line_text(Line(0, 1, "a man walks", "dense")) == "a man walks"


# --------------------------------------------------------------------------- settings


def test_uniform_keeps_the_old_resume_key_and_relevant_has_its_own() -> None:
    old = GenerationSettings(context="uniform")
    assert "context" not in json.loads(old.to_json())
    new = GenerationSettings()
    assert new.context == "relevant" and json.loads(new.to_json())["context"] == "relevant"
    assert new.hash() != old.hash()
    with pytest.raises(QAError, match="context"):
        GenerationSettings(context="best")  # type: ignore[arg-type]
