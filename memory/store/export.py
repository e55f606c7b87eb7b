"""Export a store as plain Parquet, one file per table, for any other engine (DuckDB,
Spark, pandas, …).

Design decisions:

* ``videos``: every row (failed ones too: they are the record of what went wrong).
* ``memories``: only rows of live memories (named by a ``videos`` row), streamed in
  chunks of runs so a large store never sits in memory at once. ``tokens=False``
  leaves the token bytes out (the slots' spans, sizes and embeddings are a few
  hundred bytes a row; tokens are most of a store).
* ``captions`` and ``answers`` (the QA stage's tables) and ``transcripts`` (the speech
  track's, segments nested) when the store has them, as they are. The search indexes are derived data and are not exported.
* Each file is written to ``.tmp`` and renamed: a reader never sees half a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
from videomem.memory.store.qa_tables import ANSWERS, CAPTIONS, SCHEMAS
from videomem.memory.store.schema import MEMORIES, MEMORIES_SCHEMA, VIDEOS, VIDEOS_SCHEMA, conform
from videomem.memory.store.transcripts import TRANSCRIPTS, TRANSCRIPTS_SCHEMA
from videomem.pipeline.errors import StoreError

if TYPE_CHECKING:
    from videomem.memory.store.store import Store

#: runs whose memory rows are read per chunk
_RUNS_PER_CHUNK = 64


def _write(path: Path, schema: pa.Schema, parts: Iterable[pa.Table]) -> Path:
    tmp = path.with_suffix(".parquet.tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for part in parts:
            # an older store lacks columns added since: they export as nulls
            writer.write_table(conform(part, schema))
    tmp.replace(path)
    return path


def _tables(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.Table]:
    for batch in batches:
        yield pa.Table.from_batches([batch])


def export_store(
    store: Store, out_dir: str | os.PathLike[str], *, tokens: bool = True
) -> dict[str, Path]:
    """Write ``<table>.parquet`` for videos, memories, and captions/answers/transcripts
    when present, to ``out_dir``. Returns table name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        names = store.table_names()
        paths = {
            VIDEOS: _write(
                out / "videos.parquet", VIDEOS_SCHEMA, _tables(store._batches(store._videos, None))
            )
        }
        live = sorted(store.live_runs())
        schema = (
            MEMORIES_SCHEMA
            if tokens
            else MEMORIES_SCHEMA.remove(MEMORIES_SCHEMA.get_field_index("tokens"))
        )
        chunks = store.scan_memories(live, schema.names, runs_per_chunk=_RUNS_PER_CHUNK)
        paths[MEMORIES] = _write(out / "memories.parquet", schema, chunks)
        for name in (CAPTIONS, ANSWERS):
            if name in names:
                rows = _tables(store.qa.batches(name, None))
                paths[name] = _write(out / f"{name}.parquet", SCHEMAS[name], rows)
        if TRANSCRIPTS in names:
            rows = _tables(store.speech.batches())
            paths[TRANSCRIPTS] = _write(out / "transcripts.parquet", TRANSCRIPTS_SCHEMA, rows)
    except StoreError:
        raise
    except Exception as e:  # lancedb / pyarrow raise plain errors
        raise StoreError(f"store {store.uri}: export failed: {type(e).__name__}: {e}") from e
    return paths
