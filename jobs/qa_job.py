"""Bulk QA and captioning jobs: plan in the driver, answer in workers, write in the driver.

The driver reads the question file, resolves each row's video, drops what the store
already answered for the same (question, video, model, generation settings) unless
``force``, and hands one item per video (its record and its questions) to the executor.
A worker (:class:`QAStep`) loads a VLM once per stored model, reads the memory from the
store (read-only), answers, and returns rows; it never raises for a bad item. The
driver is the only writer of the ``answers``/``captions`` tables, committing as
outcomes arrive, so a killed job keeps what it answered and a re-run resumes.

Workers run under the executor every stage shares (:mod:`videomem.jobs.executor`):
in-process for one worker, Ray actors (one VLM each, one GPU each where there are GPUs)
for ``workers > 1`` or a cluster.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videomem.jobs.executor import (
    Executor,
    ExecutorName,
    ProgressFn,
    make_executor,
    run_to_end,
)
from videomem.jobs.questions import QuestionRow, question_id, read_questions
from videomem.pipeline.errors import ConfigError, VideomemError
from videomem.qa.types import GenerationSettings

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- worker


@dataclass(frozen=True)
class QAItem:
    """One video's work: its record and its questions (or a caption request)."""

    record: Any  # VideoRecord
    questions: tuple[tuple[str, Any], ...] = ()  # (question_id, qa.Question)
    caption: bool = False
    dense_every: float | None = None


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
        return failed_rows(item, error, self)


class QAStep:
    """Answers one video's questions (or captions it); errors come back as rows."""

    def __init__(self, spec: QAStepSpec) -> None:
        from videomem.memory.store import Store

        self.spec = spec
        self.store = Store(spec.store, storage_options=spec.storage_options)
        self._sessions: dict[tuple[str, str], Any] = {}
        self._failures: dict[tuple[str, str], str] = {}

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
        try:
            rows = self._run(item)
            if progress is not None:
                progress(len(rows))
            return rows
        except VideomemError as e:
            return failed_rows(item, str(e), self.spec)
        except Exception as e:  # a bug or the environment (out of memory): still data
            log.error("QA of %s failed:\n%s", item.record.video_id, traceback.format_exc())
            return failed_rows(item, f"{type(e).__name__}: {e}", self.spec)

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
            return [
                caption_row(rec, c, session.model, caption_settings(settings, item)) for c in caps
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
        )
        return [
            answer_row(qid, rec.video_id, a, session.model, settings, rec)
            for (qid, _), a in zip(item.questions, answers, strict=True)
        ]


# --------------------------------------------------------------------------- rows


def _now() -> dt.datetime:
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
        "source": a.source,
        "prompt_tokens": a.prompt_tokens,
        "new_tokens": a.new_tokens,
        "seconds": a.seconds,
        "dtype": a.dtype,
        "settings_hash": settings.hash(),
        "settings": settings.to_json(),
        "status": a.status,
        "error": a.error,
        "answered_at": _now(),
    }


def failed_rows(item: QAItem, error: str, spec: QAStepSpec) -> list[dict[str, Any]]:
    from videomem.qa import Answer

    rec = item.record
    model = spec.model or rec.model
    if item.caption:
        return [{"video_id": rec.video_id, "status": "failed", "error": error}]
    return [
        answer_row(
            qid, rec.video_id, Answer(q, status="failed", error=error), model, spec.settings, rec
        )
        for qid, q in item.questions
    ]


def caption_settings(settings: GenerationSettings, item: QAItem) -> str:
    data = json.loads(settings.to_json())
    data["dense_every"] = item.dense_every
    return json.dumps(data, sort_keys=True)


