"""pipeline/audio.py: a video's audio as 16 kHz mono float32 chunks, through ffmpeg.

Clips with speech are made here by espeak-ng and ffmpeg (tests/speech.py); their
voiced spans are known from the voice's own samples, so times can be checked.
"""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest
from videomem.pipeline.audio import SAMPLE_RATE, AudioChunk, NoAudio, open_audio
from videomem.pipeline.errors import ConfigError, DecodeError
from videomem.pipeline.probe import probe

from tests.pipeline.test_decode import child_pids
from tests.speech import (
    SpeechClip,
    make_long_speech_video,
    make_silent_video,
    make_speech_video,
)
from tests.videos import make_scenes, run_ffmpeg, which_ffprobe


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SpeechClip:
    return make_speech_video(tmp_path_factory.mktemp("audio") / "speech.mp4")


def read_all(chunks: object) -> tuple[np.ndarray, list[AudioChunk]]:
    assert not isinstance(chunks, NoAudio)
    got = list(chunks)  # type: ignore[call-overload]
    return np.concatenate([c.samples for c in got]), got


def loud_span(x: np.ndarray, t0: float = 0.0, level: float = 0.01) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(x) > level)
    return t0 + loud[0] / SAMPLE_RATE, t0 + (loud[-1] + 1) / SAMPLE_RATE


def test_speech_clip_streams_in_consecutive_chunks(clip: SpeechClip) -> None:
    x, chunks = read_all(open_audio(clip.path, chunk_s=2.0))
    assert x.dtype == np.float32 and x.ndim == 1
    assert all(len(c.samples) == 2 * SAMPLE_RATE for c in chunks[:-1])
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start_s == pytest.approx(a.end_s, abs=1e-9)
    assert chunks[0].start_s == 0.0
    assert len(x) / SAMPLE_RATE == pytest.approx(clip.duration_s, abs=0.05)
    assert np.abs(x).max() <= 1.0
    # the voice is where it was put (AAC's priming delay is undone by ffmpeg)
    start, end = loud_span(x)
    assert start == pytest.approx(clip.span[0], abs=0.05)
    assert end == pytest.approx(clip.span[1], abs=0.05)
    # the pause between the sentences is quiet
    mid = (clip.spans[0][1] + clip.spans[1][0]) / 2
    assert (
        np.abs(x[round((mid - 0.2) * SAMPLE_RATE) : round((mid + 0.2) * SAMPLE_RATE)]).max() < 0.01
    )


def test_window_is_the_same_audio_at_the_same_times(clip: SpeechClip) -> None:
    whole, _ = read_all(open_audio(clip.path))
    part, chunks = read_all(open_audio(clip.path, start_s=3.0, end_s=6.5, chunk_s=1.0))
    assert chunks[0].start_s == 3.0
    assert len(part) == pytest.approx(3.5 * SAMPLE_RATE, abs=2)
    ref = whole[3 * SAMPLE_RATE : 3 * SAMPLE_RATE + len(part)]
    # the same samples (the decoder restarts at the seek point: allow the first 20 ms)
    skip = SAMPLE_RATE // 50
    assert np.abs(part[skip:] - ref[skip:]).max() < 1e-3
    assert np.abs(ref).max() > 0.1  # the window holds speech, so the check means something


@pytest.mark.parametrize("prober", [which_ffprobe(), None], ids=["ffprobe", "ffmpeg-only"])
def test_probe_reports_the_audio_stream(
    clip: SpeechClip, prober: str | None, tmp_path: Path
) -> None:
    src = probe(clip.path, ffprobe=prober)
    assert (src.has_audio, src.audio_codec, src.audio_sample_rate, src.audio_channels) == (
        True, "aac", 48000, 2,
    )  # fmt: skip
    silent = probe(make_scenes(tmp_path / "mute.mp4", (("red", 1.0),)).path, ffprobe=prober)
    assert not silent.has_audio and silent.audio_codec is None


def test_no_audio_stream_is_no_audio_not_an_error(tmp_path: Path) -> None:
    video = make_scenes(tmp_path / "mute.mp4", (("red", 1.0), ("blue", 1.0))).path
    before = child_pids()
    got = open_audio(video)
    assert got == NoAudio(str(video))
    assert child_pids() == before  # nothing was started for it


