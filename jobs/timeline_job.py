"""Bulk text-timeline QA and captioning (``--llm MODEL``) on the shared executor.

The same planning, rows, tables, resume and bad-row handling as the VLM QA job
(:mod:`videomem.jobs.qa_job`: question files, ``answers`` rows keyed on (question,
video, model, settings), failed rows for bad input, ``--force``); only the model
differs: a text-only LLM (:class:`videomem.qa.textllm.TimelineAnswerer`) that reads a
video's timeline (its ``tags``/``dense``/``global`` caption rows, and its transcript's
speech interleaved by time) instead of its visual tokens. A worker loads the LLM once and reads captions from the store
(read-only); the driver is the only writer.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from videomem.jobs.caption_job import CaptionJob, CaptionSummary, add_captions
from videomem.jobs.executor import Executor, ProgressFn, make_executor, run_to_end
from videomem.jobs.qa_job import QAJob, QASummary, answer_questions
from videomem.jobs.qa_step import GenerationJob, QAItem
from videomem.jobs.questions import QuestionRow
from videomem.jobs.rows import answer_row, caption_row, failed_rows, settings_with
from videomem.jobs.videos import indexed_records
from videomem.pipeline.errors import VideomemError
from videomem.pipeline.transcript import Transcript
from videomem.qa.types import GenerationSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimelineTask:
    store: str
    settings: GenerationSettings
    storage_options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TimelineStepSpec:
    """A text LLM per worker (picklable)."""

    llm: str
    device: str | None = None
    dtype: str | None = None
    concurrency: int = 1

    def build(self) -> TimelineStep:
        return TimelineStep(self)

    def lost(self, item: QAItem, task: TimelineTask, error: str, retryable: bool) -> list[Any]:
        return failed_rows(item, error, self.llm, task.settings)


class TimelineStep:
    def __init__(self, spec: TimelineStepSpec) -> None:
        from videomem.jobs.relevance import RelevanceSource
        from videomem.qa.textllm import TextLLM, TimelineAnswerer

        self.spec = spec
        self.llm = TextLLM(spec.llm, spec.device, spec.dtype, name=spec.llm)
        self.answerer = TimelineAnswerer(self.llm, relevance=RelevanceSource().text)
        self._stores: dict[str, Any] = {}

    def info(self) -> dict[str, Any]:
        return {"llm": self.spec.llm, "dtype": self.llm.dtype}

    def _store(self, task: TimelineTask) -> Any:
        from videomem.memory.store import Store

        if task.store not in self._stores:
            self._stores[task.store] = Store(task.store, storage_options=task.storage_options)
        return self._stores[task.store]

    def _captions(self, task: TimelineTask, video_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._store(task).qa.captions(video_id)
        return rows

    def _transcript(self, task: TimelineTask, video_id: str) -> Transcript | None:
        """What the video says, for the timeline: the newest finished transcript."""
        transcript: Transcript | None = self._store(task).speech.get(video_id)
        return transcript

    def run(self, item: QAItem, task: TimelineTask, progress: ProgressFn | None) -> list[Any]:
        try:
            rows = self._run(item, task)
        except VideomemError as e:
            rows = failed_rows(item, str(e), self.spec.llm, task.settings)
        except Exception as e:  # a bug or the environment: still data
            log.error("timeline QA of %s failed:\n%s", item.record.video_id, traceback.format_exc())
            rows = failed_rows(item, f"{type(e).__name__}: {e}", self.spec.llm, task.settings)
        if progress is not None:
            progress(max(1, len(item.questions)))
        return rows

    def _run(self, item: QAItem, task: TimelineTask) -> list[dict[str, Any]]:
        rec = item.record
        # the timeline of the memory this record names, written by any model but this
        # one's own global captions (a caption must not feed the next caption)
        captions = [c for c in self._captions(task, rec.video_id) if c["model"] != self.spec.llm]
        transcript = self._transcript(task, rec.video_id)
        if item.caption:
            a = self.answerer.caption(captions, task.settings, transcript)
            if a.status == "failed":
                return [{"video_id": rec.video_id, "status": "failed", "error": a.error}]
            end_s = float(rec.duration_s or 0.0)
            settings = caption_settings(task.settings)
            return [caption_row(rec, "global", 0.0, end_s, a.answer, self.spec.llm, settings)]
        answers = self.answerer.answer(
            captions, [q for _, q in item.questions], task.settings, rec.duration_s, transcript
        )
        return [
            answer_row(qid, rec.video_id, a, self.spec.llm, task.settings, rec)
            for (qid, _), a in zip(item.questions, answers, strict=True)
        ]


def caption_settings(settings: GenerationSettings) -> str:
    """The ``settings`` column of a timeline caption (the resume key of ``caption --llm``)."""
    return settings_with(settings, **{"from": "timeline"})


def _executor(llm: str, job: GenerationJob) -> Executor:
    wants_gpu = job.device is None or job.device.startswith("cuda")
    spec = TimelineStepSpec(llm, job.device, job.dtype)
    return make_executor(spec, job.executor, job.workers, job.ray_address, wants_gpu=wants_gpu)


def run_timeline_qa(
    job: QAJob,
    llm: str,
    progress: ProgressFn | None = None,
    questions: Sequence[QuestionRow] | None = None,
    keep_answers: bool = False,
) -> QASummary:
    """``videomem qa QUESTIONS --llm MODEL``: like :func:`videomem.jobs.qa_job.run_qa`,
    answered from the timeline by ``llm`` (answers keyed with ``model=llm``)."""
    job = replace(job, model=llm)  # answers are keyed, and written out, with model=llm
    return answer_questions(
        job,
        lambda: _executor(llm, job),
        TimelineTask(job.store, job.settings, job.storage_options),
        progress,
        questions=questions,
        keep_answers=keep_answers,
    )


def run_timeline_caption(job: CaptionJob, llm: str) -> CaptionSummary:
    """``videomem caption --llm MODEL``: a global caption per video written by ``llm``
    from its timeline, into the ``captions`` table (kind ``global``)."""
    from videomem.memory.store import Store

    summary = CaptionSummary()
    settings_json = caption_settings(job.settings)
    with Store(job.store, writer=True, storage_options=job.storage_options) as store:
        items = []
        for rec in indexed_records(store, job.videos, summary):
            summary.videos += 1
            vid = rec.video_id
            done = any(
                c["kind"] == "global" and c["model"] == llm and c["settings"] == settings_json
                for c in store.qa.captions(vid)
            )
            if done and not job.force:
                summary.skipped += 1
                continue
            items.append(QAItem(rec, caption=True))
        if items:
            run_to_end(
                _executor(llm, job),
                items,
                # a failed video: one failed row
                lambda rows: add_captions(store, summary, rows),
                TimelineTask(job.store, job.settings, job.storage_options),
            )
            if summary.captions:
                from videomem.jobs.search_refresh import refresh_after_write

                refresh_after_write(store)
    return summary
