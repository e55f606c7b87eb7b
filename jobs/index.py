"""The index job: every video under some paths into the store, on any executor.

Design decisions:

* The per-video step is :class:`IndexStep` (a :class:`~videomem.jobs.executor.Step`):
  it loads the encoder once per worker and runs
  :func:`~videomem.jobs.index_video.index_one` (errors as data). The same step runs
  in-process and on Ray actors (:mod:`videomem.jobs.executor`).
* Planning streams: the driver walks the paths (or reads ``--from-list``) lazily and
  hands bare paths to the workers, which compute each file's content id (reading ~1 MiB)
  and skip what the store already holds for the job's key. A million-file folder starts
  at once; no file is hashed twice.
* The driver is the one committer: it alone opens the store for writing (holding its
  lock), and commits each batch of results that arrived together (three LanceDB
  commits per batch, so N busy actors do not cause N fragment storms, while each video
  is committed as soon as it is done: a kill loses only in-flight work).
* Cores: N workers on one machine each decode with ``cores // N`` of its cores
  (``DecodeConfig.cpus``, sent in the :class:`TaskSpec`, not hashed), so a long
  video's automatic segment count and ffmpeg threads stay within a worker's share.
* ``speech`` (``index --speech``): each worker also loads the speech recogniser and
  transcribes every video's audio on a thread beside its decode and encode, so a
  corpus is read once; the driver commits the transcripts with each batch
  (:mod:`videomem.jobs.index_speech`). The memory's key does not depend on it.
* Resumable: the key is (content id, encoder fingerprint, config hash). Videos whose
  last attempt failed with a ``DecodeError`` (a property of the file's bytes) are
  skipped unless ``retry_failed``; other failures (encoder, out-of-memory, a dead
  worker …) may be transient and are retried automatically. ``force`` redoes everything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from videomem.encoders.asr import ASRConfig, SpeechRecognizer
from videomem.encoders.config import EncoderConfig
from videomem.jobs.executor import Executor, ExecutorName, ProgressFn, make_executor
from videomem.jobs.index_speech import SpeechTotals, commit_transcripts, speech_task
from videomem.jobs.index_video import IndexOutcome
from videomem.jobs.progress import NullReporter, Reporter
from videomem.jobs.transcribe_video import SpeechThread, TurnLock
from videomem.memory.config import MemoryConfig
from videomem.memory.index_config import index_config_hash
from videomem.memory.store import LeaseConfig, Store, VideoRecord
from videomem.pipeline.errors import ConfigError, VideomemError
from videomem.pipeline.ffmpeg_choice import ffmpeg_info
from videomem.pipeline.segments import cpu_share
from videomem.pipeline.types import DecodeConfig

log = logging.getLogger(__name__)

#: failures listed in a job summary; the store holds every one
MAX_FAILURES_LISTED = 100


# --------------------------------------------------------------------------- the step


@dataclass(frozen=True)
class EncoderInfo:
    fingerprint: str
    input_size: tuple[int, int]
    tokens_per_frame: int
    dim: int
    embed_dim: int


@dataclass(frozen=True)
class WorkItem:
    uri: str
    #: None: the worker computes it from the file's content
    video_id: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """What every video of a job is indexed with (sent once to each worker)."""

    decode: DecodeConfig
    memory: MemoryConfig
    config_hash: str
    model: str
    encoder: dict[str, Any]
    fingerprint: str = ""
    #: video_id -> (status, retryable) of what the store holds under this job's key
    known: dict[str, tuple[str, bool]] = field(default_factory=dict)
    force: bool = False
    retry_failed: bool = False
    #: ``index --speech``: the recognition settings' hash and JSON, and the videos
    #: with a finished transcript made with them (None: no speech)
    speech_hash: str | None = None
    speech_settings: str = "{}"
    transcribed: frozenset[str] = frozenset()

    def wants_speech(self, video_id: str) -> bool:
        """Whether the video's speech is to be transcribed (again)."""
        if self.speech_hash is None:
            return False
        return self.force or video_id not in self.transcribed

    def skip_reason(self, video_id: str) -> str | None:
        """Why a video need not be indexed again, or None."""
        known = self.known.get(video_id)
        if known is None or self.force:
            return None
        status, retryable = known
        if status == "indexed":
            return "already indexed"
        if not retryable and not self.retry_failed:
            return "failed before (pass --retry-failed to try again)"
        return None


def path_video_id(path: str) -> str:
    """Id for a file whose content cannot be read (so its failure still has a row)."""
    return "path-" + hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]


