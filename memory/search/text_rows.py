"""Rows of the text search indexes (``caption_index``, ``speech_index``) with their
vectors: one builder for both, so the two tables keep one shape.

Design decision: a row's key columns and ``row_hash`` come in as plain dicts (the
refresh diffs them by hash before anything is embedded); only the rows that are new
get a vector, stored as a fixed-size list (LanceDB's vector column type).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


def vectors(x: np.ndarray) -> pa.FixedSizeListArray:
    """``[n, dim]`` embeddings as a fixed-size list column."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def embedded_rows(
    rows: list[dict[str, Any]], key_fields: list[pa.Field], vec: np.ndarray, schema: pa.Schema
) -> pa.Table:
    """``rows`` (key columns + ``row_hash``) with ``vec`` as their ``vector`` column,
    as a table of ``schema``."""
    data = pa.Table.from_pylist(rows, pa.schema([*key_fields, pa.field("row_hash", pa.string())]))
    return pa.table(
        {c: data.column(c) for c in data.column_names} | {"vector": vectors(vec)}, schema=schema
    )
