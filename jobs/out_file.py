"""``--out`` files: rows written to ``.parquet`` or ``.jsonl`` beside the store.

The format is checked before a job does any work (:func:`check_out`), and the file is
written atomically (a temporary file, then a rename), so a killed job never leaves a
half file where a finished one was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videomem.pipeline.errors import ConfigError

SUFFIXES = (".parquet", ".jsonl", ".ndjson")


def check_out(out: str | None) -> None:
    """Fail before any work when ``--out`` names a format the job cannot write."""
    if out and Path(out).suffix.lower() not in SUFFIXES:
        raise ConfigError(f"{out}: --out must end in .parquet or .jsonl")


def write_rows_file(rows: list[dict[str, Any]], out: str, schema: Any) -> Path:
    """Rows to ``.parquet`` (with ``schema``) or ``.jsonl`` (atomic)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_out(out)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows, schema), tmp)
    else:
        with tmp.open("w") as f:
            for r in rows:
                f.write(json.dumps(r, default=str) + "\n")
    tmp.replace(path)
    return path