def caption_row(rec: Any, c: Any, model: str, settings_json: str) -> dict[str, Any]:
    return {
        "video_id": rec.video_id,
        "encoder_fingerprint": rec.encoder_fingerprint,
        "config_hash": rec.config_hash,
        "run_id": rec.run_id,
        "kind": c.kind,
        "start_s": c.start_s,
        "end_s": c.end_s,
        "text": c.text,
        "model": model,
        "settings": settings_json,
        "created_at": _now(),
        "status": c.status,
        "error": c.error,
    }


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class QAJob:
    """Everything ``videomem qa`` needs; the CLI only builds this."""

    questions: str
    store: str
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    out: str | None = None
    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    force: bool = False
    reuse_prefix: bool = True
    batch_size: int = 1
    executor: ExecutorName = "auto"
    workers: int = 1
    ray_address: str | None = None
    #: LanceDB storage options of an object-store URI (``--storage-option``)
    storage_options: dict[str, str] = field(default_factory=dict)


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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def resolve_video(store: Any, value: str) -> str:
    """A stored video id from an id, a unique id prefix, or the indexed file's path."""
    from videomem.pipeline.files import content_video_id

    p = Path(value).expanduser()
    if p.is_file():
        vid = content_video_id(p)
        store.latest(vid)  # raises when the store does not hold it
        return vid
    return str(store.resolve_video_id(value))


def indexed_records(store: Any, videos: Sequence[str], summary: Any) -> list[Any]:
    """The indexed records of ``videos`` (ids, prefixes or paths; empty = every indexed
    video), once each; an unknown or unindexed one counts in ``summary`` (``videos``,
    ``failed``, ``failures``) as a failure."""
    if not videos:
        ids = sorted({r.video_id for r in store.list_videos("indexed")})
    else:
        ids = []
        for v in videos:
            try:
                ids.append(resolve_video(store, v))
            except VideomemError as e:
                summary.videos += 1
                summary.failed += 1
                summary.failures.append(f"{v}: {e}")
    records = []
    for vid in dict.fromkeys(ids):
        rec = store.latest(vid)
        if rec.status != "indexed":
            summary.videos += 1
            summary.failed += 1
            summary.failures.append(f"{vid}: not indexed ({rec.error})")
            continue
        records.append(rec)
    return records


def check_out(out: str | None) -> None:
    """Fail before any work when ``--out`` names a format the job cannot write."""
    if out and Path(out).suffix.lower() not in (".parquet", ".jsonl", ".ndjson"):
        raise ConfigError(f"{out}: --out must end in .parquet or .jsonl")


def add_answers(store: Any, summary: QASummary, rows: list[dict[str, Any]]) -> None:
    """Commit answer rows (the single writer) and tally them into ``summary``."""
    store.add_qa_rows("answers", rows)
    for r in rows:
        if r["status"] == "answered":
            summary.answered += 1
        else:
            summary.failed += 1
            if len(summary.failures) < 20:
                summary.failures.append(f"{r['video_id']}: {r['error']}")


def write_answers_out(store: Any, job: QAJob, keys: list[tuple[str, str]]) -> None:
    """``job.out``: the stored answers to this job's questions under its settings (and
    model, when it names one)."""
    from videomem.memory.tables import ANSWERS_SCHEMA

    if not job.out:
        return
    wanted = set(keys)
    h = job.settings.hash()
    mine = [
        r
        for r in store.read_qa_rows("answers", f"settings_hash = '{h}'")
        if (r["question_id"], r["video_id"]) in wanted
        and (job.model is None or r["model"] == job.model)
    ]
    write_rows_file(mine, job.out, ANSWERS_SCHEMA)


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
                answered[model] = store.answered(model, settings.hash())
            if (qid, video_id) in answered[model]:
                skipped += 1
                continue
        by_video.setdefault(video_id, []).append((qid, q))
    items = [QAItem(records[v], tuple(qs)) for v, qs in by_video.items()]
    return items, failed, skipped, keys


def write_rows_file(rows: list[dict[str, Any]], out: str, schema: Any) -> Path:
    """Rows to ``.parquet`` or ``.jsonl`` (atomic: temp file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows, schema), tmp)
    elif path.suffix.lower() in (".jsonl", ".ndjson"):
        with tmp.open("w") as f:
            for r in rows:
                f.write(json.dumps(r, default=str) + "\n")
    else:
        raise ConfigError(f"{out}: --out must end in .parquet or .jsonl")
    tmp.replace(path)
    return path


def run_qa(job: QAJob) -> QASummary:
    """Run a bulk QA job (see the module docstring). Raises VideomemError for job-level
    problems (unreadable question file, store locked, bad settings)."""
    return answer_questions(job, lambda: vlm_executor(job, job.reuse_prefix))


def vlm_executor(job: QAJob | CaptionJob, reuse_prefix: bool = True) -> Executor:
    """The executor of a QA or caption job: workers that answer with the memory's VLM
    (or ``job.model``), opening the job's store with its storage options."""
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


