"""The speech part of the index job (``index --speech``): what the driver adds.

Design decisions:

* The workers transcribe (``IndexStep`` runs a
  :class:`~videomem.jobs.transcribe_video.SpeechThread` beside each video's decode
  and encode); the driver only plans and commits, as for the memories: the settings
  hash and the resume set go into the task, and each batch's transcripts are upserted
  in one commit right after that batch's memories, so a killed job loses at most the
  batch in flight, and a re-run skips what is transcribed.
* The rows are those ``videomem transcribe`` writes (same key, same segments): the
  same :func:`~videomem.jobs.transcribe_video.transcribe_one` makes them, from the
  same :class:`~videomem.encoders.asr.ASRConfig`.
* Speech is counted apart from the memories (:class:`SpeechTotals`): a video whose
  audio is broken is still indexed, and its transcript row says why it failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from videomem.encoders.asr import ASRConfig
from videomem.pipeline.transcript import Transcript


@dataclass
class SpeechTotals:
    """Transcripts an index job wrote, by outcome, and the audio behind them."""

    done: int = 0
    no_audio: int = 0
    failed: int = 0
    #: seconds of audio read, and seconds the speech threads spent recognising it
    audio_s: float = 0.0
    asr_s: float = 0.0

    @property
    def rtf(self) -> float:
        return self.asr_s / self.audio_s if self.audio_s > 0 else 0.0

    def add(self, t: Transcript) -> None:
        setattr(self, t.status, getattr(self, t.status) + 1)
        self.audio_s += t.audio_s or 0.0
        self.asr_s += t.seconds or 0.0

    def text(self) -> str:
        return (
            f"speech: {self.done} transcribed, {self.no_audio} no audio, {self.failed} failed; "
            f"{self.audio_s:.1f}s of audio in {self.asr_s:.1f}s (real-time factor {self.rtf:.3f})"
        )


def speech_task(store: Any, speech: ASRConfig | None) -> dict[str, Any]:
    """The ``TaskSpec`` fields of ``--speech``: the settings and the resume set."""
    if speech is None:
        return {}
    key = speech.settings_hash()
    return {
        "speech_hash": key,
        "speech_settings": speech.settings_json(),
        "transcribed": frozenset(store.speech.transcribed(speech.model, key)),
    }


def commit_transcripts(
    store: Any, batch: list[Any], totals: SpeechTotals, failures: list[dict[str, str]], most: int
) -> None:
    """The transcripts of a batch of index outcomes, upserted in one commit (once per
    video: two files with the same content have one transcript); failures are listed
    (up to ``most`` in all) with their file."""
    rows: dict[str, Transcript] = {}
    for o in batch:
        t = o.transcript
        if t is None or t.video_id in rows:
            continue
        rows[t.video_id] = t
        totals.add(t)
        if t.status == "failed" and len(failures) < most:
            uri = o.record.uri
            why = (t.error or "").removeprefix(f"{uri}: ")
            failures.append({"uri": uri, "error": f"{uri}: speech: {why}"})
    store.speech.add(list(rows.values()))
