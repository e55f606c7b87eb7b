"""The QA Python API on tiny random checkpoints: prefix reuse and batching against one
question at a time, breakpoint mode, context fitting, captions, refusals."""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from videomem.memory.config import MemoryConfig
from videomem.memory.types import VideoMemory
from videomem.pipeline.types import DecodeConfig

QUESTIONS = [
    "what happens in this video ?",
    "describe the frame",
    "what is in the video and what happens to the frame ?",
    "a question",
    "what is this ?",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-cache")


@cache
def _loaded(family: str, cache_dir: Path):  # type: ignore[no-untyped-def]
    from videomem.encoders import load_encoder
    from videomem.encoders.testing import tiny_checkpoint
    from videomem.qa import load_qa_model

    ckpt = tiny_checkpoint(family, cache_dir)
    return ckpt, load_encoder(ckpt, "cpu", "float32"), load_qa_model(str(ckpt), "cpu", "float32")


def _memory(enc, n: int = 6, seed: int = 0) -> VideoMemory:  # type: ignore[no-untyped-def]
    h, w = enc.input_size
    frames = np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    ts = np.arange(n, dtype=np.float64)
    tokens = enc.encode(frames, ts).tokens.half()  # as stored
    return VideoMemory(
        video_id="v",
        tokens=tokens,
        sizes=torch.ones(n, dtype=torch.int64),
        start_s=torch.from_numpy(ts),
        end_s=torch.from_numpy(ts + 1),
        embedding=None,
        encoder_fingerprint=enc.fingerprint,
        memory_config=MemoryConfig(),
        frames_seen=n,
    )


@pytest.mark.parametrize("family", ["llava", "llava_onevision", "smolvlm", "blip2"])
def test_reuse_and_batching_give_the_tokens_of_one_question_at_a_time(
    family: str, cache_dir: Path
) -> None:
    from videomem.qa import GenerationSettings, answer

    _, enc, qa = _loaded(family, cache_dir)
    mem = _memory(enc)
    settings = GenerationSettings(max_new_tokens=8)
    alone = [answer(qa, mem, [q], settings, reuse_prefix=False)[0].tokens for q in QUESTIONS]
    full_prompt_runs = []
    real_generate = qa.generate
    qa.generate = lambda *a, **k: full_prompt_runs.append(1) or real_generate(*a, **k)
    try:
        reused = answer(qa, mem, QUESTIONS, settings, reuse_prefix=True)
    finally:
        del qa.generate
    assert not full_prompt_runs, "every question should continue from the prefix cache"
    batched = answer(qa, mem, QUESTIONS, settings, reuse_prefix=False, batch_size=3)
    assert [a.tokens for a in reused] == alone
    assert [a.tokens for a in batched] == alone
    assert len({tuple(t) for t in alone}) > 1, "vacuous: every question got the same answer"
    a = reused[0]
    assert a.status == "answered" and a.dtype == "float32" and a.slots == len(mem)
    assert a.prompt_tokens > len(mem) * enc.tokens_per_frame and a.new_tokens == len(a.tokens)
    assert a.answer == qa.decode(a.tokens)


def test_timestamped_prompt_names_every_slot_span(cache_dir: Path) -> None:
    from videomem.qa.layout import Span

    _, enc, qa = _loaded("llava_onevision", cache_dir)
    spans = [Span(0.0, 2.5), Span(2.5, 7.0)]
    text, q_at = qa.prompts.render("what is this ?", spans, enc.tokens_per_frame)
    assert text.index("0.0s-2.5s:") < text.index("2.5s-7.0s:") < q_at
    assert text.count("<video>") == 2 * enc.tokens_per_frame + 1  # + OneVision's newline
    native, _ = qa.prompts.render("what is this ?", spans, enc.tokens_per_frame, style="native")
    assert "s-" not in native.split("what is this")[0]


def test_bad_questions_are_failed_answers_and_the_rest_go_on(cache_dir: Path) -> None:
    from videomem.qa import GenerationSettings, Question, answer

    _, enc, qa = _loaded("llava", cache_dir)
    mem = _memory(enc)
    out = answer(
        qa,
        mem,
        [
            Question("what is this ?"),
            Question("   "),
            Question("show <image> please"),
            Question("what is this ?", time_s=99.0),
            Question("what is this ?", time_s=-1.0),
        ],
        GenerationSettings(max_new_tokens=4),
        duration_s=6.0,
    )
    assert [a.status for a in out] == ["answered", "failed", "failed", "failed", "failed"]
    assert "empty question" in out[1].error
    assert "placeholder" in out[2].error
    assert "outside the video" in out[3].error and "outside the video" in out[4].error


def test_context_fitting_consolidates_to_k_slots_deterministically(cache_dir: Path) -> None:
    from videomem.qa import GenerationSettings, answer

    _, enc, qa = _loaded("llava", cache_dir)
    mem = _memory(enc, n=12)
    wide = answer(qa, mem, QUESTIONS[:2], GenerationSettings(max_new_tokens=4))
    assert all(a.k is None and a.slots == 12 for a in wide)
    budget = wide[0].prompt_tokens // 2
    settings = GenerationSettings(max_new_tokens=4, max_context=budget)
    first = answer(qa, mem, QUESTIONS[:2], settings)
    again = answer(qa, mem, QUESTIONS[:2], settings)
    for a in first:
        assert a.status == "answered" and a.k is not None and 1 <= a.k < 12
        assert a.slots == a.k and a.memory_slots == 12
        assert a.prompt_tokens + settings.max_new_tokens <= budget
    assert [a.tokens for a in first] == [a.tokens for a in again]
    # the largest K that fits: one more slot would not
    assert first[0].prompt_tokens + enc.tokens_per_frame + 4 > budget
    tiny = answer(qa, mem, QUESTIONS[:1], GenerationSettings(max_new_tokens=4, max_context=20))
    assert tiny[0].status == "failed" and "does not fit" in tiny[0].error


def test_captions_global_and_dense_segments(cache_dir: Path) -> None:
    from videomem.qa import GenerationSettings, caption
    from videomem.qa.answer import segments

    _, enc, qa = _loaded("llava_next_video", cache_dir)
    mem = _memory(enc)
    assert segments(mem, None) == [(i, i + 1) for i in range(6)]
    assert segments(mem, 2.0) == [(0, 2), (2, 4), (4, 6)]
    assert segments(mem, 0.5) == [(i, i + 1) for i in range(6)]  # a long slot stands alone
    caps = caption(qa, mem, GenerationSettings(max_new_tokens=6), dense_every=2.0, batch_size=2)
    assert [c.kind for c in caps] == ["global", "dense", "dense", "dense"]
    assert [(c.start_s, c.end_s) for c in caps] == [(0, 6), (0, 2), (2, 4), (4, 6)]
    # batched dense captions equal one segment at a time
    one = caption(qa, mem, GenerationSettings(max_new_tokens=6), dense_every=2.0, batch_size=1)
    assert [c.tokens for c in caps] == [c.tokens for c in one]


# --------------------------------------------------------------------------- breakpoint


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path):  # type: ignore[no-untyped-def]
    """Two videos equal up to 4 s, different after; indexed with the tiny LLaVA."""
    from videomem.jobs.index_video import index_video
    from videomem.pipeline.files import content_video_id
    from videomem.qa import VideoContext

    from tests.videos import make_scenes

    _, enc, _ = _loaded("llava", cache_dir)
    d = tmp_path_factory.mktemp("bp")
    out = []
    decode_cfg = DecodeConfig(fps=2.0, size=enc.input_size)
    memory_cfg = MemoryConfig(short_term_len=4, merge_to=2, long_term_len=8, keep_recent=4)
    for name, last in (("a", "blue"), ("b", "yellow")):
        video = make_scenes(d / f"{name}.mp4", [("red", 2.0), ("green", 2.0), (last, 2.0)])
        done = index_video(str(video.path), enc, decode_cfg, memory_cfg)
        ctx = VideoContext(
            str(video.path), content_video_id(video.path), decode_cfg, memory_cfg, video.duration
        )
        out.append((done.memory, ctx))
    return out


