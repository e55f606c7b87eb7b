"""The store's tables: Arrow schemas, the ``videos`` record, and the row codecs.

Schema
======

``videos`` — one row per (video_id, encoder_fingerprint, config_hash), the *key*:

================== ============= ====================================================
column             type          meaning
================== ============= ====================================================
video_id           string        content-derived id (``pipeline.decode.content_video_id``)
encoder_fingerprint string       exact encoder identity (model, weights, dtype, options)
config_hash        string        ``index_config_hash(decode_cfg, memory_cfg)``
run_id             string, null  which ``memories`` rows are this key's memory (null if failed)
status             string        ``"indexed"`` or ``"failed"``
error              string, null  readable reason of a failure
error_type         string, null  exception class name of a failure
retryable          bool          a failure that may be transient (retried on the next run)
uri                string        where the video was read from
size_bytes         int64         file size
duration_s fps     float64, null probe results …
num_frames         int64, null
width height       int32, null
codec probed_with  string, null
rotation           int32, null
model              string        what the user passed as ``--model``
config_json        string        {"decode": …, "memory": …, "encoder": …} as used
frames_sampled     int64         frames decoded and encoded
slots              int32         long-term memory length L
recent             int32         raw recent frames stored (breakpoint mode)
tokens_per_frame   int32, null   N
dim embed_dim      int32, null   D, E
probe_s decode_s encode_s consolidate_s total_s   float64   per-video timings
indexed_at         timestamp[us, UTC]  when this row was committed
================== ============= ====================================================

``memories`` — one row per memory slot (and per stored raw recent frame):

================== ============= ====================================================
video_id encoder_fingerprint config_hash run_id   string   the key + the run that wrote it
kind               string        ``"slot"`` (long-term memory) or ``"recent"`` (raw frame)
slot               int32         0..L-1 in time order (0..S-1 for ``recent``)
start_s end_s      float64       time span the slot covers (a recent frame: start = end)
size               int64         frames merged into the slot
n d                int32         token grid of this row: ``tokens`` is [n, d]
tokens             binary        float16, little-endian, C order, [n, d]:
                                 ``np.frombuffer(b, "<f2").reshape(n, d)``
embedding          list<float32>, null   pooled embedding [E] for search
================== ============= ====================================================

Tokens are raw float16 bytes rather than a Parquet FLOAT16 column because every Parquet
reader can read binary, while the FLOAT16 logical type is recent; bytes also make the
round trip bit-exact (NaN payloads and subnormals included).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import torch
from videomem.pipeline.errors import StoreError
from videomem.pipeline.types import VideoMemory, VideoSource

Status = Literal["indexed", "failed"]
KEY = ("video_id", "encoder_fingerprint", "config_hash")
VIDEOS, MEMORIES = "videos", "memories"
EPOCH = dt.datetime.min.replace(tzinfo=dt.timezone.utc)

VIDEOS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("encoder_fingerprint", pa.string(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("run_id", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("error_type", pa.string()),
        pa.field("retryable", pa.bool_()),
        pa.field("uri", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("num_frames", pa.int64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("codec", pa.string()),
        pa.field("rotation", pa.int32()),
        pa.field("probed_with", pa.string()),
        pa.field("model", pa.string()),
        pa.field("config_json", pa.string()),
        pa.field("frames_sampled", pa.int64()),
        pa.field("slots", pa.int32()),
        pa.field("recent", pa.int32()),
        pa.field("tokens_per_frame", pa.int32()),
        pa.field("dim", pa.int32()),
        pa.field("embed_dim", pa.int32()),
        pa.field("probe_s", pa.float64()),
        pa.field("decode_s", pa.float64()),
        pa.field("encode_s", pa.float64()),
        pa.field("consolidate_s", pa.float64()),
        pa.field("total_s", pa.float64()),
        pa.field("indexed_at", pa.timestamp("us", tz="UTC")),
        pa.field("stored_bytes", pa.int64()),
    ]
)

#: nullable columns added after a store format was first released: a store written
#: before them still opens (a writer adds them, null for old rows; readers see None)
ADDED_COLUMNS: dict[str, frozenset[str]] = {
    "videos": frozenset({"stored_bytes"}),
    "memories": frozenset(),
}

MEMORIES_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("encoder_fingerprint", pa.string(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("slot", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("size", pa.int64()),
        pa.field("n", pa.int32(), nullable=False),
        pa.field("d", pa.int32(), nullable=False),
        pa.field("tokens", pa.binary(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32())),
    ]
)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class VideoRecord:
    """One row of the ``videos`` table (see the module docstring for each column)."""

    video_id: str
    encoder_fingerprint: str
    config_hash: str
    status: Status
    uri: str
    run_id: str | None = None
    error: str | None = None
    error_type: str | None = None
    retryable: bool = False
    size_bytes: int | None = None
    duration_s: float | None = None
    fps: float | None = None
    num_frames: int | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    rotation: int | None = None
    probed_with: str | None = None
    model: str = ""
    config_json: str = "{}"
    frames_sampled: int = 0
    slots: int = 0
    recent: int = 0
    tokens_per_frame: int | None = None
    dim: int | None = None
    embed_dim: int | None = None
    probe_s: float | None = None
    decode_s: float | None = None
    encode_s: float | None = None
    consolidate_s: float | None = None
    total_s: float | None = None
    indexed_at: dt.datetime | None = None
    #: bytes of this video's memory rows (tokens and embeddings); None before it was kept
    stored_bytes: int | None = None

    @property
    def bytes_per_minute(self) -> float | None:
        """Stored bytes per minute of video (the cost of a video-hour is 60x this)."""
        if self.stored_bytes is None or not self.duration_s:
            return None
        return self.stored_bytes / (self.duration_s / 60.0)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.video_id, self.encoder_fingerprint, self.config_hash)

    @property
    def config(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.config_json or "{}")
        return parsed

    def with_source(self, source: VideoSource) -> VideoRecord:
        """This record with the probe fields of ``source`` filled in."""
        return replace(
            self,
            uri=source.uri,
            size_bytes=source.size_bytes,
            duration_s=source.duration_s,
            fps=source.fps,
            num_frames=source.num_frames,
            width=source.width,
            height=source.height,
            codec=source.codec,
            rotation=source.rotation,
            probed_with=source.probed_with,
        )

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.indexed_at is not None:
            d["indexed_at"] = self.indexed_at.isoformat()
        d["bytes_per_minute"] = self.bytes_per_minute
        return d


class VideoCommit(NamedTuple):
    """What the committer writes for one video: its row, and its memory when indexed
    (``record.status == "indexed"`` iff ``memory is not None``)."""

    record: VideoRecord
    memory: VideoMemory | None = None


# --------------------------------------------------------------------------- helpers


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def key_filter(key: tuple[str, str, str]) -> str:
    return " AND ".join(f"{col} = {sql_str(v)}" for col, v in zip(KEY, key, strict=True))


def in_filter(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


def _fp16_rows(x: torch.Tensor) -> pa.Array:
    """[L, N, D] float tensor -> binary array of L rows of little-endian float16 [N, D]."""
    arr = np.ascontiguousarray(x.detach().to("cpu", torch.float16).numpy()).astype(
        "<f2", copy=False
    )
    n_rows = arr.shape[0]
    row_bytes = arr[0].nbytes if n_rows else 0
    offsets = pa.py_buffer(np.arange(n_rows + 1, dtype=np.int32) * row_bytes)
    return pa.Array.from_buffers(pa.binary(), n_rows, [None, offsets, pa.py_buffer(arr.tobytes())])


def _float_list(x: torch.Tensor | None, n_rows: int) -> pa.Array:
    if x is None:
        return pa.nulls(n_rows, pa.list_(pa.float32()))
    flat = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy()).reshape(-1)
    width = flat.size // n_rows if n_rows else 0
    offsets = pa.array(np.arange(n_rows + 1, dtype=np.int32) * width)
    return pa.ListArray.from_arrays(offsets, pa.array(flat, pa.float32()))


def _check_memory(mem: VideoMemory) -> None:
    L = len(mem)
    if mem.tokens.ndim != 3:
        raise StoreError(f"{mem.video_id}: tokens must be [L, N, D], got {tuple(mem.tokens.shape)}")
    for name in ("sizes", "start_s", "end_s"):
        if tuple(getattr(mem, name).shape) != (L,):
            raise StoreError(f"{mem.video_id}: {name} must have shape [{L}]")
    if mem.embedding is not None and (mem.embedding.ndim != 2 or mem.embedding.shape[0] != L):
        raise StoreError(f"{mem.video_id}: embedding must be [{L}, E]")
    if mem.recent_tokens is not None:
        if mem.recent_tokens.ndim != 3 or mem.recent_tokens.shape[1:] != mem.tokens.shape[1:]:
            raise StoreError(f"{mem.video_id}: recent_tokens must be [S, N, D] like tokens")
        if mem.recent_timestamps is None or len(mem.recent_timestamps) != len(mem.recent_tokens):
            raise StoreError(f"{mem.video_id}: recent_timestamps must be [S]")


def memory_rows(mem: VideoMemory, key: tuple[str, str, str], run_id: str) -> pa.Table:
    """The ``memories`` rows of one video's memory (long-term slots, then recent frames)."""
    _check_memory(mem)
    parts = [
        _rows_of(key, run_id, "slot", mem.tokens, mem.start_s, mem.end_s, mem.sizes, mem.embedding)
    ]
    if mem.recent_tokens is not None and len(mem.recent_tokens):
        ts = mem.recent_timestamps
        if ts is None:  # _check_memory guarantees it; this narrows the type
            raise StoreError(f"{mem.video_id}: recent_timestamps missing")
        ones = torch.ones(len(ts), dtype=torch.int64)
        parts.append(_rows_of(key, run_id, "recent", mem.recent_tokens, ts, ts, ones, None))
    return pa.concat_tables(parts)


