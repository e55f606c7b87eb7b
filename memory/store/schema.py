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
config_json        string        {"decode": …, "memory": …, "encoder": …} as used (``IndexConfig``)
frames_sampled     int64         frames decoded and encoded
slots              int32         long-term memory length L
recent             int32         raw recent frames stored (breakpoint mode)
tokens_per_frame   int32, null   N
dim embed_dim      int32, null   D, E
probe_s decode_s encode_s consolidate_s total_s   float64   per-video timings
indexed_at         timestamp[us, UTC]  when this row was committed
stored_bytes       int64, null   bytes of this video's memory rows (:func:`stored_bytes`)
token_dtype        string, null  how its tokens are stored: ``"float16"`` or ``"int8"``
                                 (null: a row written before int8 existed, float16)
token_scale        string, null  int8 only: ``"token"`` or ``"slot"`` scales
token_rel_rmse     float64, null int8 only: RMS error of the stored tokens over the RMS
                                 of the memory's tokens (measured at commit on the rows)
token_min_cosine   float64, null int8 only: worst token's cosine with its original
decode_device      string, null  where frames were decoded: ``"cpu"`` or ``"cuda"``
decode_fallback    string, null  why the requested decode device was not (fully) used
decode_parts       int32, null   ffmpeg processes that decoded time ranges of the video
decode_sample      string, null  sampling mode: ``"exact"`` or ``"keyframes"``
decode_decoder     string, null  what decoded the frames: ``"ffmpeg"`` or ``"torchcodec"``
================== ============= ====================================================

``memories`` — one row per memory slot (and per stored raw recent frame):

================== ============= ====================================================
video_id encoder_fingerprint config_hash run_id   string   the key + the run that wrote it
kind               string        ``"slot"`` (long-term memory) or ``"recent"`` (raw frame)
slot               int32         0..L-1 in time order (0..S-1 for ``recent``)
start_s end_s      float64       time span the slot covers (a recent frame: start = end)
size               int64         frames merged into the slot
n d                int32         token grid of this row: ``tokens`` is [n, d]
tokens             binary        [n, d] in C order, encoded as ``token_dtype`` says:
                                 float16: ``np.frombuffer(b, "<f2").reshape(n, d)``;
                                 int8: ``np.frombuffer(b, "i1").reshape(n, d) * scale``
embedding          list<float32>, null   pooled embedding [E] for search
token_dtype        string, null  ``"float16"`` or ``"int8"``; null (rows written before
                                 int8 existed) is float16
token_scales       list<float32>, null   int8 only: 1 value (one scale for the row) or
                                 n (one per token, broadcast over d); null for float16
thumbnail          binary, null  a ~160 px JPEG of the frame closest to the slot's tokens
positions          list<int16>, null   token dropping (``MemoryConfig.token_tau``): the
                                 grid positions (ascending) of the k tokens the row
                                 stores, ``tokens`` is then [k, d] (int8 per-token
                                 scales: k); null = all n positions (also a slot that
                                 keeps every token). A reader fills a
                                 dropped position from the last kept token at it
                                 (``redundancy.drop_tokens``'s dense form)
================== ============= ====================================================

Tokens are raw bytes rather than a Parquet FLOAT16 column because every Parquet reader
can read binary, while the FLOAT16 logical type is recent; float16 bytes also make the
round trip bit-exact (NaN payloads and subnormals included). The encodings are
:mod:`videomem.memory.store.codec`'s; ``MemoryConfig.token_dtype`` chooses one per video.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import torch
from videomem.memory.config import TOKEN_DTYPES
from videomem.memory.index_config import IndexConfig
from videomem.memory.store.codec import (
    PackedTokens,
    pack_tokens,
    reconstruction_error,
    unpack_tokens,
)
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import StoreError
from videomem.pipeline.types import VideoSource

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
        pa.field("token_dtype", pa.string()),
        pa.field("token_scale", pa.string()),
        pa.field("token_rel_rmse", pa.float64()),
        pa.field("token_min_cosine", pa.float64()),
        pa.field("decode_device", pa.string()),
        pa.field("decode_fallback", pa.string()),
        pa.field("decode_parts", pa.int32()),
        pa.field("decode_sample", pa.string()),
        pa.field("decode_decoder", pa.string()),
    ]
)

