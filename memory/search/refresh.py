"""The store's search indexes: derived LanceDB tables that search reads instead of
``captions`` and ``memories``, so a query never touches token bytes.

``caption_index`` — one row per caption of a live memory: the caption's key
(video_id, encoder_fingerprint, config_hash, run_id, kind, start_s, end_s, model,
settings), its ``text`` (with LanceDB's full-text index), ``row_hash`` (what was
embedded: key + text) and ``vector`` (fixed-size float32 [E], the sentence encoder's
embedding of the text; E = 384 for all-MiniLM-L6-v2).

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
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from videomem.memory.store.qa_tables import CAPTIONS, CAPTIONS_SCHEMA
from videomem.memory.store.schema import MEMORIES, VIDEOS, in_filter
from videomem.pipeline.errors import StoreError

CAPTION_INDEX = "caption_index"
SLOT_INDEX_PREFIX = "slot_index_"
#: below this many rows a flat scan is exact and fast enough; above, build IVF-PQ
ANN_MIN_ROWS = 50_000
#: rows read per batch while refreshing (bounded memory on any store size)
_BATCH = 4096

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
    ann_indexes: tuple[str, ...] = ()  # tables that have (or got) an ANN index

    def text(self) -> str:
        return (
            f"search index: captions +{self.captions_added} -{self.captions_deleted}, "
            f"slots +{self.slots_added} -{self.slots_deleted}"
            + (f", ANN on {', '.join(self.ann_indexes)}" if self.ann_indexes else "")
        )


# --------------------------------------------------------------------------- helpers


def table_names(db: Any) -> set[str]:
    return set(db.list_tables().tables)


def _batches(table: Any, where: str | None, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """Stream a table's rows (only ``columns``) in bounded batches."""
    q = table.search().select(list(columns)).limit(None)
    if where:
        q = q.where(where)
    yield from q.to_batches(_BATCH)


def _column_set(table: Any, column: str, where: str | None = None) -> set[str]:
    out: set[str] = set()
    for b in _batches(table, where, [column]):
        out.update(b.column(0).to_pylist())
    return out


def live_runs(db: Any) -> dict[str, str]:
    """run_id -> encoder_fingerprint of every memory a reader sees."""
    out: dict[str, str] = {}
    where = "status = 'indexed' AND run_id IS NOT NULL"
    for b in _batches(db.open_table(VIDEOS), where, ["run_id", "encoder_fingerprint"]):
        out.update(zip(b.column(0).to_pylist(), b.column(1).to_pylist(), strict=True))
    return out


def _vectors(x: np.ndarray) -> pa.FixedSizeListArray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def _delete_in(table: Any, column: str, values: Sequence[str]) -> int:
    deleted = 0
    for i in range(0, len(values), 500):
        where = in_filter(column, list(values[i : i + 500]))
        deleted += table.count_rows(where)
        table.delete(where)
    return deleted


