"""The speech track's table in the store: ``transcripts``.

One row per (video_id, model, settings_hash), the *key*; a re-run with the same
settings replaces the row (``merge_insert`` on the key), never duplicates it:

================== ============= ====================================================
video_id           string        the video's content id (``videos.video_id``)
model              string        the recogniser as the user named it
settings_hash      string        hash of the recognition settings (part of the key)
settings           string        the recognition settings as JSON
status             string        ``"done"``, ``"no_audio"`` or ``"failed"``
error              string, null  readable reason of a failure
language           string, null  language used (detected or given)
audio_s            float64, null seconds of audio read
seconds            float64, null wall time of the recognition
segments           list<struct>  start_s, end_s, text, language, avg_logprob,
                                 no_speech_prob, words (list<struct<start_s, end_s,
                                 text, probability>>, empty unless word times were asked)
created_at         timestamp[us, UTC]
================== ============= ====================================================

Design decisions:

* A video's transcript is one row with its segments nested, not a row per segment: a
  transcript is written, replaced and read whole (a 3-hour film is ~2,000 segments, a
  few hundred KB), and one row per key makes "a re-run adds nothing" the table's own
  rule. Search flattens segments into its own derived table.
* Keyed by content id, not by memory run: re-indexing with another encoder keeps it.
* Written only by a job's driver (``Store(writer=True)``), one commit per batch of
  videos, like the QA tables.
* Read and written through :class:`TranscriptsTable`, which the Store holds as
  ``store.speech`` (``add``, ``read``, ``get``, ``transcribed``, ``batches``): the
  table's one home is this module, as the QA tables' is :mod:`.qa_tables`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from videomem.memory.store.schema import sql_str
from videomem.pipeline.transcript import SpeechSegment, Transcript, Word

if TYPE_CHECKING:
    from videomem.memory.store.store import Store

TRANSCRIPTS = "transcripts"
TRANSCRIPT_KEY = ("video_id", "model", "settings_hash")

WORD_TYPE = pa.struct(
    [
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("probability", pa.float64()),
    ]
)
SEGMENT_TYPE = pa.struct(
    [
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("language", pa.string()),
        pa.field("avg_logprob", pa.float64()),
        pa.field("no_speech_prob", pa.float64()),
        pa.field("words", pa.list_(WORD_TYPE)),
    ]
)
TRANSCRIPTS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("settings_hash", pa.string(), nullable=False),
        pa.field("settings", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("language", pa.string()),
        pa.field("audio_s", pa.float64()),
        pa.field("seconds", pa.float64()),
        pa.field("segments", pa.list_(SEGMENT_TYPE)),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


def transcripts_table(transcripts: list[Transcript]) -> pa.Table:
    """Transcripts as rows of the ``transcripts`` schema (``created_at`` now when unset)."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        {
            "video_id": t.video_id,
            "model": t.model,
            "settings_hash": t.settings_hash,
            "settings": t.settings,
            "status": t.status,
            "error": t.error,
            "language": t.language,
            "audio_s": t.audio_s,
            "seconds": t.seconds,
            "segments": [
                {
                    "start_s": s.start_s,
                    "end_s": s.end_s,
                    "text": s.text,
                    "language": s.language,
                    "avg_logprob": s.avg_logprob,
                    "no_speech_prob": s.no_speech_prob,
                    "words": [
                        {
                            "start_s": w.start_s,
                            "end_s": w.end_s,
                            "text": w.text,
                            "probability": w.probability,
                        }
                        for w in s.words
                    ],
                }
                for s in t.segments
            ],
            "created_at": t.created_at or now,
        }
        for t in transcripts
    ]
    return pa.Table.from_pylist(rows, TRANSCRIPTS_SCHEMA)


def transcript_from_row(row: dict[str, Any]) -> Transcript:
    """A row of the ``transcripts`` table (as ``to_pylist`` gives it) as a record."""
    segments = tuple(
        SpeechSegment(
            start_s=s["start_s"],
            end_s=s["end_s"],
            text=s["text"],
            language=s["language"],
            avg_logprob=s["avg_logprob"],
            no_speech_prob=s["no_speech_prob"],
            words=tuple(
                Word(w["start_s"], w["end_s"], w["text"], w["probability"])
                for w in s["words"] or ()
            ),
        )
        for s in row["segments"] or ()
    )
    return Transcript(
        video_id=row["video_id"],
        model=row["model"],
        settings_hash=row["settings_hash"],
        status=row["status"],
        segments=segments,
        language=row["language"],
        error=row["error"],
        audio_s=row["audio_s"],
        seconds=row["seconds"],
        settings=row["settings"] or "{}",
        created_at=row["created_at"],
    )


def preferred(rows: list[Transcript]) -> Transcript | None:
    """The transcript a reader of a video sees among its rows: the newest finished one
    (``done`` or ``no_audio``), else the newest failure (so its reason shows)."""
    epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    newest = sorted(rows, key=lambda t: t.created_at or epoch, reverse=True)
    finished = [t for t in newest if t.status != "failed"]
    return (finished or newest or [None])[0]


class TranscriptsTable:
    """The rows of ``transcripts``, reached as ``store.speech``: the writer's first rows
    create the table; until then it reads as empty (so does a table a writer is
    creating right now, for a reader)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _table(self, create: bool) -> Any:
        return self._store._side_table(TRANSCRIPTS, TRANSCRIPTS_SCHEMA, create)

    def add(self, transcripts: Sequence[Transcript]) -> int:
        """Upsert transcripts on their key (video, model, settings hash) in one commit:
        a re-run replaces rows, never duplicates them. Returns the rows written."""
        self._store.require_writer()
        if not transcripts:
            return 0
        data = transcripts_table(list(transcripts))
        self._store._upsert(TRANSCRIPTS, TRANSCRIPTS_SCHEMA, TRANSCRIPT_KEY, data)
        return len(transcripts)

    def read(self, video_id: str | None = None, *, model: str | None = None) -> list[Transcript]:
        """Every stored transcript (of ``video_id`` / by ``model`` when given)."""
        table = self._table(create=False)
        if table is None:
            return []
        where = " AND ".join(
            f"{col} = {sql_str(v)}" for col, v in (("video_id", video_id), ("model", model)) if v
        )
        return [transcript_from_row(r) for r in self._store._scan(table, where or None).to_pylist()]

    def get(self, video_id: str, model: str | None = None) -> Transcript | None:
        """The transcript a reader of ``video_id`` sees (by ``model`` when given): the
        newest finished one, else the newest failure; None if it was never transcribed."""
        return preferred(self.read(video_id, model=model))

    def transcribed(self, model: str, settings_hash: str) -> set[str]:
        """Videos with a finished transcript (``done`` or ``no_audio``) by this model and
        settings: what a resumed transcription skips (failures are tried again)."""
        table = self._table(create=False)
        if table is None:
            return set()
        where = (
            f"model = {sql_str(model)} AND settings_hash = {sql_str(settings_hash)}"
            " AND status != 'failed'"
        )
        return {r["video_id"] for r in self._store._scan(table, where, ["video_id"]).to_pylist()}

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Stream ``transcripts`` rows (only ``columns``); nothing if there is none."""
        table = self._table(create=False)
        if table is not None:
            yield from self._store._batches(table, None, columns)
