"""The rows the QA jobs write: one builder per table (``answers``, ``captions``).

Every job that writes a caption (the VLM's global and dense captions, the text LLM's
timeline caption, the tag job's per-slot tags) builds it here, so the rows carry the
same key columns (the memory they describe: video, encoder fingerprint, config hash,
run) whoever wrote them. A row that failed carries ``status``/``error``; the table
schemas (``memory.store.qa_tables``) keep only their own columns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from videomem.qa.types import GenerationSettings


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def answer_row(
    qid: str, video_id: str, a: Any, model: str, settings: GenerationSettings, rec: Any = None
) -> dict[str, Any]:
    """An ``answers`` row of one :class:`videomem.qa.Answer`."""
    q = a.question
    return {
        "question_id": qid,
        "video_id": video_id,
        "mode": q.mode,
        "time_s": q.time_s,
        "question": q.question,
        "answer": a.answer,
        "model": model,
        "encoder_fingerprint": getattr(rec, "encoder_fingerprint", None),
        "run_id": getattr(rec, "run_id", None),
        "slots": a.slots,
        "memory_slots": a.memory_slots,
        "k": a.k,
        "kept_slots": a.kept_slots,
        "source": a.source,
        "prompt_tokens": a.prompt_tokens,
        "new_tokens": a.new_tokens,
        "seconds": a.seconds,
        "dtype": a.dtype,
        "settings_hash": settings.hash(),
        "settings": settings.to_json(),
        "status": a.status,
        "error": a.error,
        "answered_at": now(),
    }


def caption_row(
    rec: Any,
    kind: str,
    start_s: float,
    end_s: float,
    text: str | None,
    model: str,
    settings: str,
    *,
    created_at: dt.datetime | None = None,
    status: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """A ``captions`` row describing ``rec``'s memory over [start_s, end_s]."""
    return {
        "video_id": rec.video_id,
        "encoder_fingerprint": rec.encoder_fingerprint,
        "config_hash": rec.config_hash,
        "run_id": rec.run_id,
        "kind": kind,
        "start_s": start_s,
        "end_s": end_s,
        "text": text,
        "model": model,
        "settings": settings,
        "created_at": created_at or now(),
        "status": status,
        "error": error,
    }


def failed_rows(
    item: Any, error: str, model: str, settings: GenerationSettings
) -> list[dict[str, Any]]:
    """The rows of a QA item (``jobs.qa_step.QAItem``) that failed as a whole: one
    failed ``answers`` row per question, or one failed row for a caption request."""
    from videomem.qa import Answer

    rec = item.record
    if item.caption:
        return [{"video_id": rec.video_id, "status": "failed", "error": error}]
    return [
        answer_row(qid, rec.video_id, Answer(q, status="failed", error=error), model, settings, rec)
        for qid, q in item.questions
    ]


def settings_with(settings: GenerationSettings, **extra: Any) -> str:
    """A caption's ``settings`` column: the generation settings plus what else made it
    (``dense_every``, ``from``), as sorted JSON so equal settings compare equal.
    A caption has no question to choose slots by, so it is always cut uniformly and
    keyed as such (a caption's key is the same whatever ``context`` says)."""
    data = json.loads(dataclasses.replace(settings, context="uniform").to_json())
    data.update(extra)
    return json.dumps(data, sort_keys=True)
