"""The video page: the memory timeline, the facts ``show`` prints, the player.

Design decisions: the slots' spans and sizes come from the ``memories`` rows of the
video's live run (``Store.scan_memories`` on those columns: no token bytes read);
thumbnails are separate requests by slot id (:mod:`.media`), so the page is small
whatever the memory holds. The source file is checked (exists, same content id) so a
moved or changed file is said, and the memory still shows. ``?t=`` seeks the player
(the search results link there). Speech lines are the video's transcript as the
store's reader sees it (``store.speech.get``), when there is one.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from videomem.jobs.serve.params import check_id, float_param
from videomem.jobs.serve.respond import page
from videomem.jobs.serve.state import shared
from videomem.memory.store import Store, VideoRecord
from videomem.memory.store.schema import sql_str

__all__ = ["file_state", "slots_of", "video"]


@lru_cache(maxsize=4096)
def _content_id(path: str, size: int, mtime_ns: int) -> str:
    from videomem.pipeline.files import content_video_id

    return content_video_id(path)


def file_state(rec: VideoRecord) -> str:
    """``ok``, ``missing`` or ``changed`` (another file's content at the path)."""
    path = rec.uri
    if "://" in path or not os.path.isfile(path):
        return "missing"
    st = os.stat(path)
    try:
        same = _content_id(path, st.st_size, st.st_mtime_ns) == rec.video_id
    except OSError:
        return "missing"
    return "ok" if same else "changed"


def slots_of(store: Store, rec: VideoRecord) -> list[dict[str, Any]]:
    """The memory's slots (slot, start_s, end_s, size), in order; [] when not indexed."""
    if rec.status != "indexed" or rec.run_id is None:
        return []
    rows: list[dict[str, Any]] = []
    cols = ["slot", "start_s", "end_s", "size"]
    for part in store.scan_memories([rec.run_id], cols, where="kind = 'slot'"):
        rows += part.to_pylist()
    return sorted(rows, key=lambda r: r["slot"])


def video(request: Request) -> Response:
    s = shared(request)
    st = s.store
    vid = st.resolve_video_id(check_id(request.path_params["video_id"]))
    rec = st.latest(vid)
    t = float_param(request.query_params.get("t"), "t")
    slots = slots_of(st, rec)
    captions = st.qa.captions(vid, rec) if rec.status == "indexed" else []
    tags: dict[float, list[str]] = {}
    for c in captions:
        if c["kind"] == "tags":
            tags.setdefault(c["start_s"], []).append(c["text"] or "")
    for slot in slots:
        slot["tags"] = " ".join(tags.get(slot["start_s"], []))
    answers = st.qa.read("answers", f"video_id = {sql_str(vid)}", limit=200)
    transcript = st.speech.get(vid)
    speech = [
        {"start_s": seg.start_s, "end_s": seg.end_s, "text": seg.text}
        for seg in (transcript.segments if transcript is not None else ())
    ]
    data = {
        "record": rec.to_dict(),
        "video_id": vid,
        "name": rec.uri.rsplit("/", 1)[-1],
        "file": file_state(rec),
        "t": t,
        "slots": slots,
        "captions": [
            {k: c[k] for k in ("kind", "start_s", "end_s", "text", "model")}
            for c in captions
            if c["kind"] != "tags"
        ],
        "tag_lines": sum(1 for c in captions if c["kind"] == "tags"),
        "answers": [
            {k: a.get(k) for k in ("question", "answer", "model", "status", "time_s", "seconds")}
            for a in answers
        ],
        "speech": speech,
        "speech_model": transcript.model if transcript is not None else None,
    }
    return page(request, "video.html", data)