def test_breakpoint_uses_only_what_precedes_t(two_videos, cache_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from videomem.qa import GenerationSettings, Question, answer
    from videomem.qa.visual import breakpoint_visual

    _, enc, qa = _loaded("llava", cache_dir)
    (mem_a, ctx_a), (mem_b, ctx_b) = two_videos
    assert not torch.equal(mem_a.tokens[-1], mem_b.tokens[-1])  # the videos do differ
    t = 3.5
    va = breakpoint_visual(mem_a, t, video=ctx_a, encoder=enc)
    vb = breakpoint_visual(mem_b, t, video=ctx_b, encoder=enc)
    assert va.source == vb.source == "video"
    assert all(s.end_s <= t + 1e-6 for s in va.spans)
    assert va.spans[-1].end_s == pytest.approx(t)  # the frame at t is there
    assert torch.equal(va.tokens.float(), vb.tokens.float())
    qs = [Question(q, time_s=t) for q in QUESTIONS[:3]]
    settings = GenerationSettings(max_new_tokens=6)
    aa = answer(qa, mem_a, qs, settings, duration_s=6.0, video=ctx_a, encoder=enc)
    ab = answer(qa, mem_b, qs, settings, duration_s=6.0, video=ctx_b, encoder=enc)
    assert [a.tokens for a in aa] == [a.tokens for a in ab]
    assert all(a.source == "video" and a.status == "answered" for a in aa)
    # control: past the point where the videos differ, the views differ
    late_a = breakpoint_visual(mem_a, 5.5, video=ctx_a, encoder=enc)
    late_b = breakpoint_visual(mem_b, 5.5, video=ctx_b, encoder=enc)
    assert not torch.equal(late_a.tokens.float(), late_b.tokens.float())


def test_breakpoint_falls_back_to_stored_slots_when_the_file_is_gone(  # type: ignore[no-untyped-def]
    two_videos, cache_dir: Path, tmp_path: Path
) -> None:
    import dataclasses

    from videomem.qa import GenerationSettings, Question, answer

    _, enc, qa = _loaded("llava", cache_dir)
    mem, ctx = two_videos[0]
    moved = tmp_path / "moved.mp4"
    shutil.copy(ctx.uri, moved)
    gone = dataclasses.replace(ctx, uri=str(tmp_path / "deleted.mp4"))
    (a,) = answer(
        qa,
        mem,
        [Question("what is this ?", time_s=3.5)],
        GenerationSettings(max_new_tokens=4),
        duration_s=6.0,
        video=gone,
        encoder=enc,
    )
    assert a.status == "answered" and a.source == "memory"
    # a different file at the stored uri is not decoded either
    other = dataclasses.replace(ctx, uri=two_videos[1][1].uri)
    (b,) = answer(
        qa,
        mem,
        [Question("what is this ?", time_s=3.5)],
        GenerationSettings(max_new_tokens=4),
        duration_s=6.0,
        video=other,
        encoder=enc,
    )
    assert b.source == "memory"


# --------------------------------------------------------------------------- refusals


def _record(model: str, fingerprint: str, **kw):  # type: ignore[no-untyped-def]
    from videomem.memory.store import VideoRecord

    return VideoRecord(
        video_id="v" * 24,
        encoder_fingerprint=fingerprint,
        config_hash="h",
        status="indexed",
        uri="",
        model=model,
        config_json=json.dumps({"encoder": {"model": model, "options": {}}}),
        **kw,
    )


def test_a_memory_without_a_language_model_points_to_the_text_timeline(cache_dir: Path) -> None:
    from videomem.encoders.testing import tiny_checkpoint
    from videomem.qa import QAError, load_for_record

    clip = tiny_checkpoint("clip", cache_dir)
    with pytest.raises(QAError, match="no language model.*text-timeline"):
        load_for_record(_record(str(clip), "clip:abc:float32"), device="cpu")


def test_only_the_encoding_checkpoint_may_answer(cache_dir: Path) -> None:
    from videomem.encoders.testing import tiny_checkpoint
    from videomem.qa import QAError, load_for_record

    ckpt, enc, _ = _loaded("llava", cache_dir)
    rec = _record(str(ckpt), enc.fingerprint)
    session = load_for_record(rec, device="cpu", dtype="float32")
    assert session.fingerprint == enc.fingerprint and session.qa.model_type == "llava"
    other = tiny_checkpoint("llava_next_video", cache_dir)
    with pytest.raises(QAError, match="not the encoder that made the memory"):
        load_for_record(rec, model=str(other), device="cpu")


def test_the_prefix_cache_holds_exactly_the_prefix_after_each_question(cache_dir: Path) -> None:
    from videomem.qa import GenerationSettings
    from videomem.qa.visual import global_visual

    _, enc, qa = _loaded("llava", cache_dir)
    view = global_visual(_memory(enc))
    prompts = [qa.prompts.build(q, view.spans, enc.tokens_per_frame) for q in QUESTIONS[:3]]
    feats = qa.visual_features(view.tokens)
    cache = qa.prefill(prompts[0], feats)
    n = prompts[0].prefix_len
    assert cache.get_seq_length() == n
    settings = GenerationSettings(max_new_tokens=6)
    first = [qa.generate_cached(cache, p, settings) for p in prompts]
    assert cache.get_seq_length() == n
    assert [qa.generate_cached(cache, p, settings) for p in prompts] == first
