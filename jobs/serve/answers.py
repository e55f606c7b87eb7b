"""The answers page: the bulk QA results, filtered, a page at a time, and exports.

Design decisions: filters (video, model, status) become one LanceDB filter on the
``answers`` table; the page reads ``limit`` rows from ``offset``; ``format=csv`` (or
``json``) exports every row of the filter (the export is the one whole read, asked
for by name).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from videomem.jobs.serve.params import optional, paging
from videomem.jobs.serve.respond import page
from videomem.jobs.serve.state import shared
from videomem.memory.store.schema import sql_str

__all__ = ["answers"]

COLUMNS = ("question_id", "video_id", "mode", "time_s", "question", "answer", "model",
           "status", "error", "seconds", "new_tokens", "slots", "answered_at")  # fmt: skip


def answers(request: Request) -> Response:
    s = shared(request)
    video = optional(request, "video")
    model = optional(request, "model")
    status = optional(request, "status", ("answered", "failed"))
    conds = [f"{col} = {sql_str(v)}" for col, v in
             (("video_id", video), ("model", model), ("status", status)) if v]  # fmt: skip
    where = " AND ".join(conds) or None
    if request.query_params.get("format") == "csv":
        rows = s.store.qa.read("answers", where)
        out = io.StringIO()
        writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        headers = {"Content-Disposition": 'attachment; filename="answers.csv"'}
        return Response(out.getvalue(), media_type="text/csv", headers=headers)
    at = paging(request, s.config.page, s.config.max_page)
    total = s.store.qa.count("answers", where)
    rows = s.store.qa.read("answers", where, limit=at.limit, offset=at.offset)
    data: dict[str, Any] = {
        "answers": [{k: r.get(k) for k in COLUMNS} for r in rows],
        **at.links(total),
        "filters": {"video": video, "model": model, "status": status},
    }
    return page(request, "answers.html", data)
