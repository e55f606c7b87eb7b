"""Jobs on a real Ray cluster: ``ray job submit`` to a local head node (127.0.0.1, the
dashboard's job API, token auth), the store on ``s3://`` served by a local S3 server, as
a cluster would use it (every node reaches the store; the driver is its one writer).

A stage's cluster job is ``python -m videomem.jobs.ray_job STAGE ARGS…``; a new stage
gets its test here by submitting that command the same way.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest
from videomem.memory.store import Store
from videomem.pipeline.errors import StoreError

from tests.memory.store.test_store import whole_videos
from tests.ray_cluster import LocalRayCluster
from tests.videos import make_pattern

# a real head node (`ray start --head`, ~15 s) and model loads in actors
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    c = LocalRayCluster(num_cpus=2).start()
    try:
        yield c
    finally:
        c.stop()
        assert c.pids() == [], "the test cluster left processes behind"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videomem.encoders.testing import tiny_checkpoint

    return tiny_checkpoint("llava", cache_dir=tmp_path_factory.mktemp("cache"))


def index_cmd(videos: Path, uri: str, s3, tiny: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "videomem.jobs.ray_job", "index", str(videos), "--store", uri,
        *s3.cli_args(), "--lease-ttl", "10", "--model", str(tiny), "--device", "cpu",
        "--batch-size", "4", "--workers", "2", *extra,
    ]  # fmt: skip


def test_index_job_through_ray_job_submit(cluster, s3, tiny: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        make_pattern(videos / f"v{i}.mp4", seconds=2 + i)
    uri = s3.new_store_uri()
    r = cluster.submit(*index_cmd(videos, uri, s3, tiny, "--fps", "2", "--json"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "succeeded" in r.stdout + r.stderr
    assert '"indexed": 3' in r.stdout  # the job's own JSON summary, streamed back
    with Store(uri, storage_options=s3.options()) as store:
        rows = store.list_videos()
        assert len(rows) == 3 and all(r.status == "indexed" for r in rows)
        assert len(whole_videos(store)) == 3
        assert all(r.config.encoder["device"] == "cpu" for r in rows)


def driver_pids(marker: str) -> list[int]:
    """Python processes running the ray_job entry point with ``marker`` as an argument
    (not the shell that Ray's job supervisor may run it from)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                args = (p / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if "videomem.jobs.ray_job" in args and marker in args:
                out.append(int(p.name))
    return out


def test_killed_driver_then_resubmitted_job_recovers(
    cluster, s3, tiny: Path, tmp_path: Path
) -> None:
    """SIGKILL the driver of a submitted job mid-run (its actors die with it), then
    submit it again: nothing partial was ever visible, the rerun finishes the rest, no
    memory is duplicated.

    The driver is the store's one committer, so the test looks at the store only while
    the driver is stopped (SIGSTOP): what it sees cannot change before the SIGKILL. The
    driver runs in short slices between looks, so a fast machine cannot finish the whole
    job between the first visible commit and the kill."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    videos = tmp_path / "videos"
    videos.mkdir()
    n = 8
    for i in range(n):
        make_pattern(videos / f"v{i}.mp4", seconds=15 + i, rate=10)
    uri = s3.new_store_uri()
    cmd = index_cmd(videos, uri, s3, tiny, "--fps", "10")
    client = JobSubmissionClient(
        cluster.address, headers={"Authorization": f"Bearer {cluster.token}"}
    )
    job_id = client.submit_job(entrypoint=shlex.join(cmd))
    deadline = time.monotonic() + 300
    pid = None
    seen: set[str] = set()
    while True:
        assert time.monotonic() < deadline, "no video was committed in time"
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)  # from here until SIGCONT, nothing commits
        status = client.get_job_status(job_id)
        assert status in (JobStatus.PENDING, JobStatus.RUNNING), client.get_job_logs(job_id)
        if pid is None:
            pids = driver_pids(uri)  # found long before its workers have loaded
            assert len(pids) <= 1, pids
            pid = pids[0] if pids else None
        else:
            try:
                with Store(uri, storage_options=s3.options()) as reader:
                    seen = set(whole_videos(reader))
            except StoreError as e:  # the job has not created the store yet
                if "no videomem store" not in str(e):
                    raise
            if seen:  # a committed video (never a partial one), and the driver stopped
                break
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.1)  # the driver's slice
    assert len(seen) < n, "the driver committed every video in one slice"
    os.kill(pid, signal.SIGKILL)
    while client.get_job_status(job_id) not in (JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, client.get_job_status(job_id)
        time.sleep(0.5)
    with Store(uri, storage_options=s3.options()) as reader:
        assert set(whole_videos(reader)) == seen  # the kill left what was committed, only that

    r = cluster.submit(*cmd, "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with Store(uri, storage_options=s3.options()) as store:
        rows = store.list_videos()
        assert len(rows) == n and all(r.status == "indexed" for r in rows)
        assert len(whole_videos(store)) == n
        assert store.count_rows() == {
            "videos": n,
            "memories": sum(r.slots + r.recent for r in rows),
        }


def test_qa_job_through_ray_job_submit(cluster, tiny: Path, tmp_path: Path) -> None:
    """Index, then answer a question file, each submitted to the cluster; the answers
    are in the store's answers table (a directory store: one machine, one file system)."""
    import json

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(2):
        make_pattern(videos / f"v{i}.mp4", seconds=2 + i)
    store = tmp_path / "store"
    base = ["--store", str(store), "--device", "cpu", "--workers", "2", "--json"]
    r = cluster.submit(
        sys.executable, "-m", "videomem.jobs.ray_job", "index", str(videos), *base,
        "--model", str(tiny), "--fps", "2", "--batch-size", "4",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"video": str(videos / f"v{i}.mp4"), "question": q, "question_id": f"q{i}{k}"}
        for i in range(2)
        for k, q in enumerate(["What is shown?", "What colour dominates?"])
    ]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    r = cluster.submit(
        sys.executable, "-m", "videomem.jobs.ray_job", "qa", str(questions), *base,
        "--max-new-tokens", "4",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "succeeded" in r.stdout + r.stderr
    with Store(str(store)) as st:
        answers = st.qa.read("answers")
    assert sorted(a["question_id"] for a in answers) == sorted(row["question_id"] for row in rows)
    assert all(a["status"] == "answered" and a["answer"] for a in answers), answers
