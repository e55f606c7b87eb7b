"""Stream a video's audio as 16 kHz mono float32 PCM in fixed-size chunks.

What speech recognisers take (Whisper, Silero VAD): 16 kHz, one channel, float32 in
[-1, 1]. ffmpeg decodes, downmixes and resamples; Python only reads the pipe.

Design decisions:

* **No temporary files, bounded memory.** One ffmpeg child per call
  (:class:`~videomem.pipeline.ffmpeg.FFmpegPipe`: stderr drained on a thread, killed
  and reaped in ``finally``) writes ``f32le`` to stdout; each chunk is read straight
  into a fresh array of ``chunk_s`` seconds (1.9 MB for the default 30 s), so a
  3-hour film costs what its chunks in flight cost, never the whole track (which
  would be 690 MB).
* **Times are computed, not parsed**: sample ``k`` of the output is at
  ``start + k / 16000``. ``aresample=async=1:first_pts=0`` makes that true even when
  the audio stream starts late or has timestamp gaps (ffmpeg fills them with
  silence, and drops what overlaps), so a segment's time lines up with the frames'
  to within 0.1 s (aresample's ``min_hard_comp``). Without it, 2 hours of AAC parts
  joined by stream copy put a voice 11.5 s late.
* **"No audio" is an outcome, not an error.** The probe reports the first audio
  stream (``VideoSource.audio_codec``); a video without one gives :class:`NoAudio`
  and no ffmpeg runs. The caller records it and goes on.
* **A broken stream fails loudly.** ffmpeg normally skips a packet it cannot decode
  and goes on, which would silently shift every later time; ``-xerror`` makes it
  stop, and the stop becomes a :class:`DecodeError` with ffmpeg's last lines. A
  truncated file (the container's index promises data the file lacks) makes ffmpeg
  log "partial file" yet exit 0: that is an error here too. Both surface after the
  chunks read before the damage were yielded, so a consumer must treat its output as
  complete only when iteration ends without an exception.
* Only the first audio stream is read (``a:0``): films with several dubs keep their
  original language first by convention; choosing another is future work.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import ffmpeg as ffmpeg_python
import numpy as np
from videomem.pipeline.errors import ConfigError, DecodeError
from videomem.pipeline.ffmpeg import FFmpegPipe, find_ffmpeg
from videomem.pipeline.probe import probe
from videomem.pipeline.types import VideoSource

__all__ = [
    "AUDIO_CHUNK_S",
    "SAMPLE_RATE",
    "AudioChunk",
    "NoAudio",
    "audio_command",
    "open_audio",
]

#: what speech models take: 16 kHz mono
SAMPLE_RATE: Final = 16_000
#: seconds of audio per chunk: one Whisper input window, 1.9 MB of float32
AUDIO_CHUNK_S: Final = 30.0
#: kill ffmpeg when it writes nothing for this long (a hung input)
AUDIO_TIMEOUT_S: Final = 60.0
_BYTES_PER_SAMPLE: Final = 4  # float32
#: the demuxer's word for data the index promises but the file lacks
_TRUNCATED_RE = re.compile(r"partial file|End of file", re.I)


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Consecutive audio samples and where they sit in the video."""

    samples: np.ndarray  # float32 [n], mono, at ``sample_rate``
    start_s: float  # video time of samples[0]
    sample_rate: int = SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True, slots=True)
class NoAudio:
    """The video has no audio stream: nothing to transcribe, nothing failed."""

    uri: str
    reason: str = "no audio stream"


def audio_command(
    uri: str | os.PathLike[str],
    start_s: float = 0.0,
    end_s: float | None = None,
    ffmpeg_exe: str | None = None,
) -> list[str]:
    """The ffmpeg argv that writes the first audio stream of ``uri`` (from ``start_s``
    to ``end_s`` seconds) to stdout as 16 kHz mono f32le."""
    in_args: dict[str, str] = {}
    if start_s > 0:
        in_args["ss"] = f"{start_s:.6f}"  # input seek: sample-accurate for audio
    if end_s is not None:
        in_args["t"] = f"{end_s - start_s:.6f}"
    stream = ffmpeg_python.input(str(Path(uri).absolute()), **in_args)["a:0"]
    # Fill timestamp gaps (and a late start) with silence: sample k is at k / rate.
    stream = stream.filter("aresample", SAMPLE_RATE, **{"async": 1, "first_pts": 0})
    out = ffmpeg_python.output(
        stream, "pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=SAMPLE_RATE
    )
    argv = out.compile(cmd=ffmpeg_exe or find_ffmpeg())
    # global options go before the input (ffmpeg-python puts them after the output);
    # -xerror: stop at the first undecodable packet instead of skipping it
    return [argv[0], "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-xerror",
            *argv[1:]]  # fmt: skip


def open_audio(
    uri: str | os.PathLike[str],
    source: VideoSource | None = None,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    chunk_s: float = AUDIO_CHUNK_S,
    timeout_s: float = AUDIO_TIMEOUT_S,
) -> Iterator[AudioChunk] | NoAudio:
    """The audio of ``uri`` as chunks of ``chunk_s`` seconds (the last one shorter), or
    :class:`NoAudio` when the video has no audio stream.

    Probes first when ``source`` is None (probe errors raise here). ffmpeg runs only
    while the chunks are iterated; a broken or truncated stream raises DecodeError
    then. ``start_s``/``end_s``: an optional window, in video seconds.
    """
    if not chunk_s > 0:
        raise ConfigError(f"chunk_s must be > 0, got {chunk_s}")
    start = float(start_s or 0.0)
    if start < 0 or (end_s is not None and end_s <= start):
        raise ConfigError(f"bad audio window: start {start_s}, end {end_s}")
    if source is None:
        source = probe(uri)
    elif not Path(uri).exists():
        raise DecodeError(str(uri), "file not found")
    if not source.has_audio:
        return NoAudio(str(uri))
    cmd = audio_command(uri, start, end_s)
    whole = start == 0 and end_s is None
    return _read(str(uri), cmd, start, round(chunk_s * SAMPLE_RATE), timeout_s, whole)


def _read(
    uri: str, cmd: list[str], start: float, chunk_samples: int, timeout_s: float, whole: bool
) -> Iterator[AudioChunk]:
    produced = 0
    with FFmpegPipe(cmd, uri, timeout_s) as pipe:
        while True:
            buf = np.empty(chunk_samples, dtype=np.float32)
            got = pipe.readinto(buf.data.cast("B"))
            n, partial = divmod(got, _BYTES_PER_SAMPLE)
            if partial:
                rc = pipe.wait()
                raise DecodeError(
                    uri, f"ffmpeg stopped in the middle of a sample (exit code {rc})",
                    pipe.stderr_tail(),
                )  # fmt: skip
            if n:
                yield AudioChunk(
                    buf[:n] if n < chunk_samples else buf, start + produced / SAMPLE_RATE
                )
                produced += n
            if n < chunk_samples:
                break  # stdout ended
        rc = pipe.wait()
        tail = pipe.stderr_tail()
        if rc != 0:
            raise DecodeError(
                uri, f"ffmpeg failed while decoding the audio (exit code {rc}): "
                "the audio stream is truncated or corrupt", tail,
            )  # fmt: skip
        if _TRUNCATED_RE.search(tail):
            raise DecodeError(
                uri, f"the audio stream is truncated: the file ends after "
                f"{start + produced / SAMPLE_RATE:.2f} s of it", tail,
            )  # fmt: skip
        if produced == 0 and whole:
            raise DecodeError(uri, "ffmpeg decoded no audio samples from this video", tail)