def test_silent_track_is_silence(tmp_path: Path) -> None:
    x, _ = read_all(open_audio(make_silent_video(tmp_path / "silent.mp4", 3.0)))
    assert len(x) / SAMPLE_RATE == pytest.approx(3.0, abs=0.05)
    assert np.abs(x).max() == 0.0


def test_truncated_audio_stream_is_a_clear_error(clip: SpeechClip, tmp_path: Path) -> None:
    # index at the front (faststart), data cut in half: it probes, then runs out
    fast = tmp_path / "fast.mp4"
    run_ffmpeg(["-i", str(clip.path), "-c", "copy", "-movflags", "+faststart", str(fast)])
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert probe(cut).has_audio
    before = child_pids()
    with pytest.raises(DecodeError, match="audio stream is truncated") as err:
        read_all(open_audio(cut))
    assert err.value.stderr_tail  # ffmpeg's own words come with it
    assert child_pids() == before


def test_garbled_audio_stream_is_a_clear_error(clip: SpeechClip, tmp_path: Path) -> None:
    fast = tmp_path / "fast.mp4"
    run_ffmpeg(["-i", str(clip.path), "-c", "copy", "-movflags", "+faststart", str(fast)])
    data = bytearray(fast.read_bytes())
    rng = np.random.default_rng(0)
    for at in range(len(data) // 4, len(data) - 1000, 997):  # junk all over the data
        data[at : at + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    bad = tmp_path / "garbled.mp4"
    bad.write_bytes(bytes(data))
    before = child_pids()
    with pytest.raises(DecodeError, match="audio stream is truncated or corrupt"):
        read_all(open_audio(bad))
    assert child_pids() == before


def test_stopping_early_kills_ffmpeg(clip: SpeechClip) -> None:
    before = child_pids()
    chunks = open_audio(clip.path, chunk_s=0.5)
    assert not isinstance(chunks, NoAudio)
    first = next(iter(chunks))
    assert len(first.samples) == SAMPLE_RATE // 2
    assert child_pids() - before  # ffmpeg is running
    chunks.close()  # type: ignore[attr-defined]
    assert child_pids() == before


def test_bad_arguments_are_config_errors(clip: SpeechClip) -> None:
    with pytest.raises(ConfigError):
        open_audio(clip.path, chunk_s=0)
    with pytest.raises(ConfigError):
        open_audio(clip.path, start_s=5, end_s=4)
    with pytest.raises(DecodeError, match="not found|no such"):
        open_audio(clip.path.with_name("missing.mp4"))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.mark.slow
def test_two_hour_stream_stays_in_bounded_memory(tmp_path: Path) -> None:
    long = make_long_speech_video(tmp_path / "long.mp4", minutes=120)
    chunk_s = 30.0
    base = _rss_mb()
    peak = 0.0
    total = 0
    biggest = 0
    voice_at = None
    chunks = open_audio(long.path, chunk_s=chunk_s)
    assert not isinstance(chunks, NoAudio)
    for c in chunks:  # nothing is kept: each chunk is dropped after its look
        total += len(c.samples)
        biggest = max(biggest, len(c.samples))
        if voice_at is None and np.abs(c.samples).max() > 0.01:
            voice_at = loud_span(c.samples, c.start_s)[0]
        peak = max(peak, _rss_mb() - base)
    assert total / SAMPLE_RATE == pytest.approx(7200.0, abs=0.5)
    assert biggest == chunk_s * SAMPLE_RATE
    # Times hold after 2 hours: 120 AAC files joined by copy each bring their own
    # priming samples (without aresample's async=1 the voice came 11.5 s late);
    # ffmpeg corrects drift beyond 0.1 s (aresample's min_hard_comp), hence 0.15 s.
    assert voice_at == pytest.approx(long.span[0], abs=0.15)
    whole_mb = total * 4 / 2**20  # 440 MB of float32 if it were held
    assert peak < 64, f"RSS grew {peak:.0f} MB while streaming ({whole_mb:.0f} MB in all)"
