"""The corpus page: stored videos a page at a time, filters, counts, failures.

Design decisions: offset paging over the ``videos`` table (``Store.list_videos`` with
a limit reads only as far as the page reaches, never the whole table); counts come
from ``count_rows`` with the same filter. Filters (status, model, name) and the page
are all in the URL.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from videomem.jobs.serve.params import optional, paging
from videomem.jobs.serve.respond import page
from videomem.jobs.serve.state import shared

__all__ = ["corpus"]


def corpus(request: Request) -> Response:
    s = shared(request)
    cfg = s.config
    status = optional(request, "status", ("indexed", "failed"))
    model = optional(request, "model")
    name = optional(request, "name")
    at = paging(request, cfg.page, cfg.max_page)
    st = s.store
    records = st.list_videos(status, model=model, name=name, limit=at.limit, offset=at.offset)  # type: ignore[arg-type]
    indexed = st.count_videos("indexed", model=model, name=name) if status != "failed" else 0
    failed = st.count_videos("failed", model=model, name=name) if status != "indexed" else 0
    total = indexed + failed
    videos: list[dict[str, Any]] = [
        {
            "video_id": r.video_id,
            "uri": r.uri,
            "name": r.uri.rsplit("/", 1)[-1],
            "status": r.status,
            "model": r.model,
            "duration_s": r.duration_s,
            "slots": r.slots,
            "stored_bytes": r.stored_bytes,
            "indexed_at": r.indexed_at,
            "error": r.error,
        }
        for r in records
    ]
    data = {
        "videos": videos,
        "indexed": indexed,
        "failed": failed,
        **at.links(total),
        "filters": {"status": status, "model": model, "name": name},
    }
    return page(request, "corpus.html", data)
