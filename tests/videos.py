"""Synthetic test videos made by ffmpeg at test time, with known structure.

Every maker returns a :class:`SyntheticVideo` that says what is on screen when: a
sequence of solid-colour scenes with known cut times (optionally split top/bottom so
rotation is visible). Colours are far apart in RGB so a decoded frame's mean colour
identifies its scene despite YUV rounding. Nothing here is committed as a binary;
other test files import these makers (``from tests.videos import make_scenes``).

Broken inputs (empty, random bytes, text, truncated, audio-only, zero-duration) are
made here too, so every test that needs one makes it the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: colours far apart in RGB (name -> (r, g, b))
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
}


def ffmpeg_exe() -> str:
    """The ffmpeg that videomem itself would use."""
    from videomem.pipeline.ffmpeg import find_ffmpeg

    return find_ffmpeg()


def imageio_ffmpeg_exe() -> str:
    """The static ffmpeg (>= 6) shipped by imageio-ffmpeg: it has no ffprobe."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


@dataclass(frozen=True)
class Scene:
    color: str  # key of COLORS
    start: float  # seconds, inclusive
    end: float  # seconds, exclusive
    bottom: str | None = None  # colour of the bottom half (None: same as top)


@dataclass(frozen=True)
class SyntheticVideo:
    """A generated video and the ground truth of what it shows."""

    path: Path
    width: int  # coded size
    height: int
    fps: float  # nominal rate (the highest segment rate for VFR videos)
    duration: float
    scenes: tuple[Scene, ...]
    rotation: int = 0  # clockwise degrees a player applies
    num_frames: int | None = None

    @property
    def cuts(self) -> list[float]:
        """Times where one scene ends and the next starts."""
        return [s.start for s in self.scenes[1:]]

    def scene_at(self, t: float) -> Scene:
        for s in self.scenes:
            if s.start <= t < s.end:
                return s
        return self.scenes[-1]

    def color_at(self, t: float) -> str:
        return self.scene_at(t).color


def run_ffmpeg(args: Sequence[str], exe: str | None = None) -> None:
    """Run ffmpeg to make a test file; fail loudly with its stderr."""
    cmd = [exe or ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"making a test video failed: {' '.join(cmd)}\n{res.stderr}")


def _hex(color: str) -> str:
    r, g, b = COLORS[color]
    return f"0x{r:02X}{g:02X}{b:02X}"


def _encode_args(width: int, height: int, fast: bool = True, gop: int | None = None) -> list[str]:
    # libx264 4:2:0 needs even sizes; odd sizes use 4:4:4 (still H.264, still decodable)
    pix = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    args = ["-c:v", "libx264", "-preset", "ultrafast" if fast else "medium", "-pix_fmt", pix]
    return args + (["-g", str(gop)] if gop else [])  # gop: a keyframe every gop frames


def _scene_inputs(
    scenes: Sequence[tuple[str, float] | tuple[str, float, str]],
    width: int,
    height: int,
    fps: float,
) -> tuple[list[str], str, tuple[Scene, ...]]:
    """lavfi inputs + a concat filter for solid (or top/bottom split) colour scenes."""
    args: list[str] = []
    chains: list[str] = []
    out: list[Scene] = []
    t = 0.0
    n_in = 0
    for k, spec in enumerate(scenes):
        color, dur = spec[0], float(spec[1])
        bottom = spec[2] if len(spec) > 2 else None  # type: ignore[misc]
        # whole frames only (the color source rounds a partial frame up): trim to n
        n = max(1, round(dur * fps))
        src = f"r={fps}:d={n / fps + 1.0}"
        trim = f"trim=end_frame={n},setpts=PTS-STARTPTS"
        if bottom is None:
            # the color source makes even sizes only: make it larger, then crop (in 4:4:4)
            ew, eh = width + width % 2, height + height % 2
            args += ["-f", "lavfi", "-i", f"color=c={_hex(color)}:s={ew}x{eh}:{src}"]
            chains.append(f"[{n_in}:v]format=yuv444p,crop={width}:{height}:0:0,{trim}[c{k}]")
            n_in += 1
        else:
            top_h = height // 2
            for c, h in ((color, top_h), (bottom, height - top_h)):
                args += ["-f", "lavfi", "-i", f"color=c={_hex(c)}:s={width}x{h}:{src}"]
            chains.append(f"[{n_in}:v][{n_in + 1}:v]vstack,{trim}[c{k}]")
            n_in += 2
        out.append(Scene(color, t, t + n / fps, bottom))
        t += n / fps
    labels = "".join(f"[c{k}]" for k in range(len(scenes)))
    graph = ";".join(chains) + f";{labels}concat=n={len(scenes)}:v=1:a=0[v]"
    return args, graph, tuple(out)


