"""The index stage end to end: one video through the pipeline, and whole-folder jobs
(real ffmpeg, real LanceDB, a tiny random LLaVA of the real architecture, real Ray)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from videomem.encoders.config import EncoderConfig
from videomem.jobs.executor import LocalExecutor, RayExecutor
from videomem.jobs.index import (
    IndexJob,
    IndexStepSpec,
    TaskSpec,
    WorkItem,
    decode_cpus,
    run_index,
)
from videomem.jobs.index_video import BatchPrefetcher, index_one, index_video
from videomem.memory.builder import MemoryBuilder
from videomem.memory.config import MemoryConfig
from videomem.memory.store import LeaseConfig, Store
from videomem.pipeline.decode import decode
from videomem.pipeline.errors import DecodeError, EncoderError
from videomem.pipeline.plan import make_plan, plan_parts
from videomem.pipeline.probe import probe
from videomem.pipeline.segments import cpu_share
from videomem.pipeline.types import DecodeConfig

from tests.memory.store.test_store import whole_videos
from tests.videos import (
    make_broken,
    make_long,
    make_pattern,
    make_scenes,
    make_truncated_faststart,
    run_ffmpeg,
)
from tests.waiting import holds_for, wait_until

SMALL_MEMORY = MemoryConfig(short_term_len=6, merge_to=2, long_term_len=8, keep_recent=3)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videomem.encoders.testing import tiny_checkpoint

    return tiny_checkpoint("llava", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def encoder(tiny_dir: Path):
    from videomem.encoders.registry import load_encoder

    return load_encoder(tiny_dir, "cpu", batch_size=8)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pattern(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=6)


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory, shared_testdata: Path
) -> tuple[Path, list[Path]]:
    """Synthetic and real clips plus broken files, in nested folders; and the broken
    files that are not found by walking the folder (a missing path)."""
    d = tmp_path_factory.mktemp("corpus")
    make_scenes(d / "scenes.mp4", (("red", 1.5), ("green", 1.0), ("blue", 1.5)), fps=10)
    (d / "sub").mkdir()
    make_pattern(d / "sub" / "pattern.mkv", seconds=3)
    for name in ("carphone_pristine.mp4", "bikes.mp4"):
        shutil.copy(shared_testdata / name, d / name)
    broken = make_broken(d / "sub" / "broken")
    (d / "notes.txt").write_text("not a video, not even by extension")
    return d, [broken["missing"]]


class StoreAt:
    """Where a job's store lives: a local directory or ``s3://`` on the local S3 server
    (opened with storage options and a short writer lease, as a user would)."""

    def __init__(self, uri: str, options: dict[str, str]) -> None:
        self.uri, self.options = uri, options
        self.lease = LeaseConfig(ttl_s=5.0)

    def open(self, writer: bool = False) -> Store:
        return Store(self.uri, writer=writer, storage_options=self.options, lease=self.lease)

    def job_kw(self) -> dict:
        return {"storage_options": self.options, "lease": self.lease}

    def cli_args(self) -> list[str]:
        opts = [a for k, v in self.options.items() for a in ("--storage-option", f"{k}={v}")]
        return ["--store", self.uri, *opts, "--lease-ttl", str(self.lease.ttl_s)]


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> StoreAt:
    if request.param == "local":
        return StoreAt(str(tmp_path / "store"), {})
    s3 = request.getfixturevalue("s3")
    return StoreAt(s3.new_store_uri(), s3.options())


def job(paths: list[Path], store: Path | StoreAt, tiny_dir: Path, **kw) -> IndexJob:
    kw.setdefault("decode", DecodeConfig(fps=2.0))
    kw.setdefault("memory", SMALL_MEMORY)
    if isinstance(store, StoreAt):
        kw = {**store.job_kw(), **kw}
        store = store.uri  # type: ignore[assignment]
    return IndexJob(
        paths=[str(p) for p in paths],
        store=str(store),
        encoder=EncoderConfig(model=str(tiny_dir), device="cpu", batch_size=8),
        executor=kw.pop("executor", "local"),
        **kw,
    )


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "videomem-decode"]


def ffmpeg_children() -> list[str]:
    """Live (non-zombie) ffmpeg processes whose parent is this test process."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z" and "ffmpeg" in name:
            found.append(stat.parent.name)
    return found


