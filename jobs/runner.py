"""How an index job runs: executors, the single committer, progress reporting.

Design decisions:

* The per-video step is :func:`videomem.pipeline.index.index_one` (errors as data). The
  same step runs under a :class:`LocalExecutor` (in-process; tests, ``--executor local``)
  and a :class:`RayExecutor` (Ray actors, each loading the encoder once). Executors only
  *compute*: they yield batches of :class:`IndexOutcome` back to the driver.
* The driver (:func:`run_index`) is the one committer: it alone opens the store for
  writing (holding its lock), and commits each batch of results that arrived together
  (three LanceDB commits per batch, so N busy actors do not cause N fragment storms,
  while each video is committed as soon as it is done: a kill loses only in-flight work).
* Resumable: a job asks the first worker for the encoder's fingerprint and input size,
  derives the config hash, and skips videos the store holds under that key. Videos
  whose last attempt failed with a ``DecodeError`` (a property of the file's bytes) are
  skipped too, unless ``retry_failed``; other failures (encoder, out-of-memory, a dead
  worker …) may be transient and are retried automatically. ``force`` redoes everything.
* Ray is imported only inside :class:`RayExecutor`, so the local path never pays for it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from videomem.memory.store import IndexOutcome, Store, VideoRecord
from videomem.pipeline.errors import ConfigError, EncoderError, VideomemError
from videomem.pipeline.types import DecodeConfig, EncoderConfig, MemoryConfig, index_config_hash

log = logging.getLogger(__name__)

#: failures listed in a job summary; the store holds every one
MAX_FAILURES_LISTED = 100

ExecutorName = Literal["auto", "local", "ray"]


# --------------------------------------------------------------------------- specs


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
    video_id: str


@dataclass(frozen=True)
class TaskSpec:
    """What every video of a job is indexed with (sent once to each worker)."""

    decode: DecodeConfig
    memory: MemoryConfig
    config_hash: str
    model: str
    encoder: dict[str, Any]


class VideoWorker:
    """Holds one loaded encoder and indexes videos with it (one per process/actor).

    ``run`` may be called from two threads at once (LocalExecutor's lookahead, Ray's
    ``max_concurrency=2``): the encoder lock lets only one video encode at a time while
    the other probes and decodes its first batches, so the encoder never waits for a
    new video's ffmpeg to start.
    """

    #: videos a worker has in flight: one encoding, one being probed/decoded ahead
    CONCURRENCY = 2

    def __init__(self, spec: EncoderConfig) -> None:
        from videomem.encoders.base import load_encoder_from_config

        self.spec = spec
        self.encoder = load_encoder_from_config(spec)
        self._encode_lock = threading.Lock()

    def info(self) -> EncoderInfo:
        e = self.encoder
        return EncoderInfo(
            fingerprint=e.fingerprint,
            input_size=tuple(e.input_size),  # type: ignore[arg-type]
            tokens_per_frame=int(e.tokens_per_frame),
            dim=int(e.dim),
            embed_dim=int(e.embed_dim),
        )

    def run(self, item: WorkItem, task: TaskSpec, on_frames: Any = None) -> IndexOutcome:
        from videomem.pipeline.index import index_one

        out = index_one(
            item.uri,
            item.video_id,
            self.encoder,
            task.decode,
            task.memory,
            config_hash=task.config_hash,
            model=task.model,
            encoder_config=task.encoder,
            on_frames=on_frames,
            encode_lock=self._encode_lock,
        )
        out.notes.pop("traceback", None)  # logged by the worker already
        return out


def failed_outcome(
    item: WorkItem, task: TaskSpec, fingerprint: str, error: str, error_type: str, retryable: bool
) -> IndexOutcome:
    return IndexOutcome(
        VideoRecord(
            video_id=item.video_id,
            encoder_fingerprint=fingerprint,
            config_hash=task.config_hash,
            status="failed",
            uri=item.uri,
            error=error,
            error_type=error_type,
            retryable=retryable,
            model=task.model,
        )
    )


# --------------------------------------------------------------------------- executors


class Executor(Protocol):
    #: True when ``on_frames`` is called while a video is encoded (else at its end)
    live_frames: bool

    def start(self) -> EncoderInfo: ...

    def run(
        self, items: Iterable[WorkItem], task: TaskSpec, on_frames: Any = None
    ) -> Iterator[list[IndexOutcome]]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """One in-process worker; decode overlaps encode (the decode thread), and the next
    video is probed and starts decoding while the current one encodes."""

    live_frames = True

    def __init__(self, spec: EncoderConfig) -> None:
        self.spec = spec
        self._worker: VideoWorker | None = None

    def start(self) -> EncoderInfo:
        self._worker = VideoWorker(self.spec)
        return self._worker.info()

    def run(
        self, items: Iterable[WorkItem], task: TaskSpec, on_frames: Any = None
    ) -> Iterator[list[IndexOutcome]]:
        worker = self._worker
        if worker is None:
            raise RuntimeError("LocalExecutor.start() first")
        todo = iter(items)
        with ThreadPoolExecutor(worker.CONCURRENCY, thread_name_prefix="videomem-video") as pool:
            running: deque[Future[IndexOutcome]] = deque(
                pool.submit(worker.run, item, task, on_frames)
                for item in itertools.islice(todo, worker.CONCURRENCY)
            )
            try:
                while running:
                    out = running.popleft().result()  # in order: results come as submitted
                    nxt = next(todo, None)
                    if nxt is not None:
                        running.append(pool.submit(worker.run, nxt, task, on_frames))
                    yield [out]
            finally:
                for fut in running:  # consumer stopped early: start nothing new
                    fut.cancel()

    def close(self) -> None:
        self._worker = None


class RayExecutor:
    """``workers`` Ray actors, each with its own encoder; the driver feeds them.

    ``address`` None starts (or joins, under ``ray job submit``: RAY_ADDRESS) a Ray
    instance. Each actor asks for ``num_gpus_per_worker`` GPUs, by default 1 when the
    cluster has GPUs and the device is not "cpu". Each actor holds ``inflight`` videos
    (one running, the rest queued) so it never waits on the driver between videos.
    """

    live_frames = False

    def __init__(
        self,
        spec: EncoderConfig,
        workers: int = 1,
        address: str | None = None,
        *,
        num_cpus_per_worker: float = 1.0,
        num_gpus_per_worker: float | None = None,
        inflight: int = 2,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError("workers must be >= 1")
        self.spec = spec
        self.workers = workers
        self.address = address
        self.num_cpus_per_worker = num_cpus_per_worker
        self.num_gpus_per_worker = num_gpus_per_worker
        self.inflight = max(1, inflight)
        self.init_kwargs = init_kwargs or {}
        self._actors: list[Any] = []
        self._fingerprint = ""
        self._owns_ray = False

    def start(self) -> EncoderInfo:
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.address,
                include_dashboard=False,
                ignore_reinit_error=True,
                **self.init_kwargs,
            )
            self._owns_ray = True
        gpus = self.num_gpus_per_worker
        if gpus is None:
            wants_gpu = self.spec.device is None or self.spec.device.startswith("cuda")
            gpus = 1.0 if wants_gpu and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        actor_cls = ray.remote(VideoWorker)
        self._actors = [
            actor_cls.options(  # type: ignore[attr-defined]
                num_cpus=self.num_cpus_per_worker,
                num_gpus=gpus,
                max_restarts=1,
                max_task_retries=0,
                # the queued video probes/decodes while the current one encodes
                max_concurrency=VideoWorker.CONCURRENCY,
            ).remote(self.spec)
            for _ in range(self.workers)
        ]
        try:
            infos: list[EncoderInfo] = ray.get([a.info.remote() for a in self._actors])
        except Exception as e:
            self.close()
            raise EncoderError(f"workers could not load the encoder: {_ray_cause(e)}") from e
        if len({i.fingerprint for i in infos}) != 1:
            self.close()
            raise EncoderError(
                "workers loaded different encoders (mixed GPU/CPU nodes give different "
                f"dtypes?): {sorted({i.fingerprint for i in infos})}; pass --dtype/--device"
            )
        self._fingerprint = infos[0].fingerprint
        return infos[0]

    def run(
        self, items: Iterable[WorkItem], task: TaskSpec, on_frames: Any = None
    ) -> Iterator[list[IndexOutcome]]:
        import ray

        task_ref = ray.put(task)
        todo = iter(items)
        pending: dict[Any, tuple[Any, WorkItem]] = {}

        def feed(actor: Any) -> None:
            item = next(todo, None)
            if item is not None:
                pending[actor.run.remote(item, task_ref)] = (actor, item)

        for actor in self._actors:
            for _ in range(self.inflight):
                feed(actor)
        while pending:
            ray.wait(list(pending), num_returns=1)
            # everything else already finished joins the same commit batch
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            batch = []
            for ref in ready:
                actor, item = pending.pop(ref)
                try:
                    batch.append(ray.get(ref))
                except Exception as e:  # the actor died (OOM-killed, node lost …)
                    log.error("worker failed on %s: %s", item.uri, e)
                    batch.append(
                        failed_outcome(
                            item,
                            task,
                            self._fingerprint,
                            f"worker failed: {_ray_cause(e)}",
                            type(e).__name__,
                            retryable=True,
                        )
                    )
                feed(actor)
            yield batch

    def close(self) -> None:
        if self._actors:
            import ray

            for a in self._actors:
                ray.kill(a)
            self._actors = []
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False


def _ray_cause(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e.__cause__
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    return str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__


# --------------------------------------------------------------------------- progress


class Reporter(Protocol):
    def start(self, total: int, info: EncoderInfo) -> None: ...

    def skipped(self, uri: str, reason: str) -> None: ...

    def frames(self, n: int) -> None: ...

    def done(self, record: VideoRecord) -> None: ...

    def finish(self) -> None: ...


def failure_line(uri: str, error: str | None) -> str:
    """ "uri: reason", one line, for a failure (errors usually start with the uri)."""
    first = error.splitlines()[0] if error else "unknown error"
    return first if first.startswith(uri) else f"{uri}: {first}"


def _first_line(record: VideoRecord) -> str:
    return failure_line(record.uri, record.error)


class NullReporter:
    def start(self, total: int, info: EncoderInfo) -> None:
        pass

    def skipped(self, uri: str, reason: str) -> None:
        pass

    def frames(self, n: int) -> None:
        pass

    def done(self, record: VideoRecord) -> None:
        pass

    def finish(self) -> None:
        pass


class PlainReporter(NullReporter):
    """One line per video, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = 0
        self.n = 0

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, total: int, info: EncoderInfo) -> None:
        self.total = total
        self._line(f"indexing {total} video(s) with {info.fingerprint}")

    def skipped(self, uri: str, reason: str) -> None:
        self.n += 1
        self._line(f"[{self.n}/{self.total}] skipped {uri}: {reason}")

    def done(self, record: VideoRecord) -> None:
        self.n += 1
        if record.status == "indexed":
            fps = record.frames_sampled / record.total_s if record.total_s else 0.0
            self._line(
                f"[{self.n}/{self.total}] indexed {record.uri}: {record.frames_sampled} frames "
                f"-> {record.slots} slots in {record.total_s or 0:.1f}s ({fps:.1f} frames/s)"
            )
        else:
            self._line(f"[{self.n}/{self.total}] FAILED {_first_line(record)}")


