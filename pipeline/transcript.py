"""The records of the speech track: what a recogniser says was spoken, and when.

One record per hand-off, beside the frame records of ``pipeline.types``::

    VideoSource ──audio──► AudioChunk ──ASR──► SpeechSegment (with Words)

Design decisions:

* These live in ``pipeline/`` (the bottom of the import graph), not beside the
  recogniser in ``encoders/``: the store (``memory/``) writes and reads them and must
  not import ``encoders/``.
* Times are seconds from the start of the *video* (not of an audio window), so
  segments line up with memory slots and frame timestamps whatever window or chunk
  size produced them.
* Plain frozen dataclasses of floats and strings: no numpy, no model objects, so a
  segment pickles cheaply to a Ray driver and maps one-to-one onto a table row.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SpeechSegment", "Word"]


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
