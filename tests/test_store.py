"""The LanceDB memory store: round trips, atomic visibility, replacement, export."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from videomem.memory.schema import VideoCommit, VideoRecord, memory_rows
from videomem.memory.store import Store
from videomem.pipeline.errors import StoreError
from videomem.pipeline.types import MEMORY_PRESETS, MemoryConfig, VideoMemory

N, D, E = 4, 8, 6


def make_memory(
    video_id: str = "vid1",
    slots: int = 5,
    fp: str = "enc:abc:float32",
    value: float | None = None,
    recent: int = 2,
    seed: int = 0,
) -> VideoMemory:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(slots, N, D, generator=g).half()
    if value is not None:
        tokens = torch.full((slots, N, D), value, dtype=torch.float16)
    sizes = torch.arange(1, slots + 1, dtype=torch.int64)
    ends = torch.cumsum(sizes.double(), 0)
    return VideoMemory(
        video_id=video_id,
        tokens=tokens,
        sizes=sizes,
        start_s=ends - sizes.double(),
        end_s=ends,
        embedding=torch.randn(slots, E, generator=g),
        encoder_fingerprint=fp,
        memory_config=MemoryConfig(),
        frames_seen=int(sizes.sum()),
        recent_tokens=torch.randn(recent, N, D, generator=g).half() if recent else None,
        recent_timestamps=torch.arange(recent, dtype=torch.float64) + 100 if recent else None,
    )


def record(
    video_id: str = "vid1",
    fp: str = "enc:abc:float32",
    config_hash: str = "cfg1",
    status: str = "indexed",
    **kw: object,
) -> VideoRecord:
    cfg = json.dumps({"memory": MEMORY_PRESETS["moviechat_reference"].to_dict()})
    return VideoRecord(
        video_id=video_id,
        encoder_fingerprint=fp,
        config_hash=config_hash,
        status=status,  # type: ignore[arg-type]
        uri=f"/videos/{video_id}.mp4",
        config_json=cfg,
        frames_sampled=15,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "store", writer=True) as s:
        yield s


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int16)


def test_roundtrip_is_bit_exact_in_float16(store: Store) -> None:
    mem = make_memory()
    # awkward float16 values: NaN payloads, infinities, signed zero, subnormals
    special = torch.tensor([0x7E01, 0xFC00, 0x7C00, 0x8000, 0x0001, 0x03FF, 0xFBFF, 0x3C00])
    mem.tokens.view(torch.int16)[0, 0, :] = special.to(torch.int16)
    store.commit([VideoCommit(record(), mem)])

    got = store.load_memory("vid1")
    assert got.tokens.dtype == torch.float16
    assert torch.equal(bits(got.tokens), bits(mem.tokens))
    assert torch.equal(got.sizes, mem.sizes)
    assert torch.equal(got.start_s, mem.start_s) and torch.equal(got.end_s, mem.end_s)
    assert got.embedding is not None and torch.equal(got.embedding, mem.embedding)
    assert got.recent_tokens is not None and torch.equal(
        bits(got.recent_tokens), bits(mem.recent_tokens)
    )
    assert torch.equal(got.recent_timestamps, mem.recent_timestamps)
    assert got.memory_config == MEMORY_PRESETS["moviechat_reference"]
    assert (got.encoder_fingerprint, got.config_hash, got.frames_seen) == (
        "enc:abc:float32",
        "cfg1",
        15,
    )


def test_float32_tokens_are_stored_as_their_float16_rounding(store: Store) -> None:
    mem = make_memory(recent=0)
    mem.tokens = torch.randn(5, N, D) * 1e3
    store.commit([VideoCommit(record(), mem)])
    got = store.load_memory("vid1")
    assert torch.equal(bits(got.tokens), bits(mem.tokens.half()))
    assert got.recent_tokens is None


def test_recommit_replaces_never_duplicates(store: Store) -> None:
    store.commit([VideoCommit(record(), make_memory(slots=5))])
    assert store.count_rows() == {"videos": 1, "memories": 5 + 2}
    store.commit([VideoCommit(record(), make_memory(slots=3, seed=1))])
    assert store.count_rows() == {"videos": 1, "memories": 3 + 2}
    got = store.load_memory("vid1")
    assert len(got) == 3 and torch.equal(
        bits(got.tokens), bits(make_memory(slots=3, seed=1).tokens)
    )


def test_failure_rows_and_status_filter(store: Store) -> None:
    store.commit(
        [
            VideoCommit(record("a"), make_memory("a")),
            VideoCommit(record("b", status="failed", error="b.mp4: moov atom not found")),
        ]
    )
    assert [r.video_id for r in store.list_videos("indexed")] == ["a"]
    (failed,) = store.list_videos("failed")
    assert failed.error == "b.mp4: moov atom not found" and failed.run_id is None
    with pytest.raises(StoreError, match="no indexed memory"):
        store.load_memory("b")
    with pytest.raises(StoreError, match="unknown status"):
        store.list_videos("done")  # type: ignore[arg-type]
    # a failed re-index replaces the indexed row, and its memory rows go with it
    store.commit([VideoCommit(record("a", status="failed", error="boom"))])
    assert store.list_videos("indexed") == [] and store.count_rows()["memories"] == 0


def test_memory_rows_without_marker_are_invisible_and_collected(store: Store) -> None:
    # the state a SIGKILL between step 1 (rows) and step 2 (marker) leaves behind
    store._memories.add(memory_rows(make_memory("x"), ("x", "enc:abc:float32", "cfg1"), "deadrun"))
    assert store.list_videos() == []
    with pytest.raises(StoreError):
        store.load_memory("x")
    assert store.export(store.uri + "-export")  # export ignores them too
    assert pq.read_table(store.uri + "-export/memories.parquet").num_rows == 0
    assert store.collect_garbage() == 7
    assert store.count_rows()["memories"] == 0


def test_stale_rows_of_same_key_are_ignored_then_collected(store: Store) -> None:
    mem = make_memory()
    store.commit([VideoCommit(record(), mem)])
    # a kill between step 2 (marker) and step 3 (delete) leaves old rows of the key
    key = ("vid1", "enc:abc:float32", "cfg1")
    store._memories.add(memory_rows(make_memory(slots=9, seed=3), key, "oldrun"))
    got = store.load_memory("vid1")
    assert len(got) == 5 and torch.equal(bits(got.tokens), bits(mem.tokens))
    assert store.collect_garbage() == 9 + 2
    assert store.count_rows()["memories"] == 5 + 2


def test_several_keys_per_video(store: Store) -> None:
    store.commit([VideoCommit(record(fp="A"), make_memory(fp="A", slots=2))])
    store.commit([VideoCommit(record(fp="B"), make_memory(fp="B", slots=4))])
    assert len(store.load_memory("vid1")) == 4  # most recent
    assert len(store.load_memory("vid1", encoder_fingerprint="A")) == 2
    assert store.get(("vid1", "A", "cfg1")) is not None
    assert store.get(("vid1", "C", "cfg1")) is None


def test_quotes_in_ids_are_escaped(store: Store) -> None:
    vid = "it's'; DROP"
    store.commit([VideoCommit(record(vid), make_memory(vid))])
    assert len(store.load_memory(vid)) == 5
    assert store.resolve_video_id("it's") == vid


def test_resolve_prefix(store: Store) -> None:
    store.commit([VideoCommit(record(v), make_memory(v)) for v in ("abc1", "abc2", "xyz")])
    assert store.resolve_video_id("x") == "xyz"
    with pytest.raises(StoreError, match="ambiguous"):
        store.resolve_video_id("abc")
    with pytest.raises(StoreError, match="no video"):
        store.resolve_video_id("q")


def test_single_writer_lock_and_read_only(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no videomem store"):
        Store(tmp_path / "nothing")
    with Store(tmp_path / "s", writer=True) as w:
        with pytest.raises(StoreError, match="another videomem job"):
            Store(tmp_path / "s", writer=True)
        reader = Store(tmp_path / "s")
        with pytest.raises(StoreError, match="read-only"):
            reader.commit([VideoCommit(record(), make_memory())])
        w.commit([VideoCommit(record(), make_memory())])
        assert len(reader.load_memory("vid1")) == 5  # sees the other handle's commit
    Store(tmp_path / "s", writer=True).close()  # lock released on close


def test_malformed_memory_is_rejected(store: Store) -> None:
    mem = make_memory()
    mem.sizes = mem.sizes[:3]
    with pytest.raises(StoreError, match="sizes"):
        store.commit([VideoCommit(record(), mem)])
    with pytest.raises(StoreError, match="no memory"):
        store.commit([VideoCommit(record())])
    assert store.count_rows() == {"videos": 0, "memories": 0}


def test_export_parquet_readable_by_pyarrow(store: Store, tmp_path: Path) -> None:
    mems = {v: make_memory(v, slots=s, seed=s) for v, s in (("a", 3), ("b", 6))}
    store.commit([VideoCommit(record(v), m) for v, m in mems.items()])
    store.commit([VideoCommit(record("c", status="failed", error="bad"))])
    store.commit([VideoCommit(record("a"), mems["a"])])  # replaced once: still 3 rows
    paths = store.export(tmp_path / "export")
    videos = pq.read_table(paths["videos"])
    assert sorted(videos.column("status").to_pylist()) == ["failed", "indexed", "indexed"]
    memories = pq.read_table(paths["memories"]).to_pylist()
    slots = [r for r in memories if r["kind"] == "slot"]
    assert len(slots) == 9 and len(memories) == 9 + 4
    for vid, mem in mems.items():
        rows = sorted((r for r in slots if r["video_id"] == vid), key=lambda r: r["slot"])
        tok = np.stack([np.frombuffer(r["tokens"], "<f2").reshape(r["n"], r["d"]) for r in rows])
        assert np.array_equal(tok.view(np.int16), mem.tokens.numpy().view(np.int16))
        assert [r["size"] for r in rows] == mem.sizes.tolist()


def test_optimize_keeps_data(store: Store) -> None:
    for i in range(4):
        store.commit([VideoCommit(record(f"v{i}"), make_memory(f"v{i}", seed=i))])
    store.optimize()
    for i in range(4):
        assert torch.equal(
            bits(store.load_memory(f"v{i}").tokens), bits(make_memory(seed=i).tokens)
        )


def test_reader_never_sees_a_mix_while_a_writer_replaces(tmp_path: Path) -> None:
    """Concurrent re-indexing: every read is one whole version (all slots of one run)."""
    path = tmp_path / "s"
    versions = {3: 1.0, 7: 2.0}  # slots -> constant token value of that version
    with Store(path, writer=True) as w:
        w.commit([VideoCommit(record(), make_memory(slots=3, value=1.0, recent=0))])
        stop = threading.Event()
        commits: list[int] = []
        errors: list[BaseException] = []

        def write() -> None:
            try:
                i = 0
                while not stop.is_set():
                    slots = 7 if i % 2 == 0 else 3
                    memory = make_memory(slots=slots, value=versions[slots], recent=0)
                    w.commit([VideoCommit(record(), memory)])
                    commits.append(slots)
                    i += 1
            except BaseException as e:  # a dead writer must fail the test, not warn
                errors.append(e)

        t = threading.Thread(target=write)
        t.start()
        try:
            reader = Store(path)
            seen: set[int] = set()
            deadline = time.monotonic() + 60
            # read until both versions were seen while the writer kept replacing
            while (len(seen) < 2 or len(commits) < 4) and time.monotonic() < deadline:
                assert not errors, errors
                m = reader.load_memory("vid1")
                assert len(m) in versions
                assert torch.all(m.tokens == versions[len(m)])
                seen.add(len(m))
        finally:
            stop.set()
            t.join()
    assert not errors, errors
    assert seen == set(versions), "the reader never saw both versions"
    assert len(commits) >= 4, "the writer did not keep replacing the memory"


def test_stored_bytes_are_recorded_per_video_and_minute(store: Store) -> None:
    mem = make_memory(slots=5)
    store.commit([VideoCommit(replace(record(), duration_s=30.0), mem)])
    rec = store.latest("vid1")
    n_recent = 0 if mem.recent_tokens is None else len(mem.recent_tokens)
    token_bytes = (len(mem) + n_recent) * N * D * 2
    emb_bytes = len(mem) * E * 4
    assert rec.stored_bytes == token_bytes + emb_bytes
    assert rec.bytes_per_minute == pytest.approx(rec.stored_bytes * 2)
    assert rec.to_dict()["bytes_per_minute"] == rec.bytes_per_minute


def test_a_store_written_before_stored_bytes_still_opens(tmp_path: Path) -> None:
    import lancedb

    path = tmp_path / "old"
    with Store(path, writer=True) as w:
        w.commit([VideoCommit(record(), make_memory(slots=3))])
    # what a store written by the previous version looks like: no stored_bytes column
    lancedb.connect(str(path)).open_table("videos").drop_columns(["stored_bytes"])
    with Store(path) as reader:  # readers open it as it is
        assert reader.latest("vid1").stored_bytes is None
        assert len(reader.load_memory("vid1")) == 3
    with Store(path, writer=True) as w:  # a writer adds the column
        assert w.latest("vid1").stored_bytes is None
        w.commit([VideoCommit(record("vid2"), make_memory("vid2", slots=2))])
        assert w.latest("vid2").stored_bytes > 0
        assert len(w.load_memory("vid1")) == 3