def answer_questions(
    job: QAJob,
    executor: Callable[[], Executor],
    context: Any = None,
    progress: ProgressFn | None = None,
) -> QASummary:
    """What every bulk QA job does around its steps: read and plan the questions,
    record those that cannot be asked, answer the rest on ``executor()`` (made only
    when there is something to answer; ``context`` goes to its steps), commit the
    answers as they come, write ``job.out``."""
    from videomem.memory.store import Store

    t0 = time.perf_counter()
    check_out(job.out)
    rows = read_questions(job.questions)
    summary = QASummary(rows=len(rows))
    with Store(job.store, writer=True, storage_options=job.storage_options) as store:
        items, failed, summary.skipped, keys = _plan(rows, store, job)
        add_answers(store, summary, failed)
        if items:
            run_to_end(
                executor(), items, lambda rows: add_answers(store, summary, rows), context, progress
            )
        write_answers_out(store, job, keys)
    summary.seconds = time.perf_counter() - t0
    return summary


@dataclass(frozen=True)
class CaptionJob:
    """Everything ``videomem caption`` needs."""

    store: str
    videos: tuple[str, ...] = ()  # ids, prefixes or paths; empty = every indexed video
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    dense_every: float | None = None
    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    force: bool = False
    batch_size: int = 4
    executor: ExecutorName = "auto"
    workers: int = 1
    ray_address: str | None = None
    #: LanceDB storage options of an object-store URI (``--storage-option``)
    storage_options: dict[str, str] = field(default_factory=dict)


@dataclass
class CaptionSummary:
    videos: int = 0
    captioned: int = 0
    skipped: int = 0
    failed: int = 0
    captions: int = 0
    failures: list[str] = field(default_factory=list)

    def text(self) -> str:
        return (
            f"{self.videos} video(s): {self.captioned} captioned ({self.captions} captions), "
            f"{self.skipped} skipped (already captioned), {self.failed} failed"
        )


def add_captions(store: Any, summary: CaptionSummary, rows: list[dict[str, Any]]) -> None:
    """One video's caption rows: a video that failed as a whole (only failed rows, no
    caption kind) counts as a failure; otherwise its good rows are committed."""
    bad = [r for r in rows if r.get("status") == "failed"]
    if bad and len(bad) == len(rows) and "kind" not in rows[0]:
        summary.failed += 1
        summary.failures.append(f"{rows[0]['video_id']}: {bad[0]['error']}")
        return
    good = [r for r in rows if r.get("status") != "failed"]
    store.add_qa_rows("captions", good)
    summary.captioned += 1
    summary.captions += len(good)


def run_caption(job: CaptionJob) -> CaptionSummary:
    """Caption videos into the ``captions`` table (global + dense per segment)."""
    from videomem.memory.store import Store

    summary = CaptionSummary()
    with Store(job.store, writer=True, storage_options=job.storage_options) as store:
        items = []
        for rec in indexed_records(store, job.videos, summary):
            summary.videos += 1
            vid = rec.video_id
            item = QAItem(rec, caption=True, dense_every=job.dense_every)
            model = job.model or rec.model
            settings_json = caption_settings(job.settings, item)
            done = [
                c
                for c in store.captions(vid)
                if c["model"] == model and c["settings"] == settings_json
            ]
            if done and not job.force:
                summary.skipped += 1
                continue
            items.append(item)
        if items:
            run_to_end(vlm_executor(job), items, lambda rows: add_captions(store, summary, rows))
            if summary.captions:
                from videomem.jobs.search_refresh import refresh_after_write

                refresh_after_write(store)
    return summary