# --------------------------------------------------------------------------- one video


def test_index_video_covers_the_video_and_matches_a_sequential_reference(
    clip: Path, encoder
) -> None:
    cfg = DecodeConfig(fps=2.0, size=encoder.input_size, batch_size=8)
    frames_seen: list[int] = []
    done = index_video(str(clip), encoder, cfg, SMALL_MEMORY, on_frames=frames_seen.append)
    mem, st = done.memory, done.stats

    assert st.frames == 12 == sum(frames_seen) == mem.frames_seen
    assert mem.tokens.dtype == torch.float16 and mem.tokens.shape[1:] == (16, 32)
    assert 1 <= len(mem) <= SMALL_MEMORY.long_term_len
    assert int(mem.sizes.sum()) == 12
    # the slots tile the sampled span: contiguous, from the first frame to past the last
    assert float(mem.start_s[0]) == pytest.approx(0.0, abs=0.3)
    assert torch.allclose(mem.end_s[:-1], mem.start_s[1:])
    assert float(mem.end_s[-1]) == pytest.approx(6.0, abs=0.6)
    assert min(st.decode_s, st.encode_s, st.probe_s) > 0
    assert st.total_s >= st.encode_s

    # naive reference: decode everything first, then encode and consolidate in order
    builder = MemoryBuilder(SMALL_MEMORY)
    for batch in list(decode(str(clip), cfg)):
        builder.add(encoder.encode(batch.frames, batch.timestamps))
    ref = builder.finish(done.source.video_id, encoder.fingerprint)
    assert torch.equal(mem.tokens, ref.tokens.half())
    assert torch.equal(mem.sizes, ref.sizes) and torch.equal(mem.start_s, ref.start_s)
    assert decode_threads() == []


def test_prefetcher_is_bounded_and_propagates_errors() -> None:
    produced: list[int] = []

    def gen():
        for i in range(50):
            produced.append(i)
            yield i

    with BatchPrefetcher(gen, maxsize=2) as pf:
        it = iter(pf)
        assert next(it) == 0
        # the producer runs ahead as far as it may: one handed out + two queued + one
        # blocked in put(), never more
        wait_until(lambda: len(produced) >= 4, "the producer to run ahead of the consumer")
        holds_for(lambda: len(produced) == 4, "at most 4 items produced")
        assert list(it) == list(range(1, 50))

    def failing():
        yield 1
        raise DecodeError("x.mp4", "broken at frame 2")

    with BatchPrefetcher(failing) as pf, pytest.raises(DecodeError, match="broken at frame 2"):
        list(pf)

    closed = threading.Event()

    def endless():
        try:
            while True:
                yield 0
        finally:
            closed.set()  # where the decoder kills ffmpeg

    with BatchPrefetcher(endless) as pf:
        next(iter(pf))
    assert closed.is_set() and decode_threads() == []


def test_broken_file_becomes_a_failed_outcome(tmp_path: Path, encoder) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 2048)
    cfg = DecodeConfig(size=encoder.input_size)
    out = index_one(str(bad), "vid", encoder, cfg, SMALL_MEMORY, config_hash="h", model="m")
    rec = out.record
    assert out.memory is None and rec.status == "failed"
    assert rec.error_type == "DecodeError" and not rec.retryable
    assert "bad.mp4" in rec.error and rec.encoder_fingerprint == encoder.fingerprint
    assert rec.decode_device is None and rec.decode_sample is None  # failed in probe


def test_video_that_probes_but_fails_to_decode_keeps_its_probe_fields(
    tmp_path: Path, encoder
) -> None:
    cut = make_truncated_faststart(tmp_path / "cut.mp4")
    cfg = DecodeConfig(size=encoder.input_size)
    out = index_one(str(cut), "vid", encoder, cfg, SMALL_MEMORY, config_hash="h", model="m")
    rec = out.record
    assert out.memory is None and rec.status == "failed" and rec.error_type == "DecodeError"
    # what probing found is kept for the user, even though decoding failed
    assert rec.duration_s == pytest.approx(4.0, abs=0.1)
    assert (rec.width, rec.height) == (64, 48) and rec.codec == "h264"
    # decoding started, so what it did is recorded too
    assert (rec.decode_device, rec.decode_parts, rec.decode_sample) == ("cpu", 1, "exact")