#: nullable columns added after a store format was first released: a store written
#: before them still opens (a writer adds them, null for old rows; readers see None)
ADDED_COLUMNS: dict[str, frozenset[str]] = {
    "videos": frozenset(
        {
            "stored_bytes",
            "token_dtype",
            "token_scale",
            "token_rel_rmse",
            "token_min_cosine",
            "decode_device",
            "decode_fallback",
            "decode_parts",
            "decode_sample",
            "decode_decoder",
        }
    ),
    "memories": frozenset({"token_dtype", "token_scales", "thumbnail", "positions"}),
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
        pa.field("token_dtype", pa.string()),
        pa.field("token_scales", pa.list_(pa.float32())),
        pa.field("thumbnail", pa.binary()),
        pa.field("positions", pa.list_(pa.int16())),
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
    #: bytes of this video's memory rows (:func:`stored_bytes`); None before it was kept
    stored_bytes: int | None = None
    #: how the memory's tokens are stored ("float16", "int8"); None for a failure
    token_dtype: str | None = None
    #: int8 only: "token" or "slot" scales, and the error of the stored tokens
    token_scale: str | None = None
    token_rel_rmse: float | None = None
    token_min_cosine: float | None = None
    #: what decoding did (``pipeline.decode.DecodeInfo``): device, why it fell back to
    #: the CPU, ffmpeg processes (time ranges), sampling mode, decoder; None in rows
    #: from before
    decode_device: str | None = None
    decode_fallback: str | None = None
    decode_parts: int | None = None
    decode_sample: str | None = None
    decode_decoder: str | None = None

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
    def config(self) -> IndexConfig:
        """What the memory was made with, parsed from ``config_json``."""
        return IndexConfig.parse(self.config_json)

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


class LiveRun(NamedTuple):
    """A memory a reader sees: the run an indexed ``videos`` row names."""

    run_id: str
    video_id: str
    encoder_fingerprint: str
    uri: str


#: the one rule of liveness: memory rows (and captions, index rows) count only when
#: their ``run_id`` is named by an *indexed* ``videos`` row (see :mod:`.store`)
LIVE_RUNS = "status = 'indexed' AND run_id IS NOT NULL"


def live_filter(run_ids: Sequence[str] | None = None) -> str:
    """The ``videos`` filter of live runs, optionally only those among ``run_ids``."""
    return LIVE_RUNS if run_ids is None else f"{LIVE_RUNS} AND {in_filter('run_id', run_ids)}"


# --------------------------------------------------------------------------- helpers


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def key_filter(key: tuple[str, str, str]) -> str:
    return " AND ".join(f"{col} = {sql_str(v)}" for col, v in zip(KEY, key, strict=True))


def in_filter(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


def _float_list(flat: np.ndarray | None, n_rows: int) -> pa.Array:
    """float values -> n_rows equal-length float32 lists (all null when ``flat`` is None)."""
    if flat is None:
        return pa.nulls(n_rows, pa.list_(pa.float32()))
    flat = np.ascontiguousarray(flat, dtype=np.float32).reshape(-1)
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
    """The ``memories`` rows of one video's memory (long-term slots, then recent frames),
    tokens encoded as ``mem.memory_config.token_dtype`` says."""
    _check_memory(mem)
    cfg = mem.memory_config

    def pack(x: torch.Tensor) -> PackedTokens:
        return pack_tokens(x, cfg.token_dtype, cfg.token_scale)

    L = len(mem)
    thumbs = mem.thumbnails
    if thumbs is not None and len(thumbs) != L:
        raise StoreError(f"{mem.video_id}: {len(thumbs)} thumbnails for {L} slots")
    emb = None if mem.embedding is None else mem.embedding.detach().cpu().float().numpy()
    slots = _rows_of(key, run_id, "slot", pack(mem.tokens), mem.start_s, mem.end_s, mem.sizes, emb)
    if mem.keep is not None:
        slots = _kept_only(slots, mem.tokens, mem.keep, pack)
    if thumbs is not None:
        column = slots.schema.get_field_index("thumbnail")
        slots = slots.set_column(column, "thumbnail", pa.array(thumbs, pa.binary()))
    parts = [slots]
    if mem.recent_tokens is not None and len(mem.recent_tokens):
        ts = mem.recent_timestamps
        if ts is None:  # _check_memory guarantees it; this narrows the type
            raise StoreError(f"{mem.video_id}: recent_timestamps missing")
        ones = torch.ones(len(ts), dtype=torch.int64)
        parts.append(_rows_of(key, run_id, "recent", pack(mem.recent_tokens), ts, ts, ones, None))
    return pa.concat_tables(parts)


def _kept_only(
    slots: pa.Table,
    tokens: torch.Tensor,
    keep: torch.Tensor,
    pack: Callable[[torch.Tensor], PackedTokens],
) -> pa.Table:
    """Slot rows that store only each slot's kept tokens and their grid positions."""
    L, N = int(tokens.shape[0]), int(tokens.shape[1])
    if tuple(keep.shape) != (L, N) or keep.dtype != torch.bool:
        raise StoreError(f"keep must be bool [{L}, {N}], got {keep.dtype} {tuple(keep.shape)}")
    if np.iinfo(np.int16).max < N:
        raise StoreError(f"token dropping stores positions as int16: {N} tokens is too many")
    keep = keep.cpu()
    blobs: list[bytes] = []
    scales: list[list[float] | None] = []
    positions: list[list[int] | None] = []
    for slot in range(L):
        idx = keep[slot].nonzero().flatten()
        # a slot that keeps every position (the first always does) needs no list
        positions.append(None if len(idx) == N else idx.tolist())
        if not len(idx):  # nothing changed: no bytes (an int8 slot scale of 1, unused)
            packed = pack(tokens[slot, :1][None])
            blobs.append(b"")
            scales.append(None if packed.scales is None else [1.0] * (packed.scale == "slot"))
            continue
        packed = pack(tokens[slot].index_select(0, idx.to(tokens.device))[None])
        blobs.append(packed.rows[0])
        scales.append(None if packed.scales is None else packed.scales.reshape(-1).tolist())
    for name, values, typ in (
        ("tokens", blobs, pa.binary()),
        ("token_scales", scales, pa.list_(pa.float32())),
        ("positions", positions, pa.list_(pa.int16())),
    ):
        column = slots.schema.get_field_index(name)  # the schema's field: keeps nullability
        slots = slots.set_column(column, slots.schema.field(name), pa.array(values, typ))
    return slots


def _rows_of(
    key: tuple[str, str, str],
    run_id: str,
    kind: str,
    packed: PackedTokens,
    start_s: torch.Tensor,
    end_s: torch.Tensor,
    sizes: torch.Tensor,
    embedding: np.ndarray | None,
) -> pa.Table:
    L, N, D = packed.shape
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
            "tokens": pa.array(packed.rows, pa.binary()),
            "embedding": _float_list(embedding, L),
            "token_dtype": pa.array([packed.dtype] * L, pa.string()),
            "token_scales": _float_list(packed.scales, L),
            "thumbnail": pa.nulls(L, pa.binary()),
            "positions": pa.nulls(L, pa.list_(pa.int16())),
        },
        schema=MEMORIES_SCHEMA,
    )


