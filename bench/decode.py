"""Throughput of ``pipeline.decode.decode()`` against the bare ffmpeg command.

For each case the very same ffmpeg command (``build_command``: same seek, sampling,
rotation, scaling and rgb24 output) runs three ways in this process, alternating
(ABC, then CBA, ...) so that drifting machine load hits all of them alike:

* raw ffmpeg: ffmpeg writes the raw frames to /dev/null itself (no pipe, no Python);
* pipe only: ffmpeg writes them into a pipe that ``cat`` drains to /dev/null: what
  any reader of a pipe pays (the kernel copies every byte in and out), the floor for
  a decoder that reads ffmpeg's stdout;
* videomem: ``decode()`` streams them through the pipe into numpy batches.

``ratio`` is videomem's frames/s over raw ffmpeg's (wall clock, the median of the
per-round ratios; target >= 0.9); ``pipe`` is the same for "pipe only". ``cpu`` is
raw ffmpeg's CPU seconds over videomem's (ffmpeg + Python), steadier than wall
clock on a busy machine; ``pipe cpu`` the same for "pipe only". The load average is
printed before and after the section: on a shared machine the wall-clock figures are
only as good as it is quiet. Cases: a
768x576 10 fps H.264 clip made here decoded to 224x224 at 10 fps (the case of issue
17), the same pattern with every frame a keyframe in keyframe sampling (timestamps
from ffmpeg's log), the real clips in ../shared/testdata (skipped when absent) and a long synthetic
video of tiny frames (10,500 frames; the per-frame cost).

Further sections (``--section``), each against a baseline measured in the same run:

* ``keyframes``: ``sample="keyframes"`` (thinned to 1 fps) against exact 1 fps on a
  long synthetic video (1280x720, GOP 2 s) and on real footage (bikes.mp4 looped to
  5 minutes, its own GOPs): speed-up, and how far in time the keyframe samples are
  from the exact grid (for each exact 1 fps tick, the distance to the nearest
  keyframe sample: mean and max; what consolidation loses by taking keyframes).
* ``segments``: exact 1 fps with k ffmpeg processes (``segments=k``, k = the cores
  here) against one ffmpeg on one core (target: speed >= 0.8 * k of it) and against
  one ffmpeg threading over all the cores (ffmpeg's frame threading; what splitting
  adds on top of it).
* ``decoders``: exact 1 fps at 224x224 by torchcodec (in process, on the CPU here;
  ``decoder="torchcodec"``) against one ffmpeg process, each with all the cores:
  the figures behind the default decoder (on a GPU, bench/gpu.py compares the two
  there).
* ``ffmpeg``: the system and the bundled ffmpeg decoding the same clip (the
  measurement ``pipeline.ffmpeg_choice`` caches and then uses).

    python bench/decode.py            # default, a few minutes on 2 cores
    python bench/decode.py --quick    # one repeat, fewer cases
    python bench/decode.py --full     # more repeats, longer videos
    python bench/decode.py --section keyframes --section segments
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from videomem.pipeline.decode import decode
from videomem.pipeline.ffmpeg import PIPE_SIZE, find_ffmpeg
from videomem.pipeline.ffmpeg_choice import ffmpeg_info, ffmpeg_version, measure_ffmpeg
from videomem.pipeline.plan import build_command, make_plan, plan_parts
from videomem.pipeline.probe import probe
from videomem.pipeline.segments import available_cpus
from videomem.pipeline.types import DecodeConfig, VideoSource

SECTIONS = ("overhead", "keyframes", "segments", "decoders", "ffmpeg")

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


def time_pipe(src: VideoSource, cfg: DecodeConfig) -> tuple[float, float]:
    """(wall s, cpu s) of ffmpeg writing the frames into a pipe that ``cat`` drains:
    the same pipe (and size) decode() reads, with no Python on the other end."""
    cmd = build_command(src.uri, cfg, src)
    c0, t0 = _cpu(), time.perf_counter()
    ff = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        pipesize=PIPE_SIZE,
    )
    try:
        cat = subprocess.run(["cat"], stdin=ff.stdout, stdout=subprocess.DEVNULL, check=False)
    finally:
        if ff.stdout is not None:
            ff.stdout.close()
        ff.wait()
    if ff.returncode != 0 or cat.returncode != 0:
        raise SystemExit(f"ffmpeg | cat failed ({ff.returncode}, {cat.returncode})")
    return time.perf_counter() - t0, _cpu() - c0


def time_decode(src: VideoSource, cfg: DecodeConfig) -> tuple[float, float]:
    """(wall s, cpu s) of decode() streaming the frames into numpy batches."""
    c0, t0 = _cpu(), time.perf_counter()
    for _ in decode(src.uri, cfg, src):
        pass
    return time.perf_counter() - t0, _cpu() - c0


def count_frames(src: VideoSource, cfg: DecodeConfig) -> int:
    """Frames decode() yields (also warms the page cache and the binary)."""
    return sum(len(b) for b in decode(src.uri, cfg, src))


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_case(name: str, src: VideoSource, cfg: DecodeConfig, repeats: int) -> dict[str, float]:
    frames = count_frames(src, cfg)
    runners = [time_baseline, time_pipe, time_decode]
    walls: list[list[float]] = [[] for _ in runners]
    cpus: list[list[float]] = [[] for _ in runners]
    for r in range(repeats):
        # ABC, CBA, ...: a load that rises (or falls) through a round favours no one
        order = range(len(runners)) if r % 2 == 0 else reversed(range(len(runners)))
        for i in order:
            wall, cpu = runners[i](src, cfg)
            walls[i].append(wall)
            cpus[i].append(cpu)
    (bw, pw, ow), (bc, pc, oc) = walls, cpus
    row = {"frames": frames, "ffmpeg_fps": frames / statistics.median(bw)}
    row["decode_fps"] = frames / statistics.median(ow)
    # per round: the runs of one round saw (about) the same load
    row["ratio"] = statistics.median(b / o for b, o in zip(bw, ow, strict=True))
    row["pipe_ratio"] = statistics.median(b / p for b, p in zip(bw, pw, strict=True))
    row["cpu_ratio"] = statistics.median(bc) / statistics.median(oc)
    row["pipe_cpu_ratio"] = statistics.median(bc) / statistics.median(pc)
    size = "x".join(map(str, cfg.size)) if cfg.size else "native"
    if cfg.sample == "keyframes":
        what = "keys"
    else:
        what = f"fps={cfg.fps:g}" if cfg.num_frames is None else f"n={cfg.num_frames}"
    print(
        f"{name:<28} {what:<7} {size:<8} {frames:>6} {row['ffmpeg_fps']:>11.1f} "
        f"{row['decode_fps']:>13.1f} {row['ratio']:>6.3f} {row['pipe_ratio']:>6.3f} "
        f"{row['cpu_ratio']:>6.3f} {row['pipe_cpu_ratio']:>8.3f}",
        flush=True,
    )
    return row


def make_pal_video(path: Path, seconds: int, gop: int | None = None) -> Path:
    """A moving 768x576 10 fps test pattern, H.264 (veryfast, B-frames): the shape of
    the clip in issue 17; ``gop=1``: every frame a keyframe."""
    cmd = [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi"]
    cmd += ["-i", f"testsrc2=s=768x576:r=10:d={seconds}", "-c:v", "libx264", "-preset"]
    cmd += ["veryfast", *(["-g", str(gop)] if gop else []), "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True)
    return path


def make_hd_video(path: Path, seconds: int, gop_s: float = 2.0) -> Path:
    """A moving 1280x720 30 fps test pattern, H.264 as cameras and sites encode it
    (veryfast, B-frames, a keyframe every ``gop_s``)."""
    cmd = [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi"]
    cmd += ["-i", f"testsrc2=s=1280x720:r=30:d={seconds}", "-c:v", "libx264", "-preset"]
    cmd += ["veryfast", "-g", str(round(30 * gop_s)), "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True)
    return path


def loop_clip(src: Path, path: Path, times: int) -> Path:
    """``src`` played ``times`` times in a row, stream-copied (its own GOPs kept)."""
    cmd = [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    cmd += ["-stream_loop", str(times - 1), "-i", str(src), "-an", "-c", "copy", str(path)]
    subprocess.run(cmd, check=True)
    return path


def timed(path: Path, cfg: DecodeConfig, src: VideoSource) -> tuple[float, np.ndarray]:
    """(wall s, timestamps) of one full decode()."""
    t0 = time.perf_counter()
    ts = [b.timestamps for b in decode(path, cfg, src)]
    return time.perf_counter() - t0, np.concatenate(ts)


def race(
    path: Path, src: VideoSource, configs: list[DecodeConfig], repeats: int
) -> tuple[list[float], list[np.ndarray]]:
    """Each config decoded in turn, ``repeats`` rounds after one warm-up decode (the page
    cache): the median wall seconds and the timestamps of each."""
    timed(path, configs[0], src)
    walls: list[list[float]] = [[] for _ in configs]
    stamps: list[np.ndarray] = []
    for _ in range(repeats):
        stamps = []
        for i, cfg in enumerate(configs):
            w, ts = timed(path, cfg, src)
            walls[i].append(w)
            stamps.append(ts)
    return [statistics.median(w) for w in walls], stamps


def keyframe_case(name: str, path: Path, repeats: int) -> float:
    src = probe(path)
    exact = DecodeConfig(fps=1.0, size=(224, 224), segments=1)
    keys = DecodeConfig(fps=1.0, size=(224, 224), sample="keyframes")
    (e, k), (grid, kts) = race(path, src, [exact, keys], repeats)
    # for every exact tick, the nearest keyframe sample
    pos = np.clip(np.searchsorted(kts, grid), 1, len(kts) - 1) if len(kts) > 1 else None
    if pos is None:
        dist = np.abs(grid - kts[0])
    else:
        dist = np.minimum(np.abs(grid - kts[pos - 1]), np.abs(grid - kts[pos]))
    print(
        f"{name:<34} {src.duration_s or 0:>7.0f} {len(grid):>6} {len(kts):>6} {e:>8.2f} "
        f"{k:>8.2f} {e / k:>7.1f}x {dist.mean():>8.2f} {dist.max():>7.2f}",
        flush=True,
    )
    return e / k


def segment_case(name: str, path: Path, k: int, repeats: int) -> float:
    """k ffmpeg processes against one ffmpeg on one core (the per-core scaling the
    target is about) and against one ffmpeg with its own threads on all k cores (what
    splitting adds to ffmpeg's frame threading)."""
    src = probe(path)
    core1 = DecodeConfig(fps=1.0, size=(224, 224), segments=1, cpus=1)
    allc = DecodeConfig(fps=1.0, size=(224, 224), segments=1)
    many = DecodeConfig(fps=1.0, size=(224, 224), segments=k)
    parts, inflight = plan_parts(path, many, src, make_plan(many, src))
    (s1, sa, sk), (a, _, b) = race(path, src, [core1, allc, many], repeats)
    if not np.array_equal(a, b):
        raise SystemExit(f"{name}: segment-parallel timestamps differ from one ffmpeg")
    speed = s1 / sk
    print(
        f"{name:<34} {src.duration_s or 0:>7.0f} {len(parts):>5} {inflight:>3} {s1:>8.2f} "
        f"{sa:>8.2f} {sk:>8.2f} {speed:>7.2f}x {speed / k:>6.2f} {sa / sk:>8.2f}x",
        flush=True,
    )
    return speed / k


def decoder_case(name: str, path: Path, repeats: int) -> float:
    """torchcodec against one ffmpeg, exact 1 fps, 224x224, same timestamps."""
    src = probe(path)
    ff = DecodeConfig(fps=1.0, size=(224, 224), segments=1)
    tc = DecodeConfig(fps=1.0, size=(224, 224), segments=1, decoder="torchcodec")
    (f, t), (a, b) = race(path, src, [ff, tc], repeats)
    if not np.array_equal(a, b):
        raise SystemExit(f"{name}: torchcodec timestamps differ from ffmpeg's")
    print(f"{name:<34} {src.duration_s or 0:>7.0f} {len(a):>6} {f:>9.2f} {t:>12.2f} {f / t:>8.2f}x")
    return f / t


def overhead(args: argparse.Namespace, repeats: int) -> None:
    bs = args.batch_size
    print(
        f"\n== decode() against raw ffmpeg (the same command writing to /dev/null), "
        f"batch_size={bs}, {repeats} alternating rounds\n"
        "   ratio = videomem decode / raw ffmpeg with the same filters and output "
        "(frames/s, median of the rounds; target >= 0.90)\n"
        "   pipe  = ffmpeg into a pipe drained by cat / raw ffmpeg (the pipe's own cost)\n"
        "   cpu   = raw ffmpeg CPU s / videomem CPU s (ffmpeg + Python); "
        "pipe cpu: the same for ffmpeg + cat\n"
        f"   {load()}"
    )
    print(
        f"{'case':<28} {'sampling':<7} {'size':<8} {'frames':>6} {'ffmpeg f/s':>11} "
        f"{'decode() f/s':>13} {'ratio':>6} {'pipe':>6} {'cpu':>6} {'pipe cpu':>8}"
    )
    ratios: dict[str, float] = {}
    one = {"batch_size": bs, "segments": 1}  # the bare command is one ffmpeg too
    with tempfile.TemporaryDirectory() as tmp:
        seconds = 60 if args.quick else 300 if args.full else 120
        pal = probe(make_pal_video(Path(tmp) / "pal.mp4", seconds))
        cfg = DecodeConfig(fps=10.0, size=(224, 224), **one)
        headline = run_case("768x576 10 fps (issue 17)", pal, cfg, repeats)["ratio"]
        ratios["768x576 10 fps"] = headline
        # keyframe sampling reads each frame's timestamp from ffmpeg's log: every
        # frame a keyframe is its heaviest case (one showinfo line per frame)
        intra = probe(make_pal_video(Path(tmp) / "intra.mp4", seconds // 2, gop=1))
        cfg = DecodeConfig(fps=None, sample="keyframes", size=(224, 224), batch_size=bs)
        row = run_case("768x576 all keyframes", intra, cfg, repeats)
        ratios["768x576 all keyframes"] = row["ratio"]

        if TESTDATA.is_dir():
            bikes = probe(TESTDATA / "bikes.mp4")
            cases = [
                ("bikes.mp4 (640x272)", DecodeConfig(fps=25.0, **one)),
                ("bikes.mp4 (640x272)", DecodeConfig(fps=25.0, size=(224, 224), **one)),
                ("bikes.mp4 (640x272)", DecodeConfig(fps=1.0, size=(224, 224), **one)),
            ]
            if not args.quick:
                cases.append(("bikes.mp4 (640x272)", DecodeConfig(num_frames=32, size=(224, 224))))
            for name, cfg in cases:
                ratios[f"{name} {cfg.fps}"] = run_case(name, bikes, cfg, repeats)["ratio"]
            for clip, name in (
                ("bigbuckbunny.mp4", "bigbuckbunny.mp4 (1280x720)"),
                ("carphone_pristine.mp4", "carphone.mp4 (176x144)"),
            ):
                src = probe(TESTDATA / clip)
                for cfg in (
                    DecodeConfig(fps=25.0, **one),
                    DecodeConfig(fps=25.0, size=(224, 224), **one),
                ):
                    ratios[f"{name} {cfg.size}"] = run_case(name, src, cfg, repeats)["ratio"]
        else:
            print(f"(real clips not found at {TESTDATA}: skipped)")

        w, h = (320, 240) if args.full else (64, 48)
        path = make_long_video(Path(tmp) / "long.mp4", 10_500, w, h)
        src = probe(path)
        name = f"long synthetic ({w}x{h})"
        for cfg in (DecodeConfig(fps=25.0, **one), DecodeConfig(fps=1.0, **one)):
            ratios[f"{name} {cfg.fps}"] = run_case(name, src, cfg, repeats)["ratio"]
    values = list(ratios.values())
    print(
        f"ratio videomem decode / raw ffmpeg: 768x576 10 fps at 224x224 {headline:.3f}; "
        f"all cases min {min(values):.3f}, median {statistics.median(values):.3f}\n"
        f"   {load()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one repeat, fewer cases")
    mode.add_argument("--full", action="store_true", help="more repeats, longer videos")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--section", action="append", choices=SECTIONS, help="default: all")
    ap.add_argument("--segments", type=int, default=None, help="k (default: the cores here)")
    args = ap.parse_args()
    repeats = 1 if args.quick else 5 if args.full else 3
    sections = args.section or list(SECTIONS)
    info = ffmpeg_info()
    print(f"ffmpeg: {info.get('path')} {info.get('version')} ({info.get('reason')})")
    print(f"cores available: {available_cpus()}")

    if "overhead" in sections:
        # more rounds than the other sections: its ratios are closer to 1 than the noise
        overhead(args, 1 if args.quick else 9 if args.full else 5)

    with tempfile.TemporaryDirectory() as tmp:
        seconds = 120 if args.quick else 600 if args.full else 300
        need_videos = "keyframes" in sections or "segments" in sections
        hd = make_hd_video(Path(tmp) / "hd.mp4", seconds) if need_videos else None
        real = None
        if need_videos and TESTDATA.is_dir():
            real = loop_clip(TESTDATA / "bikes.mp4", Path(tmp) / "bikes_loop.mp4", seconds // 10)
        if "keyframes" in sections and hd is not None:
            print(f"\n== keyframes (thinned to 1 fps) vs exact 1 fps, 224x224, median of {repeats}")
            print(
                f"{'case':<34} {'video s':>7} {'exact':>6} {'keys':>6} {'exact s':>8} "
                f"{'keys s':>8} {'speedup':>8} {'mean gap':>8} {'max gap':>7}"
            )
            keyframe_case(f"synthetic 1280x720 GOP 2 s, {seconds} s", hd, repeats)
            if real is not None:
                keyframe_case(f"bikes.mp4 looped ({seconds} s)", real, repeats)
            if TESTDATA.is_dir():
                keyframe_case("bikes.mp4 (10 s)", TESTDATA / "bikes.mp4", repeats)
        if "segments" in sections and hd is not None:
            k = args.segments or available_cpus()
            print(
                f"\n== segment-parallel (k={k}) vs one ffmpeg, exact 1 fps, 224x224, median "
                f"of {repeats}\n   speed = one ffmpeg on 1 core / k processes; /k: per core "
                "(target >= 0.80); vs threads: one ffmpeg threading over all k cores / k "
                "processes"
            )
            print(
                f"{'case':<34} {'video s':>7} {'parts':>5} {'k':>3} {'1 core s':>8} "
                f"{'threads s':>8} {'k s':>8} {'speed':>8} {'/k':>6} {'vs threads':>9}"
            )
            segment_case(f"synthetic 1280x720 GOP 2 s, {seconds} s", hd, k, repeats)
            if real is not None:
                segment_case(f"bikes.mp4 looped ({seconds} s)", real, k, repeats)

    if "decoders" in sections:
        print(f"\n== torchcodec vs one ffmpeg, exact 1 fps, 224x224, median of {repeats}")
        print(
            f"{'case':<34} {'video s':>7} {'frames':>6} {'ffmpeg s':>9} {'torchcodec s':>12} "
            f"{'speed':>9}"
        )
        with tempfile.TemporaryDirectory() as tmp:
            seconds = 120 if args.quick else 300
            hd = make_hd_video(Path(tmp) / "hd.mp4", seconds)
            decoder_case(f"synthetic 1280x720 GOP 2 s, {seconds} s", hd, repeats)
            if TESTDATA.is_dir():
                real = loop_clip(TESTDATA / "bikes.mp4", Path(tmp) / "loop.mp4", seconds // 10)
                decoder_case(f"bikes.mp4 looped ({seconds} s)", real, repeats)

    if "ffmpeg" in sections:
        print("\n== system vs bundled ffmpeg: 1280x720 H.264 to 224x224 at 1 fps (best of 3)")
        seconds_by_exe = measure_ffmpeg(repeats=3)
        if not seconds_by_exe:
            print("only one ffmpeg available: nothing to compare")
        for exe, sec in sorted(seconds_by_exe.items(), key=lambda kv: kv[1]):
            print(f"{ffmpeg_version(exe):<10} {sec:>6.2f} s  {exe}")
        if seconds_by_exe:
            print(f"cached; now using: {ffmpeg_info().get('path')}")


if __name__ == "__main__":
    main()
