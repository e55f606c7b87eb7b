"""Finding the ffmpeg binaries and running them without deadlocks or leftover children.

Design decisions:

* ``ffmpeg`` is the faster of the system one on ``PATH`` and the static binary that the
  ``imageio-ffmpeg`` wheel ships (so ``pip install videomem`` alone can decode); see
  ``pipeline.ffmpeg_choice``. ``VIDEOMEM_FFMPEG`` overrides both. ``ffprobe`` is optional: the imageio binary
  comes without one, and ``pipeline.probe.probe`` then works from ffmpeg alone.
  ``VIDEOMEM_FFPROBE=none`` forces that ffmpeg-only path (tests cover both).
* :class:`FFmpegPipe` owns one streaming child: stdout is read in exact-size chunks,
  stderr is drained by a daemon thread into a bounded deque (ffmpeg blocks forever if
  nobody reads a full stderr pipe), a read that sees no bytes for ``timeout_s`` kills
  the child (a hung input, e.g. a FIFO nobody writes), and ``close()`` — always reached
  through ``with`` — kills and reaps it, so no zombie or orphan survives an early stop
  or an error.
* **The frame reads cost one syscall per chunk ffmpeg writes, nothing else.** ffmpeg
  writes its output in 32 KiB pieces whatever ``-avioflags`` say (checked with strace
  on 5.1 and 9.0), and each wakes the reader: so stdout is read with plain blocking
  reads, and the no-output timeout is kept by the stderr thread (it polls stderr with
  the time left as its timeout, and kills ffmpeg, which ends the blocked read), not by
  a poll() before every read. stderr is read in whole bursts, not a byte per syscall.
* Per-frame facts ffmpeg only logs (the true timestamps of keyframes, from the
  ``showinfo`` filter) come through stderr too: with ``capture`` the command runs at
  ``-loglevel level+info``, lines matching the pattern go to a queue in order, and the
  tail kept for errors holds only the warning/error lines (their level tag removed).
"""

from __future__ import annotations

import collections
import io
import math
import os
import queue
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Final, cast

from videomem.pipeline.errors import DecodeError

#: how many of ffmpeg's last stderr lines an error carries
STDERR_TAIL_LINES: Final = 30
#: the pipe buffer we ask the kernel for (default is 64 KiB; bigger = fewer syscalls)
PIPE_SIZE: Final = 1 << 20
#: the most stderr bytes one read takes
STDERR_READ_BYTES: Final = 1 << 16