def make_scenes(
    path: str | os.PathLike[str],
    scenes: Sequence[tuple[str, float] | tuple[str, float, str]] = (
        ("red", 2.0),
        ("green", 1.6),
        ("blue", 2.4),
    ),
    width: int = 64,
    height: int = 48,
    fps: float = 25.0,
    exe: str | None = None,
    gop: int | None = None,
) -> SyntheticVideo:
    """Solid colour scenes with cuts at the cumulative durations (rounded to whole
    frames); a scene given as (top_colour, seconds, bottom_colour) is split
    horizontally. ``gop``: a keyframe every ``gop`` frames (default: x264's)."""
    path = Path(path)
    inputs, graph, parts = _scene_inputs(scenes, width, height, fps)
    enc = _encode_args(width, height, gop=gop)
    run_ffmpeg([*inputs, "-filter_complex", graph, "-map", "[v]", *enc, str(path)], exe)
    duration = parts[-1].end
    return SyntheticVideo(path, width, height, fps, duration, parts, 0, round(duration * fps))


def make_pattern(
    path: str | os.PathLike[str],
    seconds: float,
    rate: int = 5,
    size: str = "64x48",
    src: str = "testsrc2",
) -> Path:
    """A moving test pattern from one of ffmpeg's lavfi sources (testsrc2, smptebars,
    mandelbrot …): real H.264 content for pipeline tests that need no ground truth."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        ["-f", "lavfi", "-i", f"{src}=size={size}:rate={rate}", "-t", str(seconds),
         *_encode_args(*map(int, size.split("x"))), str(path)]
    )  # fmt: skip
    return path


def make_rotated(
    path: str | os.PathLike[str],
    rotation: int = 90,
    width: int = 64,
    height: int = 32,
    fps: float = 25.0,
    gop: int | None = None,
) -> SyntheticVideo:
    """Top-red/bottom-blue then top-green/bottom-yellow, tagged with a display rotation
    of ``rotation`` degrees clockwise (coded pixels are not rotated)."""
    path = Path(path)
    plain = path.with_name(path.stem + ".unrotated.mp4")
    scenes = (("red", 1.0, "blue"), ("green", 1.0, "yellow"))
    base = make_scenes(plain, scenes, width, height, fps, gop=gop)
    # The display matrix angle is counter-clockwise: a clockwise turn is its negative.
    exe = imageio_ffmpeg_exe()
    try:
        run_ffmpeg(
            ["-display_rotation", str(-rotation), "-i", str(plain), "-c", "copy", str(path)], exe
        )
    except RuntimeError:  # ffmpeg < 6: the mov muxer's legacy tag (ccw like the matrix)
        run_ffmpeg(
            [
                "-i",
                str(plain),
                "-c",
                "copy",
                "-metadata:s:v",
                f"rotate={(-rotation) % 360}",
                str(path),
            ]
        )
    plain.unlink()
    return SyntheticVideo(
        path, width, height, fps, base.duration, base.scenes, rotation % 360, base.num_frames
    )


def make_vfr(
    path: str | os.PathLike[str], width: int = 64, height: int = 48, gop: int | None = None
) -> SyntheticVideo:
    """Variable frame rate: red 2 s at 5 fps, green 2 s at 25 fps, blue 2 s at 10 fps
    (10 + 50 + 20 = 80 frames), timestamps kept as they are (-fps_mode vfr)."""
    path = Path(path)
    segments = (("red", 5), ("green", 25), ("blue", 10))
    args: list[str] = []
    for color, rate in segments:
        args += ["-f", "lavfi", "-i", f"color=c={_hex(color)}:s={width}x{height}:r={rate}:d=2"]
    graph = "[0:v][1:v][2:v]concat=n=3:v=1:a=0,settb=1/1000[v]"
    run_ffmpeg(
        [*args, "-filter_complex", graph, "-map", "[v]", "-fps_mode", "vfr", "-video_track_timescale", "1000",
         *_encode_args(width, height, gop=gop), str(path)]
    )  # fmt: skip
    scenes = tuple(Scene(c, 2.0 * i, 2.0 * i + 2.0) for i, (c, _) in enumerate(segments))
    return SyntheticVideo(path, width, height, 25.0, 6.0, scenes, 0, 80)


def make_long(
    path: str | os.PathLike[str],
    num_frames: int = 10_500,
    width: int = 32,
    height: int = 24,
    fps: float = 25.0,
) -> SyntheticVideo:
    """A long low-resolution video of exactly ``num_frames`` frames: six colour scenes
    of (nearly) equal length."""
    colors = ("red", "green", "blue", "yellow", "magenta", "cyan")
    k = len(colors)
    counts = [num_frames * (i + 1) // k - num_frames * i // k for i in range(k)]  # sums exactly
    return make_scenes(
        path, tuple((c, n / fps) for c, n in zip(colors, counts, strict=True)), width, height, fps
    )


# --------------------------------------------------------------------------- broken inputs


def make_broken(directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Files that must fail with a DecodeError, by kind: missing, empty, random,
    text, truncated, audio, zero_duration. All of them fail in probe; see
    :func:`make_truncated_faststart` for one that fails only in decode. (Other tests
    count these files: add new kinds as separate makers.)"""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = {"missing": d / "missing.mp4", "empty": d / "empty.mp4"}
    out["empty"].write_bytes(b"")
    out["random"] = d / "random.mp4"
    out["random"].write_bytes(
        np.random.default_rng(0).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes()
    )
    out["text"] = d / "notes.mp4"
    out["text"].write_text("This is a text file, not a video.\n" * 20)
    # A normal mp4 keeps its index (moov) at the end: cut in half, it has none.
    whole = make_scenes(d / "whole.mp4", (("red", 2.0), ("green", 2.0))).path
    data = whole.read_bytes()
    out["truncated"] = d / "truncated.mp4"
    out["truncated"].write_bytes(data[: len(data) // 2])
    whole.unlink()
    out["audio"] = d / "audio_only.mp4"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(out["audio"])]
    )
    # Encoding zero frames still writes a valid container: duration 0, no frames.
    out["zero_duration"] = d / "zero_duration.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=red:s=64x48:r=25:d=1", "-frames:v", "0", *_encode_args(64, 48),
                str(out["zero_duration"])])  # fmt: skip
    return out


