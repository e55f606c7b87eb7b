"""Store faults: a full disk under a running job, a damaged data file.

Each ends in a clear state (an error that says what happened and what to do) that the
next run recovers from, and nothing committed before is lost. (Killed workers and
drivers: tests/test_executor.py, tests/test_index.py, tests/test_cluster.py.)
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from videomem.encoders.config import EncoderConfig
from videomem.jobs.index import IndexJob, run_index
from videomem.memory.config import MemoryConfig
from videomem.memory.store import MEMORIES, Store, VideoCommit
from videomem.pipeline.errors import StoreError
from videomem.pipeline.types import DecodeConfig

from tests.memory.store.test_store import bits, make_memory, record, whole_videos
from tests.videos import make_pattern

# --------------------------------------------------------------------------- full disk


@dataclass
class SmallDisk:
    """A store directory whose writes can be made to fail: on a tmpfs we fill up when
    the machine lets us mount one (root), else through a file-size limit of 0 bytes in
    the process that writes (every write that grows a file fails with EFBIG)."""

    store: Path
    fill: Callable[[], None]
    free: Callable[[], None]
    #: run in the writing child before exec (the RLIMIT_FSIZE fallback), or None
    preexec: Callable[[], None] | None
    kind: str


def _no_file_growth() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write returns EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        yield SmallDisk(tmp_path / "store", lambda: None, lambda: None, _no_file_growth, "fsize")
        return
    filler = mnt / "filler"

    def fill() -> None:
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC, e

    try:
        yield SmallDisk(mnt / "store", fill, lambda: filler.unlink(), None, "tmpfs")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videomem.encoders.testing import tiny_checkpoint

    return tiny_checkpoint("llava", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.slow  # one CLI run in a child process (model load)
def test_full_disk_fails_the_job_clearly_and_the_next_run_recovers(
    small_disk: SmallDisk, tiny: Path, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(4):
        make_pattern(videos / f"v{i}.mp4", seconds=2 + i)
    first_two = [videos / "v0.mp4", videos / "v1.mp4"]
    enc = EncoderConfig(str(tiny), device="cpu", batch_size=8)
    mem = MemoryConfig(short_term_len=6, merge_to=2, long_term_len=8, keep_recent=2)

    def job(paths: list[Path]) -> IndexJob:
        return IndexJob(
            paths=[str(p) for p in paths], store=str(small_disk.store), encoder=enc,
            decode=DecodeConfig(fps=2.0), memory=mem, executor="local",
        )  # fmt: skip

    assert run_index(job(first_two)).indexed == 2
    small_disk.fill()
    cmd = [
        sys.executable, "-m", "videomem.jobs.cli", "index", str(videos), "--store",
        str(small_disk.store), "--model", str(tiny), "--device", "cpu", "--fps", "2",
        "--batch-size", "8", "--executor", "local", "--short-term-len", "6",
        "--long-term-len", "8",
    ]  # fmt: skip
    full = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, preexec_fn=small_disk.preexec
    )
    assert full.returncode == 2, (small_disk.kind, full.stdout, full.stderr)
    assert "file system is full" in full.stderr and "run the job again" in full.stderr, (
        small_disk.kind,
        full.stderr,
    )
    with Store(small_disk.store) as store:  # what was committed is intact
        assert len(whole_videos(store)) == 2

    small_disk.free()
    again = run_index(job([videos]))
    assert (again.indexed, again.skipped, again.failed) == (2, 2, 0), again.to_dict()
    with Store(small_disk.store) as store:
        rows = store.list_videos()
        assert len(whole_videos(store)) == 4 and len(rows) == 4
        assert store.count_rows() == {
            "videos": 4,
            "memories": sum(r.slots + r.recent for r in rows),
        }


# --------------------------------------------------------------------------- damaged file


def fragment_files(store: Store, table: str) -> dict[str, list[str]]:
    """video_id -> the data files (absolute paths) holding its rows in ``table``."""
    import lance

    out: dict[str, list[str]] = {}
    for frag in lance.dataset(f"{store.uri}/{table}.lance").get_fragments():
        for vid in set(frag.to_table(columns=["video_id"]).column("video_id").to_pylist()):
            files = [f"{store.uri}/{table}.lance/data/{df.path}" for df in frag.data_files()]
            out.setdefault(vid, []).extend(files)
    return out


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_damaged_data_file_is_reported_then_repaired_keeping_everything_else(
    tmp_path: Path, damage: str
) -> None:
    from typer.testing import CliRunner
    from videomem.jobs.cli import app

    mems = {v: make_memory(v, slots=40, seed=i) for i, v in enumerate("abc")}
    with Store(tmp_path / "store", writer=True) as store:
        for v, m in mems.items():  # one commit each: one fragment each
            store.commit([VideoCommit(record(v), m)])
        (victim,) = fragment_files(store, MEMORIES)["b"]
    size = os.path.getsize(victim)
    with open(victim, "r+b") as f:
        if damage == "truncate":
            f.truncate(size // 2)
        else:  # overwrite the middle: the file still ends like a Lance file
            f.seek(size // 3)
            f.write(os.urandom(size // 3))

    with Store(tmp_path / "store") as reader, pytest.raises(StoreError) as err:
        reader.load_memory("b")
    assert "table memories" in str(err.value) and "videomem repair" in str(err.value)

    if damage == "truncate":  # no column of the file reads: the index job's first scan
        (tmp_path / "x.mp4").write_bytes(b"not read")  # fails, before any model loads
        job = IndexJob(paths=[str(tmp_path / "x.mp4")], store=str(tmp_path / "store"),
                       encoder=EncoderConfig("unused"), executor="local")  # fmt: skip
        with pytest.raises(StoreError, match="table memories.*videomem repair"):
            run_index(job)

    runner = CliRunner()
    dry = runner.invoke(app, ["repair", "--store", str(tmp_path / "store"), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert os.path.basename(victim) in dry.output and "table memories" in dry.output
    fixed = runner.invoke(app, ["repair", "--store", str(tmp_path / "store")])
    assert fixed.exit_code == 0, fixed.output
    assert "1 video(s) marked for re-indexing" in fixed.output

    with Store(tmp_path / "store", writer=True) as store:
        for v in "ac":  # untouched, bit for bit
            assert torch.equal(bits(store.load_memory(v).tokens), bits(mems[v].tokens))
        (b,) = store.list_videos("failed")
        assert b.video_id == "b" and b.retryable and os.path.basename(victim) in b.error
        # what the next index run does with a retryable failure: index it again
        store.commit([VideoCommit(record("b"), mems["b"])])
        assert torch.equal(bits(store.load_memory("b").tokens), bits(mems["b"].tokens))
        rows = store.list_videos()
        assert store.count_rows() == {
            "videos": 3,
            "memories": sum(r.slots + r.recent for r in rows),
        }
