"""The transcribe job: stored videos' speech into the ``transcripts`` table.

The driver lists the stored videos (all indexed ones, or those named), skips those
with a finished transcript by the same model and settings (the resume set:
``store.speech.transcribed``) unless ``force``, and hands one item per video to the
shared executor. A
worker (:class:`TranscribeStep`) loads the recogniser once and re-reads each video's
audio from its stored file (content id checked first:
:func:`~videomem.jobs.transcribe_video.transcribe_one`); a bad video is a failed row,
never an exception.

Design decisions:

* The driver is the only writer (``Store(writer=True)``): it upserts rows on their key
  in batches of ``commit_batch`` (one LanceDB commit each), and flushes what it holds
  when the job ends or breaks, so a killed job loses at most one batch and a re-run
  adds no duplicate (the key is the table's own rule).
* The memory is never touched: no video is re-indexed, no memory row written.
* Workers run on the CPU unless asked (``--device``): CTranslate2's int8 Whisper base
  runs several times faster than real time on two cores, so Ray actors ask for a GPU
  only when the job's device does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from videomem.encoders.asr import ASRConfig
from videomem.jobs.executor import ExecutorName, ProgressFn, make_executor, run_to_end
from videomem.pipeline.errors import ConfigError
from videomem.pipeline.transcript import Transcript

__all__ = [
    "TranscribeItem",
    "TranscribeJob",
    "TranscribeStep",
    "TranscribeStepSpec",
    "TranscribeSummary",
    "TranscribeTask",
    "run_transcribe",
]


@dataclass(frozen=True)
class TranscribeItem:
    video_id: str
    uri: str


@dataclass(frozen=True)
class TranscribeTask:
    """What every video of a job is transcribed with (sent once to each worker)."""

    settings_hash: str
    settings: str


@dataclass(frozen=True)
class TranscribeStepSpec:
    """The transcription stage as an executor step: one recogniser per worker."""

    asr: ASRConfig
    concurrency: int = 1

    def build(self) -> TranscribeStep:
        return TranscribeStep(self.asr)

    def lost(
        self, item: TranscribeItem, task: TranscribeTask, error: str, retryable: bool
    ) -> Transcript:
        return Transcript(
            video_id=item.video_id, model=self.asr.model, settings_hash=task.settings_hash,
            status="failed", error=f"{item.uri}: {error}", settings=task.settings,
        )  # fmt: skip


class TranscribeStep:
    """Holds one loaded recogniser (per process or Ray actor)."""

    def __init__(self, asr: ASRConfig) -> None:
        from videomem.encoders.asr import load_recognizer

        self.recognizer = load_recognizer(asr)

    def info(self) -> dict[str, Any]:
        return {"step": "transcribe", "model": self.recognizer.model_id}

    def run(
        self, item: TranscribeItem, task: TranscribeTask, progress: ProgressFn | None
    ) -> Transcript:
        from videomem.jobs.transcribe_video import transcribe_one

        try:
            return transcribe_one(
                self.recognizer, item.uri, item.video_id,
                settings_hash=task.settings_hash, settings=task.settings,
            )  # fmt: skip
        finally:
            if progress is not None:
                progress(1)


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class TranscribeJob:
    """Everything ``videomem transcribe`` needs; the CLI only builds this."""

    store: str
    #: ids, id prefixes or indexed file paths; empty = every indexed video
    videos: Sequence[str] = ()
    asr: ASRConfig = field(default_factory=ASRConfig)
    #: transcribe again what has a finished transcript with these settings
    force: bool = False
    #: most transcripts per commit (a killed job loses at most this many)
    commit_batch: int = 8
    executor: ExecutorName = "auto"
    workers: int = 1
    ray_address: str | None = None
    #: LanceDB storage options of an object-store URI (``--storage-option``)
    storage_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.commit_batch < 1:
            raise ConfigError(f"commit_batch must be >= 1, got {self.commit_batch}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")


@dataclass
class TranscribeSummary:
    model: str = ""
    settings_hash: str = ""
    videos: int = 0
    done: int = 0
    no_audio: int = 0
    failed: int = 0
    skipped: int = 0
    segments: int = 0
    #: seconds of audio read, and seconds the workers spent reading and recognising it
    audio_s: float = 0.0
    asr_s: float = 0.0
    #: wall time of the whole job (model loads included)
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        """Real-time factor: recognition seconds per second of audio (< 1: faster)."""
        return self.asr_s / self.audio_s if self.audio_s > 0 else 0.0

    def add(self, t: Transcript) -> None:
        """Count one transcript."""
        self.videos += 1
        self.audio_s += t.audio_s or 0.0
        self.asr_s += t.seconds or 0.0
        if t.status == "done":
            self.done += 1
            self.segments += len(t.segments)
        elif t.status == "no_audio":
            self.no_audio += 1
        else:
            self.failed += 1
            if len(self.failures) < 100:
                self.failures.append(f"{t.video_id}: {t.error}")

    def text(self) -> str:
        return (
            f"{self.videos} video(s): {self.done} transcribed ({self.segments} segments), "
            f"{self.no_audio} no audio, {self.skipped} skipped (already transcribed), "
            f"{self.failed} failed; {self.audio_s:.1f}s of audio in {self.asr_s:.1f}s "
            f"(real-time factor {self.rtf:.3f}) with {self.model}, {self.seconds:.1f}s in all"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rtf": round(self.rtf, 4)}


def run_transcribe(job: TranscribeJob, progress: ProgressFn | None = None) -> TranscribeSummary:
    """Transcribe stored videos (see the module docstring). Raises VideomemError only
    for job-level problems (store locked, model cannot be loaded)."""
    from videomem.jobs.videos import indexed_records
    from videomem.memory.store import Store

    t0 = time.perf_counter()
    task = TranscribeTask(job.asr.settings_hash(), job.asr.settings_json())
    summary = TranscribeSummary(model=job.asr.model, settings_hash=task.settings_hash)
    with Store(job.store, storage_options=job.storage_options):
        pass  # a store that does not exist is an error here, not a new empty store
    with Store(job.store, writer=True, storage_options=job.storage_options) as store:
        records = indexed_records(store, job.videos, summary)
        done = set() if job.force else store.speech.transcribed(job.asr.model, task.settings_hash)
        items = [TranscribeItem(r.video_id, r.uri) for r in records if r.video_id not in done]
        summary.videos += len(records) - len(items)
        summary.skipped += len(records) - len(items)
        if items:
            ex = make_executor(
                TranscribeStepSpec(job.asr), job.executor, job.workers, job.ray_address,
                wants_gpu=job.asr.device != "cpu",
            )  # fmt: skip
            held: list[Transcript] = []

            def commit(t: Transcript) -> None:
                summary.add(t)
                held.append(t)
                if len(held) >= job.commit_batch:
                    store.speech.add(held)  # the single writer
                    held.clear()

            try:
                run_to_end(ex, items, commit, task, progress)
            finally:  # what finished is kept even when the job breaks
                store.speech.add(held)
            if summary.done:  # keep the search indexes in step, as the other jobs do
                from videomem.jobs.search_refresh import refresh_after_write

                refresh_after_write(store)
    summary.seconds = time.perf_counter() - t0
    return summary
