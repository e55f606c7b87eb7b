"""Derived tables of a store (the search indexes), behind a small handle.

The search package (:mod:`videomem.memory.search`) owns *what* its tables hold (their
schemas, when rows are added or dropped, which scores mean what); this module owns *how*
LanceDB does it, so that nothing outside :mod:`videomem.memory.store` touches a LanceDB
table or imports ``lancedb``. A :class:`Store` hands out an :class:`IndexTable`
(``store.index_table(name)``, ``store.create_index_table(name, schema)``); its writes
check the store's writer lock like every other write.

Design decisions:

* **Queries project their score column.** A LanceDB query that selects columns but not
  ``_distance`` (vector) or ``_score`` (full text) makes lance log a deprecation warning
  on stderr, once per query leg: the score column is about to stop being added on its
  own. Every query here names the score column it reads. LanceDB's hybrid query builder
  gives both legs the same projection, so it cannot name each leg's score; the hybrid
  query here runs the two legs itself and fuses them with LanceDB's own
  reciprocal-rank-fusion reranker, which is what the builder does (RRF reads ranks
  only, so its score normalisation does not matter).
* **Vector index policy** (:meth:`IndexTable.ensure_vector_index`): exhaustive below
  ``min_rows``, IVF-PQ (or IVF-HNSW-SQ) above, cosine; rows added after the build are
  folded in by ``optimize``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from videomem.memory.store.schema import in_filter
from videomem.pipeline.errors import StoreError

if TYPE_CHECKING:
    from videomem.memory.store.store import Store

#: rows read per batch while streaming a table (bounded memory on any size)
BATCH_ROWS = 4096
VECTOR_INDEX_TYPES = ("IVF_PQ", "IVF_HNSW_SQ")


class IndexTable:
    """One derived table of a store: rows in and out, its indexes, and queries."""

    def __init__(self, store: Store, table: Any) -> None:
        self._store = store
        self._table = table

    @property
    def name(self) -> str:
        return str(self._table.name)

    @property
    def schema(self) -> pa.Schema:
        schema: pa.Schema = self._table.schema
        return schema

    # ------------------------------------------------------------------ reads

    def count(self, where: str | None = None) -> int:
        return int(self._table.count_rows(where))

    def batches(
        self, columns: Sequence[str], where: str | None = None, batch_rows: int = BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """Stream the rows (only ``columns``) in bounded batches."""
        q = self._table.search().select(list(columns)).limit(None)
        if where:
            q = q.where(where)
        yield from q.to_batches(batch_rows)

    def head(self, columns: Sequence[str], n: int = 1) -> list[dict[str, Any]]:
        """The first ``n`` rows (only ``columns``) in storage order."""
        rows: list[dict[str, Any]] = (
            self._table.search().select(list(columns)).limit(n).to_arrow().to_pylist()
        )
        return rows

    def values(self, column: str, where: str | None = None) -> set[Any]:
        """The distinct values of one column."""
        out: set[Any] = set()
        for b in self.batches([column], where):
            out.update(b.column(0).to_pylist())
        return out

    def index_types(self) -> dict[str, str]:
        """Indexed column(s) -> index type (``"FTS"``, ``"IVF_PQ"`` …)."""
        return {",".join(i.columns): str(i.index_type) for i in self._table.list_indices()}

    def vector_index_rows(self) -> tuple[int, int] | None:
        """(indexed, not yet indexed) rows of the ``vector`` index; None without one."""
        for i in self._table.list_indices():
            if i.columns == ["vector"]:
                return int(i.num_indexed_rows or 0), int(i.num_unindexed_rows or 0)
        return None

    # ------------------------------------------------------------------ writes

    def add(self, rows: pa.Table) -> None:
        self._store.require_writer()
        self._table.add(rows)

    def delete_in(self, column: str, values: Sequence[str]) -> int:
        """Delete the rows whose ``column`` is one of ``values``; returns how many."""
        self._store.require_writer()
        deleted = 0
        for i in range(0, len(values), 500):
            where = in_filter(column, list(values[i : i + 500]))
            deleted += self._table.count_rows(where)
            self._table.delete(where)
        return deleted

    def create_fts_index(self, column: str) -> None:
        """(Re)build LanceDB's full-text index on ``column`` (needed by :meth:`hybrid`)."""
        from lancedb.index import FTS

        self._store.require_writer()
        if self._table.count_rows():
            self._table.create_index(column, config=FTS(), replace=True)

    def ensure_vector_index(self, min_rows: int, index_type: str = "IVF_PQ") -> bool:
        """Build the ``vector`` index (cosine; IVF-PQ by default) once the table holds
        ``min_rows`` rows; returns whether the table has one. Partitions ~ sqrt(rows);
        one PQ sub-vector per 8 dimensions (queries refine the candidates with exact
        distances). Rows added since the build are folded in."""
        if index_type not in VECTOR_INDEX_TYPES:
            raise StoreError(
                f"unknown vector index type {index_type!r}; {' or '.join(VECTOR_INDEX_TYPES)}"
            )
        rows = self.vector_index_rows()
        if rows is not None:
            if rows[1]:
                self._store.require_writer()
                self._table.optimize()  # fold rows added since the build into the index
            return True
        n = self._table.count_rows()
        if n < min_rows:
            return False
        self._store.require_writer()
        from lancedb.index import HnswSq, IvfPq

        dim = self._table.schema.field("vector").type.list_size
        sub = next(s for s in (dim // 8, dim // 4, dim // 2, dim, 1) if s and dim % s == 0)
        parts = max(1, int(np.sqrt(n)))
        config: Any
        if index_type == "IVF_PQ":
            config = IvfPq(distance_type="cosine", num_partitions=parts, num_sub_vectors=sub)
        else:
            config = HnswSq(distance_type="cosine", num_partitions=parts)
        self._table.create_index("vector", config=config)
        return True

    # ------------------------------------------------------------------ queries

    def nearest(
        self,
        vector: np.ndarray,
        limit: int,
        columns: Sequence[str],
        where: str | None = None,
        *,
        nprobes: int = 20,
        refine_factor: int | None = None,
    ) -> list[dict[str, Any]]:
        """The ``limit`` rows nearest ``vector`` (cosine), best first, with
        ``_distance``; ``where`` filters before the search."""
        q = (
            self._table.search(vector, vector_column_name="vector")
            .distance_type("cosine")
            .nprobes(nprobes)
            .limit(limit)
            .select([*columns, "_distance"])
        )
        if refine_factor:
            q = q.refine_factor(refine_factor)
        if where:
            q = q.where(where, prefilter=True)
        rows: list[dict[str, Any]] = q.to_arrow().to_pylist()
        return rows

    def hybrid(
        self,
        text: str,
        vector: np.ndarray,
        limit: int,
        columns: Sequence[str],
        where: str | None = None,
    ) -> list[dict[str, Any]]:
        """Full-text (``text``) and vector (``vector``, cosine) search fused by LanceDB's
        reciprocal-rank-fusion reranker: the ``limit`` best rows, with
        ``_relevance_score``. Needs the full-text index (:meth:`create_fts_index`)."""
        from lancedb.rerankers import RRFReranker

        vec = (
            self._table.search(vector, vector_column_name="vector")
            .distance_type("cosine")
            .select([*columns, "_distance"])
            .with_row_id(True)
            .limit(limit)
        )
        fts = (
            self._table.search(text, query_type="fts")
            .select([*columns, "_score"])
            .with_row_id(True)
            .limit(limit)
        )
        if where:
            vec, fts = vec.where(where, prefilter=True), fts.where(where, prefilter=True)
        vec_rows, fts_rows = vec.to_arrow(), fts.to_arrow()
        if not vec_rows.num_rows and not fts_rows.num_rows:
            return []
        fused = RRFReranker().rerank_hybrid(text, vec_rows, fts_rows)
        rows: list[dict[str, Any]] = fused.slice(0, limit).drop(["_rowid"]).to_pylist()
        return rows
