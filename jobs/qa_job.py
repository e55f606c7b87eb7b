"""The bulk QA job: plan in the driver, answer in workers, write in the driver.

The driver reads the question file, resolves each row's video, drops what the store
already answered for the same (question, video, model, generation settings) unless
``force``, and hands one item per video (its record and its questions) to the executor.
A worker (:class:`videomem.jobs.qa_step.QAStep`, or the timeline LLM of
:mod:`videomem.jobs.timeline_job` with ``llm``) answers and returns rows. The driver is
the only writer of the ``answers`` table, committing as outcomes arrive, so a killed
job keeps what it answered and a re-run resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from videomem.jobs.executor import Executor, ProgressFn, run_to_end
from videomem.jobs.out_file import check_out, write_rows_file
from videomem.jobs.qa_step import GenerationJob, QAItem, vlm_executor
from videomem.jobs.questions import QuestionRow, question_id, read_questions
from videomem.jobs.rows import answer_row
from videomem.jobs.videos import resolve_video
from videomem.pipeline.errors import VideomemError
from videomem.qa.types import GenerationSettings


@dataclass(frozen=True)
class QAJob(GenerationJob):
    """Everything ``videomem qa`` needs; the CLI only builds this (the model, where it
    runs, ``force`` and ``llm``: :class:`GenerationJob`, keyword-only)."""

    questions: str
    store: str
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    out: str | None = None
    reuse_prefix: bool = True
    batch_size: int = 1


@dataclass
class QASummary:
    rows: int = 0
    answered: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def text(self) -> str:
        rate = self.answered / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.rows} question(s): {self.answered} answered, {self.skipped} skipped "
            f"(already answered), {self.failed} failed in {self.seconds:.1f}s "
            f"({rate:.2f} questions/s)"
        )

    #: the stored answers to the job's questions, when the caller asked to keep them
    answers: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "answers"}


def add_answers(store: Any, summary: QASummary, rows: list[dict[str, Any]]) -> None:
    """Commit answer rows (the single writer) and tally them into ``summary``."""
    store.qa.add("answers", rows)
    for r in rows:
        if r["status"] == "answered":
            summary.answered += 1
        else:
            summary.failed += 1
            if len(summary.failures) < 20:
                summary.failures.append(f"{r['video_id']}: {r['error']}")


def stored_answers(store: Any, job: QAJob, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The stored answers to this job's questions (``keys``) under its settings (and
    model, when it names one)."""
    wanted = set(keys)
    h = job.settings.hash()
    return [
        r
        for r in store.qa.read("answers", f"settings_hash = '{h}'")
        if (r["question_id"], r["video_id"]) in wanted
        and (job.model is None or r["model"] == job.model)
    ]


def _plan(
    rows: Sequence[QuestionRow], store: Any, job: QAJob
) -> tuple[list[QAItem], list[dict[str, Any]], int, list[tuple[str, str]]]:
    """(items per video, failed rows of bad input, rows skipped, every row's key)."""
    from videomem.qa import Answer, Question

    failed: list[dict[str, Any]] = []
    keys: list[tuple[str, str]] = []
    by_video: dict[str, list[tuple[str, Any]]] = {}
    records: dict[str, Any] = {}
    answered: dict[str, set[tuple[str, str]]] = {}
    skipped = 0
    settings = job.settings
    for row in rows:
        q = Question(row.question, row.time_s)
        video_id, rec, error = row.video, None, row.error
        if error is None:
            try:
                video_id = resolve_video(store, row.video)
                rec = records.get(video_id) or store.latest(video_id)
                records[video_id] = rec
                if rec.status != "indexed":
                    error = f"video {video_id} failed to index: {rec.error or 'unknown error'}"
            except VideomemError as e:
                error = str(e)
        qid = row.question_id or question_id(video_id, row.question, row.time_s)
        keys.append((qid, video_id))
        model = job.model or (rec.model if rec is not None else "")
        if error is not None:
            failed.append(
                answer_row(
                    qid, video_id, Answer(q, status="failed", error=error), model, settings, rec
                )
            )
            continue
        if not job.force:
            if model not in answered:
                answered[model] = store.qa.answered(model, settings.hash())
            if (qid, video_id) in answered[model]:
                skipped += 1
                continue
        by_video.setdefault(video_id, []).append((qid, q))
    items = [QAItem(records[v], tuple(qs)) for v, qs in by_video.items()]
    return items, failed, skipped, keys


def run_qa(
    job: QAJob, questions: Sequence[QuestionRow] | None = None, keep_answers: bool = False
) -> QASummary:
    """Run a bulk QA job (see the module docstring). Raises VideomemError for job-level
    problems (unreadable question file, store locked, bad settings). ``questions``:
    rows already in memory instead of ``job.questions``'s file; ``keep_answers``: the
    summary carries the stored answers to them."""
    return answer_questions(
        job,
        lambda: vlm_executor(job, job.reuse_prefix),
        questions=questions,
        keep_answers=keep_answers,
    )


def answer_questions(
    job: QAJob,
    executor: Callable[[], Executor],
    context: Any = None,
    progress: ProgressFn | None = None,
    questions: Sequence[QuestionRow] | None = None,
    keep_answers: bool = False,
) -> QASummary:
    """What every bulk QA job does around its steps: read and plan the questions
    (``questions``, else ``job.questions``'s file), record those that cannot be asked,
    answer the rest on ``executor()`` (made only when there is something to answer;
    ``context`` goes to its steps), commit the answers as they come, write ``job.out``
    (and keep the answers in the summary with ``keep_answers``)."""
    from videomem.memory.store import ANSWERS_SCHEMA, Store

    t0 = time.perf_counter()
    check_out(job.out)
    rows = read_questions(job.questions) if questions is None else list(questions)
    summary = QASummary(rows=len(rows))
    with Store(job.store, writer=True, storage_options=job.storage_options) as store:
        items, failed, summary.skipped, keys = _plan(rows, store, job)
        add_answers(store, summary, failed)
        if items:
            run_to_end(
                executor(), items, lambda rows: add_answers(store, summary, rows), context, progress
            )
        if job.out or keep_answers:
            mine = stored_answers(store, job, keys)
            if job.out:
                write_rows_file(mine, job.out, ANSWERS_SCHEMA)
            if keep_answers:
                summary.answers = mine
    summary.seconds = time.perf_counter() - t0
    return summary
