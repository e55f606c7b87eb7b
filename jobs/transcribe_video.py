"""One stored video's audio through the speech recogniser into a :class:`Transcript`.

Design decisions:

* Errors as data, like :func:`~videomem.jobs.index_video.index_one`:
  :func:`transcribe_one` never raises for a bad video. No audio stream is a
  ``no_audio`` row (not a failure: nothing to retry); a file that is gone, changed
  since it was indexed, or whose audio is truncated or corrupt is a ``failed`` row with
  the readable reason (and the next run tries it again). The memory is never touched:
  a transcript is its own row, keyed by (video, model, settings hash).
* The file is re-read from its stored ``uri`` only after its content id is checked
  against the video's id (as breakpoint QA re-reads a clip): a file replaced under the
  same name would otherwise give the old video someone else's words. The index job,
  which has just hashed the file itself, skips that check.
* A transcript is complete only when the audio stream ended without an error
  (``pipeline.audio`` raises after the chunks read before the damage), so a broken
  stream never leaves a ``done`` row holding half the speech.
* Inside the index job (``index --speech``) the same function runs on its own thread
  (:class:`SpeechThread`) beside the video's decode and encode, so a corpus is read
  once and the two overlap; its row is the one ``transcribe`` would write.
* ``seconds`` is the wall time of reading and recognising, ``audio_s`` the seconds of
  audio read: their ratio is the real-time factor the job summaries report.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from videomem.encoders.asr import SpeechRecognizer
from videomem.pipeline.audio import AudioChunk, NoAudio, open_audio
from videomem.pipeline.errors import VideomemError
from videomem.pipeline.transcript import SpeechSegment, Transcript
from videomem.pipeline.types import VideoSource

log = logging.getLogger(__name__)

__all__ = ["SpeechThread", "TurnLock", "changed_reason", "transcribe_one"]


def changed_reason(uri: str, video_id: str) -> str | None:
    """Why the file at ``uri`` is not the video ``video_id`` any more, or None when its
    content id still matches."""
    from videomem.pipeline.files import content_video_id

    try:
        now = content_video_id(uri)
    except OSError as e:
        return f"{uri}: cannot read the file: {e.strerror or e}"
    if now != video_id:
        return (
            f"{uri}: the file changed since it was indexed "
            f"(its content id is now {now}, not {video_id})"
        )
    return None


def transcribe_one(
    recognizer: SpeechRecognizer,
    uri: str,
    video_id: str,
    *,
    settings_hash: str,
    settings: str,
    check_content: bool = True,
    source: VideoSource | None = None,
) -> Transcript:
    """The transcript of the video ``video_id`` stored at ``uri`` (never raises for a
    bad video; see the module docstring). ``source``: its probe, when the caller has it."""
    t0 = time.perf_counter()

    def row(status: str, **kw: object) -> Transcript:
        return Transcript(
            video_id=video_id, model=recognizer.model_id, settings_hash=settings_hash,
            status=status, settings=settings, seconds=time.perf_counter() - t0, **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    read = [0.0]
    try:
        if check_content and (why := changed_reason(uri, video_id)) is not None:
            return row("failed", error=why)
        audio = open_audio(uri, source)
        if isinstance(audio, NoAudio):
            return row("no_audio", audio_s=0.0)
        segments = tuple(recognizer.transcribe(_counted(audio, read)))
    except VideomemError as e:
        return row("failed", error=str(e), audio_s=read[0])
    except Exception as e:  # a bug or the environment (out of memory …): still data
        log.error("transcribing %s failed:\n%s", uri, traceback.format_exc())
        return row("failed", error=f"{type(e).__name__}: {e}", audio_s=read[0])
    return row("done", segments=segments, language=_language(segments), audio_s=read[0])


def _counted(chunks: Iterable[AudioChunk], seconds: list[float]) -> Iterator[AudioChunk]:
    for chunk in chunks:
        seconds[0] += chunk.duration_s
        yield chunk


def _language(segments: tuple[SpeechSegment, ...]) -> str | None:
    """The language most of the speech was in (by seconds); None without speech."""
    spoken: Counter[str] = Counter()
    for s in segments:
        spoken[s.language] += s.duration_s
    return spoken.most_common(1)[0][0] if spoken else None


class TurnLock:
    """A lock taken in the order its turns were handed out: ``turn()`` is called in
    the caller's thread (so in the order videos start), the returned context manager
    waits for that turn in any thread. Every turn handed out must be entered once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._serving = 0

    def turn(self) -> AbstractContextManager[None]:
        with self._cond:
            mine, self._next = self._next, self._next + 1
        return self._hold(mine)

    @contextmanager
    def _hold(self, mine: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._serving == mine)
        try:
            yield
        finally:
            with self._cond:
                self._serving += 1
                self._cond.notify_all()


class SpeechThread:
    """:func:`transcribe_one` on its own thread, so a video's speech is recognised
    while its frames decode and encode (CTranslate2 and ffmpeg release the GIL: the
    two share the cores, not the interpreter). ``result()`` waits for the row.

    ``turns`` (one per worker) lets one video's speech be recognised at a time, in the
    order the videos started: two Whisper runs at once only share cores CTranslate2
    already fills (in one timeline here, the second video's speech was recognised
    beside the first's and both finished late), while in order the video whose outcome
    the executor hands on first is heard first, and the frames of the next one decode
    and encode beside it."""

    def __init__(
        self,
        recognizer: SpeechRecognizer,
        uri: str,
        video_id: str,
        turns: TurnLock | None = None,
        **kw: Any,
    ) -> None:
        self._out: list[Transcript] = []
        self._args = (recognizer, uri, video_id)
        self._kw = kw
        self._turn = turns.turn() if turns is not None else nullcontext()
        # a daemon, so it never keeps a dying process alive; a caller always joins it
        self._thread = threading.Thread(target=self._run, name="videomem-speech", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            with self._turn:  # give the turn back, or the next video waits forever
                raise

    def _run(self) -> None:
        with self._turn:
            self._out.append(transcribe_one(*self._args, **self._kw))

    def result(self) -> Transcript:
        self._thread.join()
        if not self._out:  # transcribe_one never raises; only a dying interpreter gets here
            raise RuntimeError("the speech thread ended without a transcript")
        return self._out[0]