def make_truncated_faststart(path: str | os.PathLike[str]) -> Path:
    """An mp4 with its index moved to the front (faststart), cut in half: it still
    probes (the index survived) but its frame data is gone, so decoding must fail."""
    path = Path(path)
    whole = make_scenes(
        path.with_name(path.stem + ".whole.mp4"), (("red", 2.0), ("green", 2.0))
    ).path
    fast = path.with_name(path.stem + ".faststart.mp4")
    run_ffmpeg(["-i", str(whole), "-c", "copy", "-movflags", "+faststart", str(fast)])
    data = fast.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    whole.unlink()
    fast.unlink()
    return path


# --------------------------------------------------------------------------- checks


def mean_rgb(frame: np.ndarray) -> np.ndarray:
    """frame uint8 [H, W, 3] -> float [3] mean colour."""
    return frame.reshape(-1, 3).mean(axis=0)


def nearest_color(rgb: np.ndarray | Sequence[float]) -> str:
    """Name of the COLORS entry nearest to an RGB triple."""
    v = np.asarray(rgb, dtype=np.float64)
    return min(COLORS, key=lambda k: float(np.linalg.norm(v - np.asarray(COLORS[k]))))


def frame_color(frame: np.ndarray) -> str:
    """Nearest named colour of a (solid) frame's mean."""
    return nearest_color(mean_rgb(frame))


def which_ffprobe() -> str | None:
    return shutil.which("ffprobe")


# --------------------------------------------------------------------------- real clips


@dataclass(frozen=True)
class Part:
    """One source clip inside a concatenated video."""

    name: str  # the source file's stem
    start: float  # seconds, inclusive
    end: float  # seconds, exclusive
    frames: int  # frames it contributes at the output rate


@dataclass(frozen=True)
class ConcatVideo:
    """Real clips joined end to end; the cuts are where one clip ends."""

    path: Path
    width: int
    height: int
    fps: float
    parts: tuple[Part, ...]

    @property
    def duration(self) -> float:
        return self.parts[-1].end

    @property
    def num_frames(self) -> int:
        return sum(p.frames for p in self.parts)

    @property
    def cuts(self) -> list[float]:
        return [p.start for p in self.parts[1:]]

    @property
    def bounds(self) -> list[float]:
        """Scene bounds as ``memory.quality`` takes them: starts, then the end."""
        return [p.start for p in self.parts] + [self.duration]


