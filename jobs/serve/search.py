"""The search page: ranked moments for a query, as thumbnails that open the video.

Design decisions: the page is a plain GET form (the query in the URL, a deep link);
``static/app.js`` submits it as the user types (debounced) by fetching the page's JSON
and drawing the results. The warm :class:`~videomem.jobs.searcher.Searcher` answers;
an empty query shows the form (HTML) or is a 400 (JSON). A text hit has no slot of its
own: it shows the slot its midpoint falls in.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from videomem.jobs.serve.params import int_param, optional
from videomem.jobs.serve.respond import page, wants_json
from videomem.jobs.serve.security import ClientError
from videomem.jobs.serve.state import shared
from videomem.memory.search import SOURCES, Moment
from videomem.memory.store import Store

__all__ = ["search"]


def _slots_at(store: Store, moments: list[Moment]) -> list[int | None]:
    """Each moment's slot: its own (visual), else the slot its midpoint falls in."""
    runs = sorted({m.run_id for m in moments if m.slot is None})
    spans: dict[str, list[tuple[float, float, int]]] = {}
    cols = ["run_id", "slot", "start_s", "end_s"]
    for part in store.scan_memories(runs, cols, where="kind = 'slot'") if runs else ():
        for r in part.to_pylist():
            spans.setdefault(r["run_id"], []).append((r["start_s"], r["end_s"], r["slot"]))
    out: list[int | None] = []
    for m in moments:
        if m.slot is not None:
            out.append(m.slot)
            continue
        mid = (m.start_s + m.end_s) / 2
        rows = spans.get(m.run_id, [])
        hit = [s for a, b, s in rows if a <= mid < b]
        near = sorted(rows, key=lambda r: abs((r[0] + r[1]) / 2 - mid))
        out.append(hit[0] if hit else (near[0][2] if near else None))
    return out


def search(request: Request) -> Response:
    s = shared(request)
    q = (request.query_params.get("q") or "").strip()
    source = optional(request, "source", SOURCES) or "all"
    k = int_param(request, "k", 10, 1, s.config.max_k)
    video = optional(request, "video")
    data: dict[str, Any] = {"query": q, "source": source, "k": k, "video": video}
    if not q:
        if wants_json(request):
            raise ClientError(400, "empty query: say what to look for (?q=…)")
        return page(request, "search.html", data | {"moments": [], "notes": []})
    if len(q) > s.config.max_question:
        raise ClientError(400, f"query too long (at most {s.config.max_question} characters)")
    result = s.searcher.search(s.store, q, k=k, video=video, source=source)  # type: ignore[arg-type]
    slots = _slots_at(s.store, result.moments)
    moments = [
        m.to_dict() | {"thumb_slot": slot} for m, slot in zip(result.moments, slots, strict=True)
    ]
    return page(request, "search.html", data | {"moments": moments, "notes": result.notes})
