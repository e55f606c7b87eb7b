"""Speech search with real weights end to end: espeak-ng saying two sentences over the
real bikes clip, indexed with the real MobileNetV2 and tagged, transcribed by real
Whisper base (the shared ``speech_store``), its segments indexed as the ``speech``
source and searched with the real all-MiniLM-L6-v2 (hybrid with RRF, as captions)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner
from videomem.jobs import api
from videomem.jobs.cli import app
from videomem.jobs.search_refresh import refresh
from videomem.memory.search import SPEECH_INDEX
from videomem.memory.store import Store
from videomem.pipeline.errors import SearchError

from tests.speech import SpeechClip

#: how far a hit may start before / end after the voice, seconds (as tests/encoders)
SLACK_S = 0.5

pytestmark = pytest.mark.slow  # Whisper base and MiniLM on CPU, ~60 s with the fixture


@pytest.fixture
def store(speech_store: tuple[Path, str, SpeechClip], tmp_path: Path) -> Path:
    """A copy of the shared store (these tests write to it)."""
    return Path(shutil.copytree(speech_store[0], tmp_path / "store"))


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_a_spoken_phrase_is_found_where_it_is_said(
    store: Path, speech_store: tuple[Path, str, SpeechClip]
) -> None:
    _, vid, clip = speech_store
    with Store(store) as st:
        transcript = st.speech.get(vid)
        assert transcript is not None and st.index_table(SPEECH_INDEX) is None
    n = len([s for s in transcript.segments if s.text.strip()])
    with Store(store, writer=True) as st:
        first, again = refresh(st), refresh(st)
    assert first.speech_added == n and first.speech_deleted == 0
    assert again.speech_added == again.speech_deleted == 0  # incremental: nothing new

    r = invoke("search", "judge a book by its cover", "--store", str(store),
               "--source", "speech", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    top = json.loads(r.output)["moments"][0]
    assert top["source"] == "speech" and top["kind"] == "speech" and top["video_id"] == vid
    assert "judge a book" in top["text"].lower()
    said_from, said_to = clip.spans[1]  # the second sentence's voice
    assert said_from - SLACK_S <= top["start_s"] < top["end_s"] <= said_to + SLACK_S
    # the other sentence is found at its own time
    r = invoke("search", "a brown fox jumping", "--store", str(store), "--source", "speech",
               "--json")  # fmt: skip
    fox = json.loads(r.output)["moments"][0]
    assert "fox" in fox["text"].lower() and fox["end_s"] <= clip.spans[0][1] + SLACK_S

    # all sources: the speech hit is there and says which source it comes from
    r = invoke("search", "judge a book by its cover", "--store", str(store))
    assert r.exit_code == 0 and " speech " in r.output and "[speech]" in r.output, r.output


def test_a_replaced_transcript_replaces_its_rows(
    store: Path, speech_store: tuple[Path, str, SpeechClip]
) -> None:
    _, vid, _ = speech_store
    with Store(store, writer=True) as st:
        refresh(st)
        old = st.speech.get(vid)
        assert old is not None
        (said, *_rest) = old.segments
        newer = dataclasses.replace(
            old,
            settings_hash="other",
            segments=(dataclasses.replace(said, text=" A completely different sentence."),),
            created_at=None,
        )
        st.speech.add([newer])
        rep = refresh(st)
        assert st.speech.get(vid) is not None
        assert st.speech.get(vid).settings_hash == "other"  # type: ignore[union-attr]
    assert rep.speech_added == 1 and rep.speech_deleted == len(old.segments)
    out = api.search(api.SearchRequest(query="completely different", store=str(store),
                                       source="speech")).result  # fmt: skip
    assert out is not None and out.moments[0].text == "A completely different sentence."


def test_speech_search_without_transcripts_says_what_to_run(tagged_store: Path) -> None:
    """A store with tags but no transcript: the speech source says what to run."""
    with pytest.raises(SearchError, match="videomem transcribe"):
        api.search(api.SearchRequest(query="book", store=str(tagged_store), source="speech"))
