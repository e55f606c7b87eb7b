"""One writer per store on object storage: the lease, against a real S3 server (moto).

Writers here are real processes where it matters (a killed or frozen holder cannot be
faked by a thread of the test), talking to the S3 server through real conditional puts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from videomem.memory.store import Store, VideoCommit
from videomem.memory.store.lease import LEASE_NAME, LeaseConfig, object_store
from videomem.pipeline.errors import ConfigError, StoreError

from tests.memory.store.test_store import make_memory, record
from tests.paths import REPO

TTL = 4.0

#: a writer process: takes the lease, says so, then obeys one line on stdin
#: ("commit NAME" commits a video, "loop" commits videos until killed)
HOLDER = """
import json, sys
from videomem.memory.store import LeaseConfig
from videomem.memory.store import VideoCommit
from videomem.memory.store import Store
from tests.memory.store.test_store import make_memory, record
uri, options, ttl = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
store = Store(uri, writer=True, storage_options=options, lease=LeaseConfig(ttl_s=ttl))
print("ready", flush=True)
cmd = sys.stdin.readline().split()
if cmd[0] == "commit":
    try:
        store.commit([VideoCommit(record(cmd[1]), make_memory(cmd[1]))])
        print("committed", flush=True)
    except Exception as e:
        print("refused", type(e).__name__, e, flush=True)
elif cmd[0] == "loop":
    i = 0
    while True:
        v = f"v{i:04d}"
        store.commit([VideoCommit(record(v), make_memory(v, slots=3 + i % 5, seed=i))])
        i += 1
"""


def holder(uri: str, options: dict[str, str], ttl: float = TTL) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, uri, json.dumps(options), str(ttl)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"holder did not start: {line!r} {proc.stderr.read()}")  # type: ignore[union-attr]
    return proc


def open_writer(uri: str, s3, **lease: float) -> Store:
    lease.setdefault("ttl_s", TTL)
    return Store(uri, writer=True, storage_options=s3.options(), lease=LeaseConfig(**lease))


def lease_body(uri: str, s3) -> dict:
    import obstore

    return json.loads(bytes(obstore.get(object_store(uri, s3.options()), LEASE_NAME).bytes()))


def test_second_writer_waits_for_the_first_to_close(s3) -> None:
    uri = s3.new_store_uri()
    first = open_writer(uri, s3)
    first.commit([VideoCommit(record("a"), make_memory("a"))])
    closed = threading.Event()

    def close_later() -> None:
        time.sleep(1.5)
        first.close()
        closed.set()

    t = threading.Thread(target=close_later)
    t.start()
    try:
        with open_writer(uri, s3, wait_s=60) as second:
            assert closed.is_set(), "the second writer got the lease while the first held it"
            second.commit([VideoCommit(record("b"), make_memory("b"))])
            assert [r.video_id for r in second.list_videos()] == ["a", "b"]
    finally:
        t.join()


def test_writers_racing_for_a_fresh_store_one_wins(s3) -> None:
    uri = s3.new_store_uri()
    results: list[object] = []
    start = threading.Barrier(3)

    def race() -> None:
        start.wait()
        try:
            results.append(open_writer(uri, s3))
        except StoreError as e:
            results.append(e)

    threads = [threading.Thread(target=race) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stores = [r for r in results if isinstance(r, Store)]
    try:
        assert len(stores) == 1, results
        assert all("another videomem job" in str(r) for r in results if r not in stores)
    finally:
        for s in stores:
            s.close()


def test_live_holder_is_refused_and_a_frozen_one_never_commits_after_losing_it(s3) -> None:
    """A second writer refuses while the holder renews. A holder paused past its ttl
    (SIGSTOP: a long GC pause, a frozen VM) may wake up after another writer took
    over; it must then refuse to commit."""
    uri = s3.new_store_uri()
    proc = holder(uri, s3.options())
    try:
        with pytest.raises(StoreError, match=rf"another videomem job.*pid {proc.pid}"):
            open_writer(uri, s3)
        with Store(uri, storage_options=s3.options()) as reader:  # readers never wait
            assert reader.list_videos() == []
        os.kill(proc.pid, signal.SIGSTOP)
        with open_writer(uri, s3) as w:
            w.commit([VideoCommit(record("new"), make_memory("new"))])
            os.kill(proc.pid, signal.SIGCONT)
            proc.stdin.write("commit old\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            answer = proc.stdout.readline().strip()  # type: ignore[union-attr]
            assert answer.startswith("refused StoreError"), answer
            assert "writer lease" in answer
            assert [r.video_id for r in w.list_videos()] == ["new"]
            assert lease_body(uri, s3)["pid"] == os.getpid()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.communicate()


def test_killed_mid_commit_then_resumed_no_duplicate_no_partial_video(s3) -> None:
    """SIGKILL a writer that commits videos back to back (so it dies inside a commit
    most of the time), then resume: nothing partial is visible, and the resumed writer
    leaves exactly one memory per video."""
    uri = s3.new_store_uri()
    proc = holder(uri, s3.options())
    proc.stdin.write("loop\n")  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    with Store(uri, storage_options=s3.options()) as reader:
        deadline = time.monotonic() + 120
        while len(reader.list_videos()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.kill()
        proc.communicate()
        assert lease_body(uri, s3)["pid"] == proc.pid and not lease_body(uri, s3)["released"]
        visible = reader.list_videos()
        assert len(visible) >= 3
        for r in visible:  # whole or absent, never partial
            assert len(reader.load_memory(r.video_id)) == r.slots
    with open_writer(uri, s3) as w:  # watches the silent lease for a ttl, then takes it
        assert lease_body(uri, s3)["pid"] == os.getpid()
        w.collect_garbage()  # what an index job does first
        assert w.count_rows()["memories"] == sum(r.slots + r.recent for r in visible)
        # resume: the killed video (and the next ones) committed again, once each
        n = len(visible) + 2
        todo = [f"v{i:04d}" for i in range(n) if f"v{i:04d}" not in {r.video_id for r in visible}]
        w.commit([VideoCommit(record(v), make_memory(v, slots=3)) for v in todo])
        rows = w.list_videos()
        assert sorted(r.video_id for r in rows) == [f"v{i:04d}" for i in range(n)]
        assert w.count_rows() == {"videos": n, "memories": sum(r.slots + r.recent for r in rows)}
    assert lease_body(uri, s3)["released"]


def test_lease_settings_are_validated() -> None:
    with pytest.raises(ConfigError):
        LeaseConfig(ttl_s=0)
    with pytest.raises(ConfigError):
        LeaseConfig(wait_s=-1)


def test_lease_left_long_ago_is_taken_without_watching(s3) -> None:
    """A lease its holder last renewed long ago (a job killed yesterday) is taken at
    once, even when watching it would take an hour."""
    import obstore

    uri = s3.new_store_uri()
    body = {"holder": "x", "host": "gone", "pid": 1, "ttl_s": 5, "count": 9,
            "renewed_at": time.time() - 86400, "released": False}  # fmt: skip
    obstore.put(object_store(uri, s3.options()), LEASE_NAME, json.dumps(body).encode())
    got: list[Store] = []
    t = threading.Thread(target=lambda: got.append(open_writer(uri, s3, ttl_s=3600)), daemon=True)
    t.start()
    t.join(120)  # a liveness bound, not a speed measurement: watching would take 3600 s
    assert got, "the writer watched a lease that was a day old"
    got[0].close()