class RichReporter(NullReporter):
    """Two live bars on a terminal: videos done, frames encoded (with rate)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._videos: Any = None
        self._frames: Any = None
        self._t0 = time.perf_counter()
        self._nframes = 0

    def start(self, total: int, info: EncoderInfo) -> None:
        self.progress.start()
        self.console.print(f"encoder [bold]{info.fingerprint}[/]")
        self._videos = self.progress.add_task("videos", total=total, rate="")
        self._frames = self.progress.add_task("frames", total=None, rate="")
        self._t0 = time.perf_counter()

    def skipped(self, uri: str, reason: str) -> None:
        self.progress.advance(self._videos)

    def frames(self, n: int) -> None:
        self._nframes += n
        rate = self._nframes / max(time.perf_counter() - self._t0, 1e-9)
        self.progress.update(self._frames, advance=n, rate=f"{rate:.1f} frames/s")

    def done(self, record: VideoRecord) -> None:
        self.progress.advance(self._videos)
        if record.status == "failed":
            from rich.markup import escape

            self.progress.console.print(f"[red]failed[/] {escape(_first_line(record))}")

    def finish(self) -> None:
        self.progress.stop()


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
    #: most videos per commit batch (each batch = three LanceDB commits)
    commit_batch: int = 16
    #: compact the tables at the end when this many videos were committed
    optimize_after: int = 1


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
        return (
            f"{self.indexed} indexed, {self.skipped} skipped, {self.failed} failed "
            f"of {self.videos} video(s); {self.frames} frames in {self.elapsed_s:.1f}s "
            f"({self.frames_per_s:.1f} frames/s; model load {self.load_s:.1f}s) -> {self.store}"
        )


def make_executor(job: IndexJob) -> Executor:
    """``auto``: local for one worker on this machine, Ray for more workers or a cluster."""
    name = job.executor
    if name == "auto":
        remote = job.ray_address or os.environ.get("RAY_ADDRESS")
        name = "ray" if job.workers > 1 or remote else "local"
    if name == "local":
        if job.workers != 1:
            raise ConfigError("--executor local runs one worker; use --executor ray for more")
        return LocalExecutor(job.encoder)
    if name == "ray":
        return RayExecutor(job.encoder, job.workers, job.ray_address)
    raise ConfigError(f"unknown executor {name!r}; choose auto, local or ray")


def path_video_id(path: str) -> str:
    """Id for a file whose content cannot be read (so its failure still has a row)."""
    return "path-" + hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]


def run_index(
    job: IndexJob, reporter: Reporter | None = None, executor: Executor | None = None
) -> IndexSummary:
    """Index every video under ``job.paths`` into ``job.store``; see the module docstring.

    Raises ``VideomemError`` only for job-level problems (store locked, model cannot be
    loaded, no video files); per-video failures are rows in the store and the summary.
    """
    from videomem.pipeline.files import iter_video_files

    rep = reporter or NullReporter()
    # absolute, normalised paths (no ..): a stored uri must name the file from anywhere
    files = [os.path.abspath(p) for p in iter_video_files([Path(p) for p in job.paths])]
    if not files:
        raise ConfigError(f"no video files found in {', '.join(map(str, job.paths))}")
    summary = IndexSummary(store=job.store, videos=len(files))
    with Store(job.store, writer=True) as store:
        removed = store.collect_garbage()
        if removed:
            log.info("removed %d orphan memory rows left by an interrupted run", removed)
        ex = executor or make_executor(job)
        t0 = time.perf_counter()
        try:
            info = ex.start()
            summary.load_s = time.perf_counter() - t0
            decode_cfg = replace(
                job.decode, size=info.input_size, batch_size=job.encoder.batch_size
            )
            config_hash = index_config_hash(decode_cfg, job.memory)
            summary.encoder_fingerprint, summary.config_hash = info.fingerprint, config_hash
            task = TaskSpec(
                decode=decode_cfg,
                memory=job.memory,
                config_hash=config_hash,
                model=job.encoder.model,
                encoder=job.encoder.to_dict(),
            )
            rep.start(len(files), info)
            existing = {
                r.video_id: r
                for r in store.list_videos(
                    encoder_fingerprint=info.fingerprint, config_hash=config_hash
                )
            }
            items, early = _plan(files, existing, job, task, info, rep, summary)
            t1 = time.perf_counter()
            if early:
                _commit(store, early, job, rep, summary, count_frames=False)
            on_frames = rep.frames if ex.live_frames else None
            for batch in ex.run(items, task, on_frames):
                if not ex.live_frames:
                    for o in batch:
                        rep.frames(o.record.frames_sampled)
                _commit(store, batch, job, rep, summary)
            summary.elapsed_s = time.perf_counter() - t1
        finally:
            ex.close()
            rep.finish()
        if summary.indexed + summary.failed >= job.optimize_after:
            try:
                store.optimize()
            except VideomemError as e:  # compaction is an optimisation, never fatal
                log.warning("%s", e)
    return summary


def _plan(
    files: list[str],
    existing: dict[str, VideoRecord],
    job: IndexJob,
    task: TaskSpec,
    info: EncoderInfo,
    rep: Reporter,
    summary: IndexSummary,
) -> tuple[list[WorkItem], list[IndexOutcome]]:
    """Which files to index; files that cannot even be read fail right here."""
    from videomem.pipeline.files import content_video_id

    items: list[WorkItem] = []
    early: list[IndexOutcome] = []
    seen: dict[str, str] = {}
    for uri in files:
        unreadable = None
        try:
            vid = content_video_id(uri)
        except OSError as e:
            # keyed by path: if the file becomes readable it gets a content id (a new key),
            # so retrying this key would only fail again
            vid = path_video_id(uri)
            unreadable = f"{uri}: cannot read the file: {e.strerror or e}"
        if vid in seen:
            summary.skipped += 1
            rep.skipped(uri, f"same content as {seen[vid]}")
            continue
        seen[vid] = uri
        rec = existing.get(vid)
        if rec is not None and not job.force:
            if rec.status == "indexed":
                summary.skipped += 1
                rep.skipped(uri, "already indexed")
                continue
            if not rec.retryable and not job.retry_failed:
                summary.skipped += 1
                rep.skipped(uri, "failed before (pass --retry-failed to try again)")
                continue
        if unreadable is not None:
            early.append(
                failed_outcome(
                    WorkItem(uri, vid), task, info.fingerprint, unreadable, "OSError", False
                )
            )
            continue
        items.append(WorkItem(uri, vid))
    return items, early


def _commit(
    store: Store,
    batch: list[IndexOutcome],
    job: IndexJob,
    rep: Reporter,
    summary: IndexSummary,
    count_frames: bool = True,
) -> None:
    for i in range(0, len(batch), max(1, job.commit_batch)):
        committed = store.commit(batch[i : i + job.commit_batch])
        for rec in committed:
            if rec.status == "indexed":
                summary.indexed += 1
                summary.slots += rec.slots
                if count_frames:
                    summary.frames += rec.frames_sampled
            else:
                summary.failed += 1
                if len(summary.failures) < MAX_FAILURES_LISTED:
                    summary.failures.append({"uri": rec.uri, "error": rec.error or ""})
            rep.done(rec)


# --------------------------------------------------------------------------- plot


def plot_slots(record: VideoRecord, slots: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Draw one bar per memory slot along the video's timeline (width = the span it
    covers, height and colour = frames merged into it) and save it to ``out``."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'videomem[plot]' (or matplotlib)"
        ) from None
    from matplotlib import cm, colors

    sizes = [int(s["size"]) for s in slots] or [1]
    norm = colors.Normalize(vmin=0, vmax=max(sizes))
    cmap = matplotlib.colormaps["viridis"]
    fig, ax = plt.subplots(figsize=(10, 3), constrained_layout=True)
    for s in slots:
        width = max(float(s["end_s"]) - float(s["start_s"]), 1e-3)
        ax.bar(
            float(s["start_s"]),
            int(s["size"]),
            width=width,
            align="edge",
            color=cmap(norm(int(s["size"]))),
            edgecolor="black",
            linewidth=0.3,
        )
    end = record.duration_s or max((float(s["end_s"]) for s in slots), default=1.0)
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frames merged")
    ax.set_title(f"{record.video_id[:16]}  {Path(record.uri).name}  ({len(slots)} slots)")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="slot size")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
