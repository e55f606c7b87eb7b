"""The records of the speech track: what a recogniser says was spoken, and when.

One record per hand-off, beside the frame records of ``pipeline.types``::

    VideoSource ──audio──► AudioChunk ──ASR──► SpeechSegment (with Words)
                                                 └─► Transcript (a video's, per model)

Design decisions:

* These live in ``pipeline/`` (the bottom of the import graph), not beside the
  recogniser in ``encoders/``: the store (``memory/``) writes and reads them and must
  not import ``encoders/``.
* Times are seconds from the start of the *video* (not of an audio window), so
  segments line up with memory slots and frame timestamps whatever window or chunk
  size produced them.
* Plain frozen dataclasses of floats and strings: no numpy, no model objects, so a
  segment pickles cheaply to a Ray driver and maps one-to-one onto a table row.
* A :class:`Transcript` is keyed by the video's content id and the recogniser's
  identity and settings, not by a memory run: re-indexing a video with another encoder
  keeps its transcript, and the same settings on a re-run add nothing.
* "No audio" is a status, not a failure: a silent film or a screen capture has nothing
  to transcribe, and a job must not retry it. A failed transcript keeps the reason and
  is tried again by the next run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

__all__ = ["TRANSCRIPT_STATUSES", "SpeechSegment", "Transcript", "TranscriptStatus", "Word"]

TranscriptStatus = Literal["done", "no_audio", "failed"]
TRANSCRIPT_STATUSES: tuple[TranscriptStatus, ...] = ("done", "no_audio", "failed")


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word with its own times (asked for with ``word_timestamps``)."""

    start_s: float
    end_s: float
    # as the recogniser writes it, usually with its leading space (" book")
    text: str
    # the recogniser's confidence in this word, 0..1
    probability: float


@dataclass(frozen=True, slots=True)
class SpeechSegment:
    """One stretch of recognised speech (a sentence or so)."""

    start_s: float
    end_s: float
    text: str
    # ISO 639-1 code the recogniser used for this stretch ("en")
    language: str
    # mean log-probability of the segment's tokens: low means the recogniser guessed
    avg_logprob: float
    # the recogniser's probability that the stretch holds no speech at all
    no_speech_prob: float
    # empty unless word times were asked for
    words: tuple[Word, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class Transcript:
    """What one recogniser, with one set of settings, heard in one video."""

    # the video's content id (``videos.video_id``)
    video_id: str
    # the recogniser as the user named it (``whisper-base``, a hub id, a directory)
    model: str
    # hash of the recognition settings (language, beam, VAD, word times…): with
    # (video_id, model) the key of the row
    settings_hash: str
    status: TranscriptStatus
    segments: tuple[SpeechSegment, ...] = ()
    # the language the recogniser used (detected or given); None without speech
    language: str | None = None
    # readable reason of a failure
    error: str | None = None
    # seconds of audio read, and of wall time the recognition took
    audio_s: float | None = None
    seconds: float | None = None
    # the recognition settings as JSON
    settings: str = "{}"
    created_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.status not in TRANSCRIPT_STATUSES:
            raise ValueError(f"transcript status must be one of {TRANSCRIPT_STATUSES}")
        if self.status != "done" and self.segments:
            raise ValueError(f"a {self.status} transcript has no segments")

    @property
    def text(self) -> str:
        """The whole transcript as one string (segments joined by spaces)."""
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    def before(self, t_s: float) -> list[SpeechSegment]:
        """Segments heard by time ``t_s`` (breakpoint mode: nothing said after t)."""
        return [s for s in self.segments if s.start_s < t_s]
