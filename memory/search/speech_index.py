"""The speech search index: what is said, searchable like captions.

``speech_index`` — one row per segment of the transcript a reader of each video sees
(``store.speech.get``: the newest finished one): video_id, model, settings_hash,
segment (its position in the transcript), start_s, end_s, ``text`` (with LanceDB's
full-text index), ``row_hash`` (what was embedded: key + text) and ``vector`` (the
sentence encoder's embedding of the text, as ``caption_index``).

Design decisions:

* **The same shape as the caption index**, so search queries it the same way (hybrid
  full text + vectors, LanceDB's RRF reranker) and the refresh is as incremental:
  rows are diffed by ``row_hash``; only new segments are embedded, and segments of a
  transcript that was replaced (a newer model or settings for the video) are deleted.
* **Keyed by the video, not a memory.** A transcript outlives re-indexing, so its rows
  do too; search names a hit's file and memory from the video's live record, and
  drops hits of videos with none.
* "No audio" and failed transcripts have no segments, so nothing to index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
from videomem.memory.search.text_rows import embedded_rows
from videomem.memory.store import Store
from videomem.memory.store.transcripts import preferred
from videomem.pipeline.transcript import Transcript

SPEECH_INDEX = "speech_index"

_KEY_FIELDS = [
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("settings_hash", pa.string(), nullable=False),
    pa.field("segment", pa.int32(), nullable=False),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
    pa.field("text", pa.string()),
]


def speech_index_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            *_KEY_FIELDS,
            pa.field("row_hash", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


def _row_hash(row: dict[str, Any]) -> str:
    blob = "\x1f".join(str(row[f.name]) for f in _KEY_FIELDS)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _read(store: Store) -> list[Transcript]:
    """The transcript a reader sees, for every transcribed video."""
    by_video: dict[str, list[Transcript]] = {}
    for t in store.speech.read():
        by_video.setdefault(t.video_id, []).append(t)
    seen = (preferred(rows) for rows in by_video.values())
    return [t for t in seen if t is not None and t.status == "done"]


def _segment_rows(transcripts: list[Transcript]) -> Iterator[dict[str, Any]]:
    for t in transcripts:
        for i, s in enumerate(t.segments):
            if s.text.strip():
                row = {
                    "video_id": t.video_id,
                    "model": t.model,
                    "settings_hash": t.settings_hash,
                    "segment": i,
                    "start_s": s.start_s,
                    "end_s": s.end_s,
                    "text": s.text.strip(),
                }
                yield {**row, "row_hash": _row_hash(row)}


def refresh_speech_index(
    store: Store,
    embedder: Callable[[], Callable[[Any], Any]],
    ensure_ann: Callable[[Any], bool],
) -> tuple[int, int, bool]:
    """Bring ``speech_index`` in line with the transcripts readers see; returns (rows
    added, rows deleted, whether it has an ANN index). ``embedder`` is called only
    when there is new text to embed."""
    store.require_writer()
    table = store.index_table(SPEECH_INDEX) if SPEECH_INDEX in store.table_names() else None
    have = table.values("row_hash") if table is not None else set()
    rows = list(_segment_rows(_read(store)))
    wanted = {r["row_hash"] for r in rows}
    new = [r for r in rows if r["row_hash"] not in have]
    added = 0
    embed = embedder() if new else None  # no new text: no model loaded
    for start in range(0, len(new), 512):
        part = new[start : start + 512]
        assert embed is not None
        vec = embed([r["text"] for r in part]).numpy()
        table_rows = embedded_rows(part, _KEY_FIELDS, vec, speech_index_schema(vec.shape[1]))
        if table is None:
            table = store.create_index_table(SPEECH_INDEX, table_rows.schema)
        table.add(table_rows)
        added += len(table_rows)
    deleted = 0
    ann = False
    if table is not None:
        deleted = table.delete_in("row_hash", sorted(have - wanted))
        if added or deleted:
            table.create_fts_index("text")
        ann = ensure_ann(table)
    return added, deleted, ann
