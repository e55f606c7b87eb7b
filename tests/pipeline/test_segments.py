"""Segment-parallel exact decode: several ffmpeg processes on time ranges of one video
give exactly the frames, timestamps and frame indexes of one ffmpeg, with bounded
memory and no leftover children."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from videomem.pipeline.decode import decode
from videomem.pipeline.plan import make_plan, plan_parts
from videomem.pipeline.probe import probe
from videomem.pipeline.segments import (
    MIN_SEGMENT_S,
    SEGMENT_QUEUE_BATCHES,
    OrderedParallel,
    auto_segments,
    cpu_share,
    scan_keyframes,
    split_points,
)
from videomem.pipeline.types import DecodeConfig, VideoSource

from tests.pipeline.test_decode import child_pids, collect
from tests.videos import make_long, make_scenes, run_ffmpeg, tricky_videos
from tests.waiting import holds_for, wait_until


@pytest.fixture(scope="module")
def vdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("segments")


def reencode(src: Path, dst: Path, gop: int) -> Path:
    """A real clip with a keyframe every ``gop`` frames (B-frames kept)."""
    run_ffmpeg(["-i", str(src), "-c:v", "libx264", "-preset", "veryfast", "-g", str(gop),
                "-an", str(dst)])  # fmt: skip
    return dst


@pytest.fixture(scope="module")
def videos(vdir: Path) -> dict[str, Path]:
    return tricky_videos(vdir)


def same_as_serial(
    path: Path, cfg: DecodeConfig, segments: int, src: VideoSource | None = None
) -> int:
    """Decode with one ffmpeg and with ``segments``; assert identical output and that
    the video really was split. Returns the number of parts."""
    src = src or probe(path)
    split = replace(cfg, segments=segments)
    parts, _ = plan_parts(path, split, src, make_plan(split, src))
    assert len(parts) > 1, "the video was not split: the test would prove nothing"
    f1, t1, i1, _ = collect(decode(path, replace(cfg, segments=1), src))
    f2, t2, i2, _ = collect(decode(path, split, src))
    assert len(t1) == len(t2)
    assert np.array_equal(t1, t2)  # bit-identical timestamps
    assert np.array_equal(i1, i2)
    for k in range(len(f1)):
        assert np.array_equal(f1[k], f2[k]), f"frame {k} at {t1[k]:.3f} s differs"
    return len(parts)


CONFIGS = [
    DecodeConfig(fps=5.0, batch_size=4),
    DecodeConfig(fps=25.0, size=(24, 40), aspect="crop", batch_size=7),
    DecodeConfig(num_frames=23, size=(32, 32), batch_size=5),
    DecodeConfig(fps=10.0, start_s=0.7, end_s=4.9, batch_size=3),
]


@pytest.mark.parametrize("name", ["cuts", "vfr", "rotated"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=["fps5", "fps25-crop", "n23", "window"])
def test_segments_equal_serial_on_synthetic(
    videos: dict[str, Path], name: str, cfg: DecodeConfig
) -> None:
    path = videos[name]
    if name == "rotated" and cfg.start_s is not None:
        cfg = replace(cfg, start_s=0.3, end_s=1.9)  # the rotated video is 2 s long
    same_as_serial(path, cfg, segments=3)


# bigbuckbunny (the longest clip, ~15 s) is slow; the other two keep the check fast
@pytest.mark.parametrize(
    "clip",
    [
        "bikes.mp4",
        pytest.param("bigbuckbunny.mp4", marks=pytest.mark.slow),
        "carphone_pristine.mp4",
    ],
)
def test_segments_equal_serial_on_real_clips(shared_testdata: Path, vdir: Path, clip: str) -> None:
    path = shared_testdata / clip
    if len(scan_keyframes(path).keyframes) < 3:  # type: ignore[union-attr]
        path = reencode(path, vdir / f"gop_{clip}", gop=12)  # as shipped: one keyframe
    for cfg in (
        DecodeConfig(fps=25.0, size=(72, 96), batch_size=8),
        DecodeConfig(fps=1.7, batch_size=2),
        DecodeConfig(num_frames=9, size=(64, 64)),
    ):
        same_as_serial(path, cfg, segments=4)


def test_stream_shorter_than_probed(videos: dict[str, Path]) -> None:
    # The probe says 50 % longer than the stream really is: parts past the real end
    # get nothing, and num_frames mode repeats the last frame as one ffmpeg's tpad does.
    path = videos["cuts"]
    src = probe(path)
    assert src.duration_s is not None
    longer = replace(src, duration_s=src.duration_s * 1.5, num_frames=None)
    same_as_serial(path, DecodeConfig(fps=5.0, batch_size=4), 4, longer)
    same_as_serial(path, DecodeConfig(num_frames=31, batch_size=4), 4, longer)


@pytest.fixture(scope="module")
def long_video(vdir: Path) -> Path:
    return make_long(vdir / "long.mp4", num_frames=6000).path  # 240 s, keyframes every 10 s


def test_automatic_segments_follow_the_cores_a_worker_gets(long_video: Path) -> None:
    # N workers on a machine of C cores: each gets C // N (at least one)
    assert [cpu_share(n, 16) for n in (1, 2, 3, 4, 16, 32)] == [16, 8, 5, 4, 1, 1]
    src = probe(long_video)  # 240 s with keyframes every 10 s: room for 8 processes
    for cpus in (1, 2, 3, 8):
        cfg = DecodeConfig(fps=1.0, batch_size=4, cpus=cpus)
        parts, inflight = plan_parts(long_video, cfg, src, make_plan(cfg, src))
        assert inflight == auto_segments(240.0, cpus) == min(cpus, 8)
        assert (len(parts) > 1) == (cpus > 1)
        # the parts' ffmpeg threads share the same cores; one process takes them all
        assert {p.threads for p in parts} == {cpus // inflight}
    cfg = DecodeConfig(fps=1.0, batch_size=4, segments=1)  # no share: ffmpeg decides
    assert plan_parts(long_video, cfg, src, make_plan(cfg, src))[0][0].threads is None


@pytest.mark.slow
def test_long_video_segments_bounded_memory_and_equal(long_video: Path) -> None:
    src = probe(long_video)
    cfg = DecodeConfig(fps=25.0, batch_size=32)
    assert auto_segments(240.0, cpus=2) == 2 and auto_segments(50.0, cpus=16) == 1
    same_as_serial(long_video, cfg, segments=4)
    split = replace(cfg, segments=4)
    parts, inflight = plan_parts(long_video, split, src, make_plan(split, src))
    assert inflight == 4 and len(parts) > 4  # cut into more parts, not bigger ones
    batch_bytes = cfg.batch_size * 24 * 32 * 3
    count = 0
    tracemalloc.start()
    try:
        for b in decode(long_video, split, src):
            count += len(b)
            time.sleep(0.0005)  # a consumer slower than ffmpeg: parts wait in memory
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 6000
    # all frames would be 13.8 MB; at most SEGMENT_QUEUE_BATCHES per part in flight
    bound = (inflight * (SEGMENT_QUEUE_BATCHES + 1) + 2) * batch_bytes
    assert peak < bound, (peak, bound)


def test_early_stop_leaves_no_children_or_threads(long_video: Path) -> None:
    before, threads = child_pids(), threading.active_count()
    it = decode(long_video, DecodeConfig(fps=5.0, segments=2, batch_size=4))
    first = next(iter(it))
    assert len(first) == 4
    assert len(child_pids() - before) >= 1
    it.close()  # type: ignore[attr-defined]
    # close() joined the part threads, which killed and reaped their ffmpeg
    assert not child_pids() - before
    deadline = time.time() + 5  # FFmpegPipe's stderr drain threads end with ffmpeg
    while threading.active_count() > threads and time.time() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == threads


def test_unindexed_container_is_not_split(vdir: Path) -> None:
    ts = vdir / "cuts.ts"
    make_scenes(vdir / "src.mp4", (("red", 2.0), ("blue", 2.0)), gop=5)
    run_ffmpeg(["-i", str(vdir / "src.mp4"), "-c", "copy", "-f", "mpegts", str(ts)])
    src = probe(ts)
    cfg = DecodeConfig(fps=5.0, segments=3)
    scan = scan_keyframes(ts)
    assert scan is not None and len(scan.keyframes) >= 3 and not scan.seekable
    parts, _ = plan_parts(ts, cfg, src, make_plan(cfg, src))
    assert len(parts) == 1


def test_split_points() -> None:
    keys = np.array([0.0, 1.0, 2.5, 3.0, 7.0, 9.0, 9.5])
    assert split_points(keys, 0.0, 10.0, 2.0, 0.05) == [2.55, 7.05]
    assert split_points(keys, 0.0, 10.0, 20.0, 0.05) == []
    # 9.55 would leave a last part shorter than length / 2
    assert split_points(keys, 2.0, 10.0, 1.0, 0.05) == [3.05, 7.05, 9.05]
    # the grid, not the previous start, sets the next target: equal parts despite GOPs
    even = np.arange(0.0, 100.0, 2.0)
    assert split_points(even, 0.0, 100.0, 25.0, 0.05) == [26.05, 50.05, 76.05]
    assert auto_segments(10 * MIN_SEGMENT_S, cpus=4) == 4
    assert auto_segments(1.5 * MIN_SEGMENT_S, cpus=4) == 1


def counting(n: int, produced: list[int], fail_at: int | None = None):  # noqa: ANN201
    def task(stop: threading.Event) -> Iterator[int]:
        for i in range(n):
            if stop.is_set():
                return
            if i == fail_at:
                raise ValueError(f"failed at {i}")
            produced.append(i)
            yield i

    return task


def test_ordered_parallel_order_bound_and_errors() -> None:
    produced: list[list[int]] = [[] for _ in range(4)]
    tasks = [counting(50, produced[i]) for i in range(4)]
    with OrderedParallel(tasks, inflight=2, max_buffered=3) as runner:
        got = []
        for i, items in enumerate(runner):
            if i == 0:
                # task 1 runs ahead meanwhile, up to its bound: three queued and one
                # waiting in put(); task 2 waits for a free slot (inflight=2)
                wait_until(lambda: len(produced[1]) >= 4, "task 1 to run ahead")
                holds_for(
                    lambda: len(produced[1]) == 4 and produced[2] == [],
                    "task 1 stops at its bound and task 2 waits for a slot",
                )
            got.append(list(items))
    assert got == [list(range(50))] * 4

    tasks = [counting(5, []), counting(5, [], fail_at=2), counting(5, [])]
    with OrderedParallel(tasks, inflight=3, max_buffered=2) as runner:
        it = iter(runner)
        assert list(next(it)) == list(range(5))
        second = next(it)
        assert next(second) == 0 and next(second) == 1
        with pytest.raises(ValueError, match="failed at 2"):
            next(second)
