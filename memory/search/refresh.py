"""The store's search indexes: derived LanceDB tables that search reads instead of
``captions`` and ``memories``, so a query never touches token bytes.

``caption_index`` — one row per caption of a live memory: the caption's key
(video_id, encoder_fingerprint, config_hash, run_id, kind, start_s, end_s, model,
settings), its ``text`` (with LanceDB's full-text index), ``row_hash`` (what was
embedded: key + text) and ``vector`` (fixed-size float32 [E], the sentence encoder's
embedding of the text; E = 384 for all-MiniLM-L6-v2).

``speech_index`` — one row per transcript segment (:mod:`.speech_index`).

``slot_index_<digest>`` — one table per encoder fingerprint (its vectors have that
encoder's width, and only vectors of one encoder may be compared): video_id,
encoder_fingerprint, run_id, slot, start_s, end_s, ``vector`` (the slot's stored pooled
embedding, fixed-size float32 [E]).

Design decisions:

* **Derived, refreshed after writes.** The index, caption and tag jobs call
  :func:`refresh_search_indexes` after their commits (``videomem search --refresh``
  does it by hand). A refresh diffs instead of rebuilding: slot rows by ``run_id``
  (a run's rows never change), caption rows by ``row_hash``; only what changed is
  embedded, added or deleted. Rows of a memory that was replaced (its run no longer
  named by a ``videos`` row) are dropped, and search checks liveness again, so a
  stale index can miss new rows but never returns replaced ones.
* **Exhaustive below ``ann_min_rows``, ANN above.** A flat scan of a few ten thousand
  vectors is exact and takes milliseconds; an IVF-PQ index only pays past that (see
  ``bench/search.py``). Once built, LanceDB keeps searching rows added later by a
  flat scan of the unindexed part, and ``optimize`` folds them in.
* **Full-text index** on ``caption_index.text`` (LanceDB's own, needed by its hybrid
  query), rebuilt when rows change.
* **Through the Store.** Tables are read, created and written only through
  :class:`videomem.memory.store.Store` and its :class:`IndexTable` handles (batches
  stream, so memory stays bounded); liveness is ``Store.live_runs``, the same rule
  search, export and garbage collection apply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from videomem.memory.search.speech_index import SPEECH_INDEX, refresh_speech_index
from videomem.memory.search.text_rows import embedded_rows, vectors
from videomem.memory.store import CAPTIONS, CAPTIONS_SCHEMA, IndexTable, Store
from videomem.pipeline.errors import StoreError

CAPTION_INDEX = "caption_index"
SLOT_INDEX_PREFIX = "slot_index_"
#: below this many rows a flat scan is exact and fast enough; above, build IVF-PQ
ANN_MIN_ROWS = 50_000

#: text -> float32 [T, E], unit rows (``SentenceEncoder.encode_text``)
Embed = Callable[[Sequence[str]], torch.Tensor]

#: the caption columns the index keeps, typed as in the captions table itself
_CAPTION_KEY_FIELDS = [
    CAPTIONS_SCHEMA.field(name)
    for name in (
        "video_id",
        "encoder_fingerprint",
        "config_hash",
        "run_id",
        "kind",
        "start_s",
        "end_s",
        "model",
        "settings",
        "text",
    )
]


def caption_index_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            *_CAPTION_KEY_FIELDS,
            pa.field("row_hash", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


def slot_index_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("encoder_fingerprint", pa.string(), nullable=False),
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("slot", pa.int32(), nullable=False),
            pa.field("start_s", pa.float64()),
            pa.field("end_s", pa.float64()),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


def slot_index_name(encoder_fingerprint: str) -> str:
    """The slot index table of one encoder (table names allow [A-Za-z0-9_-] only)."""
    return SLOT_INDEX_PREFIX + hashlib.sha256(encoder_fingerprint.encode()).hexdigest()[:16]


@dataclass
class RefreshReport:
    """What one refresh changed."""

    captions_added: int = 0
    captions_deleted: int = 0
    slots_added: int = 0
    slots_deleted: int = 0
    speech_added: int = 0
    speech_deleted: int = 0
    ann_indexes: tuple[str, ...] = ()  # tables that have (or got) an ANN index

    def text(self) -> str:
        return (
            f"search index: captions +{self.captions_added} -{self.captions_deleted}, "
            f"slots +{self.slots_added} -{self.slots_deleted}, "
            f"speech +{self.speech_added} -{self.speech_deleted}"
            + (f", ANN on {', '.join(self.ann_indexes)}" if self.ann_indexes else "")
        )


# --------------------------------------------------------------------------- helpers


def ensure_ann(
    table: IndexTable, ann_min_rows: int = ANN_MIN_ROWS, index_type: str = "IVF_PQ"
) -> bool:
    """Build the vector index of ``table`` once it holds ``ann_min_rows`` rows (see
    :meth:`IndexTable.ensure_vector_index`); returns whether the table has one."""
    return table.ensure_vector_index(ann_min_rows, index_type)


# --------------------------------------------------------------------------- refresh


def refresh_slot_index(store: Store, ann_min_rows: int = ANN_MIN_ROWS) -> RefreshReport:
    """Bring every ``slot_index_<digest>`` table in line with the live memories."""
    store.require_writer()
    rep = RefreshReport()
    live = store.live_runs()
    names = store.table_names()
    by_fp: dict[str, list[str]] = {}
    for run, lr in live.items():
        by_fp.setdefault(lr.encoder_fingerprint, []).append(run)
    # drop rows of replaced memories from every existing slot index
    for name in sorted(n for n in names if n.startswith(SLOT_INDEX_PREFIX)):
        table = store.index_table(name)
        if table is not None:
            dead = sorted(table.values("run_id") - set(live))
            rep.slots_deleted += table.delete_in("run_id", dead)
    ann = []
    cols = ["video_id", "encoder_fingerprint", "run_id", "slot", "start_s", "end_s"]
    for fp, runs in sorted(by_fp.items()):
        name = slot_index_name(fp)
        table = store.index_table(name)
        have = table.values("run_id") if table is not None else set()
        todo = sorted(set(runs) - have)
        where = "kind = 'slot' AND embedding IS NOT NULL"
        for b in store.scan_memories(todo, [*cols, "embedding"], where=where, runs_per_chunk=256):
            if not len(b):
                continue
            col = b.column("embedding")  # list<float32>, one width per encoder
            flat = col.combine_chunks().flatten().to_numpy(zero_copy_only=False)
            emb = flat.astype(np.float32).reshape(len(b), -1)
            rows = pa.table(
                {c: b.column(c) for c in cols} | {"vector": vectors(emb)},
                schema=slot_index_schema(emb.shape[1]),
            )
            if table is None:
                table = store.create_index_table(name, rows.schema)
            table.add(rows)
            rep.slots_added += len(rows)
        if table is not None and ensure_ann(table, ann_min_rows):
            ann.append(name)
    rep.ann_indexes = tuple(ann)
    return rep


def _caption_hash(row: dict[str, Any]) -> str:
    blob = "\x1f".join(str(row[f.name]) for f in _CAPTION_KEY_FIELDS)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def refresh_caption_index(
    store: Store, embedder: Callable[[], Embed], ann_min_rows: int = ANN_MIN_ROWS
) -> RefreshReport:
    """Bring ``caption_index`` in line with the captions of live memories.

    ``embedder``: a factory of the sentence encoder's ``encode_text``, called only
    when there is text to embed (a refresh with nothing new loads no model).
    """
    store.require_writer()
    rep = RefreshReport()
    if CAPTIONS not in store.table_names():
        return rep
    live = store.live_runs()
    table = store.index_table(CAPTION_INDEX)
    have = table.values("row_hash") if table is not None else set()
    wanted: set[str] = set()
    pending: list[dict[str, Any]] = []
    embed_fn: Embed | None = None

    def flush() -> None:
        nonlocal table, embed_fn
        if not pending:
            return
        if embed_fn is None:
            embed_fn = embedder()
        vec = embed_fn([r["text"] or "" for r in pending]).numpy()
        rows = embedded_rows(pending, _CAPTION_KEY_FIELDS, vec, caption_index_schema(vec.shape[1]))
        if table is None:
            table = store.create_index_table(CAPTION_INDEX, rows.schema)
        table.add(rows)
        rep.captions_added += len(rows)
        pending.clear()

    cols = [f.name for f in _CAPTION_KEY_FIELDS]
    for b in store.qa.batches(CAPTIONS, cols):
        for row in b.to_pylist():
            if row["run_id"] not in live or not (row["text"] or "").strip():
                continue
            h = _caption_hash(row)
            wanted.add(h)
            if h not in have:
                pending.append({**row, "row_hash": h})
                if len(pending) >= 512:
                    flush()
    flush()
    if table is not None:
        rep.captions_deleted = table.delete_in("row_hash", sorted(have - wanted))
        if rep.captions_added or rep.captions_deleted:
            table.create_fts_index("text")
        if ensure_ann(table, ann_min_rows):
            rep.ann_indexes = (CAPTION_INDEX,)
    return rep


def refresh_search_indexes(
    store: Store, embedder: Callable[[], Embed], ann_min_rows: int = ANN_MIN_ROWS
) -> RefreshReport:
    """Refresh the slot indexes, the caption index and the speech index of a store
    opened as the writer."""
    store.require_writer()
    try:
        slots = refresh_slot_index(store, ann_min_rows)
        caps = refresh_caption_index(store, embedder, ann_min_rows)
        added, deleted, ann = refresh_speech_index(
            store, embedder, lambda t: ensure_ann(t, ann_min_rows)
        )
    except StoreError:
        raise
    except Exception as e:  # lancedb raises plain ValueError/OSError/RuntimeError
        raise StoreError(
            f"store {store.uri}: refreshing the search index failed: {type(e).__name__}: {e}"
        ) from e
    slots.captions_added, slots.captions_deleted = caps.captions_added, caps.captions_deleted
    slots.ann_indexes += caps.ann_indexes + ((SPEECH_INDEX,) if ann else ())
    slots.speech_added, slots.speech_deleted = added, deleted
    return slots


__all__ = [
    "ANN_MIN_ROWS",
    "CAPTION_INDEX",
    "RefreshReport",
    "refresh_caption_index",
    "refresh_search_indexes",
    "refresh_slot_index",
    "slot_index_name",
]
