"""The LanceDB persistence layer: the one way into the store's tables.

Everything that reads or writes a table goes through :class:`Store` (and the
:class:`IndexTable` handles it gives out for derived tables); nothing outside this
package imports ``lancedb`` or ``lance`` (``tests/test_layout.py`` checks it).

* :mod:`.store` — the Store: open/close, reads, the three-step commit, garbage
  collection; the side tables' shared mechanics.
* :mod:`.schema` — the ``videos``/``memories`` schemas, :class:`VideoRecord` and the
  row codecs; :mod:`.codec` — the stored token encodings (float16, int8).
* :mod:`.qa_tables` — the QA stage's ``answers`` and ``captions``: schemas and rows
  (``store.qa``); :mod:`.transcripts` — the speech track's ``transcripts``: schema
  and rows (``store.speech``).
* :mod:`.index_table` — derived tables (the search indexes): rows, vector and
  full-text indexes, queries.
* :mod:`.lease` — one writer per store; :mod:`.clean_close` — the marker that lets a
  job skip the full garbage collection after a clean close;
* :mod:`.repair` — dropping damaged data files;
  :mod:`.export` — plain Parquet for other engines.
"""

from videomem.memory.store.export import export_store
from videomem.memory.store.index_table import IndexTable
from videomem.memory.store.lease import LeaseConfig
from videomem.memory.store.qa_tables import ANSWERS, ANSWERS_SCHEMA, CAPTIONS, CAPTIONS_SCHEMA
from videomem.memory.store.repair import Damage, RepairReport, find_damage, repair
from videomem.memory.store.schema import (
    MEMORIES,
    VIDEOS,
    LiveRun,
    Status,
    VideoCommit,
    VideoRecord,
)
from videomem.memory.store.store import Store

__all__ = [
    "ANSWERS",
    "ANSWERS_SCHEMA",
    "CAPTIONS",
    "CAPTIONS_SCHEMA",
    "MEMORIES",
    "VIDEOS",
    "Damage",
    "IndexTable",
    "LeaseConfig",
    "LiveRun",
    "RepairReport",
    "Status",
    "Store",
    "VideoCommit",
    "VideoRecord",
    "export_store",
    "find_damage",
    "repair",
]
