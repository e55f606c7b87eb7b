"""VLM QA with subtitles (qa/subtitles.py): each transcript segment beside the slot it
is said in, only what was said by t in breakpoint mode, and tiny real VLMs answering
with them; off, prompts and resume keys are what they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from videomem.pipeline.transcript import SpeechSegment, Transcript, Word
from videomem.qa import GenerationSettings, Question, answer
from videomem.qa.layout import Span, mmss, span_text
from videomem.qa.subtitles import heard, subtitles_for

from tests.qa.test_answer import _loaded, _memory


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-cache")


def seg(a: float, b: float, text: str, words: tuple[Word, ...] = ()) -> SpeechSegment:
    return SpeechSegment(a, b, f" {text}", "en", -0.2, 0.01, words)


def said(*segments: SpeechSegment) -> Transcript:
    return Transcript("v", "whisper-base", "h", "done", segments, "en")


SPANS = [Span(float(i), float(i + 1)) for i in range(6)]  # the memory of _memory(n=6)
#: the fox at 1.1–1.9 s (slot 1), the book at 3.6–4.8 s (mostly slot 4), hello at 5.2 s
SPOKEN = said(
    seg(1.1, 1.9, "The quick brown fox."),
    seg(3.6, 4.8, "Never judge a book by its cover.",
        tuple(Word(3.6 + 0.2 * i, 3.8 + 0.2 * i, f" {w}", 0.9)
              for i, w in enumerate(["Never", "judge", "a", "book", "by", "its", "cover."]))),
    seg(5.2, 5.6, "Hello."),
)  # fmt: skip


def test_each_segment_goes_beside_the_slot_it_overlaps_most() -> None:
    subs = subtitles_for(SPANS, SPOKEN.segments)
    assert subs == [
        "",
        "The quick brown fox.",
        "",
        "",
        "Never judge a book by its cover.",
        "Hello.",
    ]
    # in a gap between slots: the nearest slot; never repeated
    gappy = [Span(0.0, 1.0), Span(4.0, 5.0)]
    assert subtitles_for(gappy, [seg(1.5, 2.0, "early"), seg(3.0, 3.5, "late")]) == [
        "early",
        "late",
    ]
    assert subtitles_for([], SPOKEN.segments) == []


def test_breakpoints_hear_only_what_was_said_by_t() -> None:
    at = heard(SPOKEN, 4.5)  # the book sentence is being said at 4.5 s
    assert [s.text.strip() for s in at] == ["The quick brown fox.", "Never judge a book"]
    assert all(s.end_s <= 4.5 for s in at)
    # without word times a sentence still being said is left out
    plain = said(seg(1.1, 1.9, "The quick brown fox."), seg(3.6, 4.8, "Never judge."))
    assert [s.text.strip() for s in heard(plain, 4.5)] == ["The quick brown fox."]
    assert heard(SPOKEN, 1.0) == [] and len(heard(SPOKEN, None)) == 3
    assert heard(Transcript("v", "m", "h", "no_audio"), None) == []


def test_off_the_settings_and_their_resume_key_are_unchanged() -> None:
    off = GenerationSettings()
    assert "subtitles" not in off.to_json()
    assert GenerationSettings(subtitles=True).hash() != off.hash()


@pytest.mark.parametrize("family", ["llava", "llava_onevision", "smolvlm", "blip2"])
def test_the_prompt_holds_each_line_beside_its_slot(family: str, cache_dir: Path) -> None:
    _, enc, qa = _loaded(family, cache_dir)
    n = enc.tokens_per_frame
    subs = subtitles_for(SPANS, SPOKEN.segments)

    def mark(i: int) -> str:  # how the family's timestamped layout names slot i
        a, b = float(i), float(i + 1)
        return f"{mmss(a)}-{mmss(b)}" if family == "smolvlm" else span_text(Span(a, b))

    for style in ("timestamped", "native"):
        plain, _ = qa.prompts.render("what is this ?", SPANS, n, style=style)
        empty, _ = qa.prompts.render("what is this ?", SPANS, n, style=style, subtitles=[""] * 6)
        text, q_at = qa.prompts.render("what is this ?", SPANS, n, style=style, subtitles=subs)
        assert empty == plain  # nothing said: the plain prompt, byte for byte
        fox, book = text.index('[speech] "The quick brown fox."'), text.index('"Never judge')
        assert fox < book < text.index('[speech] "Hello."') < q_at
        if style == "timestamped":  # beside its slot: after its span, before the next one
            assert text.index(mark(1)) < fox < text.index(mark(2))
            assert text.index(mark(4)) < book < text.index(mark(5))
    bad = [""] * 5 + [f"say {qa.prompts.layout.feature_token} twice"]
    with pytest.raises(Exception, match="placeholder"):
        qa.prompts.render("what is this ?", SPANS, n, subtitles=bad)


def test_a_tiny_vlm_answers_with_subtitles_and_a_breakpoint_hears_only_the_past(
    cache_dir: Path,
) -> None:
    _, enc, qa = _loaded("llava", cache_dir)
    mem = _memory(enc)
    seen: list[Any] = []
    real_build = qa.prompts.build

    def build(*args: Any, **kwargs: Any) -> Any:  # records what the prompt was built with
        seen.append(kwargs.get("subtitles"))
        return real_build(*args, **kwargs)

    qa.prompts.build = build
    try:
        on = GenerationSettings(max_new_tokens=6, subtitles=True)
        qs = [Question("what is said ?"), Question("what is said ?", time_s=4.5)]
        with_subs = answer(qa, mem, qs, on, duration_s=6.0, transcript=SPOKEN)
        plain = answer(qa, mem, qs[:1], GenerationSettings(max_new_tokens=6), duration_s=6.0)
    finally:
        del qa.prompts.build
    assert [a.status for a in with_subs] == ["answered", "answered"]
    assert with_subs[0].tokens and with_subs[0].prompt_tokens > plain[0].prompt_tokens
    whole = [s for s in seen if s is not None and any("Hello" in x for x in s)]
    assert whole and "Never judge a book by its cover." in whole[-1]
    at_t = [s for s in seen if s is not None and not any("Hello" in x for x in s)]
    assert at_t, "the breakpoint question was built with its own subtitles"
    for subs in at_t:
        joined = " ".join(subs)
        assert "Never judge a book" in joined and "cover" not in joined
    assert seen[-1] is None  # off: no subtitles at all


def test_without_a_usable_transcript_questions_fail_with_the_reason(cache_dir: Path) -> None:
    _, enc, qa = _loaded("llava", cache_dir)
    mem = _memory(enc)
    on = GenerationSettings(max_new_tokens=4, subtitles=True)
    (none,) = answer(qa, mem, ["what is said ?"], on)
    assert none.status == "failed" and "videomem transcribe" in (none.error or "")
    broken = Transcript("v", "m", "h", "failed", error="ffmpeg: invalid data")
    (failed,) = answer(qa, mem, ["what is said ?"], on, transcript=broken)
    assert "invalid data" in (failed.error or "")
    # "no audio": nothing to put beside the slots, the plain prompt's answer
    silent = Transcript("v", "m", "h", "no_audio")
    (quiet,) = answer(qa, mem, ["what is said ?"], on, transcript=silent)
    (off,) = answer(qa, mem, ["what is said ?"], GenerationSettings(max_new_tokens=4))
    assert quiet.status == "answered" and quiet.tokens == off.tokens
