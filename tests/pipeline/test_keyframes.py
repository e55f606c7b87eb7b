"""Keyframe sampling (``DecodeConfig(sample="keyframes")``) against real ffmpeg: the
timestamps are the stream's own keyframes as an independent probe lists them, and the
frames are the exact decoder's frames at those times."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from videomem.memory.config import MemoryConfig
from videomem.memory.index_config import index_config_hash
from videomem.pipeline.decode import decode
from videomem.pipeline.errors import ConfigError, DecodeError
from videomem.pipeline.ffmpeg import find_ffmpeg, find_ffprobe
from videomem.pipeline.probe import probe
from videomem.pipeline.types import DecodeConfig

from tests.pipeline.test_decode import collect
from tests.videos import (
    imageio_ffmpeg_exe,
    make_long,
    make_rotated,
    make_scenes,
    make_truncated_faststart,
    make_vfr,
    run_ffmpeg,
)


def probed_keyframes(path: Path) -> np.ndarray:
    """Keyframe times from packet flags, read without decoding: ffprobe when there is
    one, else the framecrc muxer (flags printed unless exactly "key"); both on the
    timeline decode() uses (the container's start time removed)."""
    exe = find_ffprobe()
    if exe is not None:
        fmt = subprocess.run(
            [exe, "-v", "error", "-show_entries", "format=start_time", "-of", "csv=p=0", path],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        start = float(fmt) if fmt not in ("", "N/A") else 0.0
        out = subprocess.run(
            [exe, "-v", "error", "-select_streams", "v:0", "-show_entries",
             "packet=pts_time,flags", "-of", "csv=p=0", path],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        times = [float(ln.split(",")[0]) - start for ln in out.splitlines() if "K" in ln]
        return np.sort(np.array(times))
    out = subprocess.run(
        [find_ffmpeg(), "-v", "error", "-i", path, "-map", "0:v:0", "-c", "copy", "-f",
         "framecrc", "-"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    tb = next(ln for ln in out.splitlines() if ln.startswith("#tb 0:")).split()[-1]
    num, den = map(int, tb.split("/"))
    pts = [int(ln.split(",")[2]) for ln in out.splitlines() if ln[:1] == "0" and "F=" not in ln]
    return np.sort(np.array(pts) * num / den)


def thin(times: np.ndarray, fps: float) -> np.ndarray:
    """Naive reference: keep a keyframe when it is >= 1/fps (1 ms slack) after the
    last one kept."""
    kept: list[float] = []
    for t in times:
        if not kept or t - kept[-1] >= 1.0 / fps - 1e-3:
            kept.append(float(t))
    return np.array(kept)


def exact_frame_at(path: Path, t: float, cfg: DecodeConfig) -> np.ndarray:
    """The exact decoder's frame on screen at ``t``."""
    exact = DecodeConfig(fps=1.0, start_s=t, size=cfg.size, aspect=cfg.aspect, segments=1)
    first = next(iter(decode(path, exact)))
    assert first.timestamps[0] == pytest.approx(t)
    return first.frames[0]


@pytest.fixture(scope="module")
def vdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keyframes")


@pytest.fixture(scope="module")
def videos(vdir: Path, shared_testdata: Path) -> dict[str, Path]:
    cuts = tuple(
        (c, d)
        for c, d in zip(
            ["red", "green", "blue", "white"] * 3, [0.36, 0.52, 0.2, 0.84] * 3, strict=True
        )
    )
    out = {
        "cuts": make_scenes(vdir / "cuts.mp4", cuts, gop=7).path,
        "vfr": make_vfr(vdir / "vfr.mp4", gop=4).path,
        "rotated": make_rotated(vdir / "rotated.mp4", 90, gop=6).path,
        "bikes": shared_testdata / "bikes.mp4",
    }
    # a real clip with more keyframes than it ships with, B-frames kept
    bunny = vdir / "bunny_gop.mp4"
    run_ffmpeg(["-i", str(shared_testdata / "bigbuckbunny.mp4"), "-c:v", "libx264", "-preset",
                "veryfast", "-g", "20", "-an", str(bunny)])  # fmt: skip
    out["bunny"] = bunny
    return out


@pytest.mark.parametrize("name", ["cuts", "vfr", "rotated", "bikes", "bunny"])
def test_keyframe_timestamps_and_frames(videos: dict[str, Path], name: str) -> None:
    path = videos[name]
    keys = probed_keyframes(path)
    assert len(keys) >= 3, keys  # the test needs several keyframes to mean something
    cfg = DecodeConfig(sample="keyframes", fps=None, size=(40, 48), batch_size=3)
    frames, ts, idx, _ = collect(decode(path, cfg))
    np.testing.assert_allclose(ts, keys, rtol=0, atol=2e-6)
    src = probe(path)
    if src.fps:
        assert np.array_equal(
            idx,
            np.floor((ts + 1e-3) * src.fps + 1e-9)
            .astype(np.int64)
            .clip(max=(src.num_frames or 10**9) - 1),
        )
    for t, frame in list(zip(ts, frames, strict=True))[:8]:
        assert np.array_equal(frame, exact_frame_at(path, float(t), cfg)), t


@pytest.mark.parametrize("fps", [0.45, 2.5])
def test_keyframes_thinned_to_at_most_fps(videos: dict[str, Path], fps: float) -> None:
    dropped = 0
    for name in ("cuts", "bikes"):
        keys = probed_keyframes(videos[name])
        _, ts, _, _ = collect(decode(videos[name], DecodeConfig(sample="keyframes", fps=fps)))
        expected = thin(keys, fps)
        dropped += len(keys) - len(expected)
        np.testing.assert_allclose(ts, expected, rtol=0, atol=2e-6)
        assert np.all(np.diff(ts) >= 1 / fps - 1e-3)
    assert dropped > 0  # thinning did something


def test_keyframes_in_a_window(videos: dict[str, Path]) -> None:
    path = videos["bikes"]
    keys = probed_keyframes(path)
    cfg = DecodeConfig(sample="keyframes", fps=None, start_s=1.0, end_s=7.0)
    _, ts, _, _ = collect(decode(path, cfg))
    np.testing.assert_allclose(ts, keys[(keys >= 1.0) & (keys < 7.0)], rtol=0, atol=2e-6)


def test_keyframes_with_the_bundled_ffmpeg(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEOMEM_FFMPEG", imageio_ffmpeg_exe())
    monkeypatch.setenv("VIDEOMEM_FFPROBE", "none")
    path = videos["vfr"]
    _, ts, _, _ = collect(decode(path, DecodeConfig(sample="keyframes", fps=None)))
    np.testing.assert_allclose(ts, probed_keyframes(path), rtol=0, atol=2e-6)


def test_window_without_keyframes_is_a_clear_error(vdir: Path) -> None:
    long = make_long(vdir / "long.mp4", num_frames=750).path  # keyframes every 10 s
    cfg = DecodeConfig(sample="keyframes", start_s=3.0, end_s=8.0)
    with pytest.raises(DecodeError, match="no keyframe was decoded"):
        collect(decode(long, cfg))


def test_keyframe_less_and_broken_streams_fail_clearly(vdir: Path) -> None:
    # An MPEG-TS cut after its only keyframe (headers repeated in every packet): the
    # demuxer finds the stream, but no keyframe is left.
    whole = vdir / "one_key.ts"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-t", "4", "-c:v", "libx264",
                "-preset", "ultrafast", "-g", "1000", "-flags", "+global_header", "-bsf:v",
                "dump_extra=freq=all", "-f", "mpegts", str(whole)])  # fmt: skip
    data = whole.read_bytes()
    cut = vdir / "no_key.ts"
    cut.write_bytes(data[(len(data) // 188 // 3) * 188 :])
    assert len(probed_keyframes(cut)) == 0
    cfg = DecodeConfig(sample="keyframes", size=(32, 32))
    with pytest.raises(DecodeError):
        collect(decode(cut, cfg))
    truncated = make_truncated_faststart(vdir / "truncated.mp4")
    with pytest.raises(DecodeError):
        collect(decode(truncated, cfg))


def test_keyframe_config() -> None:
    with pytest.raises(ConfigError, match="num_frames"):
        DecodeConfig(sample="keyframes", num_frames=8)
    with pytest.raises(ConfigError, match="sample mode"):
        DecodeConfig(sample="every")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fps"):
        DecodeConfig(fps=None)  # exact mode needs a rate
    DecodeConfig(sample="keyframes", fps=None)  # every keyframe
    mem = MemoryConfig()
    # the mode is part of the stored key; existing keys (exact mode) are unchanged
    assert "sample" not in DecodeConfig().hashed_dict()
    assert index_config_hash(DecodeConfig(sample="keyframes"), mem) != index_config_hash(
        DecodeConfig(), mem
    )
    # speed knobs are not
    assert index_config_hash(DecodeConfig(segments=4, device="cuda"), mem) == index_config_hash(
        DecodeConfig(), mem
    )


def test_cli_index_with_keyframe_sampling(
    videos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner
    from videomem.jobs.cli import app

    monkeypatch.setenv("VIDEOMEM_CACHE", str(tmp_path / "cache"))
    path = videos["bikes"]
    args = ["index", str(path), "--store", str(tmp_path / "store"), "--model", "tiny"]
    args += ["--device", "cpu", "--json", "--fps", "0.45"]
    r = CliRunner().invoke(app, [*args, "--sample", "keyframes"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["frames"] == len(thin(probed_keyframes(path), 0.45))
    r = CliRunner().invoke(app, [*args, "--sample", "every"], catch_exceptions=False)
    assert r.exit_code == 2 and "unknown sample mode" in r.output
