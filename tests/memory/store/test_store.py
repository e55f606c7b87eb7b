"""The LanceDB memory store: round trips, atomic visibility, replacement, export.

Every test that opens a store runs twice: on a local directory and on ``s3://`` served
by a local S3-compatible server (``tests/s3.py``), opened through storage options.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from videomem.memory.config import MEMORY_PRESETS, MemoryConfig
from videomem.memory.store import LeaseConfig, Store
from videomem.memory.store.schema import (
    MEMORIES_SCHEMA,
    VIDEOS_SCHEMA,
    VideoCommit,
    VideoRecord,
    memory_rows,
)
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import StoreError

from tests.paths import REPO

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


#: short lease so writer tests on object storage take seconds
LEASE = LeaseConfig(ttl_s=3.0)


class Backend:
    """Where a test's stores live: local directories or prefixes of one S3 bucket."""

    def __init__(self, root: str, options: dict[str, str]) -> None:
        self.root, self.options = root, options

    def uri(self, name: str = "store") -> str:
        return f"{self.root}/{name}"

    def open(self, name: str = "store", writer: bool = False, **kw: object) -> Store:
        kw.setdefault("lease", LEASE)
        return Store(self.uri(name), writer=writer, storage_options=self.options, **kw)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend(str(tmp_path), {})
    s3 = request.getfixturevalue("s3")
    return Backend(s3.new_store_uri(), s3.options())


@pytest.fixture
def store(backend: Backend) -> Store:
    with backend.open(writer=True) as s:
        yield s


def whole_videos(store: Store) -> list[str]:
    """The visible indexed videos, each checked whole: as many slots as its row says,
    covering every frame it sampled (what a reader must see, whatever a writer did)."""
    ok = []
    for r in store.list_videos("indexed"):
        mem = store.load_memory(r.video_id)
        assert len(mem) == r.slots and int(mem.sizes.sum()) == r.frames_sampled
        ok.append(r.video_id)
    return ok


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


def test_memory_rows_without_marker_are_invisible_and_collected(
    store: Store, tmp_path: Path
) -> None:
    # the state a SIGKILL between step 1 (rows) and step 2 (marker) leaves behind
    store._memories.add(memory_rows(make_memory("x"), ("x", "enc:abc:float32", "cfg1"), "deadrun"))
    assert store.list_videos() == []
    with pytest.raises(StoreError):
        store.load_memory("x")
    assert store.export(tmp_path / "export")  # export ignores them too
    assert pq.read_table(tmp_path / "export" / "memories.parquet").num_rows == 0
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


def orphans(store: Store) -> None:
    """Memory rows no videos row names, written under the Store as a run killed between
    commit steps 1 and 2 leaves them (only a full collection finds them)."""
    store._memories.add(memory_rows(make_memory("x"), ("x", "enc:abc:float32", "cfg1"), "deadrun"))


def test_job_start_skips_the_full_collection_after_a_clean_close(backend: Backend) -> None:
    with backend.open(writer=True) as w:
        assert w.collect_garbage_after_crash() is None  # a new store: nothing to collect
        w.commit([VideoCommit(record(), make_memory())])
        orphans(w)
    with backend.open(writer=True) as w:
        assert w.collect_garbage_after_crash() is None  # the last writer closed cleanly
        assert w.count_rows()["memories"] == 7 + 7  # so the orphans were not looked for
        assert w.collect_garbage() == 7
    with backend.open(writer=True) as w:  # a full collection leaves nothing: clean again
        assert w.collect_garbage_after_crash() is None