class _Auto:
    """Sentinel type: "find the binary yourself"."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO: Final = _Auto()


def find_ffmpeg() -> str:
    """Path of the ffmpeg binary: ``$VIDEOMEM_FFMPEG``, else the faster of ``ffmpeg`` on
    PATH and the imageio-ffmpeg binary (``pipeline.ffmpeg_choice``). Raises DecodeError
    when there is none."""
    from videomem.pipeline.ffmpeg_choice import choose_ffmpeg

    return choose_ffmpeg().path


def find_ffprobe() -> str | None:
    """Path of ffprobe, or None to probe with ffmpeg alone.

    ``$VIDEOMEM_FFPROBE``: ``none`` (or empty) forces the ffmpeg-only path, anything
    else names the binary. Otherwise ``ffprobe`` on PATH, else None.
    """
    env = os.environ.get("VIDEOMEM_FFPROBE")
    if env is not None:
        if env.strip().lower() in ("", "none", "0", "false"):
            return None
        exe = shutil.which(env)
        if exe is None:
            raise DecodeError("ffprobe", f"VIDEOMEM_FFPROBE={env!r} is not an executable")
        return exe
    return shutil.which("ffprobe")


def run_captured(
    cmd: Sequence[str], uri: str, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Run a short ffmpeg/ffprobe command to completion, capturing both streams.

    ``subprocess.run`` reads both pipes concurrently (no deadlock) and kills + reaps the
    child on timeout; we turn the timeout into a DecodeError.
    """
    try:
        return subprocess.run(
            list(cmd),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        tail = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else ""
        raise DecodeError(
            uri, f"{os.path.basename(cmd[0])} did not finish within {timeout_s:g} s", tail
        ) from None
    except OSError as err:
        raise DecodeError(uri, f"could not run {cmd[0]}: {err}") from None


def _poll_ms(seconds: float) -> int:
    """``seconds`` as a poll() timeout: whole milliseconds, rounded up, within C int."""
    return min(max(0, math.ceil(seconds * 1000)), 2**31 - 1)


def tail_lines(text: str, n: int = STDERR_TAIL_LINES) -> str:
    """The last ``n`` non-empty lines of ``text``."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


#: the log level ``FFmpegPipe(capture=...)`` needs: info (showinfo logs there), each
#: line tagged with its level so that errors can be told from the captured lines
CAPTURE_LOGLEVEL: Final = "level+info"
#: ``[ctx @ 0x...] [level] message`` or ``[level] message`` (-loglevel level+...)
_LEVEL_RE = re.compile(r"^(\[[^\]]* @ [^\]]*\] )?\[(\w+)\] ?(.*)$")
_QUIET_LEVELS: Final = frozenset({"info", "verbose", "debug", "trace"})


class FFmpegPipe:
    """One ffmpeg child whose stdout is read in exact chunks.

    Use as a context manager; ``close()`` kills and reaps the child whatever happened.
    ``capture``: a pattern with one group; for each stderr line that matches, the group
    is queued (read it with :meth:`captured`). The command must then run at
    ``-loglevel`` :data:`CAPTURE_LOGLEVEL`.
    """

    def __init__(
        self,
        cmd: Sequence[str],
        uri: str,
        timeout_s: float,
        capture: re.Pattern[str] | None = None,
    ) -> None:
        self.uri = uri
        self.timeout_s = timeout_s
        self.timed_out = False
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._capture = capture
        self._captured: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        # When readinto() last saw progress (monotonic s; None: no read under way).
        # The minder thread reads it to tell a hung ffmpeg from a slow consumer.
        self._reading_since: float | None = None
        self._closed = threading.Event()  # close() was called
        self._stderr_done = threading.Event()  # all of stderr has been read
        try:
            self.proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,  # raw FileIO: readinto goes straight into our buffers
                pipesize=PIPE_SIZE,
            )
        except OSError as err:
            raise DecodeError(uri, f"could not start ffmpeg: {err}") from None
        if self.proc.stdout is None or self.proc.stderr is None:  # cannot happen: PIPE
            raise RuntimeError("Popen did not create the pipes it was asked for")
        # bufsize=0 makes both pipes raw FileIO: stdout has readinto(), and a read of
        # stderr returns what is there (up to the size asked), not one byte at a time
        self._stdout = cast(io.RawIOBase, self.proc.stdout)
        self._minder = threading.Thread(
            target=self._mind, args=(cast(io.RawIOBase, self.proc.stderr),), daemon=True
        )
        self._minder.start()

    def _mind(self, stream: io.RawIOBase) -> None:
        """The helper thread: drain stderr, and kill ffmpeg when a read in readinto()
        has seen no byte for ``timeout_s``. Runs until ffmpeg is gone or the pipe is
        closed."""
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLIN | select.POLLHUP)
        pending = b""
        stderr_open = True
        try:
            while not self._closed.is_set():
                since = self._reading_since
                if self.timed_out:
                    wait = None  # killed: stderr ends at once
                elif since is None:
                    # a read that starts now can stall for timeout_s at the earliest
                    wait = self.timeout_s
                else:
                    wait = since + self.timeout_s - time.monotonic()
                    if wait <= 0 and since == self._reading_since:
                        self.timed_out = True
                        # The blocked read then sees the end of stdout; the reader's
                        # thread reaps the child (close()).
                        self.proc.kill()
                        continue
                if not stderr_open:
                    # stderr closed by a child still running (ffmpeg does not do that):
                    # keep watching the reads until it exits or the pipe is closed
                    if self.proc.poll() is not None:
                        return
                    self._closed.wait(1.0 if wait is None else max(0.0, wait))
                    continue
                if not poller.poll(-1 if wait is None else _poll_ms(wait)):
                    continue
                # One read takes every line that is there: ffmpeg's log comes in
                # bursts (showinfo: several lines per frame), not a syscall per byte.
                chunk = stream.read(STDERR_READ_BYTES)
                if chunk:
                    *lines, pending = (pending + chunk).split(b"\n")
                    if len(pending) > STDERR_READ_BYTES:  # no newline in sight: a line
                        lines.append(pending)
                        pending = b""
                    for raw in lines:
                        self._log_line(raw)
                    continue
                stderr_open = False
                if pending:
                    self._log_line(pending)
                    pending = b""
                self._end_of_stderr()
        except (OSError, ValueError):  # stderr closed under us by close(): done
            pass
        finally:
            if stderr_open:
                self._end_of_stderr()

    def _end_of_stderr(self) -> None:
        self._captured.put(None)  # nothing more will come
        self._stderr_done.set()

    def _log_line(self, raw: bytes) -> None:
        """Queue a captured value, or keep the line in the tail kept for errors."""
        line = raw.decode(errors="replace").rstrip()
        if self._capture is None:
            self._stderr.append(line)
        elif m := self._capture.search(line):
            self._captured.put(m.group(1))
        elif (lv := _LEVEL_RE.match(line)) is None:
            self._stderr.append(line)
        elif lv.group(2) not in _QUIET_LEVELS:
            self._stderr.append((lv.group(1) or "") + lv.group(3))

    def captured(self, n: int) -> list[str]:
        """The next ``n`` captured values, in order. ffmpeg logs a frame's line before
        it writes the frame, so after reading n frames their n lines are on their way;
        raises DecodeError if stderr ends (or stays silent ``timeout_s``) before."""
        out: list[str] = []
        while len(out) < n:
            try:
                value = self._captured.get(timeout=self.timeout_s)
            except queue.Empty:
                value = None
            if value is None:
                self._captured.put(None)  # keep the end marker for later calls
                raise DecodeError(
                    self.uri,
                    f"ffmpeg wrote a frame without logging its timestamp ({len(out)} of {n})",
                    self.stderr_tail(),
                )
            out.append(value)
        return out

    def stderr_tail(self) -> str:
        self._stderr_done.wait(timeout=2.0)  # let the last lines arrive after exit
        return "\n".join(self._stderr)

    def readinto(self, buf: memoryview) -> int:
        """Fill ``buf`` completely unless stdout ends first; returns bytes read.

        Raises DecodeError (after killing ffmpeg) if no byte arrives for ``timeout_s``.
        """
        filled = 0
        total = len(buf)
        # Plain blocking reads, one per chunk ffmpeg writes (32 KiB): no poll() beside
        # each, as the timeout is the minder thread's. Only time spent waiting *inside*
        # this call counts: a slow consumer that leaves ffmpeg blocked on a full pipe
        # is not a hung ffmpeg.
        self._reading_since = time.monotonic()
        try:
            while filled < total:
                n = self._stdout.readinto(buf[filled:])
                if not n:
                    break
                filled += n
                self._reading_since = time.monotonic()
        finally:
            self._reading_since = None
        if self.timed_out:
            raise DecodeError(
                self.uri,
                f"ffmpeg produced no output for {self.timeout_s:g} s; killed it",
                self.stderr_tail(),
            )
        return filled

    def wait(self, timeout_s: float = 10.0) -> int:
        """Exit code once stdout has ended (killing ffmpeg if it lingers)."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        """Kill (if still running) and reap the child; close our pipe ends."""
        try:
            self.kill()
        finally:
            self._closed.set()
            self._stdout.close()
            self._minder.join(timeout=2.0)
            if self.proc.stderr is not None:
                self.proc.stderr.close()

    def __enter__(self) -> FFmpegPipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
