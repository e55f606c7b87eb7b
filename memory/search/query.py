"""Search moments across a store: ranked (video, time span) answers to a text query.

Two sources, each read from the search indexes of :mod:`videomem.memory.search.refresh`
(never from ``memories``, so no token bytes are read):

* **visual** — slots of memories made by an encoder with a text tower (CLIP, SigLIP):
  the query embedded by that checkpoint's text tower against the slots' stored
  embeddings, cosine. Each encoder fingerprint is its own space and is searched on
  its own; several encoders' lists are merged by rank.
* **text** — captions, tags and dense/global captions of live memories: LanceDB's
  hybrid query (full-text + the sentence encoder's vectors) fused by LanceDB's
  reciprocal-rank-fusion reranker.
* **speech** — segments of the videos' transcripts (``speech_index``), the same hybrid
  query: a hit is the span where the words are said. A hit names the video's live
  memory (for its file and thumbnail); hits of videos with none are dropped.

Scores of different lists are not comparable (cosine vs RRF), so lists are merged by
rank: every list's first hit, then every list's second … (ties in list order), and the
result says so in ``notes``.

This module embeds nothing itself (memory/ never imports transformers): the caller
passes ``text_embedder`` (a factory of the sentence encoder's ``encode_text``) and
``tower_for`` (a ``videos`` record -> its checkpoint's ``encode_text``), which
``videomem.encoders.text`` provides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from videomem.memory.search.refresh import CAPTION_INDEX, SLOT_INDEX_PREFIX, Embed
from videomem.memory.search.speech_index import SPEECH_INDEX
from videomem.memory.store import IndexTable, Store, VideoRecord
from videomem.memory.store.schema import sql_str
from videomem.pipeline.errors import SearchError, VideomemError

Source = Literal["visual", "text", "speech", "all"]
SOURCES: tuple[str, ...] = ("visual", "text", "speech", "all")
#: IVF partitions probed and candidates re-ranked with exact distances per hit
NPROBES, REFINE_FACTOR = 32, 10


@dataclass(frozen=True)
class Moment:
    """One hit: a time span of a video, why it matched, and how well."""

    video_id: str
    uri: str
    start_s: float
    end_s: float
    score: float  # visual: cosine similarity; text, speech: RRF relevance
    source: str  # "visual", "text" or "speech"
    rank: int  # 1-based rank in its own list
    encoder_fingerprint: str
    run_id: str  # the memory it comes from (for its slots' thumbnails)
    text: str | None = None  # the matched caption/tags (text) or words said (speech)
    kind: str | None = None  # caption kind: "global", "dense" or "tags"; "speech"
    slot: int | None = None  # memory slot (visual source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    query: str
    moments: list[Moment]
    notes: list[str] = field(default_factory=list)  # how the lists were searched and merged

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "moments": [m.to_dict() for m in self.moments],
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- the lists


def visual_hits(
    table: IndexTable, vec: np.ndarray, limit: int, where: str | None
) -> list[dict[str, Any]]:
    """Nearest slots of one slot index: rows with ``score`` = cosine similarity."""
    cols = ["video_id", "encoder_fingerprint", "run_id", "slot", "start_s", "end_s"]
    rows = table.nearest(vec, limit, cols, where, nprobes=NPROBES, refine_factor=REFINE_FACTOR)
    for r in rows:
        r["score"] = 1.0 - float(r.pop("_distance"))
    return rows


def text_hits(
    table: IndexTable, query: str, vec: np.ndarray, limit: int, where: str | None
) -> list[dict[str, Any]]:
    """Hybrid search over ``caption_index`` (full text + vectors, RRF-fused)."""
    cols = ["video_id", "encoder_fingerprint", "run_id", "kind", "start_s", "end_s", "text"]
    rows = table.hybrid(query, vec, limit, cols, where)
    for r in rows:
        r["score"] = float(r.pop("_relevance_score"))
    return rows


def speech_hits(
    store: Store, table: IndexTable, query: str, vec: np.ndarray, limit: int, where: str | None
) -> list[dict[str, Any]]:
    """Hybrid search over ``speech_index``; each hit carries its video's live memory
    (run_id, encoder_fingerprint; hits of videos with none are dropped)."""
    cols = ["video_id", "start_s", "end_s", "text"]
    rows = table.hybrid(query, vec, limit, cols, where)
    out = []
    records: dict[str, list[VideoRecord]] = {}
    for r in rows:
        vid = r["video_id"]
        if vid not in records:
            records[vid] = store.list_videos("indexed", video_id=vid, limit=1)
        recs = records[vid]
        if not recs or recs[0].run_id is None:
            continue
        r["score"] = float(r.pop("_relevance_score"))
        r["run_id"], r["encoder_fingerprint"] = recs[0].run_id, recs[0].encoder_fingerprint
        r["kind"] = "speech"
        out.append(r)
    return out


def merge_by_rank(lists: list[list[Moment]], k: int) -> list[Moment]:
    """Interleave ranked lists: all rank-1 hits (in list order), then rank 2, …"""
    depth = max((len(x) for x in lists), default=0)
    out = [x[i] for i in range(depth) for x in lists if i < len(x)]
    return out[:k]


# --------------------------------------------------------------------------- search


def _live(store: Store, rows: list[dict[str, Any]]) -> dict[str, str]:
    """run_id -> uri of the hits' runs that a ``videos`` row still names."""
    return {run: lr.uri for run, lr in store.live_runs(r["run_id"] for r in rows).items()}