def test_a_killed_writer_leaves_no_marker_so_the_next_job_collects(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "s"
    with Store(path, writer=True) as w:
        w.commit([VideoCommit(record(), make_memory())])
    child = (
        "import os, signal\n"
        "from videomem.memory.store import Store\n"
        "from tests.memory.store.test_store import orphans\n"
        f"s = Store({str(path)!r}, writer=True)\n"
        "orphans(s)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, timeout=300)
    assert r.returncode == -9, r.stderr.decode()
    # a writer that collects nothing (a QA job) and closes must not vouch for the kill
    Store(path, writer=True).close()
    with Store(path, writer=True) as w:
        assert w.collect_garbage_after_crash() == 7
    with Store(path, writer=True) as w:
        assert w.collect_garbage_after_crash() is None


def test_a_commit_that_broke_off_writes_no_marker(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with Store(path, writer=True) as w:
        assert w.collect_garbage_after_crash() is None  # a new store

        def full_disk(*args: object, **kwargs: object) -> None:
            raise OSError("No space left on device")

        w._videos.merge_insert = full_disk  # step 2 fails after step 1 added the rows
        with pytest.raises(StoreError, match="file system is full"):
            w.commit([VideoCommit(record(), make_memory())])
    with Store(path, writer=True) as w:
        assert w.collect_garbage_after_crash() == 7  # the rows step 1 left


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


def test_single_writer_lock_and_read_only(backend: Backend) -> None:
    with pytest.raises(StoreError, match="no videomem store"):
        backend.open("nothing")
    with backend.open("s", writer=True) as w:
        with pytest.raises(StoreError, match="another videomem job"):
            backend.open("s", writer=True)
        reader = backend.open("s")
        with pytest.raises(StoreError, match="read-only"):
            reader.commit([VideoCommit(record(), make_memory())])
        w.commit([VideoCommit(record(), make_memory())])
        assert len(reader.load_memory("vid1")) == 5  # sees the other handle's commit
    backend.open("s", writer=True).close()  # lock released on close


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


def test_reader_never_sees_a_mix_while_a_writer_replaces(backend: Backend) -> None:
    """Concurrent re-indexing: every read is one whole version (all slots of one run)."""
    versions = {3: 1.0, 7: 2.0}  # slots -> constant token value of that version
    with backend.open("s", writer=True) as w:
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
                    # a writer replacing the same video back to back can starve a reader
                    # on a loaded machine (it retries a few times); real jobs never do
                    time.sleep(0.05)
            except BaseException as e:  # a dead writer must fail the test, not warn
                errors.append(e)

        t = threading.Thread(target=write)
        t.start()
        try:
            reader = backend.open("s")
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
    span_bytes = (len(mem) + n_recent) * 24  # size int64, start_s and end_s float64
    assert rec.stored_bytes == token_bytes + emb_bytes + span_bytes
    assert (rec.token_dtype, rec.token_scale, rec.token_rel_rmse) == ("float16", None, None)
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


# --------------------------------------------------------------------------- int8 tokens


def int8_memory(scale: str = "token", **kw: object) -> VideoMemory:
    mem = make_memory(**kw)  # type: ignore[arg-type]
    # tokens of very different magnitude within a slot, as CLS tokens and ReLU maps have
    mem.tokens = (mem.tokens.float() * torch.logspace(-2, 1, N)[None, :, None]).half()
    cfg = replace(MemoryConfig(), token_dtype="int8", token_scale=scale)
    mem.memory_config = cfg
    return mem


@pytest.mark.parametrize("scale", ["token", "slot"])
def test_int8_round_trip_is_within_the_codec_bound(store: Store, scale: str) -> None:
    mem = int8_memory(scale)
    store.commit([VideoCommit(record(), mem)])
    got = store.load_memory("vid1")
    assert got.tokens.dtype == torch.float16 and got.tokens.shape == mem.tokens.shape
    assert got.recent_tokens is not None and mem.recent_tokens is not None
    for want, back in ((mem.tokens, got.tokens), (mem.recent_tokens, got.recent_tokens)):
        x = want.float()
        dims = (1, 2) if scale == "slot" else (2,)
        half_step = x.abs().amax(dim=dims, keepdim=True) / 127 / 2  # round to nearest
        # plus the float16 rounding of the decoded value a reader gets
        bound = half_step * (1 + 1e-6) + x.abs().add(half_step) * 2.0**-11
        assert bool(((back.float() - x).abs() <= bound).all())
        assert not torch.equal(back, want)  # it was really quantised
    assert torch.equal(got.embedding, mem.embedding)  # search vectors stay float32
    rec = store.latest("vid1")
    assert (rec.token_dtype, rec.token_scale) == ("int8", scale)
    both = torch.cat([mem.tokens, mem.recent_tokens]).float()
    err = (torch.cat([got.tokens, got.recent_tokens]).float() - both).pow(2).mean().sqrt()
    assert rec.token_rel_rmse == pytest.approx(float(err / both.pow(2).mean().sqrt()), rel=1e-5)
    assert rec.token_rel_rmse is not None and 0 < rec.token_rel_rmse < 0.05
    assert rec.token_min_cosine is not None and rec.token_min_cosine < 1.0
    if scale == "token":  # a slot scale rounds the 0.01-sized tokens to zero (next test)
        assert rec.token_min_cosine > 0.99


def test_per_token_scales_keep_small_tokens_that_a_slot_scale_rounds_away(
    store: Store,
) -> None:
    errors = {}
    for scale in ("token", "slot"):
        store.commit([VideoCommit(record(f"v-{scale}"), int8_memory(scale, video_id=f"v-{scale}"))])
        errors[scale] = store.latest(f"v-{scale}").token_min_cosine
    assert errors["token"] > 0.99 > errors["slot"]


def test_a_float16_recommit_clears_the_int8_error(store: Store) -> None:
    store.commit([VideoCommit(record(), int8_memory())])
    rec = store.latest("vid1")
    assert rec.token_rel_rmse is not None
    store.commit([VideoCommit(rec, make_memory())])  # the same record, float16 tokens
    again = store.latest("vid1")
    assert (again.token_dtype, again.token_scale, again.token_rel_rmse) == ("float16", None, None)
    assert again.token_min_cosine is None


def test_int8_halves_the_stored_bytes(store: Store) -> None:
    big_n, big_d = 49, 128  # a realistic token grid: scales and spans are small beside it
    mems = {}
    for dtype in ("float16", "int8"):
        mem = make_memory(dtype, slots=8, recent=0)
        mem.tokens = torch.randn(8, big_n, big_d).half()
        mem.embedding = None
        mem.memory_config = replace(MemoryConfig(), token_dtype=dtype)  # type: ignore[arg-type]
        mems[dtype] = mem
        store.commit([VideoCommit(record(dtype), mem)])
    fp16, int8 = (store.latest(v).stored_bytes for v in ("float16", "int8"))
    assert fp16 == 8 * (big_n * big_d * 2 + 24)
    assert int8 == 8 * (big_n * big_d + 4 * big_n + 24)  # int8 tokens + a scale per token
    assert 1.9 < fp16 / int8 < 2.0


def test_stored_bytes_count_what_the_rows_hold() -> None:
    from videomem.memory.store.codec import pack_tokens
    from videomem.memory.store.schema import stored_bytes

    for dtype, scale in (("float16", "token"), ("int8", "token"), ("int8", "slot")):
        mem = make_memory(slots=4, recent=2)
        mem.memory_config = replace(MemoryConfig(), token_dtype=dtype, token_scale=scale)
        assert mem.recent_tokens is not None
        rows = memory_rows(mem, ("v", "e", "c"), "run")
        want = (
            pack_tokens(mem.tokens, dtype, scale).nbytes  # type: ignore[arg-type]
            + pack_tokens(mem.recent_tokens, dtype, scale).nbytes  # type: ignore[arg-type]
            + 4 * E * 4  # embeddings
            + 6 * 24  # size, start_s, end_s per row
        )
        assert stored_bytes(rows) == want, (dtype, scale)
        assert rows.column("token_dtype").to_pylist() == [dtype] * 6


def test_a_store_written_before_token_dtype_still_loads(tmp_path: Path) -> None:
    import lancedb

    path = tmp_path / "old"
    mem = make_memory(slots=3)
    with Store(path, writer=True) as w:
        w.commit([VideoCommit(record(), mem)])
    # a store written before int8 existed: no encoding columns in either table
    db = lancedb.connect(str(path))
    db.open_table("memories").drop_columns(["token_dtype", "token_scales"])
    db.open_table("videos").drop_columns(
        ["token_dtype", "token_scale", "token_rel_rmse", "token_min_cosine"]
    )
    with Store(path) as reader:  # read-only: opened as it is, rows read as float16
        got = reader.load_memory("vid1")
        assert torch.equal(bits(got.tokens), bits(mem.tokens))
        assert reader.latest("vid1").token_dtype == "float16"
        paths = reader.export(tmp_path / "export")  # the export keeps its shape
        exported = pq.read_table(paths["memories"])
        assert exported.schema.names == MEMORIES_SCHEMA.names
        assert exported.column("token_dtype").null_count == exported.num_rows
        assert pq.read_table(paths["videos"]).schema.names == VIDEOS_SCHEMA.names
    with Store(path, writer=True) as w:  # a writer adds the columns, old rows stay float16
        w.commit([VideoCommit(record("vid2"), int8_memory(video_id="vid2", slots=2))])
        assert torch.equal(bits(w.load_memory("vid1").tokens), bits(mem.tokens))
        assert w.latest("vid2").token_dtype == "int8" and len(w.load_memory("vid2")) == 2


def test_mixed_or_broken_encodings_are_refused() -> None:
    from videomem.memory.store.schema import tokens_from_rows

    rows = memory_rows(int8_memory(recent=0), ("v", "e", "c"), "run")
    with pytest.raises(StoreError, match="one expected"):
        bad = rows.set_column(
            rows.schema.get_field_index("token_dtype"),
            "token_dtype",
            pa.array(["int8"] * 4 + ["float16"], pa.string()),
        )
        tokens_from_rows(bad, N, D)
    with pytest.raises(StoreError, match="scales"):
        idx = rows.schema.get_field_index("token_scales")
        tokens_from_rows(
            rows.set_column(idx, rows.field(idx), pa.nulls(5, pa.list_(pa.float32()))), N, D
        )


def test_list_videos_pages_and_filters(store: Store) -> None:
    ids = [f"v{i}" for i in range(7)]
    store.commit(
        [
            VideoCommit(record(v, model="m1" if i % 2 else "m2"), make_memory(v, slots=2))
            for i, v in enumerate(ids[:5])
        ]
    )
    store.commit([VideoCommit(record(v, status="failed", error="bad")) for v in ids[5:]])
    pages = [store.list_videos(limit=3, offset=k) for k in range(0, 9, 3)]
    assert [len(p) for p in pages] == [3, 3, 1]
    got = [r.video_id for p in pages for r in p]
    assert sorted(got) == ids and len(set(got)) == 7  # disjoint pages that cover all
    assert store.list_videos(limit=0) == []
    assert [r.video_id for r in store.list_videos("failed", limit=10)] == ["v5", "v6"]
    assert {r.video_id for r in store.list_videos(model="m1")} == {"v1", "v3"}
    assert (store.count_videos(), store.count_videos("indexed")) == (7, 5)
    assert store.count_videos("indexed", model="m2") == 3
    with pytest.raises(StoreError, match=">= 0"):
        store.list_videos(limit=-1)


DECODE_COLUMNS = ["decode_device", "decode_fallback", "decode_parts", "decode_sample"]


def test_what_decoding_did_round_trips(store: Store) -> None:
    done = replace(
        record(),
        decode_device="cpu",
        decode_fallback="NVDEC cannot decode ffv1: decoded on the CPU",
        decode_parts=3,
        decode_sample="exact",
    )
    store.commit([VideoCommit(done, make_memory(slots=2))])
    rec = store.latest("vid1")
    assert [getattr(rec, c) for c in DECODE_COLUMNS] == [getattr(done, c) for c in DECODE_COLUMNS]
    assert rec.to_dict()["decode_parts"] == 3


def test_a_store_written_before_the_decode_columns_still_opens(tmp_path: Path) -> None:
    import lancedb

    path = tmp_path / "old"
    with Store(path, writer=True) as w:
        w.commit([VideoCommit(record(), make_memory(slots=3))])
    lancedb.connect(str(path)).open_table("videos").drop_columns(DECODE_COLUMNS)
    with Store(path) as reader:
        old = reader.latest("vid1")
        assert [getattr(old, c) for c in DECODE_COLUMNS] == [None] * 4
    with Store(path, writer=True) as w:  # a writer adds the columns, null for old rows
        assert w.latest("vid1").decode_device is None
        new = replace(record("vid2"), decode_device="cuda", decode_parts=1, decode_sample="exact")
        w.commit([VideoCommit(new, make_memory("vid2", slots=2))])
        assert (w.latest("vid2").decode_device, w.latest("vid2").decode_parts) == ("cuda", 1)
