"""The transcripts table of the store (real LanceDB)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from videomem.memory.store import Store
from videomem.pipeline.errors import StoreError
from videomem.pipeline.transcript import SpeechSegment, Transcript, Word

SEGMENTS = (
    SpeechSegment(
        0.5, 2.0, " Never judge a book", "en", -0.2, 0.01, (Word(0.5, 0.9, " Never", 0.9),)
    ),
    SpeechSegment(2.5, 4.0, " by its cover.", "en", -0.3, 0.02),
)


def _t(
    video: str,
    status: str = "done",
    *,
    model: str = "whisper-base",
    settings: str = "s1",
    at: int = 0,
    **kw,
) -> Transcript:
    return Transcript(
        video_id=video,
        model=model,
        settings_hash=settings,
        status=status,  # type: ignore[arg-type]
        segments=SEGMENTS if status == "done" else (),
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=at),
        **kw,
    )


def test_transcripts_round_trip_upsert_on_their_key_and_resume(tmp_path: Path) -> None:
    with Store(tmp_path / "s", writer=True) as st:
        assert st.speech.read() == [] and st.speech.get("v1") is None
        assert st.speech.transcribed("whisper-base", "s1") == set()
        st.speech.add(
            [
                _t("v1", language="en"),
                _t("v2", "no_audio"),
                _t("v3", "failed", error="truncated audio"),
            ]
        )
        st.speech.add([_t("v1", language="en")])  # the same settings again: replaced
        st.speech.add([_t("v1", settings="s2", at=5)])  # other settings: a new row
        assert len(st.speech.read()) == 4
        got = st.speech.get("v1", model="whisper-base")
        assert got is not None and got.settings_hash == "s2"  # the newest finished one
        first = [t for t in st.speech.read("v1") if t.settings_hash == "s1"][0]
        assert first.segments == SEGMENTS and first.language == "en"  # words survive
        assert first.text == "Never judge a book by its cover."
        # resume skips done and no-audio videos and tries a failure again
        assert st.speech.transcribed("whisper-base", "s1") == {"v1", "v2"}
        assert st.speech.transcribed("other", "s1") == set()
        failed = st.speech.get("v3")
        assert failed is not None and failed.status == "failed" and "truncated" in failed.error
        paths = st.export(tmp_path / "out", tokens=False)
    rows = pq.read_table(paths["transcripts"]).to_pylist()
    assert len(rows) == 4 and {r["video_id"] for r in rows} == {"v1", "v2", "v3"}
    with pytest.raises(StoreError, match="read-only"), Store(tmp_path / "s") as ro:
        ro.speech.add([_t("v4")])


def test_a_finished_transcript_is_preferred_over_a_newer_failure(tmp_path: Path) -> None:
    with Store(tmp_path / "s", writer=True) as st:
        st.speech.add([_t("v1", at=0), _t("v1", "failed", settings="s2", at=9, error="x")])
        got = st.speech.get("v1")
        assert got is not None and got.status == "done"


def test_transcript_before_and_invalid_records() -> None:
    t = _t("v1")
    assert [s.text for s in t.before(2.5)] == [" Never judge a book"]
    with pytest.raises(ValueError, match="status"):
        _t("v1", "weird")
    with pytest.raises(ValueError, match="no segments"):
        Transcript("v1", "m", "s", "no_audio", segments=SEGMENTS)


def test_a_table_being_created_reads_as_absent(tmp_path: Path) -> None:
    """A writer creating ``transcripts`` (or a QA table) makes its folder before its first
    version: a reader listing the store then must see no such table, not fail."""
    with Store(tmp_path / "s", writer=True):
        pass
    for name in ("transcripts", "answers"):
        (tmp_path / "s" / f"{name}.lance").mkdir()
    with Store(tmp_path / "s") as st:
        assert "transcripts" in st.table_names()
        assert st.speech.read() == [] and st.speech.transcribed("whisper-base", "s1") == set()
        assert st.speech.get("v1") is None and st.qa.read("answers") == []


def test_a_search_index_being_created_reads_as_absent(tmp_path: Path) -> None:
    """The same for a search index: a reader sees none while a writer creates it; a
    writer, which would build on it, still gets the error."""
    with Store(tmp_path / "s", writer=True):
        pass
    (tmp_path / "s" / "caption_index.lance").mkdir()
    with Store(tmp_path / "s") as st:
        assert "caption_index" in st.table_names()
        assert st.index_table("caption_index") is None
    with Store(tmp_path / "s", writer=True) as w, pytest.raises(StoreError):
        w.index_table("caption_index")