def failed_outcome(
    item: WorkItem, task: TaskSpec, error: str, error_type: str, retryable: bool
) -> IndexOutcome:
    return IndexOutcome(
        VideoRecord(
            video_id=item.video_id or path_video_id(item.uri),
            encoder_fingerprint=task.fingerprint,
            config_hash=task.config_hash,
            status="failed",
            uri=item.uri,
            error=error,
            error_type=error_type,
            retryable=retryable,
            model=task.model,
        )
    )


@dataclass(frozen=True)
class IndexStepSpec:
    """The index stage as an executor step: one encoder (and with ``speech``, one
    speech recogniser) per worker."""

    encoder: EncoderConfig
    #: videos a worker has in flight: one encoding, one being probed/decoded ahead
    concurrency: int = 2
    speech: ASRConfig | None = None

    def build(self) -> IndexStep:
        return IndexStep(self.encoder, self.speech)

    def lost(self, item: WorkItem, task: TaskSpec, error: str, retryable: bool) -> IndexOutcome:
        return failed_outcome(item, task, f"{item.uri}: {error}", "WorkerLost", retryable)


class IndexStep:
    """Holds one loaded encoder and indexes videos with it (one per process/actor).

    ``run`` may be called from two threads at once (the executors' lookahead): the
    encoder lock lets only one video encode at a time while the other probes and
    decodes its first batches, so the encoder never waits for a new video's ffmpeg.
    With a recogniser, each video's speech is transcribed on a thread of its own while
    its frames decode and encode (:class:`~videomem.jobs.transcribe_video.SpeechThread`).
    """

    def __init__(self, spec: EncoderConfig, speech: ASRConfig | None = None) -> None:
        from videomem.encoders.registry import load_encoder_from_config

        self.spec = spec
        self.encoder = load_encoder_from_config(spec)
        self._encode_lock = threading.Lock()
        self._speech_turns = TurnLock()  # one video's speech at a time, in order
        self.recognizer: SpeechRecognizer | None = None
        if speech is not None:
            from videomem.encoders.asr import load_recognizer

            self.recognizer = load_recognizer(speech)

    def info(self) -> EncoderInfo:
        e = self.encoder
        return EncoderInfo(
            fingerprint=e.fingerprint,
            input_size=(int(e.input_size[0]), int(e.input_size[1])),
            tokens_per_frame=int(e.tokens_per_frame),
            dim=int(e.dim),
            embed_dim=int(e.embed_dim),
        )

    def run(self, item: WorkItem, task: TaskSpec, progress: ProgressFn | None) -> IndexOutcome:
        from videomem.pipeline.files import content_video_id

        vid = item.video_id
        if vid is None:
            try:
                vid = content_video_id(item.uri)
            except OSError as e:
                # keyed by path: if the file becomes readable it gets a content id (a
                # new key), so retrying this key would only fail again
                why = f"{item.uri}: cannot read the file: {e.strerror or e}"
                out = failed_outcome(item, task, why, "OSError", False)
                out.skipped = task.skip_reason(out.record.video_id)
                return out
        speech = None
        if self.recognizer is not None and task.wants_speech(vid):
            # check_content off: the id was just computed from this very file
            speech = SpeechThread(
                self.recognizer, item.uri, vid, self._speech_turns,
                settings_hash=task.speech_hash or "", settings=task.speech_settings,
                check_content=False,
            )  # fmt: skip
        try:
            out = self._index(item, vid, task, progress)
        finally:  # the speech thread is always joined
            transcript = speech.result() if speech is not None else None
        out.transcript = transcript
        return out

    def _index(
        self, item: WorkItem, vid: str, task: TaskSpec, progress: ProgressFn | None
    ) -> IndexOutcome:
        from videomem.jobs.index_video import index_one

        reason = task.skip_reason(vid)
        if reason is not None:
            out = failed_outcome(replace(item, video_id=vid), task, "", "", True)
            out.skipped = reason
            return out
        out = index_one(
            item.uri,
            vid,
            self.encoder,
            task.decode,
            task.memory,
            config_hash=task.config_hash,
            model=task.model,
            encoder_config=task.encoder,
            on_frames=progress,
            encode_lock=self._encode_lock,
        )
        out.notes.pop("traceback", None)  # logged by the worker already
        return out


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class IndexJob:
    """Everything ``videomem index`` needs; the CLI only builds this."""

    paths: Sequence[str]
    store: str
    encoder: EncoderConfig
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    force: bool = False
    retry_failed: bool = False
    executor: ExecutorName = "auto"
    workers: int = 1
    ray_address: str | None = None
    #: a text file naming one video path per line, read lazily (beside ``paths``)
    from_list: str | None = None
    #: most videos per commit batch (each batch = three LanceDB commits)
    commit_batch: int = 16
    #: compact the tables at the end when at least this many videos were committed
    optimize_after: int = 1
    #: LanceDB storage options of an object-store URI (endpoint, region, keys …);
    #: stay on the driver, workers never open the store
    storage_options: dict[str, str] = field(default_factory=dict)
    #: the writer lease on object storage (ttl, how long to wait for another writer)
    lease: LeaseConfig = field(default_factory=LeaseConfig)
    #: transcribe each video's speech too (``--speech``), as ``videomem transcribe``
    #: would, while its frames decode and encode; None: no speech
    speech: ASRConfig | None = None

    def __post_init__(self) -> None:
        if self.commit_batch < 1:
            raise ConfigError(f"commit_batch must be >= 1, got {self.commit_batch}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.optimize_after < 0:
            raise ConfigError(f"optimize_after must be >= 0, got {self.optimize_after}")
        if not self.paths and not self.from_list:
            raise ConfigError("give video paths or --from-list FILE")
        if self.executor not in ("auto", "local", "ray"):
            raise ConfigError(f"unknown executor {self.executor!r}; choose auto, local or ray")


@dataclass
class IndexSummary:
    store: str
    encoder_fingerprint: str = ""
    config_hash: str = ""
    videos: int = 0
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    frames: int = 0
    slots: int = 0
    load_s: float = 0.0
    elapsed_s: float = 0.0
    #: the first MAX_FAILURES_LISTED failures (all of them are rows in the store:
    #: ``videomem ls --status failed``), so a huge corpus keeps a small summary
    failures: list[dict[str, str]] = field(default_factory=list)
    #: the ffmpeg binary the driver chose (``ffmpeg_info()``: path, version, source,
    #: reason), so figures can be compared across machines and ffmpeg builds
    ffmpeg: dict[str, str] = field(default_factory=dict)
    #: ``--speech``: the transcripts written, by outcome, and the audio behind them
    speech: SpeechTotals | None = None

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def all_failed(self) -> bool:
        return self.failed > 0 and self.indexed == 0 and self.skipped == 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["frames_per_s"] = round(self.frames_per_s, 3)
        return d

    def text(self) -> str:
        line = (
            f"{self.indexed} indexed, {self.skipped} skipped, {self.failed} failed "
            f"of {self.videos} video(s); {self.frames} frames in {self.elapsed_s:.1f}s "
            f"({self.frames_per_s:.1f} frames/s; model load {self.load_s:.1f}s) -> {self.store}"
        )
        if self.speech is not None:
            line += "\n" + self.speech.text()
        f = self.ffmpeg
        if "path" in f:
            line += f"\nffmpeg {f['version']} ({f['source']}: {f['reason']})  {f['path']}"
        elif "error" in f:
            line += f"\nffmpeg: {f['error']}"
        return line


def decode_cpus(job: IndexJob) -> int | None:
    """Cores each worker's decode may use (``DecodeConfig.cpus``): what the job says,
    else this machine's ``cores // workers`` when every worker runs here; on a cluster
    (``ray_address``/``RAY_ADDRESS``) workers share nodes in ways the driver does not
    see, so each uses its own node's cores (None)."""
    if job.decode.cpus is not None:
        return job.decode.cpus
    on_cluster = job.executor != "local" and (job.ray_address or os.environ.get("RAY_ADDRESS"))
    return None if on_cluster else cpu_share(job.workers)


def iter_job_files(job: IndexJob) -> Iterator[str]:
    """The job's video files, lazily: walked ``paths``, then the lines of ``from_list``.
    Absolute, normalised paths (no ..): a stored uri must name the file from anywhere."""
    from videomem.pipeline.files import iter_video_files

    for p in iter_video_files([Path(p) for p in job.paths]):
        yield os.path.abspath(p)
    if job.from_list:
        try:
            fh = open(job.from_list, encoding="utf-8")  # noqa: SIM115 (read lazily)
        except OSError as e:
            raise ConfigError(f"cannot read --from-list {job.from_list}: {e}") from e
        with fh:
            for line in fh:
                name = line.strip()
                if name and not name.startswith("#"):
                    yield os.path.abspath(os.path.expanduser(name))


def index_executor(job: IndexJob) -> Executor:
    wants_gpu = job.encoder.device is None or job.encoder.device.startswith("cuda")
    return make_executor(
        IndexStepSpec(job.encoder, speech=job.speech),
        job.executor,
        job.workers,
        job.ray_address,
        wants_gpu=wants_gpu,
    )


def run_index(
    job: IndexJob, reporter: Reporter | None = None, executor: Executor | None = None
) -> IndexSummary:
    """Index every video of ``job`` into ``job.store``; see the module docstring.

    Raises ``VideomemError`` only for job-level problems (store locked, model cannot be
    loaded, no video files); per-video failures are rows in the store and the summary.
    """
    rep = reporter or NullReporter()
    files = iter_job_files(job)
    first = next(files, None)
    if first is None:
        where = ", ".join([*map(str, job.paths), *([job.from_list] if job.from_list else [])])
        raise ConfigError(f"no video files found in {where}")
    summary = IndexSummary(store=job.store, ffmpeg=ffmpeg_info())
    with Store(
        job.store, writer=True, storage_options=job.storage_options, lease=job.lease
    ) as store:
        removed = store.collect_garbage_after_crash()
        if removed:
            log.info("removed %d orphan memory rows left by an interrupted run", removed)
        ex = executor or index_executor(job)
        t0 = time.perf_counter()
        try:
            info: EncoderInfo = ex.start()
            summary.load_s = time.perf_counter() - t0
            decode_cfg = replace(
                job.decode,
                size=info.input_size,
                batch_size=job.encoder.batch_size,
                cpus=decode_cpus(job),
            )
            config_hash = index_config_hash(decode_cfg, job.memory)
            summary.encoder_fingerprint, summary.config_hash = info.fingerprint, config_hash
            known = {
                r.video_id: (r.status, bool(r.retryable))
                for r in store.list_videos(
                    encoder_fingerprint=info.fingerprint, config_hash=config_hash
                )
            }
            task = TaskSpec(
                decode=decode_cfg,
                memory=job.memory,
                config_hash=config_hash,
                model=job.encoder.model,
                encoder=job.encoder.to_dict(),
                fingerprint=info.fingerprint,
                known=known,
                force=job.force,
                retry_failed=job.retry_failed,
                **speech_task(store, job.speech),
            )
            if job.speech is not None:
                summary.speech = SpeechTotals()
            rep.start(None, f"indexing with {info.fingerprint}")
            t1 = time.perf_counter()
            items = (WorkItem(uri) for uri in _chain(first, files))
            seen: dict[str, str] = {}
            for batch in ex.run(items, task, rep.units):
                _commit(store, _admit(batch, seen, rep, summary), job, rep, summary)
                if summary.speech is not None:
                    commit_transcripts(
                        store, batch, summary.speech, summary.failures, MAX_FAILURES_LISTED
                    )
            summary.elapsed_s = time.perf_counter() - t1
        finally:
            ex.close()
            rep.finish()
        if summary.indexed + summary.failed >= max(1, job.optimize_after):
            try:
                store.optimize()
            except VideomemError as e:  # compaction is an optimisation, never fatal
                log.warning("%s", e)
        if summary.indexed:
            from videomem.jobs.search_refresh import refresh_after_write

            refresh_after_write(store)
    return summary


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _admit(
    batch: list[IndexOutcome], seen: dict[str, str], rep: Reporter, summary: IndexSummary
) -> list[IndexOutcome]:
    """The outcomes of a batch that get committed: skips are reported, and a file whose
    content another file of this job already had is skipped (first come, first kept)."""
    keep = []
    for o in batch:
        summary.videos += 1
        uri, vid = o.record.uri, o.record.video_id
        if o.skipped is not None:
            seen.setdefault(vid, uri)
            summary.skipped += 1
            rep.skipped(uri, o.skipped)
        elif vid in seen:
            summary.skipped += 1
            rep.skipped(uri, f"same content as {seen[vid]}")
        else:
            seen[vid] = uri
            keep.append(o)
    return keep


def _commit(
    store: Store,
    batch: list[IndexOutcome],
    job: IndexJob,
    rep: Reporter,
    summary: IndexSummary,
) -> None:
    for i in range(0, len(batch), job.commit_batch):
        committed = store.commit([o.commit() for o in batch[i : i + job.commit_batch]])
        for rec in committed:
            if rec.status == "indexed":
                summary.indexed += 1
                summary.slots += rec.slots
                summary.frames += rec.frames_sampled
                fps = rec.frames_sampled / rec.total_s if rec.total_s else 0.0
                rep.done(
                    rec.uri,
                    True,
                    f"{rec.frames_sampled} frames -> {rec.slots} slots in "
                    f"{rec.total_s or 0:.1f}s ({fps:.1f} frames/s)",
                )
            else:
                summary.failed += 1
                if len(summary.failures) < MAX_FAILURES_LISTED:
                    summary.failures.append({"uri": rec.uri, "error": rec.error or ""})
                rep.done(rec.uri, False, rec.error or "")
