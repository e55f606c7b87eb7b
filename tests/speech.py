"""Test videos with speech, made at test time: espeak-ng's voice muxed by ffmpeg.

espeak-ng (Debian's, installed by ``make system-deps``) at en-us, 140 words per minute,
is transcribed word for word by Whisper base; the spoken span is measured from the
voice's own samples, so tests can check segment times. Nothing here is committed as
a binary; ``bench/asr.py`` makes its clips here too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tests.videos import run_ffmpeg

if TYPE_CHECKING:
    from videomem.pipeline.transcript import Transcript

#: what the tests say (common words; Whisper base gets them right from espeak)
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Never judge a book by its cover.",
)
#: espeak-ng's speed, words per minute
WPM = 140


@dataclass(frozen=True)
class SpeechClip:
    path: Path
    text: str  # what is said
    spans: tuple[tuple[float, float], ...]  # video seconds of each sentence's voice
    duration_s: float

    @property
    def span(self) -> tuple[float, float]:
        """From the first to the last voiced sample, in video seconds."""
        return self.spans[0][0], self.spans[-1][1]


def espeak_exe() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:  # a system dependency like ffmpeg: missing is a broken set-up
        raise RuntimeError("espeak-ng is not installed: run `make system-deps` (apt-get)")
    return exe


def speak(text: str) -> tuple[np.ndarray, int]:
    """espeak-ng's voice saying ``text``: (int16 samples, sample rate)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "voice.wav"
        cmd = [espeak_exe(), "-v", "en-us", "-s", str(WPM), "-w", str(wav), text]
        subprocess.run(cmd, check=True, capture_output=True)
        with wave.open(str(wav)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16), w.getframerate()


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Mono int16 ``samples`` as a WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def voiced(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """Seconds of the first and last sample above ~1% of full scale."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
    return float(loud[0] / rate), float((loud[-1] + 1) / rate)


def make_speech_video(
    path: str | os.PathLike[str],
    sentences: Sequence[str] = SENTENCES,
    lead_s: float = 2.0,
    gap_s: float = 1.0,
    tail_s: float = 1.0,
    video: str | os.PathLike[str] | None = None,
) -> SpeechClip:
    """A video whose audio is ``lead_s`` of silence, then each sentence spoken with
    ``gap_s`` of silence between them, then ``tail_s`` of silence (AAC stereo 48 kHz,
    so the downmix and resampling are exercised). The picture is ``video`` (looped if
    shorter) or a small grey frame."""
    path = Path(path)
    parts: list[np.ndarray] = []
    spans = []
    rate = 0
    t = lead_s
    for i, sentence in enumerate(sentences):
        voice, rate = speak(sentence)
        a, b = voiced(voice, rate)
        spans.append((t + a, t + b))
        parts.append(voice)
        t += len(voice) / rate + (gap_s if i < len(sentences) - 1 else 0.0)
    total = t + tail_s
    audio = np.zeros(round(total * rate), dtype=np.int16)
    t = lead_s
    for voice in parts:
        at = round(t * rate)
        audio[at : at + len(voice)] = voice
        t += len(voice) / rate + gap_s
    wav = write_wav(path.with_suffix(".voice.wav"), audio, rate)
    if video is None:
        picture = ["-f", "lavfi", "-i", f"color=c=gray:s=64x48:r=10:d={total:.3f}"]
    else:
        picture = ["-stream_loop", "-1", "-i", str(video)]
    run_ffmpeg([*picture, "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-t", f"{total:.3f}",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-ar", "48000", "-ac", "2", str(path)])  # fmt: skip
    wav.unlink()
    return SpeechClip(path, " ".join(sentences), tuple(spans), total)


def make_silent_video(path: str | os.PathLike[str], seconds: float = 6.0) -> Path:
    """A video with an audio stream that holds only silence."""
    path = Path(path)
    run_ffmpeg(["-f", "lavfi", "-i", f"color=c=gray:s=64x48:r=10:d={seconds}",
                "-f", "lavfi", "-i", f"anullsrc=r=48000:cl=stereo:d={seconds}",
                "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
                "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)])  # fmt: skip
    return path


def make_long_speech_video(
    path: str | os.PathLike[str], minutes: int = 120, text: str = SENTENCES[1]
) -> SpeechClip:
    """``minutes`` of video whose audio is silent except ``text`` spoken near the end
    (in the last minute). Made cheaply: one silent minute is encoded once and repeated
    by the concat demuxer without re-encoding, then the spoken minute is appended."""
    path = Path(path)
    work = path.with_suffix(".parts")
    work.mkdir(exist_ok=True)
    # both parts alike (1 fps picture, 16 kHz mono AAC) so they concatenate by copy
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "60",
           "-c:a", "aac", "-ar", "16000", "-ac", "1", "-t", "60"]  # fmt: skip
    silent = work / "silent.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=gray:s=32x24:r=1:d=60",
                "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono:d=60", *enc, str(silent)])  # fmt: skip
    voice, rate = speak(text)
    first, last = voiced(voice, rate)
    wav = write_wav(work / "voice.wav", voice, rate)
    lead = 20.0
    spoken = work / "spoken.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=gray:s=32x24:r=1:d=60", "-i", str(wav),
                "-filter_complex", f"[1:a]adelay={round(lead * 1000)}:all=1,apad=whole_dur=60[a]",
                "-map", "0:v", "-map", "[a]", *enc, str(spoken)])  # fmt: skip
    listing = work / "list.txt"
    listing.write_text(f"file '{silent}'\n" * (minutes - 1) + f"file '{spoken}'\n")
    run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(path)])
    shutil.rmtree(work)
    start = (minutes - 1) * 60.0 + lead
    return SpeechClip(path, text, ((start + first, start + last),), minutes * 60.0)


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing transcripts."""
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance
    over words (the standard WER)."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return float(len(hyp) > 0)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)


def transcribe_for_store(path: Path, video_id: str) -> Transcript:
    """``path`` transcribed by real Whisper base on the CPU, as the record a
    transcription job would store (for the tests of the transcript's readers)."""
    from videomem.encoders.asr import ASRConfig, load_recognizer
    from videomem.pipeline.audio import NoAudio, open_audio
    from videomem.pipeline.transcript import Transcript

    recogniser = load_recognizer(ASRConfig(device="cpu", cpu_threads=2))
    audio = open_audio(path)
    if isinstance(audio, NoAudio):
        return Transcript(video_id, recogniser.model_id, "test", "no_audio")
    segments = tuple(recogniser.transcribe(audio))
    language = segments[0].language if segments else None
    return Transcript(video_id, recogniser.model_id, "test", "done", segments, language)


def make_broken_audio_video(src: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``src`` (an AAC clip) with its picture intact and the payload of the last two
    thirds of its audio frames replaced by noise: the video decodes, the audio fails."""
    path = Path(path)
    adts = path.with_suffix(".aac")
    run_ffmpeg(["-i", str(src), "-vn", "-c:a", "copy", "-f", "adts", str(adts)])
    data = bytearray(adts.read_bytes())
    frames, at = [], 0
    while at + 7 <= len(data):  # ADTS: 7-byte header with the frame's length in it
        n = ((data[at + 3] & 3) << 11) | (data[at + 4] << 3) | (data[at + 5] >> 5)
        frames.append((at, n))
        at += n
    rng = np.random.default_rng(0)
    for at, n in frames[len(frames) // 3 :]:  # headers kept: it still muxes by copy
        data[at + 7 : at + n] = rng.integers(0, 256, n - 7, dtype=np.uint8).tobytes()
    adts.write_bytes(bytes(data))
    run_ffmpeg(["-i", str(src), "-i", str(adts), "-map", "0:v", "-map", "1:a", "-c", "copy",
                str(path)])  # fmt: skip
    adts.unlink()
    return path