def test_what_decoding_did_is_recorded_in_the_row(tmp_path: Path, encoder) -> None:
    cuts = make_scenes(tmp_path / "cuts.mp4", (("red", 2.0), ("green", 2.0), ("blue", 2.0)), gop=10)
    base = DecodeConfig(fps=5.0, size=encoder.input_size, batch_size=4)

    def row(cfg: DecodeConfig, path: Path = cuts.path):
        out = index_one(str(path), "v", encoder, cfg, SMALL_MEMORY, config_hash="h")
        assert out.record.status == "indexed", out.record.error
        r = out.record
        return r.decode_device, r.decode_fallback, r.decode_parts, r.decode_sample

    assert row(replace(base, segments=1)) == ("cpu", None, 1, "exact")
    split = replace(base, segments=3)
    src = probe(cuts.path)
    parts, _ = plan_parts(cuts.path, split, src, make_plan(split, src))
    assert len(parts) > 1  # else the row could not tell the two apart
    assert row(split) == ("cpu", None, len(parts), "exact")
    keys = DecodeConfig(sample="keyframes", fps=None, size=encoder.input_size)
    assert row(keys) == ("cpu", None, 1, "keyframes")
    # a codec NVDEC cannot decode: the request for the GPU falls back, and the row says so
    ffv1 = tmp_path / "ffv1.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "2", "-c:v", "ffv1",
                str(ffv1)])  # fmt: skip
    got = row(replace(base, device="cuda"), ffv1)
    assert got == ("cpu", "NVDEC cannot decode ffv1: decoded on the CPU", 1, "exact")


