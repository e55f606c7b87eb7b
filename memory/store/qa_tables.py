"""The QA stage's tables in the store: ``answers`` and ``captions``.

``answers`` — one row per (question_id, video_id, model, settings_hash), the *key*;
re-answering replaces the row (``merge_insert`` on the key), never duplicates it:

================== ============= ====================================================
question_id        string        from the question file, else a hash of (video, question, time)
video_id           string        the resolved video id (or the raw ``video`` value of a
                                 row that named no stored video)
mode               string        ``"global"`` or ``"breakpoint"``
time_s             float64, null breakpoint time
question answer    string        the question and the generated answer ("" if failed)
model              string        the checkpoint that answered (as the user named it)
encoder_fingerprint string, null the memory's encoder
run_id             string, null  the memory (``videos.run_id``) that was read
slots              int32         slots the prompt showed
memory_slots       int32         slots of the stored memory
k                  int32, null   QA-time consolidation target (null: the memory fit)
kept_slots         list<int32>,  slots (timeline lines) a question-aware cut kept whole,
                   null          indices into the view before the cut (null: no cut, or
                                 a uniform one; always null in tables written before it)
source             string        ``"memory"``, or ``"video"`` (breakpoint frames decoded again)
prompt_tokens new_tokens int32   lengths
seconds            float64       generation time (a share of a shared prefill)
dtype              string        the LM dtype that answered
settings_hash      string        hash of the generation settings (part of the key)
settings           string        the generation settings as JSON
status             string        ``"answered"`` or ``"failed"``
error              string, null  readable reason of a failure
answered_at        timestamp[us, UTC]
================== ============= ====================================================

``captions`` — one row per caption (columns shared with the text-timeline work):
video_id, encoder_fingerprint, config_hash, run_id (the memory's), kind (``"global"``,
``"dense"`` or ``"tags"``), start_s, end_s, text, model, settings (JSON string),
created_at. Key: (video_id, run_id, kind, start_s, model, settings).

The driver of a QA/caption job is their only writer (``Store(writer=True)``).
:class:`QATables` reads and writes their rows (``store.qa.add``, ``read``, ``count``,
``batches``, ``answered``, ``captions``).

Design decisions:

* The tables' access lives here beside their schemas, in a class the Store holds as
  ``store.qa``, not in methods of the Store: one home per table. It uses the Store's
  shared mechanics (``_side_table``, ``_upsert``, ``_add_columns``, ``_scan``), which
  only code inside this package may.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from videomem.memory.store.schema import sql_str

if TYPE_CHECKING:
    from videomem.memory.store.schema import VideoRecord
    from videomem.memory.store.store import Store

ANSWERS, CAPTIONS = "answers", "captions"

ANSWER_KEY = ("question_id", "video_id", "model", "settings_hash")
CAPTION_KEY = ("video_id", "run_id", "kind", "start_s", "model", "settings")

ANSWERS_SCHEMA = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("mode", pa.string(), nullable=False),
        pa.field("time_s", pa.float64()),
        pa.field("question", pa.string()),
        pa.field("answer", pa.string()),
        pa.field("model", pa.string(), nullable=False),
        pa.field("encoder_fingerprint", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("slots", pa.int32()),
        pa.field("memory_slots", pa.int32()),
        pa.field("k", pa.int32()),
        pa.field("kept_slots", pa.list_(pa.int32())),
        pa.field("source", pa.string()),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("new_tokens", pa.int32()),
        pa.field("seconds", pa.float64()),
        pa.field("dtype", pa.string()),
        pa.field("settings_hash", pa.string(), nullable=False),
        pa.field("settings", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("answered_at", pa.timestamp("us", tz="UTC")),
    ]
)

CAPTIONS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("encoder_fingerprint", pa.string(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("model", pa.string(), nullable=False),
        pa.field("settings", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

SCHEMAS = {ANSWERS: ANSWERS_SCHEMA, CAPTIONS: CAPTIONS_SCHEMA}
#: nullable columns added after a table was first released: a table written before
#: them still reads (rows without them), and a writer adds them (null for old rows)
ADDED = {ANSWERS: frozenset({"kept_slots"}), CAPTIONS: frozenset()}
KEYS = {ANSWERS: ANSWER_KEY, CAPTIONS: CAPTION_KEY}


def rows_table(name: str, rows: list[dict[str, object]]) -> pa.Table:
    """``rows`` (dicts with the table's columns; missing ones are null) as an Arrow
    table of that table's schema. Raises on a missing non-null column."""
    schema = SCHEMAS[name]
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema)


class QATables:
    """The rows of ``answers`` and ``captions``, reached as ``store.qa``: the writer's
    first rows create a table; until then it reads as empty (so does a table a writer
    is creating right now, for a reader)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _table(self, name: str, create: bool) -> Any:
        return self._store._side_table(name, SCHEMAS[name], create)

    def add(self, name: str, rows: list[dict[str, Any]]) -> int:
        """Upsert ``answers``/``captions`` rows on the table's key (one commit); a re-run
        replaces rows, never duplicates them. Returns the number of rows written."""
        self._store.require_writer()
        if not rows:
            return 0
        self._add_columns(name)
        self._store._upsert(name, SCHEMAS[name], KEYS[name], rows_table(name, rows))
        return len(rows)

    def _add_columns(self, name: str) -> None:
        """Give a table written before its newer nullable columns (:data:`ADDED`) those
        columns (``Store._add_columns``), so new rows fit it."""
        table = self._table(name, create=False)
        if table is not None:
            self._store._add_columns(table, SCHEMAS[name], ADDED[name])

    def read(
        self, name: str, where: str | None = None, *, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Rows of ``answers``/``captions`` (``where``: a LanceDB filter; ``limit`` rows
        from ``offset`` in storage order: one page), [] if none."""
        table = self._table(name, create=False)
        if table is None or limit == 0:
            return []
        return self._store._scan(table, where, limit=limit, offset=offset).to_pylist()

    def count(self, name: str, where: str | None = None) -> int:
        """How many ``answers``/``captions`` rows match (0 if the table does not exist)."""
        table = self._table(name, create=False)
        if table is None:
            return 0
        try:
            return int(table.count_rows(where))
        except Exception as e:
            raise self._store._lance_error(name, "read", e) from e

    def batches(self, name: str, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Stream ``answers``/``captions`` rows (only ``columns``, default all); nothing
        if the table does not exist yet."""
        table = self._table(name, create=False)
        if table is not None:
            yield from self._store._batches(table, None, columns)

    def answered(self, model: str, settings_hash: str) -> set[tuple[str, str]]:
        """(question_id, video_id) answered with this model and settings: what a
        resumed QA job skips (failed rows are tried again)."""
        where = (
            f"model = {sql_str(model)} AND settings_hash = {sql_str(settings_hash)}"
            " AND status = 'answered'"
        )
        return {(r["question_id"], r["video_id"]) for r in self.read(ANSWERS, where)}

    def captions(self, video_id: str, record: VideoRecord | None = None) -> list[dict[str, Any]]:
        """Captions of the memory a reader of ``video_id`` sees (its current run),
        global first, then by start time. ``record``: its ``Store.latest`` record, when
        the caller has just read it (saves reading it again)."""
        rec = (
            record
            if record is not None and record.video_id == video_id
            else self._store.latest(video_id)
        )
        if rec.run_id is None:
            return []
        where = f"video_id = {sql_str(video_id)} AND run_id = {sql_str(rec.run_id)}"
        rows = self.read(CAPTIONS, where)
        return sorted(rows, key=lambda r: (r["kind"] != "global", r["start_s"], r["kind"]))