def make_concat(
    path: str | os.PathLike[str],
    clips: Sequence[str | os.PathLike[str]],
    width: int = 320,
    height: int = 240,
    fps: int = 20,
    quantum: float = 0.25,
) -> ConcatVideo:
    """Join real clips of any size and rate into one H.264 video of ``width`` x
    ``height`` at ``fps`` with ffmpeg's concat filter: each clip is resampled to
    ``fps``, scaled to fit and centred on black bars (its aspect kept), and trimmed to
    whole ``quantum``-second lengths (so cuts fall exactly on a sampling grid of
    ``1 / quantum`` fps when ``fps * quantum`` is whole). Clip lengths come from
    probing the sources."""
    from videomem.pipeline.probe import probe

    if abs(fps * quantum - round(fps * quantum)) > 1e-9:
        raise ValueError(f"fps * quantum must be whole frames, got {fps} * {quantum}")
    args: list[str] = []
    chains: list[str] = []
    parts: list[Part] = []
    t = 0.0
    for k, clip in enumerate(clips):
        src = probe(clip)
        if src.duration_s is None:
            raise ValueError(f"{clip}: no duration")
        n = int(src.duration_s / quantum + 1e-6) * round(fps * quantum)
        args += ["-i", str(clip)]
        chains.append(
            f"[{k}:v]fps={fps},scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p,"
            f"trim=end_frame={n},setpts=PTS-STARTPTS[c{k}]"
        )
        parts.append(Part(Path(clip).stem, t, t + n / fps, n))
        t += n / fps
    labels = "".join(f"[c{k}]" for k in range(len(clips)))
    graph = ";".join(chains) + f";{labels}concat=n={len(clips)}:v=1:a=0[v]"
    out = Path(path)
    run_ffmpeg(
        [*args, "-filter_complex", graph, "-map", "[v]", "-r", str(fps),
         *_encode_args(width, height), str(out)]
    )  # fmt: skip
    return ConcatVideo(out, width, height, float(fps), tuple(parts))


def tricky_videos(directory: str | os.PathLike[str]) -> dict[str, Path]:
    """The videos a decoder gets wrong first: cut-heavy (scenes of 3 to 21 frames, a
    keyframe every 9), variable frame rate, and rotated 270 degrees by its display
    matrix (2 s)."""
    d = Path(directory)
    colours = ["red", "green", "blue", "white", "yellow", "cyan"]
    lengths = [0.36, 0.52, 0.2, 0.84, 0.12, 0.6]
    cuts = tuple(zip(colours * 3, lengths * 3, strict=True))
    return {
        "cuts": make_scenes(d / "cuts.mp4", cuts, gop=9).path,
        "vfr": make_vfr(d / "vfr.mp4", gop=4).path,
        "rotated": make_rotated(d / "rotated.mp4", 270, gop=6).path,
    }


def make_static_camera(
    path: str | os.PathLike[str],
    still_from: str | os.PathLike[str],
    duration: float = 40.0,
    event: tuple[float, float] = (15.0, 21.0),
    width: int = 320,
    height: int = 240,
    fps: int = 10,
) -> Path:
    """A fixed camera: one frame of ``still_from`` (at 3 s) held for ``duration``
    seconds with light per-frame sensor noise, and a small red figure (40 x 90 px, a
    twentieth of the picture) crossing it from left to right during ``event``
    (seconds, ``[start, end)``). H.264 at ``fps``."""
    a, b = event
    speed = (width - 40) / (b - a)
    graph = (
        f"[0:v]trim=end_frame=1,loop=loop=-1:size=1,setpts=N/({fps}*TB),"
        f"scale={width}:{height},setsar=1,noise=alls=4:allf=t[bg];"
        f"color=c=0xC03020:s=40x90:r={fps}[fig];"
        f"[bg][fig]overlay=x='{speed:.3f}*(t-{a})':y={height // 2 - 20}:"
        f"enable='gte(t,{a})*lt(t,{b})'[v]"
    )
    out = Path(path)
    run_ffmpeg(
        ["-ss", "3", "-i", str(still_from),
         "-filter_complex", graph, "-map", "[v]", "-t", str(duration), "-r", str(fps),
         *_encode_args(width, height), str(out)]
    )  # fmt: skip
    return out
