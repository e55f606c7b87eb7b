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
from videomem.jobs.serve.params import int_param, optional
from videomem.jobs.serve.respond import page
from videomem.jobs.serve.state import shared

__all__ = ["corpus"]


def corpus(request: Request) -> Response:
    s = shared(request)
    cfg = s.config
    status = optional(request, "status", ("indexed", "failed"))
    model = optional(request, "model")
    name = optional(request, "name")
    limit = int_param(request, "limit", cfg.page, 1, cfg.max_page)
    offset = int_param(request, "offset", 0, 0, 10**9)
    st = s.store
    records = st.list_videos(status, model=model, name=name, limit=limit, offset=offset)  # type: ignore[arg-type]
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
        "total": total,
        "offset": offset,
        "limit": limit,
        "filters": {"status": status, "model": model, "name": name},
        "next_offset": offset + limit if offset + limit < total else None,
        "prev_offset": max(0, offset - limit) if offset > 0 else None,
    }
    return page(request, "corpus.html", data)