def _rows_of(
    key: tuple[str, str, str],
    run_id: str,
    kind: str,
    tokens: torch.Tensor,
    start_s: torch.Tensor,
    end_s: torch.Tensor,
    sizes: torch.Tensor,
    embedding: torch.Tensor | None,
) -> pa.Table:
    L, N, D = (int(s) for s in tokens.shape)
    return pa.table(
        {
            "video_id": pa.array([key[0]] * L, pa.string()),
            "encoder_fingerprint": pa.array([key[1]] * L, pa.string()),
            "config_hash": pa.array([key[2]] * L, pa.string()),
            "run_id": pa.array([run_id] * L, pa.string()),
            "kind": pa.array([kind] * L, pa.string()),
            "slot": pa.array(np.arange(L, dtype=np.int32)),
            "start_s": pa.array(start_s.detach().cpu().to(torch.float64).numpy()),
            "end_s": pa.array(end_s.detach().cpu().to(torch.float64).numpy()),
            "size": pa.array(sizes.detach().cpu().to(torch.int64).numpy()),
            "n": pa.array(np.full(L, N, dtype=np.int32)),
            "d": pa.array(np.full(L, D, dtype=np.int32)),
            "tokens": _fp16_rows(tokens),
            "embedding": _float_list(embedding, L),
        },
        schema=MEMORIES_SCHEMA,
    )


def stored_bytes(rows: pa.Table) -> int:
    """What a video's memory rows cost in the store: token bytes plus embeddings."""
    import pyarrow.compute as pc

    n_tok = pc.sum(pc.binary_length(rows.column("tokens"))).as_py() or 0
    n_emb = pc.sum(pc.list_value_length(rows.column("embedding"))).as_py() or 0
    return int(n_tok + 4 * n_emb)


def tokens_from_rows(tokens: pa.ChunkedArray, n: int, d: int) -> torch.Tensor:
    blob = b"".join(v.as_py() for v in tokens)
    arr = np.frombuffer(blob, dtype="<f2").reshape(len(tokens), n, d)
    return torch.from_numpy(arr.astype(np.float16))  # astype copies: writable, native order


def record_from_row(row: dict[str, Any]) -> VideoRecord:
    names = {f.name for f in fields(VideoRecord)}
    values = {k: v for k, v in row.items() if k in names}
    values["retryable"] = bool(values.get("retryable") or False)
    for k in ("frames_sampled", "slots", "recent"):
        values[k] = int(values.get(k) or 0)
    return VideoRecord(**values)