def _moments(rows: list[dict[str, Any]], source: str, live: dict[str, str], k: int) -> list[Moment]:
    out: list[Moment] = []
    for r in rows:
        if r["run_id"] not in live:
            continue  # a replaced memory the index has not dropped yet
        out.append(
            Moment(
                video_id=r["video_id"],
                uri=live[r["run_id"]],
                start_s=float(r["start_s"]),
                end_s=float(r["end_s"]),
                score=float(r["score"]),
                source=source,
                rank=len(out) + 1,
                encoder_fingerprint=r["encoder_fingerprint"],
                run_id=r["run_id"],
                text=r.get("text"),
                kind=r.get("kind"),
                slot=r.get("slot"),
            )
        )
        if len(out) == k:
            break
    return out


def search(
    store: Store,
    query: str,
    *,
    k: int = 10,
    video: str | None = None,
    source: Source = "all",
    text_embedder: Callable[[], Embed] | None = None,
    tower_for: Callable[[VideoRecord], Embed] | None = None,
) -> SearchResult:
    """The ``k`` best moments for ``query`` in ``store`` (a :class:`Store`).

    ``video``: only this video (an id or unique prefix). ``source``: ``"visual"``,
    ``"text"`` or ``"all"``. ``text_embedder``: factory of the sentence encoder's
    ``encode_text`` (text source). ``tower_for``: a record -> the ``encode_text`` of
    the checkpoint that made its memory, raising a :class:`VideomemError` when it has
    no text tower (visual source). Raises :class:`SearchError` on bad input or when
    nothing in the store can answer.
    """
    query = (query or "").strip()
    if not query:
        raise SearchError("empty query: say what to look for")
    if k < 1:
        raise SearchError(f"k must be >= 1, got {k}")
    if source not in SOURCES:
        raise SearchError(f"unknown source {source!r}; choose from {list(SOURCES)}")
    where = vid = None
    if video is not None:
        vid = store.resolve_video_id(video)
        where = f"video_id = {sql_str(vid)}"
    if not store.list_videos("indexed", video_id=vid, limit=1):
        what = f"video {video!r}" if video else f"store {store.uri}"
        raise SearchError(f"{what} has no indexed memories to search")

    names = store.table_names()
    limit = 2 * k + 10  # room for hits of replaced memories, dropped below
    lists: list[list[Moment]] = []
    notes: list[str] = []
    refusals: list[str] = []
    visual_fps: list[str] = []
    if source in ("visual", "all"):
        for name in sorted(n for n in names if n.startswith(SLOT_INDEX_PREFIX)):
            table = store.index_table(name)
            head = table.head(["encoder_fingerprint"]) if table is not None else []
            if table is None or not head:
                continue
            fp = head[0]["encoder_fingerprint"]
            recs = store.list_videos("indexed", encoder_fingerprint=fp, video_id=vid, limit=1)
            if not recs:
                continue  # no live memory of this encoder (for this video)
            rec = recs[0]
            if tower_for is None:
                refusals.append(f"{fp}: no text tower given")
                continue
            try:
                vec = tower_for(rec)([query])[0].numpy()
            except VideomemError as e:
                refusals.append(f"{rec.model or fp}: {e}")
                continue
            rows = visual_hits(table, vec, limit, where)
            lists.append(_moments(rows, "visual", _live(store, rows), k))
            visual_fps.append(fp)
    captions = store.index_table(CAPTION_INDEX) if CAPTION_INDEX in names else None
    has_text = captions is not None and captions.count(where) > 0
    if (
        source in ("text", "all")
        and captions is not None
        and has_text
        and text_embedder is not None
    ):
        vec = text_embedder()([query])[0].numpy()
        rows = text_hits(captions, query, vec, limit, where)
        lists.append(_moments(rows, "text", _live(store, rows), k))
    speech = store.index_table(SPEECH_INDEX) if SPEECH_INDEX in names else None
    has_speech = speech is not None and speech.count(where) > 0
    if source in ("speech", "all") and speech is not None and has_speech and text_embedder:
        vec = text_embedder()([query])[0].numpy()
        rows = speech_hits(store, speech, query, vec, limit, where)
        lists.append(_moments(rows, "speech", _live(store, rows), k))

    if not lists:
        raise SearchError(
            _nothing_searchable(store.uri, source, names, refusals, has_text, has_speech)
        )
    if len(visual_fps) > 1:
        notes.append(
            f"visual: {len(visual_fps)} encoders searched separately (each in its own "
            f"embedding space) and merged by rank: {', '.join(visual_fps)}"
        )
    if visual_fps and len(lists) > len(visual_fps):
        notes.append("visual and text/speech results merged by rank (their scores differ in kind)")
    notes += [f"visual search skipped {r}" for r in refusals if source != "text"]
    return SearchResult(query, merge_by_rank(lists, k), notes)