class FailsOnSecondBatch:
    """The real encoder, with an injected failure (a GPU OOM, say) on its second call."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0
        for k in ("input_size", "tokens_per_frame", "dim", "embed_dim", "fingerprint"):
            setattr(self, k, getattr(inner, k))

    def encode(self, frames, timestamps=None):
        self.calls += 1
        if self.calls == 2:
            raise EncoderError("CUDA out of memory (injected)")
        return self.inner.encode(frames, timestamps)


def test_encoder_failure_stops_the_decoder(clip: Path, encoder) -> None:
    cfg = DecodeConfig(fps=5.0, size=encoder.input_size, batch_size=2)
    out = index_one(
        str(clip), "vid", FailsOnSecondBatch(encoder), cfg, SMALL_MEMORY, config_hash="h"
    )
    assert out.record.status == "failed" and out.record.retryable
    assert out.record.error == "CUDA out of memory (injected)"
    assert decode_threads() == []
    deadline = time.time() + 5
    while ffmpeg_children() and time.time() < deadline:
        time.sleep(0.05)
    assert ffmpeg_children() == []


# --------------------------------------------------------------------------- jobs


def test_folder_job_statuses_errors_spans_rerun_and_force(
    corpus: tuple[Path, list[Path]], store_at: StoreAt, tiny_dir: Path
) -> None:
    folder, extra = corpus
    good = {"scenes.mp4", "pattern.mkv", "carphone_pristine.mp4", "bikes.mp4"}
    bad = {"empty.mp4", "random.mp4", "notes.mp4", "truncated.mp4", "audio_only.mp4",
           "zero_duration.mp4", "missing.mp4"}  # fmt: skip
    store_dir = store_at
    s = run_index(job([folder, *extra], store_dir, tiny_dir))
    assert (s.videos, s.indexed, s.failed, s.skipped) == (11, 4, 7, 0), s.failures
    assert s.frames > 0 and s.frames_per_s > 0

    with store_at.open() as store:
        rows = {Path(r.uri).name: r for r in store.list_videos()}
        assert set(rows) == good | bad
        for name in bad:
            r = rows[name]
            assert r.status == "failed" and r.run_id is None and r.slots == 0
            # readable: names the file and says what is wrong, no Python traceback
            assert name in r.error and "Traceback" not in r.error, r.error
            assert not r.retryable
        assert "empty" in rows["empty.mp4"].error
        assert "no such file" in rows["missing.mp4"].error.lower()
        for name in good:
            r = rows[name]
            assert r.status == "indexed" and r.error is None
            assert r.encoder_fingerprint == s.encoder_fingerprint
            assert r.config_hash == s.config_hash and r.duration_s and r.width
            mem = store.load_memory(r.video_id)
            assert len(mem) == r.slots and int(mem.sizes.sum()) == r.frames_sampled
            # spans cover the video: from its start to its end, without gaps
            assert float(mem.start_s[0]) < 0.6
            assert float(mem.end_s[-1]) == pytest.approx(r.duration_s, abs=0.6)
            assert torch.allclose(mem.end_s[:-1], mem.start_s[1:])
            assert r.config.decode.fps == 2.0 and r.config.memory.long_term_len == 8
        counts = store.count_rows()
        n_mem = sum(r.slots + r.recent for r in rows.values())
        assert counts == {"videos": 11, "memories": n_mem}
        run_ids = {r.video_id: r.run_id for r in rows.values()}

    again = run_index(job([folder, *extra], store_dir, tiny_dir))
    assert (again.indexed, again.failed, again.skipped) == (0, 0, 11)
    with store_at.open() as store:
        assert store.count_rows() == counts

    forced = run_index(
        job([folder / "bikes.mp4", folder / "sub" / "pattern.mkv"], store_dir, tiny_dir, force=True)
    )
    assert (forced.indexed, forced.failed) == (2, 0)
    retried = run_index(job([folder / "sub" / "broken"], store_dir, tiny_dir, retry_failed=True))
    assert (retried.indexed, retried.failed) == (0, 6)
    with store_at.open() as store:
        assert store.count_rows() == counts  # replaced, not duplicated
        now = {r.video_id: r.run_id for r in store.list_videos()}
        assert {v for v in now if now[v] != run_ids[v]} == {
            rows["bikes.mp4"].video_id,
            rows["pattern.mkv"].video_id,
        }

    # a changed config is a different key: indexed anew beside the old memories
    other = run_index(
        job([folder / "scenes.mp4"], store_dir, tiny_dir, decode=DecodeConfig(fps=1.0))
    )
    assert other.indexed == 1 and other.config_hash != s.config_hash
    with store_at.open() as store:
        assert len(store.list_videos(video_id=rows["scenes.mp4"].video_id)) == 2


def test_each_worker_decodes_with_its_share_of_the_cores(
    clip: Path, tmp_path: Path, tiny_dir: Path
) -> None:
    assert decode_cpus(job([clip], tmp_path, tiny_dir, workers=3)) == cpu_share(3)
    pinned = DecodeConfig(fps=2.0, cpus=5)
    assert decode_cpus(job([clip], tmp_path, tiny_dir, workers=3, decode=pinned)) == 5
    cluster = job([clip], tmp_path, tiny_dir, workers=3, executor="ray", ray_address="ray://h:1")
    assert decode_cpus(cluster) is None  # each worker uses its own node's cores

    # what the workers get: the share, in the config they decode with, outside the key
    three = job([clip], tmp_path / "a", tiny_dir, workers=3)
    s3 = run_index(three, executor=LocalExecutor(IndexStepSpec(three.encoder)))
    s1 = run_index(job([clip], tmp_path / "b", tiny_dir))
    assert s3.indexed == s1.indexed == 1 and s3.config_hash == s1.config_hash
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b:
        assert a.list_videos()[0].config.decode.cpus == cpu_share(3)
        assert b.list_videos()[0].config.decode.cpus == cpu_share(1)


def test_duplicate_content_is_indexed_once(clip: Path, tmp_path: Path, tiny_dir: Path) -> None:
    shutil.copy(clip, tmp_path / "copy.mp4")
    s = run_index(job([clip, tmp_path / "copy.mp4"], tmp_path / "store", tiny_dir))
    assert (s.indexed, s.skipped) == (1, 1)


@pytest.mark.slow  # Ray start-up and two actors loading torch (~20 s)
def test_ray_executor_matches_local(
    clip: Path, corpus: tuple[Path, list[Path]], tmp_path: Path, tiny_dir: Path
) -> None:
    ray = pytest.importorskip("ray")
    folder, _ = corpus
    paths = [clip, folder / "sub" / "broken" / "random.mp4", folder / "carphone_pristine.mp4"]
    local = run_index(job(paths, tmp_path / "local", tiny_dir))
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    try:
        j = job(paths, tmp_path / "ray", tiny_dir, executor="ray", workers=2)
        ex = RayExecutor(IndexStepSpec(j.encoder), workers=2, num_cpus_per_worker=1)
        s = run_index(j, executor=ex)
    finally:
        ray.shutdown()
    assert (s.indexed, s.failed) == (local.indexed, local.failed) == (2, 1)
    assert s.encoder_fingerprint == local.encoder_fingerprint
    with Store(tmp_path / "local") as a, Store(tmp_path / "ray") as b:
        for r in a.list_videos("indexed"):
            ma, mb = a.load_memory(r.video_id), b.load_memory(r.video_id)
            assert torch.allclose(ma.tokens.float(), mb.tokens.float(), atol=1e-2)
            assert torch.equal(ma.sizes, mb.sizes)
        assert [r.status for r in a.list_videos()] == [r.status for r in b.list_videos()]


def test_local_executor_requires_start(tiny_dir: Path) -> None:
    with pytest.raises(RuntimeError):
        next(LocalExecutor(IndexStepSpec(EncoderConfig(str(tiny_dir)))).run([], None))


class WatchesLookahead:
    """The real encoder, instrumented: fails if two videos ever encode at once, and on
    its first call (video 1) waits until video 2 has been probed (by the worker's
    lookahead thread) before it goes on."""

    def __init__(self, inner, probed: list[str], second: str) -> None:
        self.inner, self.probed, self.second = inner, probed, second
        self.busy = False
        self.calls = 0
        self.second_probed_during_first = False
        for k in ("input_size", "tokens_per_frame", "dim", "embed_dim", "fingerprint"):
            setattr(self, k, getattr(inner, k))

    def encode(self, frames, timestamps=None):
        if self.busy:
            raise RuntimeError("two videos were encoded at the same time")
        self.busy = True
        try:
            self.calls += 1
            if self.calls == 1:
                deadline = time.time() + 20
                while self.second not in self.probed and time.time() < deadline:
                    time.sleep(0.01)
                self.second_probed_during_first = self.second in self.probed
            return self.inner.encode(frames, timestamps)
        finally:
            self.busy = False


def test_next_video_is_probed_and_decoded_while_the_current_one_encodes(
    tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import videomem.pipeline.probe as probe_mod

    videos = [make_pattern(tmp_path / f"v{i}.mp4", seconds=4, rate=5) for i in range(3)]
    probed: list[str] = []
    real_probe = probe_mod.probe

    def recording_probe(uri, *args, **kwargs):
        probed.append(str(uri))
        return real_probe(uri, *args, **kwargs)

    monkeypatch.setattr(probe_mod, "probe", recording_probe)
    ex = LocalExecutor(IndexStepSpec(EncoderConfig(str(tiny_dir), device="cpu", batch_size=4)))
    info = ex.start()
    watcher = WatchesLookahead(ex._step.encoder, probed, str(videos[1]))  # type: ignore[union-attr]
    ex._step.encoder = watcher  # type: ignore[union-attr]
    task = TaskSpec(
        decode=DecodeConfig(fps=2.0, size=info.input_size, batch_size=4),
        memory=SMALL_MEMORY,
        config_hash="h",
        model="tiny",
        encoder={},
    )
    items = [WorkItem(str(v), f"id{i}") for i, v in enumerate(videos)]
    outs = [o for batch in ex.run(items, task) for o in batch]
    assert [o.record.video_id for o in outs] == ["id0", "id1", "id2"]  # committed in order
    assert all(o.record.status == "indexed" for o in outs), [o.record.error for o in outs]
    assert watcher.second_probed_during_first
    assert decode_threads() == []


# --------------------------------------------------------------------------- crashes


@pytest.mark.slow  # two subprocess runs with a model load each (~15 s)
def test_sigkill_midway_then_rerun_completes(
    tmp_path: Path, tiny_dir: Path, store_at: StoreAt
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(6):
        make_pattern(videos / f"v{i}.mp4", seconds=6 + i, rate=10)
    cmd = [
        sys.executable, "-m", "videomem.jobs.cli", "index", str(videos), *store_at.cli_args(),
        "--model", str(tiny_dir), "--fps", "10", "--batch-size", "4", "--device", "cpu",
        "--executor", "local",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: set[str] = set()
    try:  # look only while the job is stopped (SIGSTOP): what is seen is what it left
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                with store_at.open() as reader:
                    seen = set(whole_videos(reader))  # a reader mid-run: never partial
            except Exception as e:  # store not created yet
                if "no videomem store" not in str(e):
                    raise
            if seen:
                break
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.2)  # the job's slice: too short to commit every video
        assert proc.poll() is None, "the job finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    with store_at.open() as reader:
        killed_state = set(whole_videos(reader))
        assert killed_state == seen and 1 <= len(seen) < 6

    rerun = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    with store_at.open() as store:
        rows = store.list_videos()
        assert len(rows) == 6 and all(r.status == "indexed" for r in rows)
        assert len(whole_videos(store)) == 6
        # no duplicates and no orphans: every memory row belongs to a visible video
        assert store.count_rows() == {
            "videos": 6,
            "memories": sum(r.slots + r.recent for r in rows),
        }


# --------------------------------------------------------------------------- memory


RSS_SCRIPT = """
import json, resource, sys
from videomem.jobs.index import IndexJob, run_index
from videomem.encoders.config import EncoderConfig
from videomem.pipeline.types import DecodeConfig
job = IndexJob(paths=[sys.argv[1]], store=sys.argv[2],
               encoder=EncoderConfig(model=sys.argv[3], device="cpu", batch_size=32),
               decode=DecodeConfig(fps=25.0), executor="local")
