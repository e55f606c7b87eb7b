"""The tag job: per-slot tags of stored memories into the ``captions`` table.

The driver lists the stored videos to tag (all indexed ones, or those named), skips a
video whose current memory already has tags from the same encoder and settings unless
``force``, and hands one item per video to the shared executor. A worker
(:class:`TagStep`) loads the video's encoder once per encoder fingerprint (checking it
is the encoder that made the memory), reads the memory from the store (read-only) and
returns ``tags`` caption rows; a bad video is a failed outcome, never an exception.
The driver is the only writer, committing as outcomes arrive, so a killed job keeps
what it tagged and a re-run resumes. No video is decoded.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from videomem.jobs.executor import ExecutorName, ProgressFn, make_executor, run_to_end
from videomem.jobs.rows import caption_row
from videomem.memory.store import VideoRecord
from videomem.pipeline.errors import ConfigError, VideomemError

log = logging.getLogger(__name__)

#: the caption kind of tag rows
KIND = "tags"


@dataclass(frozen=True)
class TagTask:
    """What every video of a tag job is tagged with (sent once to each worker)."""

    store: str
    #: tags per slot
    k: int = 5
    #: zero-shot labels (CLIP/SigLIP); None = the shipped default list
    vocabulary: tuple[str, ...] | None = None
    device: str | None = None
    storage_options: dict[str, str] = field(default_factory=dict)


@dataclass
class TagOutcome:
    record: VideoRecord
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    #: the caption ``settings`` the rows carry (for the resume check)
    settings: str = ""


@dataclass(frozen=True)
class TagStepSpec:
    """The tag stage as an executor step (encoders load lazily, per memory's encoder)."""

    concurrency: int = 1

    def build(self) -> TagStep:
        return TagStep()

    def lost(self, item: VideoRecord, task: TagTask, error: str, retryable: bool) -> TagOutcome:
        return TagOutcome(item, error=f"{item.uri}: {error}")


class TagStep:
    """Tags memories; holds one tagger per encoder fingerprint."""

    def __init__(self) -> None:
        self._taggers: dict[tuple[str, int, tuple[str, ...] | None], Any] = {}
        self._stores: dict[str, Any] = {}

    def info(self) -> dict[str, Any]:
        return {"step": "tag"}

    def tagger(self, rec: VideoRecord, task: TagTask) -> Any:
        from videomem.encoders.record import load_record_encoder
        from videomem.qa.tags import make_tagger

        key = (rec.encoder_fingerprint, task.k, task.vocabulary)
        if key not in self._taggers:
            encoder = load_record_encoder(rec, task.device)
            self._taggers[key] = make_tagger(encoder, task.vocabulary, task.k)
        return self._taggers[key]

    def store(self, task: TagTask) -> Any:
        from videomem.memory.store import Store

        if task.store not in self._stores:
            self._stores[task.store] = Store(task.store, storage_options=task.storage_options)
        return self._stores[task.store]

    def run(self, rec: VideoRecord, task: TagTask, progress: ProgressFn | None) -> TagOutcome:
        try:
            return self._run(rec, task)
        except VideomemError as e:
            return TagOutcome(rec, error=str(e))
        except Exception as e:  # a bug or the environment: still data
            log.error("tagging %s failed:\n%s", rec.video_id, traceback.format_exc())
            return TagOutcome(rec, error=f"{type(e).__name__}: {e}")
        finally:
            if progress is not None:
                progress(1)

    def _run(self, rec: VideoRecord, task: TagTask) -> TagOutcome:
        from videomem.qa.tags import settings_json, tags_text

        tagger = self.tagger(rec, task)
        memory = self.store(task).load_memory(
            rec.video_id, encoder_fingerprint=rec.encoder_fingerprint, config_hash=rec.config_hash
        )
        settings = settings_json(tagger)
        now = dt.datetime.now(dt.timezone.utc)
        rows = [
            tag_row(rec, float(s), float(e), tags_text(tags), settings, now)
            for s, e, tags in zip(
                memory.start_s.tolist(), memory.end_s.tolist(), tagger.tag(memory), strict=True
            )
        ]
        return TagOutcome(rec, rows, settings=settings)


def tag_row(
    rec: VideoRecord, start_s: float, end_s: float, text: str, settings: str, now: dt.datetime
) -> dict[str, Any]:
    """A ``captions`` row of kind ``tags``, written in the name of the memory's model."""
    return caption_row(rec, KIND, start_s, end_s, text, rec.model, settings, created_at=now)


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class TagJob:
    """Everything ``videomem tag`` needs; the CLI only builds this."""

    store: str
    #: ids, id prefixes or indexed file paths; empty = every indexed video
    videos: Sequence[str] = ()
    k: int = 5
    #: a file with one label per line (CLIP/SigLIP); None = the shipped list
    vocabulary: str | None = None
    force: bool = False
    device: str | None = None
    executor: ExecutorName = "auto"
    workers: int = 1
    ray_address: str | None = None
    #: LanceDB storage options of an object-store URI (``--storage-option``)
    storage_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")


@dataclass
class TagSummary:
    videos: int = 0
    tagged: int = 0
    skipped: int = 0
    failed: int = 0
    slots: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def text(self) -> str:
        return (
            f"{self.videos} video(s): {self.tagged} tagged ({self.slots} slots), "
            f"{self.skipped} skipped (already tagged), {self.failed} failed "
            f"in {self.seconds:.1f}s"
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _records(store: Any, job: TagJob, summary: TagSummary) -> list[VideoRecord]:
    from videomem.jobs.videos import indexed_records

    return indexed_records(store, job.videos, summary)


def _already_tagged(store: Any, rec: VideoRecord, settings: set[str]) -> bool:
    """Whether the video's current memory has tags made with one of ``settings``."""
    return any(
        c["kind"] == KIND and c["model"] == rec.model and c["settings"] in settings
        for c in store.qa.captions(rec.video_id)
    )


def run_tag(job: TagJob, progress: ProgressFn | None = None) -> TagSummary:
    """Tag stored memories (see the module docstring). Raises VideomemError only for
    job-level problems (store locked, unreadable vocabulary)."""
    from videomem.memory.store import Store
    from videomem.qa.tags import possible_settings, read_vocabulary

    t0 = time.perf_counter()
    vocabulary = tuple(read_vocabulary(job.vocabulary)) if job.vocabulary else None
    task = TagTask(
        store=job.store,
        k=job.k,
        vocabulary=vocabulary,
        device=job.device,
        storage_options=job.storage_options,
    )
    summary = TagSummary()
    with Store(job.store, writer=True, storage_options=job.storage_options) as store:
        records = _records(store, job, summary)
        if not job.force:
            settings = possible_settings(job.k, vocabulary)
            todo = [r for r in records if not _already_tagged(store, r, settings)]
            summary.videos += len(records) - len(todo)
            summary.skipped += len(records) - len(todo)
            records = todo
        if not records:
            summary.seconds = time.perf_counter() - t0
            return summary
        wants_gpu = job.device is None or job.device.startswith("cuda")
        ex = make_executor(
            TagStepSpec(), job.executor, job.workers, job.ray_address, wants_gpu=wants_gpu
        )

        def commit(out: Any) -> None:
            summary.videos += 1
            if out.error is not None:
                summary.failed += 1
                if len(summary.failures) < 100:
                    summary.failures.append(f"{out.record.video_id}: {out.error}")
                return
            store.qa.add("captions", out.rows)  # the single writer
            summary.tagged += 1
            summary.slots += len(out.rows)

        run_to_end(ex, records, commit, task, progress)
        if summary.tagged:
            from videomem.jobs.search_refresh import refresh_after_write

            refresh_after_write(store)
    summary.seconds = time.perf_counter() - t0
    return summary