def _nothing_searchable(
    uri: str, source: str, names: set[str], refusals: list[str], has_text: bool, has_speech: bool
) -> str:
    built = (
        CAPTION_INDEX in names
        or SPEECH_INDEX in names
        or any(n.startswith(SLOT_INDEX_PREFIX) for n in names)
    )
    if not built:
        return f"store {uri} has no search index yet: run `videomem search --refresh --store {uri}`"
    why = []
    if source in ("visual", "all"):
        why.append(
            "no memory was made by an encoder with a text tower (CLIP, SigLIP)"
            + (f" ({'; '.join(refusals)})" if refusals else "")
        )
    if source in ("text", "all") and not has_text:
        why.append("there are no captions or tags (run `videomem caption` or tag the videos)")
    if source in ("speech", "all") and not has_speech:
        why.append("nothing said was transcribed (run `videomem transcribe`)")
    return f"nothing to search in {uri} for source {source!r}: " + " and ".join(why)


def moment_thumbnails(store: Store, moments: list[Moment]) -> list[bytes | None]:
    """The stored thumbnail of each moment: its slot's (visual), or the thumbnail of
    the slot its midpoint falls in (text). Reads slot spans and thumbnails, no tokens."""
    runs = sorted({m.run_id for m in moments})
    rows: dict[str, list[dict[str, Any]]] = {}
    cols = ["run_id", "slot", "start_s", "end_s", "thumbnail"]
    for part in store.scan_memories(runs, cols, where="kind = 'slot'"):
        for r in part.to_pylist():
            rows.setdefault(r["run_id"], []).append(r)
    out: list[bytes | None] = []
    for m in moments:
        slots = rows.get(m.run_id, [])
        if m.slot is not None:
            hit = [r for r in slots if r["slot"] == m.slot]
        else:
            mid = (m.start_s + m.end_s) / 2
            hit = [r for r in slots if r["start_s"] <= mid < r["end_s"]] or sorted(
                slots, key=lambda r: abs((r["start_s"] + r["end_s"]) / 2 - mid)
            )[:1]
        out.append(hit[0]["thumbnail"] if hit else None)
    return out
