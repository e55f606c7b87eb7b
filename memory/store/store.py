"""The persistent memory store: LanceDB tables at a directory or any LanceDB URI.

The tables and their columns are described in :mod:`videomem.memory.store.schema`.

Atomic visibility, without transactions across tables
=====================================================

Each LanceDB commit (add, delete, merge_insert) is atomic on its own. A video is
committed in three steps:

1. its memory rows are *added* tagged with a fresh ``run_id`` — nobody reads them yet;
2. its ``videos`` row, pointing at that ``run_id``, is upserted with ``merge_insert`` on
   the key — this is the commit marker, the video becomes visible here, all at once;
3. memory rows of the same key with any other ``run_id`` (the replaced memory, or
   orphans of a killed run) are deleted.

Readers only read memory rows whose ``run_id`` a ``videos`` row names, so a process
killed at any moment leaves no partial video visible, and a re-index replaces rather
than duplicates. A kill between 2 and 3 leaves stale rows nobody reads;
:meth:`Store.collect_garbage` removes them; an index job runs it
first, unless the writer before it closed cleanly (:mod:`.clean_close`).
A reader that raced a re-index (read the old ``run_id``, whose rows were then deleted)
notices the slot count mismatch and reads again.

One committer per table: only a :class:`Store` opened with ``writer=True`` may write.
It holds an exclusive ``flock`` on a local directory, a lease on object storage
(:mod:`videomem.memory.store.lease`), for its lifetime and checks it before every commit step,
so a second job on the same store refuses (or waits) instead of interleaving commits.
Workers never write; they hand results to the job's driver.

Object storage (``s3://``, ``gs://``, ``az://`` …) is configured with LanceDB's storage
options (``aws_endpoint``, ``aws_region``, ``aws_access_key_id``, ``allow_http`` …),
given as ``storage_options`` or in the environment (``AWS_*``), which both LanceDB and
the lease read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from videomem.memory.store.clean_close import take_clean_marker, write_clean_marker
from videomem.memory.store.index_table import BATCH_ROWS, IndexTable
from videomem.memory.store.lease import LeaseConfig, WriterLock, take_writer_lock
from videomem.memory.store.qa_tables import QATables
from videomem.memory.store.schema import (
    ADDED_COLUMNS,
    EPOCH,
    KEY,
    MEMORIES,
    MEMORIES_SCHEMA,
    VIDEOS,
    VIDEOS_SCHEMA,
    LiveRun,
    Status,
    VideoCommit,
    VideoRecord,
    conform,
    in_filter,
    key_filter,
    live_filter,
    memory_rows,
    record_from_row,
    slots_from_rows,
    sql_str,
    storage_fields,
    tokens_from_rows,
)
from videomem.memory.store.transcripts import TranscriptsTable
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import StoreError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- store


class Store:
    """A LanceDB memory store.

    ``Store(uri)`` opens an existing store read-only; ``Store(uri, writer=True)`` creates
    it if needed and takes the single-writer lock (see the module docstring). The side
    tables are read and written through ``store.qa`` (:class:`.qa_tables.QATables`) and
    ``store.speech`` (:class:`.transcripts.TranscriptsTable`).
    """

    def __init__(
        self,
        uri: str | os.PathLike[str],
        *,
        writer: bool = False,
        storage_options: Mapping[str, str] | None = None,
        lease: LeaseConfig | None = None,
    ) -> None:
        import lancedb

        self.uri = str(uri)
        self.writer = writer
        self.storage_options = dict(storage_options or {})
        self._lock: WriterLock | None = None
        #: the side tables' rows: ``answers``/``captions`` and ``transcripts``
        self.qa = QATables(self)
        self.speech = TranscriptsTable(self)
        #: orphan memory rows may exist: the writer before this one did not close cleanly
        #: (and no full collection has run since), or one of our commits broke off
        self._orphans_possible = True
        local = "://" not in self.uri
        if local:
            path = Path(self.uri).expanduser()
            self.uri = str(path)
            if writer:
                path.mkdir(parents=True, exist_ok=True)
            elif not path.is_dir():
                raise StoreError(f"no videomem store at {self.uri} (index some videos first)")
        if writer:
            self._lock = take_writer_lock(self.uri, self.storage_options, lease)
            try:  # before any write: a kill from here on leaves no clean-close marker
                self._orphans_possible = not take_clean_marker(self.uri, self.storage_options)
            except StoreError:
                self.close()
                raise
        try:
            # interval 0: every read sees the latest commit of any process (cheap locally)
            self._db = lancedb.connect(
                self.uri,
                read_consistency_interval=dt.timedelta(0),
                storage_options=self.storage_options or None,
            )
            names = set(self._db.list_tables().tables)
            if writer:
                for name, schema in ((VIDEOS, VIDEOS_SCHEMA), (MEMORIES, MEMORIES_SCHEMA)):
                    if name not in names:
                        self._db.create_table(name, schema=schema, exist_ok=True)
                if MEMORIES not in names:  # a new memories table holds no orphans
                    self._orphans_possible = False
            elif not {VIDEOS, MEMORIES} <= names:
                raise StoreError(f"no videomem store at {self.uri} (index some videos first)")
            self._videos = self._db.open_table(VIDEOS)
            self._memories = self._db.open_table(MEMORIES)
        except StoreError:
            self.close()
            raise
        except Exception as e:  # lancedb raises plain ValueError/OSError/RuntimeError
            self.close()
            raise StoreError(f"cannot open store {self.uri}: {type(e).__name__}: {e}") from e
        for table, schema in ((self._videos, VIDEOS_SCHEMA), (self._memories, MEMORIES_SCHEMA)):
            try:
                self._add_columns(table, schema, ADDED_COLUMNS[table.name])
            except StoreError:
                self.close()
                raise

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the writer lock; a writer that leaves no orphan rows first writes the
        clean-close marker (:mod:`.clean_close`), so the next job skips the full
        garbage collection."""
        if self._lock is None:
            return
        try:
            if not self._orphans_possible:
                self._lock.check()  # only while surely still the one writer
                write_clean_marker(self.uri, self.storage_options)
        except Exception as e:  # the next job collects in full: slower, never wrong
            log.warning("store %s: no clean-close marker written: %s", self.uri, e)
        finally:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def table_names(self) -> set[str]:
        """Names of every table in the store (its own, the QA tables, derived ones)."""
        try:
            return set(self._db.list_tables().tables)
        except Exception as e:
            raise self._lance_error("(list)", "read", e) from e

    # ------------------------------------------------------------------ reads

    def _scan(
        self,
        table: Any,
        where: str | None,
        columns: Sequence[str] | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> pa.Table:
        q = table.search()
        if where:
            q = q.where(where)
        if columns is not None:
            q = q.select(list(columns))
        q = q.limit(limit)
        if offset:
            q = q.offset(offset)
        try:
            result: pa.Table = q.to_arrow()
        except Exception as e:
            raise self._lance_error(table.name, "read", e) from e
        return result

    def _batches(
        self, table: Any, where: str | None, columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream a table's rows (only ``columns``) in bounded batches."""
        q = table.search().limit(None)
        if columns is not None:
            q = q.select(list(columns))
        if where:
            q = q.where(where)
        try:
            yield from q.to_batches(BATCH_ROWS)
        except Exception as e:
            raise self._lance_error(table.name, "read", e) from e

    def _lance_error(self, table: str, action: str, e: Exception) -> StoreError:
        """The error of a failed LanceDB read/write: which table, and what to do."""
        msg = str(e).splitlines()[0][:500] if str(e) else type(e).__name__
        text = f"store {self.uri}: {action} of table {table} failed: {type(e).__name__}: {msg}. "
        if any(s in str(e) for s in ("No space left", "File too large", "Disk quota")):
            remedy = (
                "The store's file system is full: free space and run the job again (what "
                "was committed is kept; the interrupted commit left nothing visible)"
            )
        else:
            remedy = (
                f"If a data file of the store is damaged, `videomem repair --store "
                f"{self.uri}` names it, drops it and marks the videos it held for "
                "re-indexing; everything else is kept"
            )
        return StoreError(text + remedy)

    def list_videos(
        self,
        status: Status | None = None,
        *,
        encoder_fingerprint: str | None = None,
        config_hash: str | None = None,
        video_id: str | None = None,
        model: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[VideoRecord]:
        """Rows of the ``videos`` table, filtered (``name``: the uri contains it),
        ordered by uri then indexed_at.

        With ``limit``, one page: ``limit`` rows from ``offset`` in storage order (about
        commit order), then sorted; a page reads only as far as it reaches, so the first
        page costs the same in a store of any size.
        """
        if (limit is not None and limit < 0) or offset < 0:
            raise StoreError(f"limit and offset must be >= 0, got {limit}, {offset}")
        if limit == 0:
            return []
        where = self._videos_filter(status, encoder_fingerprint, config_hash, video_id, model, name)
        table = self._scan(self._videos, where, limit=limit, offset=offset)
        records = [record_from_row(r) for r in table.to_pylist()]
        return sorted(records, key=lambda r: (r.uri or "", r.indexed_at or EPOCH))

    def count_videos(
        self, status: Status | None = None, *, model: str | None = None, name: str | None = None
    ) -> int:
        """How many ``videos`` rows match (reads the filtered columns only)."""
        where = self._videos_filter(status, None, None, None, model, name)
        try:
            return int(self._videos.count_rows(where))
        except Exception as e:
            raise self._lance_error(VIDEOS, "read", e) from e

    @staticmethod
    def _videos_filter(
        status: Status | None,
        encoder_fingerprint: str | None,
        config_hash: str | None,
        video_id: str | None,
        model: str | None,
        name: str | None = None,
    ) -> str | None:
        conds = []
        if name:  # a substring of the uri (strpos: no LIKE wildcards to escape)
            conds.append(f"strpos(uri, {sql_str(name)}) > 0")
        if status is not None:
            if status not in ("indexed", "failed"):
                raise StoreError(f"unknown status {status!r}; use 'indexed' or 'failed'")
            conds.append(f"status = {sql_str(status)}")
        for col, val in (
            ("encoder_fingerprint", encoder_fingerprint),
            ("config_hash", config_hash),
            ("video_id", video_id),
            ("model", model),
        ):
            if val is not None:
                conds.append(f"{col} = {sql_str(val)}")
        return " AND ".join(conds) or None

    def get(self, key: tuple[str, str, str]) -> VideoRecord | None:
        """The ``videos`` row of one key, or None."""
        rows = self._scan(self._videos, key_filter(key)).to_pylist()
        return record_from_row(rows[0]) if rows else None

    def latest(self, video_id: str) -> VideoRecord:
        """The record a reader of ``video_id`` cares about: its most recently indexed
        key, or (when no key is indexed) its most recent failure."""
        records = self.list_videos(video_id=video_id)
        if not records:
            raise StoreError(f"no video {video_id!r} in store {self.uri}")
        indexed = [r for r in records if r.status == "indexed"]
        return max(indexed or records, key=lambda r: r.indexed_at or EPOCH)

    def resolve_video_id(self, prefix: str) -> str:
        """The one stored video_id starting with ``prefix`` (like a short git hash)."""
        # filtered in the scan: a lookup reads the matching ids, not the whole column
        where = f"starts_with(video_id, {sql_str(prefix)})"
        ids = self._scan(self._videos, where, ["video_id"]).column("video_id").to_pylist()
        matches = sorted({v for v in ids if v.startswith(prefix)})
        if not matches:
            raise StoreError(f"no video {prefix!r} in store {self.uri}")
        if prefix in matches:
            return prefix
        if len(matches) > 1:
            raise StoreError(f"video id prefix {prefix!r} is ambiguous: {matches[:5]}")
        return matches[0]

    def load_memory(
        self,
        video_id: str,
        *,
        encoder_fingerprint: str | None = None,
        config_hash: str | None = None,
    ) -> VideoMemory:
        """The stored memory of an indexed video, tokens as float16 (bit-exact when
        stored as float16; int8 tokens are decoded, see ``VideoRecord.token_rel_rmse``).

        When the video is indexed under several (fingerprint, config) keys and neither is
        given, the most recently indexed one is returned.
        """
        for _ in range(5):
            records = self.list_videos(
                "indexed",
                encoder_fingerprint=encoder_fingerprint,
                config_hash=config_hash,
                video_id=video_id,
            )
            if not records:
                raise StoreError(
                    f"video {video_id!r} has no indexed memory in store {self.uri}"
                    + (" for that encoder/config" if encoder_fingerprint or config_hash else "")
                )
            rec = max(records, key=lambda r: r.indexed_at or EPOCH)
            if rec.run_id is None:  # indexed rows always name their run
                raise StoreError(f"video {video_id!r}: indexed row without a run_id")
            rows = self._scan(self._memories, f"run_id = {sql_str(rec.run_id)}")
            mem = self._memory_from_rows(rec, rows)
            if mem is not None:
                return mem
            # a committer replaced this key between our two reads: read the new marker
        raise StoreError(f"video {video_id!r}: memory kept changing while being read")

    def _memory_from_rows(self, rec: VideoRecord, rows: pa.Table) -> VideoMemory | None:
        kinds = np.asarray(rows.column("kind").to_pylist(), dtype=object)
        order = np.lexsort((rows.column("slot").to_numpy(), kinds == "recent"))
        rows = rows.take(pa.array(order))
        n_slots = int((kinds == "slot").sum())
        if n_slots != rec.slots or len(rows) != rec.slots + rec.recent:
            return None
        slots, recent = rows.slice(0, n_slots), rows.slice(n_slots)
        n, d = int(rec.tokens_per_frame or 0), int(rec.dim or 0)
        if n_slots:
            n, d = int(slots.column("n")[0].as_py()), int(slots.column("d")[0].as_py())
        emb_col = slots.column("embedding")
        embedding = None
        if n_slots and emb_col.null_count == 0:
            embedding = torch.tensor(np.asarray(emb_col.to_pylist(), dtype=np.float32))
        thumbs = None
        if n_slots and "thumbnail" in slots.column_names:
            col = slots.column("thumbnail")
            thumbs = None if col.null_count == n_slots else col.to_pylist()
        memory_config = rec.config.memory
        recent_tokens = recent_ts = None
        if len(recent):
            recent_tokens = tokens_from_rows(recent, n, d)
            recent_ts = torch.from_numpy(recent.column("start_s").to_numpy().astype(np.float64))
        tokens, keep = torch.zeros(0, n, d, dtype=torch.float16), None
        if n_slots:
            tokens, keep = slots_from_rows(slots, n, d)
        return VideoMemory(
            video_id=rec.video_id,
            tokens=tokens,
            sizes=torch.from_numpy(slots.column("size").to_numpy().astype(np.int64)),
            start_s=torch.from_numpy(slots.column("start_s").to_numpy().astype(np.float64)),
            end_s=torch.from_numpy(slots.column("end_s").to_numpy().astype(np.float64)),
            embedding=embedding,
            encoder_fingerprint=rec.encoder_fingerprint,
            memory_config=memory_config,
            frames_seen=rec.frames_sampled,
            recent_tokens=recent_tokens,
            recent_timestamps=recent_ts,
            config_hash=rec.config_hash,
            thumbnails=thumbs,
            keep=keep,
        )

    def iter_memories(
        self, *, encoder_fingerprint: str | None = None, config_hash: str | None = None
    ) -> Iterator[VideoMemory]:
        """Every indexed memory (one video at a time, so memory stays bounded)."""
        for rec in self.list_videos(
            "indexed", encoder_fingerprint=encoder_fingerprint, config_hash=config_hash
        ):
            with contextlib.suppress(StoreError):  # replaced/removed since listed
                yield self.load_memory(
                    rec.video_id,
                    encoder_fingerprint=rec.encoder_fingerprint,
                    config_hash=rec.config_hash,
                )

    def live_runs(self, run_ids: Iterable[str] | None = None) -> dict[str, LiveRun]:
        """run_id -> :class:`LiveRun` of every memory a reader sees (or of those among
        ``run_ids``): the one liveness rule (``schema.live_filter``) that garbage
        collection, export and search all apply."""
        if run_ids is None:
            chunks: list[list[str] | None] = [None]
        else:
            wanted = sorted(set(run_ids))
            chunks = [wanted[i : i + 500] for i in range(0, len(wanted), 500)]
        out: dict[str, LiveRun] = {}
        for chunk in chunks:
            for b in self._batches(self._videos, live_filter(chunk), LiveRun._fields):
                cols = [b.column(name).to_pylist() for name in LiveRun._fields]
                for run, vid, fp, uri in zip(*cols, strict=True):
                    out[run] = LiveRun(run, vid, fp, uri or "")
        return out

    def scan_memories(
        self,
        run_ids: Sequence[str],
        columns: Sequence[str] | None = None,
        *,
        where: str | None = None,
        runs_per_chunk: int = 64,
    ) -> Iterator[pa.Table]:
        """The ``memories`` rows of ``run_ids`` (``columns``, default all; ``where``: a
        further filter), streamed in chunks of runs so memory stays bounded. Columns a
        store from before them lacks come back null."""
        names = list(columns) if columns is not None else MEMORIES_SCHEMA.names
        unknown = [c for c in names if c not in MEMORIES_SCHEMA.names]
        if unknown:
            raise StoreError(f"memories has no columns {unknown}")
        target = pa.schema([MEMORIES_SCHEMA.field(c) for c in names])
        present = [c for c in names if c in self._memories.schema.names]
        for i in range(0, len(run_ids), runs_per_chunk):
            cond = in_filter("run_id", list(run_ids[i : i + runs_per_chunk]))
            for b in self._batches(
                self._memories, f"{cond} AND ({where})" if where else cond, present
            ):
                yield conform(pa.Table.from_batches([b]), target)

    def memory_run_ids(self) -> list[str]:
        """The ``run_id`` of every memory row, visible or not (one entry per row)."""
        ids: list[str] = self._scan(self._memories, None, ["run_id"]).column("run_id").to_pylist()
        return ids

    def count_rows(self) -> dict[str, int]:
        """Raw row counts (all rows, visible or not): for tests and diagnostics."""
        return {VIDEOS: self._videos.count_rows(), MEMORIES: self._memories.count_rows()}

    # ------------------------------------------------------------------ writes

    def require_writer(self) -> None:
        """Before every write: opened for writing and still the one writer."""
        if not self.writer:
            raise StoreError(f"store {self.uri} was opened read-only")
        if self._lock is None:
            raise StoreError(f"store {self.uri} was closed")
        self._lock.check()

    def commit(self, outcomes: Sequence[VideoCommit]) -> list[VideoRecord]:
        """Commit several videos in three LanceDB commits (see the module docstring).

        Returns the committed rows (with ``run_id`` and ``indexed_at`` filled in).
        """
        self.require_writer()
        if not outcomes:
            return []
        keys = [o.record.key for o in outcomes]
        if len(set(keys)) != len(keys):
            raise StoreError("commit: the same video key appears twice in one batch")
        now = dt.datetime.now(dt.timezone.utc)
        records: list[VideoRecord] = []
        mem_tables: list[pa.Table] = []
        for o in outcomes:
            rec = o.record
            if rec.status == "indexed":
                if o.memory is None:
                    raise StoreError(f"{rec.video_id}: status indexed but no memory given")
                run_id = uuid.uuid4().hex
                rows = memory_rows(o.memory, rec.key, run_id)
                mem_tables.append(rows)
                recent = 0 if o.memory.recent_tokens is None else len(o.memory.recent_tokens)
                rec = replace(
                    rec,
                    run_id=run_id,
                    slots=len(o.memory),
                    recent=recent,
                    error=None,
                    error_type=None,
                    indexed_at=now,
                    **storage_fields(o.memory, rows),
                )
            elif rec.status == "failed":
                rec = replace(rec, run_id=None, slots=0, recent=0, indexed_at=now)
            else:
                raise StoreError(f"{rec.video_id}: unknown status {rec.status!r}")
            records.append(rec)
        videos = pa.Table.from_pylist(
            [{f.name: getattr(r, f.name) for f in fields(r)} for r in records], schema=VIDEOS_SCHEMA
        )
        done = False
        try:
            # 1. memory rows, invisible until a videos row names their run_id
            table = MEMORIES
            if mem_tables:
                self._memories.add(pa.concat_tables(mem_tables))
            # 2. the commit marker (only while surely still the one writer)
            self.require_writer()
            table = VIDEOS
            (
                self._videos.merge_insert(list(KEY))
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(videos)
            )
            # 3. drop replaced rows and orphans of these keys
            self.require_writer()
            table = MEMORIES
            stale = " OR ".join(
                f"({key_filter(r.key)}"
                + (f" AND run_id != {sql_str(r.run_id)})" if r.run_id else ")")
                for r in records
            )
            if self._memories.count_rows(stale):
                self._memories.delete(stale)
            done = True
        except StoreError:
            raise
        except Exception as e:
            raise self._lance_error(table, "commit", e) from e
        finally:
            if not done:  # broke off after step 1 may have landed: rows nobody names
                self._orphans_possible = True
        return records

    def collect_garbage(self) -> int:
        """Delete memory rows no ``videos`` row names (left by killed runs). Returns the
        number of rows deleted. Only safe with no other writer: needs the writer lock."""
        self.require_writer()
        live = set(self.live_runs())
        seen = set(self.memory_run_ids())
        orphans = sorted(seen - live)
        deleted = 0
        for i in range(0, len(orphans), 500):
            chunk = orphans[i : i + 500]
            where = in_filter("run_id", chunk)
            deleted += self._memories.count_rows(where)
            self._memories.delete(where)
        self._orphans_possible = False
        return deleted

    def collect_garbage_after_crash(self) -> int | None:
        """What a job runs first: :meth:`collect_garbage` unless the writer before this
        one closed cleanly (then there is nothing to collect, and only a cheap read of
        every data file replaces the collection's scan). Returns the rows deleted, None
        when skipped."""
        self.require_writer()
        if not self._orphans_possible:
            self._check_memories_readable()
            return None
        return self.collect_garbage()

    def _check_memories_readable(self) -> None:
        """Read one small column of every ``memories`` data file, streamed inside
        LanceDB: a damaged file is still reported at job start (with the repair hint),
        before any model loads, as the full collection's scan did, at a fraction of its
        time and memory (no run_id reaches Python)."""
        try:
            self._memories.count_rows("slot < 0")
        except Exception as e:
            raise self._lance_error(MEMORIES, "read", e) from e

    def optimize(self) -> None:
        """Compact small fragments left by per-video commits, and index the columns
        readers filter on. Readers may keep reading meanwhile."""
        self.require_writer()
        try:
            for table, col in ((self._memories, "run_id"), (self._videos, "video_id")):
                table.optimize()
                indexed = {c for idx in table.list_indices() for c in idx.columns}
                if col not in indexed and table.count_rows() > 0:
                    with warnings.catch_warnings():  # its replacement is vector-only in sync API
                        warnings.simplefilter("ignore", DeprecationWarning)
                        table.create_scalar_index(col)
        except Exception as e:
            raise StoreError(f"store {self.uri}: optimize failed: {type(e).__name__}: {e}") from e

    # ------------------------------------------------------------------ side tables

    def _side_table(self, name: str, schema: pa.Schema, create: bool) -> Any:
        """A table beside the store's own (the QA tables, ``transcripts``: see ``qa`` and
        ``speech``), created by a writer on first use; None when it does not exist yet and
        ``create`` is false."""
        if name not in self.table_names():
            if not create:
                return None
            self.require_writer()
            return self._db.create_table(name, schema=schema, exist_ok=True)
        try:
            return self._db.open_table(name)
        except ValueError as e:
            # listed (its folder exists) but its first version not committed yet: a
            # writer is creating it right now, and a reader sees no such table yet
            if create or "was not found" not in str(e):
                raise
            return None

    def _upsert(self, name: str, schema: pa.Schema, key: Sequence[str], data: pa.Table) -> None:
        """Insert ``data`` into the side table ``name``, replacing rows with the same
        ``key`` (one commit): a re-run replaces rows, never duplicates them."""
        self.require_writer()
        table = self._side_table(name, schema, create=True)
        try:
            (
                table.merge_insert(list(key))
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )
        except Exception as e:
            raise self._lance_error(name, "write", e) from e

    def _add_columns(self, table: Any, schema: pa.Schema, added_later: frozenset[str]) -> None:
        """Check ``table`` against ``schema``: the nullable columns added after it was
        first released (``added_later``) may be missing, and a writer adds them (null for
        its rows) so new rows fit; any other missing column is another videomem
        version's table, refused."""
        missing = set(schema.names) - set(table.schema.names)
        if missing - added_later:
            raise StoreError(
                f"store {self.uri}: table {table.name} lacks columns {sorted(missing)} "
                "(made by another videomem version?)"
            )
        if missing and self.writer:  # a table from before these columns: add them
            try:
                table.add_columns([schema.field(name) for name in sorted(missing)])
            except Exception as e:
                raise self._lance_error(table.name, "adding columns", e) from e

    # ------------------------------------------------------------------ derived tables

    def index_table(self, name: str) -> IndexTable | None:
        """A derived table (a search index, see :mod:`.index_table`), or None when the
        store has none of that name."""
        if name in (VIDEOS, MEMORIES):
            raise StoreError(f"{name} is not a derived table")
        if name not in self.table_names():
            return None
        try:
            return IndexTable(self, self._db.open_table(name))
        except ValueError as e:
            # listed but its first version not committed yet: a writer is creating it
            # right now (as for the side tables), and a reader sees no such index yet
            if not self.writer and "was not found" in str(e):
                return None
            raise self._lance_error(name, "open", e) from e
        except Exception as e:
            raise self._lance_error(name, "open", e) from e

    def create_index_table(self, name: str, schema: pa.Schema) -> IndexTable:
        """Create (or open, if it exists) the derived table ``name``; writer only."""
        self.require_writer()
        if name in (VIDEOS, MEMORIES):
            raise StoreError(f"{name} is not a derived table")
        try:
            return IndexTable(self, self._db.create_table(name, schema=schema, exist_ok=True))
        except Exception as e:
            raise self._lance_error(name, "create", e) from e

    # ------------------------------------------------------------------ export

    def export(self, out_dir: str | os.PathLike[str], *, tokens: bool = True) -> dict[str, Path]:
        """Write every table as plain Parquet to ``out_dir`` (see :mod:`.export`);
        ``tokens=False`` leaves the memories' token bytes out."""
        from videomem.memory.store.export import export_store

        return export_store(self, out_dir, tokens=tokens)
