"""Splitting one video's decode over several ffmpeg processes, and running them.

Design decisions:

* **Where to split: just after keyframes.** A demux-only pass (``-c copy`` to the
  ``framecrc`` muxer: reads packets, decodes nothing) lists the keyframes of the first
  video stream and the container's format. A part that starts just after a keyframe
  makes its ffmpeg decode from that keyframe on, so no part decodes frames another
  part throws away (beyond a few milliseconds). A video with a single keyframe is not
  split: every part would decode it from the start.
* **Only containers with a seek index** (MP4/MOV, Matroska/WebM): the parts seek with
  ``-noaccurate_seek``, which must land on a keyframe at or before the seek point;
  formats that seek by bytes or bisection (MPEG-TS, raw streams) do not promise it.
* **How many**: ``auto_segments`` — one per available core, but none shorter than
  ``MIN_SEGMENT_S`` (a short video stays one process: a corpus of short videos is
  parallel across videos already). "Available" is ``DecodeConfig.cpus`` when set: the
  index job gives each of N workers on one machine ``cpu_share`` = cores // N of them.
* **Bounded memory**: :class:`OrderedParallel` runs at most ``inflight`` parts at once,
  each on a thread that reads its ffmpeg's batches into a queue of at most
  ``max_buffered`` batches; the consumer takes the parts in order. So at most
  ``inflight * max_buffered`` batches wait, however long the video. A part that fills
  its queue stalls until the consumer gets there, so parts are made about that long
  (``SEGMENT_QUEUE_BATCHES`` batches, but not under ``MIN_PART_S``): a long video is
  cut into more parts, never into bigger ones.
"""

from __future__ import annotations

import math
import os
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

import numpy as np
from videomem.pipeline.ffmpeg import find_ffmpeg

__all__ = [
    "MIN_PART_S",
    "MIN_SEGMENT_S",
    "SEGMENT_QUEUE_BATCHES",
    "KeyframeScan",
    "OrderedParallel",
    "auto_segments",
    "available_cpus",
    "cpu_share",
    "scan_keyframes",
    "split_points",
]

#: videos shorter than two of these (seconds) stay one process by default
MIN_SEGMENT_S: Final = 30.0
#: batches a part decoded ahead of the consumer may hold while it waits
SEGMENT_QUEUE_BATCHES: Final = 8
#: no part shorter than this (seconds of video): ffmpeg's start-up is paid per part
MIN_PART_S: Final = 10.0
#: a part starts this long after its keyframe, so the keyframe is at or before its
#: seek point even if the scan's timestamps are rounded
SEGMENT_AFTER_KEYFRAME_S: Final = 0.05
#: container formats whose demuxer seeks by an index to a keyframe at or before the
#: target (ffmpeg format names)
SEEKABLE_FORMATS: Final = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm"})

_INPUT_RE = re.compile(r"Input #0, (.+?), from ")
_TB_RE = re.compile(r"^#tb 0: (\d+)/(\d+)")

T = TypeVar("T")


