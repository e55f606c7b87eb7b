"""Probe and streaming decode against real ffmpeg, on synthetic videos of known content
and on the real clips in ../shared/testdata."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from videomem.pipeline import ffmpeg as ffmpeg_module
from videomem.pipeline import plan as plan_module
from videomem.pipeline.decode import check_video, decode
from videomem.pipeline.errors import DecodeError, VideomemError
from videomem.pipeline.ffmpeg import find_ffmpeg, find_ffprobe
from videomem.pipeline.files import VIDEO_EXTENSIONS, content_video_id, iter_video_files
from videomem.pipeline.plan import sample_timestamps
from videomem.pipeline.probe import probe
from videomem.pipeline.types import DecodeConfig, FrameBatch, VideoSource

from tests.videos import (
    COLORS,
    SyntheticVideo,
    frame_color,
    imageio_ffmpeg_exe,
    make_broken,
    make_long,
    make_rotated,
    make_scenes,
    make_truncated_faststart,
    make_vfr,
    mean_rgb,
)

SYSTEM_FFPROBE = shutil.which("ffprobe")

# --------------------------------------------------------------------------- helpers


def child_pids() -> set[int]:
    """Live or zombie children of this process, from /proc (no psutil needed)."""
    me = os.getpid()
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me:
            out.add(int(entry))
    return out


def collect(batches: Iterator[FrameBatch]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    frames, ts, idx, sizes = [], [], [], []
    for b in batches:
        assert b.frames.dtype == np.uint8 and b.frames.ndim == 4 and b.frames.shape[3] == 3
        assert b.timestamps.dtype == np.float64 and b.timestamps.shape == (len(b),)
        assert b.frame_index.dtype == np.int64 and b.frame_index.shape == (len(b),)
        frames.append(b.frames)
        ts.append(b.timestamps)
        idx.append(b.frame_index)
        sizes.append(len(b))
    return np.concatenate(frames), np.concatenate(ts), np.concatenate(idx), sizes


@pytest.fixture(scope="module")
def vdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def scenes(vdir: Path) -> SyntheticVideo:
    # red [0, 2), green [2, 3.6), blue [3.6, 6) at 25 fps, 64x48: 150 frames
    return make_scenes(vdir / "scenes.mp4")


@pytest.fixture(scope="module")
def odd(vdir: Path) -> SyntheticVideo:
    return make_scenes(vdir / "odd.mp4", (("white", 1.0), ("magenta", 1.0)), 321, 241, 10)


@pytest.fixture(scope="module")
def vfr(vdir: Path) -> SyntheticVideo:
    return make_vfr(vdir / "vfr.mp4")


@pytest.fixture(scope="module")
def broken(vdir: Path) -> dict[str, Path]:
    return make_broken(vdir / "broken")


@pytest.fixture(params=["ffprobe", "ffmpeg"])
def prober(request: pytest.FixtureRequest) -> str | None:
    """The ffprobe binary to use, or None for the ffmpeg-only path."""
    if request.param == "ffprobe":
        if SYSTEM_FFPROBE is None:
            pytest.skip("no ffprobe on PATH")
        return SYSTEM_FFPROBE
    return None


# --------------------------------------------------------------------------- binaries


def test_find_ffmpeg_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    exe = imageio_ffmpeg_exe()
    monkeypatch.setenv("VIDEOMEM_FFMPEG", exe)
    assert find_ffmpeg() == exe
    monkeypatch.setenv("VIDEOMEM_FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(DecodeError, match="not an executable"):
        find_ffmpeg()
    monkeypatch.delenv("VIDEOMEM_FFMPEG")
    assert os.access(find_ffmpeg(), os.X_OK)


def test_ffprobe_env_none_forces_ffmpeg_path(
    monkeypatch: pytest.MonkeyPatch, scenes: SyntheticVideo
) -> None:
    monkeypatch.setenv("VIDEOMEM_FFPROBE", "none")
    assert find_ffprobe() is None
    assert probe(scenes.path).probed_with == "ffmpeg"
    if SYSTEM_FFPROBE:
        monkeypatch.delenv("VIDEOMEM_FFPROBE")
        assert probe(scenes.path).probed_with == "ffprobe"


def test_imageio_ffmpeg_alone_probes_and_decodes(
    monkeypatch: pytest.MonkeyPatch, scenes: SyntheticVideo
) -> None:
    # The pip-only setup: the imageio binary, no ffprobe anywhere.
    monkeypatch.setenv("VIDEOMEM_FFMPEG", imageio_ffmpeg_exe())
    monkeypatch.setenv("VIDEOMEM_FFPROBE", "none")
    src = probe(scenes.path)
    assert (src.probed_with, src.width, src.height, src.fps) == ("ffmpeg", 64, 48, 25.0)
    frames, ts, _, _ = collect(decode(scenes.path, DecodeConfig(fps=1.0), src))
    assert [frame_color(f) for f in frames] == [scenes.color_at(t) for t in ts]


# --------------------------------------------------------------------------- probe


def test_probe_synthetic(scenes: SyntheticVideo, prober: str | None) -> None:
    src = probe(scenes.path, ffprobe=prober)
    assert src.has_video and src.codec == "h264" and src.rotation == 0
    assert (src.width, src.height, src.display_size) == (64, 48, (48, 64))
    assert src.fps == pytest.approx(25.0)
    assert src.duration_s == pytest.approx(scenes.duration, abs=0.02)
    assert src.num_frames == (150 if prober else None)
    assert src.probed_with == ("ffprobe" if prober else "ffmpeg")
    assert src.size_bytes == scenes.path.stat().st_size
    assert src.video_id == content_video_id(scenes.path)


def test_probe_odd_size_and_rotation(odd: SyntheticVideo, vdir: Path, prober: str | None) -> None:
    src = probe(odd.path, ffprobe=prober)
    assert (src.width, src.height, src.fps) == (321, 241, 10.0)
    rot = make_rotated(vdir / "rot90_probe.mp4", 90)
    src = probe(rot.path, ffprobe=prober)
    assert (src.width, src.height, src.rotation) == (64, 32, 90)
    assert src.display_size == (64, 32)


def test_probe_vfr(vfr: SyntheticVideo, prober: str | None) -> None:
    src = probe(vfr.path, ffprobe=prober)
    # 80 frames over ~6 s: the average rate, not the 25 fps peak
    assert src.fps is not None and 12.0 < src.fps < 15.0
    assert src.duration_s == pytest.approx(vfr.duration, abs=0.15)


def test_probe_paths_agree_on_real_clips(shared_testdata: Path) -> None:
    if SYSTEM_FFPROBE is None:
        pytest.skip("no ffprobe on PATH")
    clips = sorted(shared_testdata.glob("*.mp4"))
    assert clips
    for clip in clips:
        a = probe(clip, ffprobe=SYSTEM_FFPROBE)
        b = probe(clip, ffprobe=None)
        assert (a.width, a.height, a.codec, a.rotation, a.video_id) == (
            b.width,
            b.height,
            b.codec,
            b.rotation,
            b.video_id,
        ), clip
        assert a.fps == pytest.approx(b.fps, rel=1e-6), clip
        # ffmpeg prints the container duration (audio included) to 10 ms
        assert a.duration_s == pytest.approx(b.duration_s, abs=0.05), clip
    bikes = probe(shared_testdata / "bikes.mp4", ffprobe=SYSTEM_FFPROBE)
    assert (bikes.width, bikes.height, bikes.fps, bikes.num_frames) == (640, 272, 25.0, 250)


# --------------------------------------------------------------------------- video id


def test_content_video_id_stable_across_paths_and_copies(
    scenes: SyntheticVideo, odd: SyntheticVideo, tmp_path: Path
) -> None:
    copy = tmp_path / "elsewhere" / "renamed.mkv"
    copy.parent.mkdir()
    shutil.copy(scenes.path, copy)
    assert content_video_id(copy) == content_video_id(scenes.path)
    assert probe(copy).video_id == probe(scenes.path).video_id
    assert content_video_id(odd.path) != content_video_id(scenes.path)


def test_content_video_id_large_file_samples_and_is_pinned(tmp_path: Path) -> None:
    data = bytearray((np.arange(3_000_000) * 7 % 251).astype(np.uint8).tobytes())
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    vid = content_video_id(f)
    # pinned: the id must not change between runs or versions (stored memories key on it)
    assert vid == "3f8a13c8fb85439ee1b519df"
    data[-1] ^= 1  # the last slice is sampled
    f.write_bytes(data)
    assert content_video_id(f) != vid
    data[-1] ^= 1
    f.write_bytes(data + b"\0")  # size is part of the id
    assert content_video_id(f) != vid


# --------------------------------------------------------------------------- fps sampling


def test_decode_fps_counts_timestamps_colours(scenes: SyntheticVideo) -> None:
    cfg = DecodeConfig(fps=2.0, batch_size=5)
    frames, ts, idx, sizes = collect(decode(scenes.path, cfg))
    assert len(frames) == round(scenes.duration * cfg.fps)  # 12
    assert sizes == [5, 5, 2]
    assert frames.shape[1:] == (48, 64, 3)
    np.testing.assert_allclose(ts, np.arange(12) / 2.0)
    np.testing.assert_array_equal(idx, np.floor(ts * 25 + 1e-6).astype(np.int64))
    assert [frame_color(f) for f in frames] == [scenes.color_at(t) for t in ts]
    # the frame on screen at t: t = 3.6 is exactly the first blue frame
    frames, ts, _, _ = collect(decode(scenes.path, DecodeConfig(fps=5.0)))
    assert len(frames) == 30 and ts[18] == pytest.approx(3.6)
    assert frame_color(frames[17]) == "green" and frame_color(frames[18]) == "blue"


def test_decode_fps_around_cuts(scenes: SyntheticVideo) -> None:
    frames, ts, _, _ = collect(decode(scenes.path, DecodeConfig(fps=25.0)))
    assert len(frames) == scenes.num_frames
    got = [frame_color(f) for f in frames]
    assert got == [scenes.color_at(t) for t in ts]
    for cut in scenes.cuts:  # the cut is exactly between two consecutive samples
        k = round(cut * 25)
        assert got[k - 1] != got[k]


def test_decode_window(scenes: SyntheticVideo) -> None:
    cfg = DecodeConfig(fps=2.0, start_s=1.0, end_s=4.0)
    frames, ts, idx, _ = collect(decode(scenes.path, cfg))
    np.testing.assert_allclose(ts, [1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    np.testing.assert_array_equal(idx, [25, 37, 50, 62, 75, 87])  # floor(t * 25)
    assert [frame_color(f) for f in frames] == [scenes.color_at(t) for t in ts]
    # a start that is not on a frame boundary, and an end past the video's end
    cfg = DecodeConfig(fps=1.0, start_s=1.97, end_s=100.0)
    frames, ts, _, _ = collect(decode(scenes.path, cfg))
    np.testing.assert_allclose(ts, [1.97, 2.97, 3.97, 4.97, 5.97])  # the video ends at 6
    assert [frame_color(f) for f in frames] == [scenes.color_at(t) for t in ts]


def test_decode_start_past_end_is_an_error(scenes: SyntheticVideo) -> None:
    with pytest.raises(DecodeError, match="past the end"):
        decode(scenes.path, DecodeConfig(start_s=60.0))


# --------------------------------------------------------------------------- num_frames


@pytest.mark.parametrize("n", [1, 8, 200])
def test_decode_num_frames_exact_and_uniform(scenes: SyntheticVideo, n: int) -> None:
    cfg = DecodeConfig(num_frames=n, batch_size=64)
    frames, ts, idx, _ = collect(decode(scenes.path, cfg))
    assert len(frames) == n  # exactly n, even more than the video's 150 frames
    expected = (np.arange(n) + 0.5) * scenes.duration / n
    np.testing.assert_allclose(ts, expected, atol=1e-9)
    np.testing.assert_allclose(sample_timestamps(cfg, probe(scenes.path)), expected, atol=1e-9)
    assert np.all(np.diff(idx) >= 0) and idx[-1] <= 149
    assert [frame_color(f) for f in frames] == [scenes.color_at(t) for t in ts]


def test_decode_num_frames_in_window(scenes: SyntheticVideo) -> None:
    cfg = DecodeConfig(num_frames=6, start_s=1.0, end_s=4.0)
    frames, ts, _, _ = collect(decode(scenes.path, cfg))
    np.testing.assert_allclose(ts, 1.0 + (np.arange(6) + 0.5) * 0.5)
    assert [frame_color(f) for f in frames] == [scenes.color_at(t) for t in ts]


def test_sampled_frames_equal_the_full_decode(shared_testdata: Path) -> None:
    """Fast path vs naive reference: every sampled frame is byte-identical to the
    frame_index-th frame of a decode of every frame (a 29.97 fps real clip)."""
    clip = shared_testdata / "carphone_pristine.mp4"
    src = probe(clip)
    every, ts_all, idx_all, _ = collect(decode(clip, DecodeConfig(fps=src.fps), src))
    assert len(every) == 120 and src.num_frames in (120, None)  # None: ffmpeg-only probe
    np.testing.assert_array_equal(idx_all, np.arange(120))
    for cfg in (
        DecodeConfig(fps=3.0),
        DecodeConfig(num_frames=7),
        DecodeConfig(fps=2.5, start_s=0.9),
    ):
        frames, ts, idx, _ = collect(decode(clip, cfg, src))
        assert len(frames) == (len(sample_timestamps(cfg, src)) if cfg.num_frames else len(frames))
        for f, i in zip(frames, idx, strict=True):
            np.testing.assert_array_equal(f, every[i])


# --------------------------------------------------------------------------- size & aspect


def _black_rows(frame: np.ndarray) -> np.ndarray:
    return np.all(frame.reshape(frame.shape[0], -1) == 0, axis=1)


def _black_cols(frame: np.ndarray) -> np.ndarray:
    return np.all(frame.transpose(1, 0, 2).reshape(frame.shape[1], -1) == 0, axis=1)


def test_aspect_policies_on_odd_size(odd: SyntheticVideo) -> None:
    def first(aspect: str) -> np.ndarray:
        cfg = DecodeConfig(fps=1.0, size=(64, 64), aspect=aspect)  # type: ignore[arg-type]
        frames, _, _, _ = collect(decode(odd.path, cfg))
        assert frames.shape == (2, 64, 64, 3)
        assert frame_color(frames[1][32:33]) == "magenta"
        return frames[0]

    pad = first("pad")  # 321x241 -> 64x48 centred: 8 black rows top and bottom
    np.testing.assert_array_equal(_black_rows(pad), [True] * 8 + [False] * 48 + [True] * 8)
    assert not _black_cols(pad).any()
    assert mean_rgb(pad[8:56]) == pytest.approx([255, 255, 255], abs=3)
    for aspect in ("crop", "stretch"):  # fills the frame: no bars
        assert mean_rgb(first(aspect)) == pytest.approx([255, 255, 255], abs=3)


def test_pad_portrait_gets_side_bars_and_crop_cuts_centre(vdir: Path) -> None:
    rot = make_rotated(vdir / "rot90_aspect.mp4", 90)  # displays 32 wide x 64 tall
    frames, _, _, _ = collect(decode(rot.path, DecodeConfig(fps=1.0, size=(32, 32))))
    cols = _black_cols(frames[0])
    np.testing.assert_array_equal(cols, [True] * 8 + [False] * 16 + [True] * 8)
    # crop keeps the middle: the rotated frame's left half is blue, right half red
    frames, _, _, _ = collect(decode(rot.path, DecodeConfig(fps=1.0, size=(16, 32), aspect="crop")))
    assert frame_color(frames[0][:, :14]) == "blue" and frame_color(frames[0][:, 18:]) == "red"


def test_pad_uses_display_aspect_of_non_square_pixels(shared_testdata: Path) -> None:
    # carphone: 176x144 coded, SAR 128:117, so display aspect 1408:1053 (about 1.337)
    clip = shared_testdata / "carphone_pristine.mp4"
    frames, _, _, _ = collect(decode(clip, DecodeConfig(fps=1.0, size=(100, 100))))
    rows = _black_rows(frames[0])
    assert rows[:12].all() and rows[-12:].all() and not rows[14:86].any()
    assert not _black_cols(frames[0]).any()


# --------------------------------------------------------------------------- rotation


@pytest.mark.parametrize(
    ("rotation", "shape", "where_red"),
    [(90, (64, 32), "right"), (180, (32, 64), "bottom"), (270, (64, 32), "left")],
)
def test_rotation_is_honoured(
    vdir: Path, prober: str | None, rotation: int, shape: tuple[int, int], where_red: str
) -> None:
    rot = make_rotated(vdir / f"rot{rotation}.mp4", rotation)
    src = probe(rot.path, ffprobe=prober)
    assert src.rotation == rotation
    frames, ts, _, _ = collect(decode(rot.path, DecodeConfig(fps=2.0), src))
    assert frames.shape == (4, *shape, 3)
    h, w = shape
    halves = {
        "right": (frames[0][:, w // 2 + 2 :], frames[0][:, : w // 2 - 2]),
        "left": (frames[0][:, : w // 2 - 2], frames[0][:, w // 2 + 2 :]),
        "bottom": (frames[0][h // 2 + 2 :], frames[0][: h // 2 - 2]),
    }[where_red]
    assert frame_color(halves[0]) == "red" and frame_color(halves[1]) == "blue"
    assert frame_color(frames[3][: h // 4]) in ("green", "yellow")


def test_ffmpeg_autorotation_agrees_with_probe(vdir: Path) -> None:
    """Our explicit transpose matches what ffmpeg itself does when it autorotates."""
    import subprocess

    rot = make_rotated(vdir / "rot90_auto.mp4", 90)
    cmd = [find_ffmpeg(), "-v", "error", "-i", str(rot.path), "-frames:v", "1"]
    raw = subprocess.run(
        [*cmd, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True
    ).stdout
    ours = next(iter(decode(rot.path, DecodeConfig(fps=1.0)))).frames[0]
    assert len(raw) == ours.size
    np.testing.assert_array_equal(np.frombuffer(raw, np.uint8).reshape(ours.shape), ours)


# --------------------------------------------------------------------------- variable frame rate


def test_vfr_samples_the_frame_on_screen(vfr: SyntheticVideo) -> None:
    src = probe(vfr.path)
    frames, ts, _, _ = collect(decode(vfr.path, DecodeConfig(fps=1.0), src))
    assert abs(len(frames) - src.duration_s * 1.0) <= 1
    assert [frame_color(f) for f in frames] == [vfr.color_at(t) for t in ts]
    frames, ts, _, _ = collect(decode(vfr.path, DecodeConfig(fps=10.0), src))
    assert abs(len(frames) - src.duration_s * 10.0) <= 1
    assert [frame_color(f) for f in frames] == [vfr.color_at(t) for t in ts]
    frames, ts, _, _ = collect(decode(vfr.path, DecodeConfig(num_frames=12), src))
    assert len(frames) == 12
    assert [frame_color(f) for f in frames] == [vfr.color_at(t) for t in ts]


# --------------------------------------------------------------------------- real clips


def test_real_clips_decode(shared_testdata: Path) -> None:
    for clip in sorted(shared_testdata.glob("*.mp4")):
        src = probe(clip)
        cfg = DecodeConfig(fps=1.0, size=(224, 224), batch_size=4)
        frames, ts, idx, _ = collect(decode(clip, cfg, src))
        assert src.duration_s is not None
        assert abs(len(frames) - src.duration_s) <= 1, clip
        assert frames.shape[1:] == (224, 224, 3)
        np.testing.assert_allclose(ts, np.arange(len(frames)))
        assert frames.std() > 10  # real footage, not a blank frame


# --------------------------------------------------------------------------- bad input

REASONS = {
    "missing": "file not found",
    "empty": "empty file",
    "random": "not a",
    "text": "not a",
    "truncated": "moov atom",
    "audio": "no video stream",
    "zero_duration": "zero-duration",
}


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_bad_input_raises_readable_decode_error(
    broken: dict[str, Path], prober: str | None, kind: str
) -> None:
    before = child_pids()
    with pytest.raises(DecodeError) as info:
        probe(broken[kind], ffprobe=prober)
    err = info.value
    assert isinstance(err, VideomemError)
    assert REASONS[kind] in err.reason, err.reason
    assert str(broken[kind]) in str(err)
    if kind in ("random", "text", "truncated"):
        assert err.stderr_tail  # what ffmpeg/ffprobe said comes along
    with pytest.raises(DecodeError, match=REASONS[kind]):
        list(decode(broken[kind], DecodeConfig()))
    assert child_pids() <= before


def test_truncated_file_with_index_fails_in_decode(vdir: Path, prober: str | None) -> None:
    path = vdir / "truncated_faststart.mp4"
    if not path.exists():
        make_truncated_faststart(path)
    src = probe(path, ffprobe=prober)  # the index survived the cut
    before = child_pids()
    with pytest.raises(DecodeError, match="truncated or corrupt") as info:
        list(decode(path, DecodeConfig(fps=25.0), src))
    assert info.value.stderr_tail
    assert child_pids() <= before


# --------------------------------------------------------------------------- processes


def test_no_child_after_normal_end(scenes: SyntheticVideo) -> None:
    before = child_pids()
    seen: set[int] = set()
    for _ in decode(scenes.path, DecodeConfig(fps=5.0, batch_size=2)):
        seen |= child_pids() - before
    assert seen  # ffmpeg was a child while streaming
    assert child_pids() <= before


def test_no_child_after_early_stop(scenes: SyntheticVideo) -> None:
    before = child_pids()
    # big frames so ffmpeg is still blocked on the pipe when we stop
    cfg = DecodeConfig(fps=25.0, size=(256, 256), batch_size=1)
    gen = decode(scenes.path, cfg)
    next(gen)
    running = child_pids() - before
    assert running
    gen.close()  # what `break` out of a for loop does once the generator is dropped
    assert child_pids() <= before
    # the same through a plain `break` and garbage collection of the loop's iterator
    for _ in decode(scenes.path, cfg):
        break
    assert child_pids() <= before


def test_no_child_after_consumer_error(scenes: SyntheticVideo) -> None:
    before = child_pids()

    def consume() -> None:
        for _ in decode(scenes.path, DecodeConfig(fps=25.0, size=(256, 256), batch_size=1)):
            raise KeyError("consumer failed")

    with pytest.raises(KeyError):
        consume()
    assert child_pids() <= before


def test_ffmpeg_failure_mid_decode(scenes: SyntheticVideo, broken: dict[str, Path]) -> None:
    # The file changed between probe and decode: ffmpeg itself fails.
    before = child_pids()
    src = probe(scenes.path)
    with pytest.raises(DecodeError, match="ffmpeg failed") as info:
        list(decode(broken["text"], DecodeConfig(), src))
    assert info.value.stderr_tail
    assert child_pids() <= before


def test_hung_ffmpeg_is_killed_after_timeout(scenes: SyntheticVideo, tmp_path: Path) -> None:
    fifo = tmp_path / "never_written.mp4"
    os.mkfifo(fifo)  # ffmpeg blocks forever opening a FIFO nobody writes to
    src = probe(scenes.path)
    before = child_pids()
    t0 = time.monotonic()
    with pytest.raises(DecodeError, match="no output for 1 s"):
        list(decode(fifo, DecodeConfig(timeout_s=1.0), src))
    assert time.monotonic() - t0 < 10
    assert child_pids() <= before


def test_slow_consumer_is_not_a_hung_ffmpeg() -> None:
    # Only time spent waiting inside readinto() counts towards the timeout: a consumer
    # that pauses longer than it, while ffmpeg sits blocked on the full pipe (3 MiB of
    # frames, a 1 MiB pipe), must not get ffmpeg killed.
    frame = 128 * 128 * 3
    cmd = [find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi"]
    cmd += ["-i", "testsrc2=s=128x128:r=25", "-frames:v", "64", "-f", "rawvideo"]
    cmd += ["-pix_fmt", "rgb24", "pipe:"]
    buf = np.empty(64 * frame, dtype=np.uint8)
    with ffmpeg_module.FFmpegPipe(cmd, "testsrc2", timeout_s=0.3) as pipe:
        got = pipe.readinto(buf[:frame].data)
        time.sleep(1.0)  # no read under way: the minder must leave ffmpeg alone
        got += pipe.readinto(buf[frame:].data)
        assert pipe.wait() == 0
    assert not pipe.timed_out
    assert got == buf.nbytes


def test_stall_after_stderr_closed_is_killed() -> None:
    # The timeout does not hang on stderr: a child that closes it and then stalls is
    # still killed (ffmpeg never closes stderr early; the pipe does not rely on it).
    before = child_pids()
    cmd = ["sh", "-c", "exec 2>&-; exec sleep 30"]
    with ffmpeg_module.FFmpegPipe(cmd, "sleep", timeout_s=0.5) as pipe:
        with pytest.raises(DecodeError, match="no output for 0.5 s"):
            pipe.readinto(memoryview(bytearray(8)))
        assert pipe.timed_out
    assert child_pids() <= before


def test_stderr_lines_split_across_reads_are_joined() -> None:
    # stderr is read in bursts: a line that arrives in two pieces is still one line.
    script = "printf 'first half, ' >&2; sleep 0.3; printf 'second half\\nlast' >&2; exit 3"
    with ffmpeg_module.FFmpegPipe(["sh", "-c", script], "sh", timeout_s=5) as pipe:
        assert pipe.readinto(memoryview(bytearray(8))) == 0
        assert pipe.wait() == 3
        assert pipe.stderr_tail() == "first half, second half\nlast"


def test_loud_stderr_does_not_deadlock(
    scenes: SyntheticVideo, monkeypatch: pytest.MonkeyPatch
) -> None:
    # debug logging writes far more than the (smallest possible) stderr pipe holds:
    # without the drain thread ffmpeg would block on stderr and never finish.
    monkeypatch.setattr(plan_module, "LOGLEVEL", "debug")
    monkeypatch.setattr(ffmpeg_module, "PIPE_SIZE", 4096)
    done: list[int] = []

    def run() -> None:
        frames, _, _, _ = collect(decode(scenes.path, DecodeConfig(fps=25.0, timeout_s=20)))
        done.append(len(frames))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=30)
    assert done == [150]


# --------------------------------------------------------------------------- long video


@pytest.fixture(scope="module")
def long_video(vdir: Path) -> SyntheticVideo:
    return make_long(vdir / "long.mp4", num_frames=10_500)


@pytest.mark.slow
def test_long_video_bounded_memory(long_video: SyntheticVideo) -> None:
    src = probe(long_video.path)
    assert src.num_frames in (10_500, None)  # None: ffmpeg-only probe
    # one ffmpeg (segment-parallel decode has its own bound: tests/test_segments.py)
    cfg = DecodeConfig(fps=25.0, batch_size=64, segments=1)
    batch_bytes = cfg.batch_size * 24 * 32 * 3
    count = 0
    last_t = -1.0
    colours = set()
    tracemalloc.start()
    try:
        for b in decode(long_video.path, cfg, src):
            count += len(b)
            assert b.timestamps[0] > last_t
            last_t = float(b.timestamps[-1])
            colours.add(frame_color(b.frames[0]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 10_500
    assert colours == {"red", "green", "blue", "yellow", "magenta", "cyan"}
    # all frames would be 24 MB; we hold a few batches at most
    assert peak < 4 * batch_bytes + 512 * 1024, peak
    frames, ts, _, _ = collect(decode(long_video.path, DecodeConfig(num_frames=12), src))
    assert [frame_color(f) for f in frames] == [long_video.color_at(t) for t in ts]


# --------------------------------------------------------------------------- files & CLI


def test_iter_video_files(tmp_path: Path) -> None:
    for rel in ["b/z.mp4", "a.MKV", "b/a.webm", "notes.txt", ".hidden/x.mp4", "b/.y.mp4"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_video_files([tmp_path])]
    assert found == ["a.MKV", "b/a.webm", "b/z.mp4"]
    explicit = [tmp_path / "notes.txt", tmp_path / "missing.mp4"]
    assert list(iter_video_files(explicit)) == explicit
    assert ".mp4" in VIDEO_EXTENSIONS


def test_check_video_reports_rows(scenes: SyntheticVideo, broken: dict[str, Path]) -> None:
    row = check_video(scenes.path, DecodeConfig(fps=1.0))
    assert row["ok"] and row["frames"] == 6 and row["frame_shape"] == [48, 64, 3]
    assert row["video_id"] == content_video_id(scenes.path) and row["decode_fps"] > 0
    bad = check_video(broken["audio"], DecodeConfig())
    assert not bad["ok"] and "no video stream" in bad["error"]


def test_cli_probe(scenes: SyntheticVideo, broken: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner
    from videomem.jobs.cli import app

    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(scenes.path, folder / "good.mp4")
    shutil.copy(broken["text"], folder / "bad.mp4")
    runner = CliRunner()
    res = runner.invoke(app, ["probe", str(folder), "--json", "--fps", "2"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert [Path(r["path"]).name for r in rows] == ["bad.mp4", "good.mp4"]
    assert not rows[0]["ok"] and "not a" in rows[0]["error"]
    assert rows[1]["ok"] and rows[1]["frames"] == 12
    res = runner.invoke(app, ["probe", str(folder / "good.mp4"), "--frames", "5"])
    assert res.exit_code == 0 and "frames=5" in res.stdout, res.output
    res = runner.invoke(app, ["probe", str(folder / "bad.mp4"), str(tmp_path / "missing.mp4")])
    assert res.exit_code == 1
    assert "file not found" in res.output


def test_colours_table_is_distinct() -> None:
    # the checks above rely on every pair of test colours being far apart
    names = list(COLORS)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.linalg.norm(np.subtract(COLORS[a], COLORS[b])) >= 255


def test_decode_given_source_skips_probe_but_checks_file(
    scenes: SyntheticVideo, tmp_path: Path
) -> None:
    src = VideoSource(
        video_id="x",
        uri=str(scenes.path),
        size_bytes=1,
        width=64,
        height=48,
        fps=25.0,
        duration_s=6.0,
    )
    frames, _, _, _ = collect(decode(scenes.path, DecodeConfig(fps=1.0), src))
    assert len(frames) == 6
    with pytest.raises(DecodeError, match="file not found"):
        decode(tmp_path / "gone.mp4", DecodeConfig(), src)
