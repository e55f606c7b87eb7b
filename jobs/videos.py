"""What a user typed for a video -> the stored video id (``ask``, ``qa``, ``caption``, ``tag``).

Design decisions:

* A path to a file that exists here is identified by its content (the id the index
  stage gave it), so a moved or renamed copy still finds its memory.
* Anything else is an id or a unique id prefix (like a short git hash).
* Failing that, a bare file name (or a path that does not exist here, e.g. a command
  run from another folder) is matched against the stored videos' file names: one match
  is that video, several are listed with their ids and paths so the user can pick one.
  The name match scans the ``videos`` table, so it runs only when the cheap lookups fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videomem.pipeline.errors import StoreError, VideomemError


def resolve_video(store: Any, value: str) -> str:
    """A stored video id from an id, a unique id prefix, the indexed file's path, or
    the file name of exactly one stored video."""
    from videomem.pipeline.files import content_video_id

    p = Path(value).expanduser()
    if p.is_file():
        vid = content_video_id(p)
        store.latest(vid)  # raises when the store does not hold it
        return vid
    try:
        return str(store.resolve_video_id(value))
    except VideomemError as missing:
        matches = videos_named(store, p.name) if p.name else {}
        if not matches:
            raise missing from None
    if len(matches) == 1:
        return next(iter(matches))
    listed = "; ".join(f"{vid} {uri}" for vid, uri in sorted(matches.items()))
    raise StoreError(
        f"{value!r} matches {len(matches)} stored videos by file name; pass one's id: {listed}"
    )


def videos_named(store: Any, name: str) -> dict[str, str]:
    """Stored videos whose file name is ``name``: video id -> its uri."""
    out: dict[str, str] = {}
    for r in store.list_videos():
        if Path(r.uri).name == name:
            out.setdefault(r.video_id, r.uri)
    return out


def indexed_records(store: Any, videos: Sequence[str], summary: Any) -> list[Any]:
    """The indexed records of ``videos`` (ids, prefixes or paths; empty = every indexed
    video), once each; an unknown or unindexed one counts in ``summary`` (``videos``,
    ``failed``, ``failures``) as a failure."""
    if not videos:
        ids = sorted({r.video_id for r in store.list_videos("indexed")})
    else:
        ids = []
        for v in videos:
            try:
                ids.append(resolve_video(store, v))
            except VideomemError as e:
                summary.videos += 1
                summary.failed += 1
                summary.failures.append(f"{v}: {e}")
    records = []
    for vid in dict.fromkeys(ids):
        rec = store.latest(vid)
        if rec.status != "indexed":
            summary.videos += 1
            summary.failed += 1
            summary.failures.append(f"{vid}: not indexed ({rec.error})")
            continue
        records.append(rec)
    return records
