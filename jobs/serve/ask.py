"""The ask page: a question about one video (or a time in it), answered by a model.

Design decisions: ``GET /ask`` only shows the form (no page load ever starts a
model); ``POST /ask`` queues the question on the one generation thread
(:mod:`.worker`) and awaits it, so other clients' searches and pages go on; a full
queue is a 503 that says so. The store is read on the worker too (resolving the
video, loading its memory), never on the event loop. With ``--record-answers`` the
answer row is written to the store's ``answers`` table by a writer opened for that
one write; without it, nothing is written.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from videomem.jobs.serve.params import check_id, float_param
from videomem.jobs.serve.respond import page
from videomem.jobs.serve.security import ClientError
from videomem.jobs.serve.state import Shared, shared
from videomem.jobs.serve.worker import Busy

__all__ = ["ask_form", "ask_post"]


def _model_name(s: Shared) -> str:
    return s.asker.llm_name or s.config.model or "the memory's own VLM"


def ask_form(request: Request) -> Response:
    s = shared(request)
    data = {
        "video": request.query_params.get("video", ""),
        "at": request.query_params.get("at", ""),
        "question": "",
        "model": _model_name(s),
        "result": None,
    }
    return page(request, "ask.html", data)


async def _fields(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.json()
        if not isinstance(body, dict):
            raise ClientError(400, "the JSON body must be an object")
        return {k: "" if v is None else str(v) for k, v in body.items()}
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _answer(s: Shared, video: str, question: str, at: float | None) -> dict[str, Any]:
    start = time.perf_counter()
    row, answer = s.asker.ask(s.store, video, question, at)
    total = time.perf_counter() - start
    if s.config.record_answers:
        from videomem.jobs.api import open_store

        row = row | {"question_id": f"serve-{uuid.uuid4().hex[:12]}"}
        with open_store(s.config.store, s.config.storage_options, writer=True) as st:
            st.qa.add("answers", [row])
    return {
        "video_id": row["video_id"],
        "status": answer.status,
        "answer": answer.answer,
        "error": answer.error,
        "model": row["model"],
        "slots": answer.slots,
        "memory_slots": answer.memory_slots,
        "new_tokens": answer.new_tokens,
        "generate_s": answer.seconds,
        "total_s": total,
        "recorded": s.config.record_answers,
    }


async def ask_post(request: Request) -> Response:
    s = shared(request)
    fields = await _fields(request)
    video = fields.get("video", "").strip()
    question = fields.get("question", "").strip()
    at = float_param(fields.get("at"), "at")
    if not video:
        raise ClientError(400, "say which video (a video id)")
    check_id(video)  # an id or id prefix only: never a path the server would read
    if not question:
        raise ClientError(400, "empty question: ask something")
    if len(question) > s.config.max_question:
        raise ClientError(400, f"question too long (at most {s.config.max_question} characters)")
    data: dict[str, Any] = {
        "video": video,
        "at": "" if at is None else at,
        "question": question,
        "model": _model_name(s),
    }
    try:
        result = await s.worker.run(lambda: _answer(s, video, question, at))
    except Busy as e:
        return page(request, "ask.html", data | {"result": None, "busy": str(e)}, 503)
    return page(request, "ask.html", data | {"result": result})
