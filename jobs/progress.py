"""Progress of a job: one line per item for logs and pipes, live bars on a terminal.

A reporter hears of items as the driver commits them (``done``/``skipped``) and of
work units (frames for the index stage, questions for QA) as workers finish them
(``units``, live from Ray actors too). Every stage reports through the same calls, and
the total may be unknown when a job starts (planning streams), so bars and lines work
without it.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from videomem.memory.store import VideoRecord


class Reporter(Protocol):
    def start(self, total: int | None, title: str) -> None: ...

    def skipped(self, name: str, reason: str) -> None: ...

    def units(self, n: int) -> None: ...

    def done(self, name: str, ok: bool, detail: str) -> None: ...

    def finish(self) -> None: ...


def failure_line(uri: str, error: str | None) -> str:
    """ "uri: reason", one line, for a failure (errors usually start with the uri)."""
    first = error.splitlines()[0] if error else "unknown error"
    return first if first.startswith(uri) else f"{uri}: {first}"


def decode_line(rec: VideoRecord) -> str:
    """What decoding did for a stored video, one line: "cuda, 1 ffmpeg, exact sampling
    (fallback: …)"."""
    parts = rec.decode_parts or 1
    decoder = rec.decode_decoder or "ffmpeg"
    procs = f"{parts} {decoder} time ranges" if parts > 1 else f"1 {decoder}"
    line = f"{rec.decode_device}, {procs}, {rec.decode_sample or 'exact'} sampling"
    return line + (f" (fallback: {rec.decode_fallback})" if rec.decode_fallback else "")


class NullReporter:
    def start(self, total: int | None, title: str) -> None:
        pass

    def skipped(self, name: str, reason: str) -> None:
        pass

    def units(self, n: int) -> None:
        pass

    def done(self, name: str, ok: bool, detail: str) -> None:
        pass

    def finish(self) -> None:
        pass


class PlainReporter(NullReporter):
    """One line per item, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None, verb: str = "done") -> None:
        self.stream = stream or sys.stderr
        #: what a line says of a finished item ("indexed", "answered" …)
        self.verb = verb
        self.total: int | None = None
        self.n = 0

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _count(self) -> str:
        self.n += 1
        return f"[{self.n}/{self.total}]" if self.total is not None else f"[{self.n}]"

    def start(self, total: int | None, title: str) -> None:
        self.total = total
        self._line(title)

    def skipped(self, name: str, reason: str) -> None:
        self._line(f"{self._count()} skipped {name}: {reason}")

    def done(self, name: str, ok: bool, detail: str) -> None:
        if ok:
            self._line(f"{self._count()} {self.verb} {name}: {detail}")
        else:
            self._line(f"{self._count()} FAILED {failure_line(name, detail)}")


class RichReporter(NullReporter):
    """Two live bars on a terminal: items done, work units (frames, questions) with rate."""

    def __init__(self, unit: str = "frames") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.unit = unit
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._items: Any = None
        self._units: Any = None
        self._t0 = time.perf_counter()
        self._n = 0

    def start(self, total: int | None, title: str) -> None:
        self.progress.start()
        self.console.print(title)
        self._items = self.progress.add_task("items", total=total, rate="")
        self._units = self.progress.add_task(self.unit, total=None, rate="")
        self._t0 = time.perf_counter()

    def skipped(self, name: str, reason: str) -> None:
        self.progress.advance(self._items)

    def units(self, n: int) -> None:
        self._n += n
        rate = self._n / max(time.perf_counter() - self._t0, 1e-9)
        self.progress.update(self._units, advance=n, rate=f"{rate:.1f} {self.unit}/s")

    def done(self, name: str, ok: bool, detail: str) -> None:
        self.progress.advance(self._items)
        if not ok:
            from rich.markup import escape

            self.progress.console.print(f"[red]failed[/] {escape(failure_line(name, detail))}")

    def finish(self) -> None:
        self.progress.stop()