def stored_bytes(rows: pa.Table) -> int:
    """What memory rows cost in the store: token bytes, int8 scales, embeddings and kept
    token positions, plus
    per row its size and span (int64 + 2 float64). Row keys and Lance/Parquet overhead
    are not counted; divide by the video's minutes for bytes per minute."""
    import pyarrow.compute as pc

    def total(name: str, length: Any) -> int:
        if name not in rows.column_names:  # rows of a store from before the column
            return 0
        return int(pc.sum(length(rows.column(name))).as_py() or 0)

    n_tok = total("tokens", pc.binary_length)
    n_floats = total("embedding", pc.list_value_length) + total(
        "token_scales", pc.list_value_length
    )
    n_positions = total("positions", pc.list_value_length)  # int16 each (token dropping)
    return n_tok + 4 * n_floats + 2 * n_positions + 24 * rows.num_rows


def slots_from_rows(rows: pa.Table, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decode slot rows to ``(dense tokens float16 [len(rows), n, d], keep [len(rows), n]
    bool | None)``. Rows with ``positions`` (token dropping) hold only their kept
    tokens; a dropped position takes the last kept token at it, as
    ``redundancy.drop_tokens`` fills it. ``keep`` is None when no row has positions
    (dropping off, or a store from before the column)."""
    col = rows.column("positions") if "positions" in rows.column_names else None
    if col is None or col.null_count == rows.num_rows:
        return tokens_from_rows(rows, n, d), None
    dense = torch.zeros(rows.num_rows, n, d, dtype=torch.float16)
    keep = torch.zeros(rows.num_rows, n, dtype=torch.bool)
    for i, pos in enumerate(col.to_pylist()):
        idx = torch.arange(n) if pos is None else torch.tensor(pos, dtype=torch.long)
        if len(idx) and not (int(idx.min()) >= 0 and int(idx.max()) < n):
            raise StoreError(f"memory row {i}: positions outside the {n}-token grid")
        if i:
            dense[i] = dense[i - 1]
        elif len(idx) != n:
            raise StoreError("the first slot row must store every token position")
        dense[i, idx] = tokens_from_rows(rows.slice(i, 1), len(idx), d)[0]
        keep[i, idx] = True
    return dense, keep


def tokens_from_rows(rows: pa.Table, n: int, d: int) -> torch.Tensor:
    """Decode the tokens of memory rows (one video's rows of one kind) to float16
    ``[len(rows), n, d]``; rows without ``token_dtype`` (older stores) are float16."""
    import pyarrow.compute as pc

    n_rows = rows.num_rows
    dtypes = {"float16"}
    if "token_dtype" in rows.column_names:
        dtypes = {v or "float16" for v in rows.column("token_dtype").to_pylist()} or dtypes
    if len(dtypes) > 1 or not dtypes <= set(TOKEN_DTYPES):
        raise StoreError(f"memory rows with token encodings {sorted(dtypes)} (one expected)")
    dtype = dtypes.pop()
    scales, scale = None, None
    if dtype == "int8":
        col = rows.column("token_scales")
        if col.null_count:
            raise StoreError("int8 memory rows without token_scales")
        flat = np.asarray(pc.list_flatten(col), dtype=np.float32)
        per_row = flat.size // n_rows if n_rows else 1
        if per_row not in (1, n) or flat.size != per_row * n_rows:
            raise StoreError(f"int8 memory rows with {flat.size} scales for {n_rows} x {n} tokens")
        scale = "slot" if per_row == 1 else "token"
        scales = flat.reshape(n_rows) if per_row == 1 else flat.reshape(n_rows, n)
    blobs = [b.as_py() for b in rows.column("tokens")]
    packed = PackedTokens(dtype, (n_rows, n, d), blobs, scales, scale)  # type: ignore[arg-type]
    return unpack_tokens(packed).to(torch.float16)


def storage_fields(mem: VideoMemory, rows: pa.Table) -> dict[str, Any]:
    """The ``videos`` columns that describe a memory's stored rows: their bytes, the
    token encoding and, for int8, its error against the memory's tokens (decoded from
    the rows themselves, as a reader will see them)."""
    cfg = mem.memory_config
    # every column, None where it does not apply: a record read back from an int8
    # commit and committed again with float16 tokens must not keep the int8 error
    out: dict[str, Any] = {
        "stored_bytes": stored_bytes(rows),
        "token_dtype": cfg.token_dtype,
        "token_scale": None,
        "token_rel_rmse": None,
        "token_min_cosine": None,
    }
    if cfg.token_dtype == "int8":
        n, d = int(mem.tokens.shape[1]), int(mem.tokens.shape[2])
        original = mem.tokens
        if mem.recent_tokens is not None:  # memory_rows writes slots, then recent frames
            original = torch.cat([mem.tokens, mem.recent_tokens.to(mem.tokens.dtype)])
        import pyarrow.compute as pc

        slots = rows.filter(pc.equal(rows.column("kind"), "slot"))
        decoded, _ = slots_from_rows(slots, n, d)
        if slots.num_rows < rows.num_rows:
            recent = rows.filter(pc.equal(rows.column("kind"), "recent"))
            decoded = torch.cat([decoded, tokens_from_rows(recent, n, d)])
        err = reconstruction_error(original, decoded)
        out.update(
            token_scale=cfg.token_scale,
            token_rel_rmse=err["rel_rmse"],
            token_min_cosine=err["min_cosine"],
        )
    return out


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in its order; nullable columns a store from
    before them lacks become nulls (so an export has one shape whatever its age)."""
    cols = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, names=schema.names).cast(schema)


def record_from_row(row: dict[str, Any]) -> VideoRecord:
    names = {f.name for f in fields(VideoRecord)}
    values = {k: v for k, v in row.items() if k in names}
    values["retryable"] = bool(values.get("retryable") or False)
    for k in ("frames_sampled", "slots", "recent"):
        values[k] = int(values.get(k) or 0)
    if values.get("status") == "indexed" and values.get("token_dtype") is None:
        values["token_dtype"] = "float16"  # indexed before int8 existed
    return VideoRecord(**values)
