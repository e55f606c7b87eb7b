"""Throughput of ``pipeline.decode.decode()`` against the bare ffmpeg command.

For each case the very same ffmpeg command (``build_command``: same seek, sampling,
rotation, scaling and rgb24 conversion) runs twice in this process:

* baseline: ffmpeg writes the raw frames to /dev/null itself (no pipe, no Python);
* videomem: ``decode()`` streams them through the pipe into numpy batches.

``ratio`` is frames/s of decode() over frames/s of the baseline (wall clock; target
>= 0.9): the cost of the pipe, the reads and the batching. ``cpu ratio`` is baseline
CPU seconds (ffmpeg) over decode()'s (ffmpeg + Python), steadier than wall clock
on a busy machine. Cases: the real clips in ../shared/testdata (skipped when absent) and
a long synthetic video (10,500 frames) made here with ffmpeg.

    python bench/decode.py            # default, about a minute on 2 cores
    python bench/decode.py --quick    # one repeat, fewer cases
    python bench/decode.py --full     # more repeats, a larger long video
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from videomem.pipeline.decode import build_command, decode
from videomem.pipeline.ffmpeg import find_ffmpeg
from videomem.pipeline.probe import probe
from videomem.pipeline.types import DecodeConfig, VideoSource

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO.parent / "shared" / "testdata"


def make_long_video(path: Path, frames: int, width: int, height: int) -> Path:
    """A moving test pattern (testsrc2), H.264, 25 fps."""
    cmd = [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi"]
    cmd += ["-i", f"testsrc2=s={width}x{height}:r=25", "-frames:v", str(frames)]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True)
    return path


def _cpu() -> float:
    """CPU seconds used so far by this process and its reaped children (ffmpeg)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def time_baseline(src: VideoSource, cfg: DecodeConfig) -> tuple[float, float]:
    """(wall s, cpu s) of ffmpeg writing the frames to /dev/null itself."""
    cmd = build_command(src.uri, cfg, src, output="/dev/null")
    c0, t0 = _cpu(), time.perf_counter()
    subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=True)
    return time.perf_counter() - t0, _cpu() - c0


def time_decode(src: VideoSource, cfg: DecodeConfig) -> tuple[float, float, int]:
    """(wall s, cpu s, frames) of decode() streaming the frames into numpy batches."""
    c0, t0 = _cpu(), time.perf_counter()
    n = 0
    for batch in decode(src.uri, cfg, src):
        n += len(batch)
    return time.perf_counter() - t0, _cpu() - c0, n


def run_case(name: str, src: VideoSource, cfg: DecodeConfig, repeats: int) -> dict[str, float]:
    time_decode(src, cfg)  # warm the page cache and the binary
    base: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    frames = 0
    for _ in range(repeats):  # interleaved, so drifting machine load hits both alike
        base.append(time_baseline(src, cfg))
        wall, cpu, frames = time_decode(src, cfg)
        ours.append((wall, cpu))
    bw, bc = (statistics.median(x[i] for x in base) for i in (0, 1))
    ow, oc = (statistics.median(x[i] for x in ours) for i in (0, 1))
    row = {"frames": frames, "ffmpeg_fps": frames / bw, "decode_fps": frames / ow}
    row |= {"ratio": bw / ow, "cpu_ratio": bc / oc if oc > 0 else float("nan")}
    size = "x".join(map(str, cfg.size)) if cfg.size else "native"
    what = f"fps={cfg.fps:g}" if cfg.num_frames is None else f"n={cfg.num_frames}"
    print(
        f"{name:<28} {what:<7} {size:<8} {frames:>6} {row['ffmpeg_fps']:>11.1f} "
        f"{row['decode_fps']:>13.1f} {row['ratio']:>6.3f} {row['cpu_ratio']:>10.3f}",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one repeat, fewer cases")
    mode.add_argument("--full", action="store_true", help="five repeats, bigger long video")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    repeats = 1 if args.quick else 5 if args.full else 3
    bs = args.batch_size

    print(f"ffmpeg: {find_ffmpeg()}   batch_size={bs}   repeats={repeats} (median)")
    print(
        f"{'case':<28} {'sampling':<7} {'size':<8} {'frames':>6} {'ffmpeg f/s':>11} "
        f"{'decode() f/s':>13} {'ratio':>6} {'cpu ratio':>10}"
    )
    ratios = []
    if TESTDATA.is_dir():
        bikes = probe(TESTDATA / "bikes.mp4")
        cases = [
            ("bikes.mp4 (640x272)", DecodeConfig(fps=25.0, batch_size=bs)),
            ("bikes.mp4 (640x272)", DecodeConfig(fps=25.0, size=(224, 224), batch_size=bs)),
            ("bikes.mp4 (640x272)", DecodeConfig(fps=1.0, size=(224, 224), batch_size=bs)),
        ]
        if not args.quick:
            cases.append(("bikes.mp4 (640x272)", DecodeConfig(num_frames=32, size=(224, 224))))
        for name, cfg in cases:
            ratios.append(run_case(name, bikes, cfg, repeats)["ratio"])
        if not args.quick:
            bbb = probe(TESTDATA / "bigbuckbunny.mp4")
            cfg = DecodeConfig(fps=25.0, batch_size=bs)
            ratios.append(run_case("bigbuckbunny.mp4 (1280x720)", bbb, cfg, repeats)["ratio"])
    else:
        print(f"(real clips not found at {TESTDATA}: skipped)")

    with tempfile.TemporaryDirectory() as tmp:
        w, h = (320, 240) if args.full else (64, 48)
        path = make_long_video(Path(tmp) / "long.mp4", 10_500, w, h)
        src = probe(path)
        name = f"long synthetic ({w}x{h})"
        for cfg in (DecodeConfig(fps=25.0, batch_size=bs), DecodeConfig(fps=1.0, batch_size=bs)):
            ratios.append(run_case(name, src, cfg, repeats)["ratio"])
    print(f"ratio decode()/ffmpeg: min {min(ratios):.3f}, median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
