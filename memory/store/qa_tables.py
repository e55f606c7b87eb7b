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
"""

from __future__ import annotations

import pyarrow as pa

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