def available_cpus() -> int:
    """Cores this process may run on (affinity and cpusets included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_share(workers: int, cpus: int | None = None) -> int:
    """Cores each of ``workers`` processes on one machine gets: ``cpus // workers``
    (at least 1); ``cpus`` defaults to this process's."""
    cpus = available_cpus() if cpus is None else cpus
    return max(1, cpus // max(1, workers))


def auto_segments(span_s: float, cpus: int | None = None) -> int:
    """Processes for one video of ``span_s`` seconds: one per core, none shorter than
    MIN_SEGMENT_S; 1 for short videos."""
    cpus = available_cpus() if cpus is None else cpus
    return max(1, min(cpus, int(span_s // MIN_SEGMENT_S)))


@dataclass(frozen=True)
class KeyframeScan:
    """Keyframe times of the first video stream (seconds, on decode()'s timeline:
    the container's start time removed) and the container's format names."""

    keyframes: np.ndarray  # float64 [K], ascending
    formats: tuple[str, ...]

    @property
    def seekable(self) -> bool:
        return bool(SEEKABLE_FORMATS.intersection(self.formats))


def scan_keyframes(
    uri: str | os.PathLike[str], *, timeout_s: float = 60.0, ffmpeg_exe: str | None = None
) -> KeyframeScan | None:
    """List keyframes without decoding (packets stream-copied to ``framecrc``); None
    when ffmpeg fails, times out, or reports no timebase. Reads the whole file once;
    keeps only the keyframes."""
    exe = ffmpeg_exe or find_ffmpeg()
    cmd = [exe, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]
    cmd += ["-i", os.fspath(uri), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"]
    keys: list[int] = []
    tb: tuple[int, int] | None = None
    # stderr to a file: it cannot fill a pipe while we read stdout
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True
            )
        except OSError:
            return None
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            for line in proc.stdout or ():
                if line.startswith("#"):
                    if m := _TB_RE.match(line):
                        tb = (int(m.group(1)), int(m.group(2)))
                    continue
                # "stream, dts, pts, duration, size, crc[, F=0x..][, S=side data]":
                # flags are printed only when they are not exactly "key"
                fields = line.split(",")
                if len(fields) >= 6 and fields[0].strip() == "0" and "F=" not in line:
                    keys.append(int(fields[2]))
            rc = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if rc != 0 or tb is None:
        return None
    m = _INPUT_RE.search(stderr)
    formats = tuple(m.group(1).split(",")) if m else ()
    pts = np.array([k for k in keys if k > -(2**62)], dtype=np.int64)  # no NOPTS
    times = np.sort(pts.astype(np.float64) * tb[0] / tb[1])
    return KeyframeScan(times, formats)


def split_points(
    keyframes: np.ndarray, start: float, end: float, length: float, after: float
) -> list[float]:
    """Start times of the parts after the first: for each point of the grid ``start +
    i * length``, the first time ``after`` seconds past a keyframe at or after it (and
    after the previous start), none within ``length / 2`` of ``end`` (no tiny last
    part). Aiming at the grid rather than at ``length`` past the previous start keeps
    the parts about equal however the GOPs fall."""
    if not length > 0:
        return []
    out: list[float] = []
    last = start
    i = 1
    for k in keyframes:
        b = float(k) + after
        if b > end - length / 2:
            break
        if b > last and b >= start + i * length:
            out.append(b)
            last = b
            i = max(i + 1, math.floor((b - start) / length) + 1)
    return out


class OrderedParallel(Generic[T]):
    """Run ``tasks`` (each: ``stop`` event -> iterator of items) on threads, at most
    ``inflight`` at once, and hand back their items task by task, in order.

    Iterating yields one iterator per task; take each fully before the next. A task
    runs at most ``max_buffered`` items ahead of the consumer (then its thread waits),
    so at most ``inflight * max_buffered`` items are held. ``close()`` (also on leaving
    ``with``) sets the stop event and joins every started thread; a task must check the
    event between items and clean up (kill its ffmpeg) when it is set. An exception in
    a task is raised by its iterator, when the consumer gets there.
    """

    def __init__(
        self,
        tasks: Sequence[Callable[[threading.Event], Iterator[T]]],
        inflight: int,
        max_buffered: int,
    ) -> None:
        self._tasks = list(tasks)
        self._inflight = max(1, inflight)
        self._max_buffered = max(1, max_buffered)
        self._stop = threading.Event()
        self._queues: list[queue.Queue[tuple[str, object]]] = []
        self._threads: list[threading.Thread] = []

    def _start_next(self) -> None:
        i = len(self._threads)
        q: queue.Queue[tuple[str, object]] = queue.Queue(self._max_buffered)
        t = threading.Thread(target=self._run, args=(self._tasks[i], q), daemon=True)
        self._queues.append(q)
        self._threads.append(t)
        t.start()

    def _put(self, q: queue.Queue[tuple[str, object]], entry: tuple[str, object]) -> bool:
        """Wait for room in ``q`` unless stopped; False when stopped first."""
        while not self._stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(
        self, task: Callable[[threading.Event], Iterator[T]], q: queue.Queue[tuple[str, object]]
    ) -> None:
        it: Iterator[T] | None = None
        try:
            it = task(self._stop)
            for item in it:
                if not self._put(q, ("item", item)):
                    break
        except BaseException as err:  # handed to the consumer, raised there
            self._put(q, ("error", err))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # a generator's ``finally`` (kills its ffmpeg) runs now
            self._put(q, ("end", None))

    def _items(self, i: int) -> Iterator[T]:
        q = self._queues[i]
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if isinstance(value, BaseException):  # kind == "error"
                raise value
            yield value  # type: ignore[misc]

    def __iter__(self) -> Iterator[Iterator[T]]:
        for i in range(len(self._tasks)):
            while len(self._threads) < min(len(self._tasks), i + self._inflight):
                self._start_next()
            yield self._items(i)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def __enter__(self) -> OrderedParallel[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
