"""One video through probe → decode → encode → consolidate.

Design decisions:

* Decoding runs in a background thread that feeds a bounded queue, so ffmpeg (and
  the pipe reads) overlap with the encoder's forward passes; the queue bound is what
  keeps memory flat: at most ``prefetch`` decoded batches wait at any time, and the
  memory builder keeps a fixed-size state, so peak RSS does not grow with video length.
* :func:`index_video` raises (``VideomemError`` for problems we understand);
  :func:`index_one` is the errors-as-data wrapper every executor runs: it never raises,
  it returns an :class:`IndexOutcome` whose row says ``failed``
  with a readable error. The same function runs in-process and inside Ray actors.
* Timings are counted per stage: ``decode_s`` is time the decode thread spent waiting
  on ffmpeg (not time blocked on a full queue), ``encode_s`` time inside the encoder,
  ``consolidate_s`` time inside the memory builder. With good overlap ``total_s`` is
  close to ``max(decode_s, encode_s + consolidate_s)`` rather than their sum.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from videomem.encoders.contract import FrameEncoder
from videomem.memory.config import MemoryConfig
from videomem.memory.index_config import IndexConfig
from videomem.memory.store import VideoCommit, VideoRecord
from videomem.memory.types import VideoMemory
from videomem.pipeline.decode import DecodeInfo
from videomem.pipeline.errors import DecodeError, VideomemError
from videomem.pipeline.transcript import Transcript
from videomem.pipeline.types import DecodeConfig, FrameBatch, VideoSource

log = logging.getLogger(__name__)

#: called with the number of frames just encoded (for progress bars)
FramesCallback = Callable[[int], None]


@dataclass(slots=True)
class IndexOutcome:
    """What a worker hands the driver for one video: its row, and its memory when
    indexed (``record.status == "indexed"`` iff ``memory is not None``)."""

    record: VideoRecord
    memory: VideoMemory | None = None
    #: transient, not stored: e.g. a traceback for the job log
    notes: dict[str, Any] = field(default_factory=dict)
    #: why the video was not indexed at all (already stored …): nothing to commit
    skipped: str | None = None
    #: its transcript, when the job transcribes speech too (``index --speech``);
    #: committed by the driver with the batch, even when the memory was skipped
    transcript: Transcript | None = None

    def commit(self) -> VideoCommit:
        """What the store writes for this outcome."""
        return VideoCommit(self.record, self.memory)


@dataclass(frozen=True, slots=True)
class IndexStats:
    """Per-video counts and stage timings (seconds)."""

    frames: int
    batches: int
    probe_s: float
    decode_s: float
    encode_s: float
    consolidate_s: float
    total_s: float


@dataclass(slots=True)
class IndexedVideo:
    source: VideoSource
    memory: VideoMemory
    stats: IndexStats
    decode: DecodeInfo = field(default_factory=DecodeInfo)


# --------------------------------------------------------------------------- prefetch


class _Done:
    pass


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class BatchPrefetcher:
    """Runs ``make_iter()`` in a daemon thread, handing items over a bounded queue.

    Iterate it in the consumer; always ``close()`` it (or use ``with``): closing stops
    the producer, closes its generator in the producer thread (which kills ffmpeg in
    the decoder's ``finally``) and joins the thread.
    """

    def __init__(self, make_iter: Callable[[], Iterator[Any]], maxsize: int = 2) -> None:
        self._make_iter = make_iter
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, maxsize))
        self._stop = threading.Event()
        #: seconds the producer spent producing (excludes time blocked on a full queue)
        self.busy_s = 0.0
        self._thread = threading.Thread(target=self._run, name="videomem-decode", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        it: Iterator[Any] | None = None
        try:
            t0 = time.perf_counter()
            it = self._make_iter()
            while not self._stop.is_set():
                item = next(it, _Done)
                self.busy_s += time.perf_counter() - t0
                if item is _Done:
                    break
                if not self._put(item):
                    return
                t0 = time.perf_counter()
            self._put(_Done())
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put(_Failed(e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # closing must not mask the real outcome
                    log.exception("closing the decoder failed")

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._q.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    def close(self) -> None:
        self._stop.set()
        # unblock a producer waiting on a full queue
        with contextlib.suppress(queue.Empty):
            while True:
                self._q.get_nowait()
        self._thread.join(timeout=30)

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- one video


def index_video(
    uri: str,
    encoder: FrameEncoder,
    decode_config: DecodeConfig,
    memory_config: MemoryConfig,
    *,
    source: VideoSource | None = None,
    video_id: str | None = None,
    prefetch: int = 2,
    on_frames: FramesCallback | None = None,
    encode_lock: contextlib.AbstractContextManager[Any] | None = None,
    decode_info: DecodeInfo | None = None,
) -> IndexedVideo:
    """Probe, decode, encode and consolidate one video; raise on failure.

    ``decode_config.size`` should be the encoder's ``input_size`` (the index job sets it).
    ``video_id`` overrides the probed one (the driver computed it for the store key).
    ``encode_lock`` (shared by the videos of one worker) is held only while frames are
    encoded: a worker running two videos at once probes and decodes the next video's
    first batches while the current one has the encoder, so no time is lost between
    videos and the encoder still runs one video at a time.
    ``decode_info`` is filled in as decoding goes (device, fallback, parts, sampling
    mode), so a caller sees what decoding did even when this raises.
    Returns the memory with tokens as float16 (what the store keeps) and the stats.
    """
    from videomem.memory.builder import MemoryBuilder
    from videomem.memory.thumbs import ThumbnailTracker
    from videomem.pipeline.decode import decode
    from videomem.pipeline.probe import probe
    from videomem.pipeline.thumbs import jpeg_thumbnails

    t_start = time.perf_counter()
    if source is None:
        source = probe(uri)
    if video_id is not None and source.video_id != video_id:
        source = replace(source, video_id=video_id)
    probe_s = time.perf_counter() - t_start

    builder = MemoryBuilder(memory_config)
    # one thumbnail per slot, tracked while streaming (mbc slots are not frame runs)
    thumbs = ThumbnailTracker() if memory_config.method != "mbc" else None
    frames = batches = 0
    encode_s = consolidate_s = 0.0
    src = source
    info = decode_info if decode_info is not None else DecodeInfo()
    lock = encode_lock if encode_lock is not None else contextlib.nullcontext()
    with (
        BatchPrefetcher(lambda: decode(uri, decode_config, src, info=info), maxsize=prefetch) as pf,
        lock,
    ):
        for batch in pf:
            fb: FrameBatch = batch
            if len(fb) == 0:
                continue
            t0 = time.perf_counter()
            tokens = encoder.encode(fb.frames, fb.timestamps)
            t1 = time.perf_counter()
            builder.add(tokens)
            if thumbs is not None:
                ts = [float(t) for t in fb.timestamps]
                thumbs.add(ts, tokens.tokens.mean(1), jpeg_thumbnails(fb.frames))
                view = builder.slot_view()
                if view is not None:
                    thumbs.settle(*view)
            consolidate_s += time.perf_counter() - t1
            encode_s += t1 - t0
            frames += len(fb)
            batches += 1
            if on_frames is not None:
                on_frames(len(fb))
        decode_s = pf.busy_s
    if frames == 0:
        raise DecodeError(uri, "no frames were decoded (empty video or time window past its end)")
    t1 = time.perf_counter()
    memory = builder.finish(source.video_id, encoder.fingerprint)
    if thumbs is not None:
        memory.thumbnails = thumbs.result(memory.start_s.tolist(), memory.tokens.float().mean(1))
    consolidate_s += time.perf_counter() - t1
    memory.tokens = memory.tokens.to(torch.float16)  # stored as float16; halves transfer
    if memory.recent_tokens is not None:
        memory.recent_tokens = memory.recent_tokens.to(torch.float16)
    stats = IndexStats(
        frames=frames,
        batches=batches,
        probe_s=probe_s,
        decode_s=decode_s,
        encode_s=encode_s,
        consolidate_s=consolidate_s,
        total_s=time.perf_counter() - t_start,
    )
    return IndexedVideo(source=source, memory=memory, stats=stats, decode=info)


def index_one(
    uri: str,
    video_id: str,
    encoder: FrameEncoder,
    decode_config: DecodeConfig,
    memory_config: MemoryConfig,
    *,
    config_hash: str,
    model: str = "",
    encoder_config: dict[str, Any] | None = None,
    on_frames: FramesCallback | None = None,
    encode_lock: contextlib.AbstractContextManager[Any] | None = None,
) -> IndexOutcome:
    """:func:`index_video` with errors as data: never raises for a bad video.

    A ``VideomemError`` (bad file, encoder failure) becomes a failed row with its
    message; any other exception is a bug or an environment problem (out of memory …):
    it is logged with its traceback and recorded with its type name, marked retryable.
    """
    config_json = IndexConfig(
        decode_config, memory_config, encoder_config or {"model": model}
    ).to_json()
    record = VideoRecord(
        video_id=video_id,
        encoder_fingerprint=encoder.fingerprint,
        config_hash=config_hash,
        status="failed",
        uri=uri,
        model=model,
        config_json=config_json,
        tokens_per_frame=encoder.tokens_per_frame,
        dim=encoder.dim,
        embed_dim=encoder.embed_dim,
    )
    from videomem.pipeline.probe import probe

    t0 = time.perf_counter()
    info: DecodeInfo | None = None  # set once decoding starts: failed rows record it too
    try:
        # probe here, not inside index_video, so a video that probes but then fails to
        # decode or encode still gets its probe fields (duration, size, codec) recorded
        source = probe(uri, video_id=video_id)  # the driver hashed the content already
        record = record.with_source(source)
        probe_s = time.perf_counter() - t0
        info = DecodeInfo()
        done = index_video(
            uri,
            encoder,
            decode_config,
            memory_config,
            source=source,
            video_id=video_id,
            on_frames=on_frames,
            encode_lock=encode_lock,
            decode_info=info,
        )
        done = replace(
            done, stats=replace(done.stats, probe_s=probe_s, total_s=time.perf_counter() - t0)
        )
    except VideomemError as e:
        # a DecodeError is a property of the file's bytes: the same bytes fail again, so
        # it is not retried automatically; encoder/store errors may be transient
        return IndexOutcome(
            replace(
                _with_decode(record, info),
                error=str(e),
                error_type=type(e).__name__,
                retryable=not isinstance(e, DecodeError),
                total_s=time.perf_counter() - t0,
            )
        )
    except Exception as e:
        tb = traceback.format_exc()
        log.error("unexpected error indexing %s:\n%s", uri, tb)
        return IndexOutcome(
            replace(
                _with_decode(record, info),
                error=f"{type(e).__name__}: {e}",
                error_type=type(e).__name__,
                retryable=True,
                total_s=time.perf_counter() - t0,
            ),
            notes={"traceback": tb},
        )
    s = done.stats
    record = replace(
        _with_decode(record.with_source(done.source), done.decode),
        status="indexed",
        frames_sampled=s.frames,
        probe_s=s.probe_s,
        decode_s=s.decode_s,
        encode_s=s.encode_s,
        consolidate_s=s.consolidate_s,
        total_s=s.total_s,
    )
    return IndexOutcome(record, done.memory)


def _with_decode(record: VideoRecord, info: DecodeInfo | None) -> VideoRecord:
    """``record`` with what decoding did (unchanged when decoding never started)."""
    if info is None:
        return record
    return replace(
        record,
        decode_device=info.device,
        decode_fallback=info.fallback,
        decode_parts=info.parts,
        decode_sample=info.sample,
        decode_decoder=info.decoder,
    )
