"""What is said in the text timeline: transcript segments interleaved with tags and
captions by time, fitted among themselves, read by the text-LLM answerer; and end to
end, real Whisper base's transcript of an espeak-ng clip answered from by SmolLM2."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from videomem.pipeline.transcript import SpeechSegment, Transcript
from videomem.qa.textllm import TimelineAnswerer
from videomem.qa.timeline import (
    SPEECH,
    Line,
    fit_lines,
    lines_from_captions,
    render_line,
    speech_lines,
)
from videomem.qa.types import GenerationSettings, Question

from tests.qa.test_timeline import EchoModel, tag_lines, words
from tests.speech import SpeechClip, make_speech_video, word_error_rate


def seg(start: float, end: float, text: str) -> SpeechSegment:
    return SpeechSegment(start, end, text, "en", -0.2, 0.01)


SPOKEN = [seg(0.5, 1.5, " Hello there."), seg(2.2, 3.9, " Never judge a book"), seg(4.0, 5.0, " ")]


def test_speech_lines_interleave_with_tags_by_time() -> None:
    caps = [
        {"kind": "tags", "start_s": 2.0, "end_s": 4.0, "text": "dog 0.50"},
        {"kind": "tags", "start_s": 0.0, "end_s": 2.0, "text": "cat 0.90"},
    ]
    summary, lines = lines_from_captions(caps, SPOKEN)
    assert summary == []
    # the blank segment is left out; what is seen goes first when both start together
    assert [(x.start_s, x.kind) for x in lines] == [
        (0.0, "tags"), (0.5, SPEECH), (2.0, "tags"), (2.2, SPEECH)
    ]  # fmt: skip
    assert render_line(lines[3]) == '00:02–00:04  [speech] "Never judge a book"'
    assert lines_from_captions(caps)[1] == [x for x in lines if x.kind == "tags"]


def test_fitting_merges_speech_only_with_speech_and_keeps_its_words_in_order() -> None:
    said = [seg(i + 0.3, i + 0.8, f" word{i}") for i in range(40)]
    lines = sorted(tag_lines(40) + speech_lines(said), key=lambda x: x.start_s)
    total = sum(words(render_line(x) + "\n") for x in lines)
    fit = fit_lines(lines, total // 3, words)
    assert sum(words(render_line(x) + "\n") for x in fit) <= total // 3
    assert [x.start_s for x in fit] == sorted(x.start_s for x in fit)
    speech = [x for x in fit if x.kind == SPEECH]
    assert 1 <= len(speech) < 40 and all("0." not in x.text for x in speech)  # no tag in a quote
    assert " ".join(x.text for x in speech).split() == [f"word{i}" for i in range(40)]
    assert all("word" not in x.text for x in fit if x.kind == "tags")
    assert fit[-1].end_s == 40.0 and fit[0].start_s == 0.0  # both ends survive


def test_one_line_of_each_kind_still_too_long_has_its_longest_middle_cut() -> None:
    lines = [
        Line(0, 9, "cat 0.90", "tags"),
        Line(1, 8, " ".join(f"w{i}" for i in range(60)), SPEECH),
    ]
    (tags, speech) = fit_lines(lines, 20, words)
    assert tags.text == "cat 0.90" and speech.text.startswith("w0 ") and speech.text.endswith("w59")
    assert "…" in speech.text and sum(words(render_line(x) + "\n") for x in (tags, speech)) <= 20


def test_answerer_reads_speech_and_says_what_the_lines_are() -> None:
    model = EchoModel()
    answerer = TimelineAnswerer(model)
    (a,) = answerer.answer([], [Question("What is said?")], GenerationSettings(), 6.0, SPOKEN)
    assert a.status == "answered" and a.slots == 2  # a timeline of speech alone is enough
    prompt = model.seen[-1][-1]["content"]
    assert "Timeline (lines marked [speech] quote what is said then):" in prompt
    assert '[speech] "Hello there."' in prompt
    # a breakpoint question sees what was said by then
    (b,) = answerer.answer([], [Question("And now?", 1.0)], GenerationSettings(), 6.0, SPOKEN)
    assert b.slots == 1 and "Never judge" not in model.seen[-1][-1]["content"]
    # no speech: the heading is as before
    caps = [{"kind": "tags", "start_s": 0.0, "end_s": 1.0, "text": "cat 0.90"}]
    answerer.answer(caps, [Question("What?")], GenerationSettings())
    assert "Timeline:\n" in model.seen[-1][-1]["content"]


@dataclass(frozen=True)
class Spoken:
    store: str
    clip: SpeechClip
    video_id: str
    segments: tuple[SpeechSegment, ...]


@pytest.fixture(scope="module")
def spoken(
    tmp_path_factory: pytest.TempPathFactory, mobilenet_dir: Path, shared_testdata: Path
) -> Spoken:
    """A clip with espeak-ng's voice over bikes.mp4, indexed (no tags), and transcribed
    by real Whisper base into the store."""
    from videomem.encoders.asr import ASRConfig, WhisperRecognizer
    from videomem.encoders.config import EncoderConfig
    from videomem.jobs import api
    from videomem.jobs.index import IndexJob
    from videomem.memory.store import Store
    from videomem.pipeline.audio import open_audio
    from videomem.pipeline.types import DecodeConfig

    tmp = tmp_path_factory.mktemp("spoken")
    clip = make_speech_video(tmp / "speech.mp4", video=shared_testdata / "bikes.mp4")
    store = str(tmp / "store")
    api.index(
        IndexJob(
            paths=[str(clip.path)],
            store=store,
            encoder=EncoderConfig(model=str(mobilenet_dir), device="cpu"),
            decode=DecodeConfig(fps=1, aspect="crop"),
        )
    )
    whisper = WhisperRecognizer(ASRConfig(device="cpu", cpu_threads=2))
    segments = tuple(whisper.transcribe(open_audio(clip.path)))  # type: ignore[arg-type]
    heard = " ".join(s.text for s in segments)
    assert word_error_rate(clip.text, heard) <= 0.2, heard
    with Store(store, writer=True) as st:
        (rec,) = st.list_videos("indexed")
        st.add_transcripts(
            [Transcript(rec.video_id, "whisper-base", "test", "done", segments, language="en")]
        )
    return Spoken(store, clip, rec.video_id, segments)


@pytest.mark.slow  # indexes a clip, runs Whisper base and SmolLM2 (~1 min)
def test_smollm2_answers_from_what_whisper_heard(
    smollm2: Path, spoken: Spoken, tmp_path: Path
) -> None:
    """Asked with --llm smollm2 through the library (ask) and the bulk job (qa): the
    prompt's timeline is the transcript (no tags were made, so without it there would
    be no timeline at all)."""
    from videomem.jobs import api
    from videomem.jobs.qa_job import QAJob
    from videomem.memory.store import Store

    store, segments = spoken.store, spoken.segments
    settings = GenerationSettings(max_new_tokens=24)
    q = "What does the speaker say about a book?"
    request = api.AskRequest(store, str(spoken.clip.path), q, settings=settings, llm="smollm2")
    result = api.ask(request)
    assert result.answer.status == "answered", result.answer.error
    assert result.answer.slots == len(segments) and result.answer.answer.strip()
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"video": spoken.video_id, "question": q}) + "\n")
    summary = api.qa(QAJob(str(questions), store, settings, llm="smollm2"))
    assert summary.answered == 1, summary.failures
    with Store(store) as st:
        (row,) = st.read_qa_rows("answers")
    # the bulk job (a worker reading the store) saw the same timeline and answered alike
    assert row["slots"] == len(segments) and row["answer"] == result.answer.answer


@pytest.mark.slow  # shares the spoken store (Whisper base, one index)
def test_show_prints_plots_and_returns_the_transcript(spoken: Spoken, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner
    from videomem.jobs import api
    from videomem.jobs.cli import app
    from videomem.jobs.plot import SPEECH_COLOUR
    from videomem.memory.store import Store

    png = tmp_path / "timeline.png"
    view = api.show(spoken.store, spoken.video_id[:10], plot=png)
    assert view.transcript is not None and view.transcript.segments == spoken.segments
    # the speech row is drawn in its own colour; a plot without speech has none of it
    bare = tmp_path / "bare.png"
    from videomem.jobs.plot import plot_timeline

    plot_timeline(view.record, view.slots, [None] * len(view.slots), view.captions, bare)
    colour = np.array([int(SPEECH_COLOUR[i : i + 2], 16) for i in (1, 3, 5)])

    def orange(path: Path) -> int:
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int((np.abs(rgb - colour).sum(axis=2) < 40).sum())

    assert orange(png) > 500 and orange(bare) == 0
    runner = CliRunner()
    r = runner.invoke(app, ["show", spoken.video_id, "--store", spoken.store])
    assert r.exit_code == 0, r.output
    said = [x for x in r.output.splitlines() if x.startswith("speech ")]
    assert said[0].startswith("speech   whisper-base  en") and len(said) == 1 + len(spoken.segments)
    assert "judge a book" in r.output.lower()
    r = runner.invoke(app, ["show", spoken.video_id, "--store", spoken.store, "--json"])
    got = json.loads(r.output)["transcript"]
    assert got["status"] == "done" and len(got["segments"]) == len(spoken.segments)
    # a newer "no audio" row of another model is what a reader sees now, and show says so
    # (on a copy: the module's store stays as the other tests expect it)
    copy = str(shutil.copytree(spoken.store, tmp_path / "copy"))
    with Store(copy, writer=True) as st:
        st.add_transcripts([Transcript(spoken.video_id, "other", "x", "no_audio")])
    r = runner.invoke(app, ["show", spoken.video_id, "--store", copy])
    assert "speech   other: no audio stream" in r.output
