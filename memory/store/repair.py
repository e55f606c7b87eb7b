"""Repairing a store one of whose data files is damaged (truncated, overwritten, lost).

A LanceDB table is a list of fragments, each a few data files; a video's rows live in
the fragment its commit wrote (until compaction merges fragments). One unreadable file
makes every scan of its table fail, although the other fragments are intact. Repair:

1. reads every fragment of both tables and lists those that fail (:func:`find_damage`);
2. drops those fragments from the tables, in one new table version each (the old
   versions stay, so nothing is deleted from storage and the drop can be undone by
   restoring an earlier version);
3. marks every indexed video whose memory rows are now incomplete as ``failed`` and
   retryable, with an error naming the file, so the next index run re-indexes exactly
   those; a lost ``videos`` row just makes its video unknown (re-indexed likewise) and
   its now-orphaned memory rows are garbage-collected.

Everything stored outside the damaged files is kept as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from videomem.memory.store.schema import MEMORIES, VIDEOS, VideoCommit
from videomem.pipeline.errors import StoreError

if TYPE_CHECKING:
    from videomem.memory.store.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Damage:
    table: str
    fragment_id: int
    files: tuple[str, ...]
    error: str

    def text(self) -> str:
        return f"table {self.table}: fragment {self.fragment_id} ({', '.join(self.files)}): {self.error}"


@dataclass
class RepairReport:
    damage: list[Damage] = field(default_factory=list)
    #: video ids marked failed (retryable) because their memory rows were lost
    videos_marked: list[str] = field(default_factory=list)
    #: memory rows no videos row names any more, removed
    orphans_removed: int = 0


def _dataset(store: Store, table: str) -> Any:
    import lance

    return lance.dataset(
        f"{store.uri}/{table}.lance", storage_options=store.storage_options or None
    )


def find_damage(store: Store) -> list[Damage]:
    """Every fragment of the store's tables that cannot be read in full."""
    found = []
    for table in (VIDEOS, MEMORIES):
        for frag in _dataset(store, table).get_fragments():
            try:
                frag.to_table()
            except Exception as e:  # lance raises OSError/ValueError/RuntimeError alike
                files = tuple(df.path for df in frag.data_files())
                found.append(Damage(table, frag.fragment_id, files, str(e).splitlines()[0][:300]))
    return found


def repair(store: Store, dry_run: bool = False) -> RepairReport:
    """Drop damaged fragments and mark the videos that lost memory rows for re-indexing
    (see the module docstring). ``store`` must be open for writing."""
    import lance

    store.require_writer()
    report = RepairReport(damage=find_damage(store))
    if dry_run or not report.damage:
        return report
    for table in (VIDEOS, MEMORIES):
        ids = [d.fragment_id for d in report.damage if d.table == table]
        if not ids:
            continue
        ds = _dataset(store, table)
        op = lance.LanceOperation.Delete(
            updated_fragments=[], deleted_fragment_ids=ids, predicate="true"
        )
        try:
            lance.LanceDataset.commit(
                ds.uri, op, read_version=ds.version, storage_options=store.storage_options or None
            )
        except Exception as e:
            raise StoreError(f"store {store.uri}: repair of table {table} failed: {e}") from e
        log.warning("store %s: dropped damaged fragments %s of table %s", store.uri, ids, table)
    lost_files = ", ".join(f for d in report.damage if d.table == MEMORIES for f in d.files)
    if lost_files:
        counts: dict[str, int] = {}
        for run_id in store.memory_run_ids():
            counts[run_id] = counts.get(run_id, 0) + 1
        marked = []
        for rec in store.list_videos("indexed"):
            if rec.run_id is not None and counts.get(rec.run_id, 0) != rec.slots + rec.recent:
                marked.append(
                    replace(
                        rec,
                        status="failed",
                        retryable=True,
                        error=f"{rec.uri}: memory lost with a damaged store file ({lost_files}); "
                        "the next index run re-indexes it",
                        error_type="StoreDamage",
                    )
                )
        if marked:
            store.commit([VideoCommit(r) for r in marked])
        report.videos_marked = [r.video_id for r in marked]
    report.orphans_removed = store.collect_garbage()
    return report