s = run_index(job)
print(json.dumps({"frames": s.frames, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_video_length(tmp_path: Path, tiny_dir: Path) -> None:
    import json

    results = {}
    for frames in (1_000, 10_000):
        video = make_long(tmp_path / f"{frames}.mp4", num_frames=frames).path
        out = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, str(video), str(tmp_path / f"s{frames}"), str(tiny_dir)],
            capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
        results[frames] = json.loads(out.stdout.strip().splitlines()[-1])
    for frames, r in results.items():  # scene lengths round to whole frames
        assert abs(r["frames"] - frames) <= 6, r
    small, big = results[1_000]["rss_kb"], results[10_000]["rss_kb"]
    assert big <= small * 1.10, f"peak RSS {big} kB for 10k frames vs {small} kB for 1k"


@pytest.mark.parametrize(
    "bad",
    [{"commit_batch": 0}, {"commit_batch": -1}, {"workers": 0}, {"optimize_after": -1}],
)
def test_job_settings_are_validated(tmp_path: Path, bad: dict) -> None:
    from videomem.pipeline.errors import ConfigError

    with pytest.raises(ConfigError):
        IndexJob(paths=["x"], store=str(tmp_path), encoder=EncoderConfig("m"), **bad)


def test_encoder_config_names_its_model() -> None:
    with pytest.raises(TypeError):
        EncoderConfig()  # type: ignore[call-arg]


def test_from_list_streams_paths_and_skips_comments(tmp_path: Path, clip: Path) -> None:
    from videomem.jobs.index import iter_job_files

    listing = tmp_path / "list.txt"
    listing.write_text(f"# videos\n{clip}\n\n{tmp_path / 'missing.mp4'}\n")
    job = IndexJob(
        paths=[], store=str(tmp_path / "s"), encoder=EncoderConfig("m"), from_list=str(listing)
    )
    assert list(iter_job_files(job)) == [str(clip), str(tmp_path / "missing.mp4")]