def ensure_ann(table: Any, ann_min_rows: int = ANN_MIN_ROWS, index_type: str = "IVF_PQ") -> bool:
    """Build the vector index (cosine; IVF-PQ by default) once ``table`` holds
    ``ann_min_rows`` rows; returns whether the table has one. Partitions ~ sqrt(rows);
    one PQ sub-vector per 8 dimensions (search refines the candidates with exact
    distances)."""
    has = any(idx.columns == ["vector"] for idx in table.list_indices())
    n = table.count_rows()
    if has:
        if any(i.num_unindexed_rows for i in table.list_indices() if i.columns == ["vector"]):
            table.optimize()  # fold rows added since the build into the index
        return True
    if n < ann_min_rows:
        return False
    dim = table.schema.field("vector").type.list_size
    sub = next(s for s in (dim // 8, dim // 4, dim // 2, dim, 1) if s and dim % s == 0)
    from lancedb.index import HnswSq, IvfPq

    parts = max(1, int(np.sqrt(n)))
    if index_type == "IVF_PQ":
        config: Any = IvfPq(distance_type="cosine", num_partitions=parts, num_sub_vectors=sub)
    elif index_type == "IVF_HNSW_SQ":
        config = HnswSq(distance_type="cosine", num_partitions=parts)
    else:
        raise StoreError(f"unknown vector index type {index_type!r}; IVF_PQ or IVF_HNSW_SQ")
    table.create_index("vector", config=config)
    return True


def _ensure_fts(table: Any) -> None:
    from lancedb.index import FTS

    if table.count_rows():
        table.create_index("text", config=FTS(), replace=True)


# --------------------------------------------------------------------------- refresh


def refresh_slot_index(db: Any, ann_min_rows: int = ANN_MIN_ROWS) -> RefreshReport:
    """Bring every ``slot_index_<digest>`` table in line with the live memories."""
    rep = RefreshReport()
    live = live_runs(db)
    names = table_names(db)
    memories = db.open_table(MEMORIES)
    by_fp: dict[str, list[str]] = {}
    for run, fp in live.items():
        by_fp.setdefault(fp, []).append(run)
    # drop rows of replaced memories from every existing slot index
    for name in sorted(n for n in names if n.startswith(SLOT_INDEX_PREFIX)):
        table = db.open_table(name)
        dead = sorted(_column_set(table, "run_id") - set(live))
        rep.slots_deleted += _delete_in(table, "run_id", dead)
    ann = []
    for fp, runs in sorted(by_fp.items()):
        name = slot_index_name(fp)
        table = db.open_table(name) if name in names else None
        have = _column_set(table, "run_id") if table is not None else set()
        todo = sorted(set(runs) - have)
        for i in range(0, len(todo), 256):
            where = in_filter("run_id", todo[i : i + 256]) + " AND kind = 'slot'"
            cols = ["video_id", "encoder_fingerprint", "run_id", "slot", "start_s", "end_s"]
            for b in _batches(memories, where + " AND embedding IS NOT NULL", [*cols, "embedding"]):
                if not len(b):
                    continue
                col = b.column("embedding")  # list<float32>, one width per encoder
                flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
                emb = flat.reshape(len(b), -1)
                rows = pa.table(
                    {c: b.column(c) for c in cols} | {"vector": _vectors(emb)},
                    schema=slot_index_schema(emb.shape[1]),
                )
                if table is None:
                    table = db.create_table(name, schema=rows.schema, exist_ok=True)
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
    db: Any, embedder: Callable[[], Embed], ann_min_rows: int = ANN_MIN_ROWS
) -> RefreshReport:
    """Bring ``caption_index`` in line with the captions of live memories.

    ``embedder``: a factory of the sentence encoder's ``encode_text``, called only
    when there is text to embed (a refresh with nothing new loads no model).
    """
    rep = RefreshReport()
    names = table_names(db)
    if CAPTIONS not in names:
        return rep
    live = live_runs(db)
    captions = db.open_table(CAPTIONS)
    table = db.open_table(CAPTION_INDEX) if CAPTION_INDEX in names else None
    have = _column_set(table, "row_hash") if table is not None else set()
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
        data = pa.Table.from_pylist(
            pending, pa.schema([*_CAPTION_KEY_FIELDS, pa.field("row_hash", pa.string())])
        )
        rows = pa.table(
            {c: data.column(c) for c in data.column_names} | {"vector": _vectors(vec)},
            schema=caption_index_schema(vec.shape[1]),
        )
        if table is None:
            table = db.create_table(CAPTION_INDEX, schema=rows.schema, exist_ok=True)
        table.add(rows)
        rep.captions_added += len(rows)
        pending.clear()

    cols = [f.name for f in _CAPTION_KEY_FIELDS]
    for b in _batches(captions, None, cols):
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
        rep.captions_deleted = _delete_in(table, "row_hash", sorted(have - wanted))
        if rep.captions_added or rep.captions_deleted:
            _ensure_fts(table)
        if ensure_ann(table, ann_min_rows):
            rep.ann_indexes = (CAPTION_INDEX,)
    return rep


def refresh_search_indexes(
    store: Any, embedder: Callable[[], Embed], ann_min_rows: int = ANN_MIN_ROWS
) -> RefreshReport:
    """Refresh the slot indexes and the caption index of a store opened as the writer."""
    store._require_writer()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            slots = refresh_slot_index(store.db, ann_min_rows)
            caps = refresh_caption_index(store.db, embedder, ann_min_rows)
    except StoreError:
        raise
    except Exception as e:  # lancedb raises plain ValueError/OSError/RuntimeError
        raise StoreError(
            f"store {store.uri}: refreshing the search index failed: {type(e).__name__}: {e}"
        ) from e
    slots.captions_added, slots.captions_deleted = caps.captions_added, caps.captions_deleted
    slots.ann_indexes += caps.ann_indexes
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
