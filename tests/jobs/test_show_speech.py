"""``videomem show`` with a transcript: its status, language and lines with times (real
Whisper on an espeak-ng clip), "no audio" and a failure's reason, the JSON, and
``--plot`` drawing the spans where something is said."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner
from videomem.jobs import api
from videomem.jobs.cli import app
from videomem.jobs.plot import plot_timeline
from videomem.memory.store import Store
from videomem.pipeline.transcript import Transcript

from tests.speech import SpeechClip

#: the speech band's colour in the plot (jobs/plot.py)
SPEECH_RGB = np.array([0xDD, 0x84, 0x52])


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def speech_columns(png: Path, bare: Path) -> np.ndarray:
    """Pixel columns where ``png`` has the speech band's colour and ``bare`` (the same
    plot without speech) has not (the thumbnails may hold the colour too)."""

    def near(p: Path) -> np.ndarray:
        rgb = np.asarray(Image.open(p).convert("RGB")).astype(int)
        return np.abs(rgb - SPEECH_RGB).sum(axis=2) < 40

    return np.flatnonzero((near(png) & ~near(bare)).any(axis=0))


@pytest.mark.slow  # the shared speech store: Whisper base and MobileNetV2 on CPU
def test_show_prints_and_plots_the_transcript(
    speech_store: tuple[Path, str, SpeechClip], tmp_path: Path
) -> None:
    store, vid, clip = speech_store
    r = invoke("show", vid[:10], "--store", str(store), "--plot", str(tmp_path / "p.png"))
    assert r.exit_code == 0, r.output
    lines = [x for x in r.output.splitlines() if x.startswith("speech ")]
    assert lines[0].split()[1:4] == ["whisper-base", "done", "en"], lines
    assert any("judge a book by its cover" in x.lower() for x in lines[1:]), lines
    assert "01:00" not in "\n".join(lines)  # a 9 s clip: every line's time is in it

    view = api.show(str(store), vid)
    assert view.transcript is not None and view.transcript.status == "done"
    for s in view.transcript.segments:
        assert clip.span[0] - 0.5 <= s.start_s < s.end_s <= clip.span[1] + 0.5

    r = invoke("show", vid, "--store", str(store), "--json")
    got = json.loads(r.output)["transcript"]
    assert got["status"] == "done" and got["language"] == "en"
    assert [s["text"] for s in got["segments"]] == [s.text for s in view.transcript.segments]

    # the plot: a speech band where words are said, none without a transcript
    with Store(store) as st:
        rec = st.latest(vid)
        mem = st.load_memory(vid, encoder_fingerprint=rec.encoder_fingerprint)
    slots = api.show(str(store), vid).slots
    assert mem.thumbnails is not None
    bare = plot_timeline(rec, slots, mem.thumbnails, [], tmp_path / "bare.png")
    said = plot_timeline(
        rec, slots, mem.thumbnails, [], tmp_path / "said.png", view.transcript.segments
    )
    cols = speech_columns(said, bare)
    assert len(cols) > 0 and len(speech_columns(tmp_path / "p.png", bare)) > 0
    # one stretch of band per stretch of speech, where it is said: the time axis maps
    # linearly to columns, fitted on the outer ends and checked on the inner ones
    runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
    runs = [r for r in runs if len(r) >= 12]  # not the (vertical) axis label
    segs = view.transcript.segments
    spoken = [[segs[0].start_s, segs[0].end_s]]
    for x in segs[1:]:
        if x.start_s - spoken[-1][1] > 0.2:
            spoken.append([x.start_s, x.end_s])
        else:
            spoken[-1][1] = x.end_s
    assert len(runs) == len(spoken) >= 2
    scale = (runs[-1][-1] - runs[0][0]) / (spoken[-1][1] - spoken[0][0])
    for run, (a, b) in zip(runs, spoken, strict=True):
        assert run[0] == pytest.approx(runs[0][0] + (a - spoken[0][0]) * scale, abs=4)
        assert run[-1] == pytest.approx(runs[0][0] + (b - spoken[0][0]) * scale, abs=4)


def test_show_says_no_audio_and_why_a_transcription_failed(
    tagged_store: Path, tmp_path: Path
) -> None:
    store = Path(shutil.copytree(tagged_store, tmp_path / "store"))
    with Store(store, writer=True) as st:
        a, b, c = sorted(r.video_id for r in st.list_videos("indexed"))
        st.speech.add([
            Transcript(a, "whisper-base", "h", "no_audio"),
            Transcript(b, "whisper-base", "h", "failed", error="ffmpeg: Invalid data found"),
        ])  # fmt: skip
    assert "speech   whisper-base  no audio" in invoke("show", a, "--store", str(store)).output
    out = invoke("show", b, "--store", str(store)).output
    assert "speech   whisper-base  failed: ffmpeg: Invalid data found" in out
    never = invoke("show", c, "--store", str(store))
    assert never.exit_code == 0 and "speech " not in never.output
    assert (
        json.loads(invoke("show", c, "--store", str(store), "--json").output)["transcript"] is None
    )
