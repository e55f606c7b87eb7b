"""The QA worker: answers one video's questions (or captions it) with a VLM.

A worker (:class:`QAStep`) loads a VLM once per stored model and encoder fingerprint,
reads the memory from the store (read-only), answers, and returns rows; it never
raises for a bad item (errors are failed rows). It runs under the executor every stage
shares (:mod:`videomem.jobs.executor`): in-process for one worker, Ray actors (one VLM
each, one GPU each where there are GPUs) for ``workers > 1`` or a cluster.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from videomem.jobs.executor import Executor, ExecutorName, ProgressFn, make_executor
from videomem.jobs.relevance import RelevanceSource
from videomem.jobs.rows import answer_row, caption_row, failed_rows, settings_with
from videomem.pipeline.errors import VideomemError
from videomem.qa.types import GenerationSettings

if TYPE_CHECKING:
    from videomem.jobs.caption_job import CaptionJob
    from videomem.jobs.qa_job import QAJob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QAItem:
    """One video's work: its record and its questions (or a caption request)."""

    record: Any  # VideoRecord
    questions: tuple[tuple[str, Any], ...] = ()  # (question_id, qa.Question)
    caption: bool = False
    dense_every: float | None = None


def caption_settings(settings: GenerationSettings, item: QAItem) -> str:
    """The ``settings`` column of a VLM caption (the resume key of ``caption``)."""
    return settings_with(settings, dense_every=item.dense_every)


@dataclass(frozen=True)
class QAStepSpec:
    """What every worker is built from (picklable)."""

    store: str
    settings: GenerationSettings
    storage_options: dict[str, str] = field(default_factory=dict)
    model: str | None = None  # None: each video's stored model
    device: str | None = None
    dtype: str | None = None
    reuse_prefix: bool = True
    batch_size: int = 1
    #: items a worker holds at once: one, the VLM answers one video at a time
    concurrency: int = 1

    def build(self) -> QAStep:
        return QAStep(self)

    def lost(self, item: QAItem, context: Any, error: str, retryable: bool) -> list[dict[str, Any]]:
        """The rows of an item whose worker died."""
        return failed_rows(item, error, self.model or item.record.model, self.settings)


class QAStep:
    """Answers one video's questions (or captions it); errors come back as rows."""

    def __init__(self, spec: QAStepSpec) -> None:
        from videomem.memory.store import Store

        self.spec = spec
        self.store = Store(spec.store, storage_options=spec.storage_options)
        self._sessions: dict[tuple[str, str], Any] = {}
        self._failures: dict[tuple[str, str], str] = {}
        self.relevance = RelevanceSource()

    def info(self) -> dict[str, Any]:
        return {"model": self.spec.model, "device": self.spec.device, "dtype": self.spec.dtype}

    def _session(self, record: Any) -> Any:
        from videomem.qa.session import load_for_record

        key = (self.spec.model or record.model, record.encoder_fingerprint)
        if key in self._failures:
            raise VideomemError(self._failures[key])
        if key not in self._sessions:
            try:
                self._sessions[key] = load_for_record(
                    record, self.spec.model, self.spec.device, self.spec.dtype
                )
            except VideomemError as e:
                self._failures[key] = str(e)  # do not reload a refused model per video
                raise
        return self._sessions[key]

    def run(
        self, item: QAItem, context: Any = None, progress: ProgressFn | None = None
    ) -> list[dict[str, Any]]:
        model = self.spec.model or item.record.model
        try:
            rows = self._run(item)
            if progress is not None:
                progress(len(rows))
            return rows
        except VideomemError as e:
            return failed_rows(item, str(e), model, self.spec.settings)
        except Exception as e:  # a bug or the environment (out of memory): still data
            log.error("QA of %s failed:\n%s", item.record.video_id, traceback.format_exc())
            return failed_rows(item, f"{type(e).__name__}: {e}", model, self.spec.settings)

    def _run(self, item: QAItem) -> list[dict[str, Any]]:
        from videomem.qa import VideoContext, answer, caption

        rec = item.record
        session = self._session(rec)
        memory = self.store.load_memory(
            rec.video_id, encoder_fingerprint=rec.encoder_fingerprint, config_hash=rec.config_hash
        )
        settings = self.spec.settings
        if item.caption:
            caps = caption(
                session.qa,
                memory,
                settings,
                dense_every=item.dense_every,
                duration_s=rec.duration_s,
                batch_size=max(1, self.spec.batch_size),
            )
            settings_json = caption_settings(settings, item)
            return [
                caption_row(
                    rec,
                    c.kind,
                    c.start_s,
                    c.end_s,
                    c.text,
                    session.model,
                    settings_json,
                    status=c.status,
                    error=c.error,
                )  # fmt: skip
                for c in caps
            ]
        answers = answer(
            session.qa,
            memory,
            [q for _, q in item.questions],
            settings,
            duration_s=rec.duration_s,
            video=VideoContext.from_record(rec),
            encoder=session.encoder,
            reuse_prefix=self.spec.reuse_prefix,
            batch_size=self.spec.batch_size,
            transcript=self.store.speech.get(rec.video_id) if settings.subtitles else None,
            relevance=self.relevance.for_memory(self.store, rec, memory),
        )
        return [
            answer_row(qid, rec.video_id, a, session.model, settings, rec)
            for (qid, _), a in zip(item.questions, answers, strict=True)
        ]


@dataclass(frozen=True, kw_only=True)
class GenerationJob:
    """What the QA and caption jobs share (keyword-only, after each job's own fields):
    which model generates, where it runs, and how the store is reached."""

    #: the VLM that answers (default: the one that indexed each video)
    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    #: answer again what the store already holds for the same model and settings
    force: bool = False
    executor: ExecutorName = "auto"
    workers: int = 1
    ray_address: str | None = None
    #: LanceDB storage options of an object-store URI (``--storage-option``)
    storage_options: dict[str, str] = field(default_factory=dict)
    #: a text LLM reading the text timeline instead of the memory's VLM
    llm: str | None = None


def vlm_executor(job: QAJob | CaptionJob, reuse_prefix: bool = True) -> Executor:
    """The executor of a QA or caption job (``QAJob``/``CaptionJob``): workers that
    answer with the memory's VLM (or ``job.model``), opening the job's store with its
    storage options."""
    spec = QAStepSpec(
        store=job.store,
        settings=job.settings,
        storage_options=job.storage_options,
        model=job.model,
        device=job.device,
        dtype=job.dtype,
        reuse_prefix=reuse_prefix,
        batch_size=job.batch_size,
    )
    return make_executor(
        spec, job.executor, job.workers, job.ray_address, wants_gpu=job.device != "cpu"
    )
