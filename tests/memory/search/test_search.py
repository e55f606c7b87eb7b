"""Search: the visual path with a tiny CLIP (real text tower, real LanceDB), the text
path with the real all-MiniLM-L6-v2, index refresh, liveness, and bad input through
the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from videomem.encoders import load_encoder
from videomem.encoders.clip import ContrastiveEncoder
from videomem.encoders.testing import tiny_checkpoint
from videomem.encoders.text import SentenceEncoder, TextTowers, minilm_dir
from videomem.jobs.cli import app
from videomem.memory.config import MemoryConfig
from videomem.memory.search import (
    CAPTION_INDEX,
    merge_by_rank,
    refresh_caption_index,
    refresh_slot_index,
    search,
    slot_index_name,
)
from videomem.memory.store import IndexTable, Store, VideoCommit, VideoRecord
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import StoreError

QUERY = "a red square"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def clip(cache: Path) -> ContrastiveEncoder:
    enc = load_encoder(tiny_checkpoint("clip", cache), "cpu")
    assert isinstance(enc, ContrastiveEncoder)
    return enc


@pytest.fixture(scope="module")
def minilm() -> SentenceEncoder:
    return SentenceEncoder()


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def memory(video_id: str, emb: torch.Tensor, fp: str) -> VideoMemory:
    L = emb.shape[0]
    sizes = torch.full((L,), 2, dtype=torch.int64)
    return VideoMemory(
        video_id=video_id,
        tokens=torch.zeros(L, 2, 4, dtype=torch.float16),
        sizes=sizes,
        start_s=torch.arange(L, dtype=torch.float64) * 2,
        end_s=torch.arange(L, dtype=torch.float64) * 2 + 2,
        embedding=emb,
        encoder_fingerprint=fp,
        memory_config=MemoryConfig(),
        frames_seen=2 * L,
    )


def record(video_id: str, model: str, fp: str, options: dict | None = None) -> VideoRecord:
    cfg = {"encoder": {"model": model, "options": options or {}}}
    return VideoRecord(
        video_id=video_id,
        encoder_fingerprint=fp,
        config_hash="cfg",
        status="indexed",
        uri=f"/videos/{video_id}.mp4",
        model=model,
        config_json=json.dumps(cfg),
    )


def index_table(store: Store, name: str) -> IndexTable:
    table = store.index_table(name)
    assert table is not None, f"no table {name}"
    return table


def commit(store: Store, rec: VideoRecord, emb: torch.Tensor) -> None:
    store.commit([VideoCommit(rec, memory(rec.video_id, emb, rec.encoder_fingerprint))])


@pytest.fixture()
def visual_store(tmp_path: Path, clip: ContrastiveEncoder) -> tuple[Path, torch.Tensor]:
    """Three videos of 6 random slots each; slot 4 of video "b" is the query's own
    text embedding (plus a little noise), so it is the right answer."""
    q = clip.encode_text([QUERY])[0]
    g = torch.Generator().manual_seed(0)
    path = tmp_path / "store"
    with Store(path, writer=True) as st:
        for vid in ("a", "b", "c"):
            emb = unit(torch.randn(6, clip.embed_dim, generator=g))
            if vid == "b":
                emb[4] = unit(q + 0.05 * torch.randn(clip.embed_dim, generator=g))
            commit(st, record(vid, str(clip.path), clip.fingerprint), emb)
        refresh_slot_index(st)
    return path, q


def test_visual_search_finds_the_matching_slot(visual_store, clip: ContrastiveEncoder) -> None:
    path, q = visual_store
    with Store(path) as st:
        res = search(st, QUERY, k=5, source="visual", tower_for=TextTowers())
        # the same ranking as a naive loop over every stored slot
        ref = []
        for vid in ("a", "b", "c"):
            mem = st.load_memory(vid)
            assert mem.embedding is not None
            for i, e in enumerate(mem.embedding):
                ref.append((float(e @ q), vid, i))
    ref.sort(reverse=True)
    top = res.moments[0]
    assert (top.video_id, top.slot, top.source) == ("b", 4, "visual")
    assert (top.start_s, top.end_s, top.uri) == (8.0, 10.0, "/videos/b.mp4")
    assert top.score > 0.95
    assert [(m.video_id, m.slot) for m in res.moments] == [(v, i) for _, v, i in ref[:5]]
    np.testing.assert_allclose(
        [m.score for m in res.moments], [s for s, _, _ in ref[:5]], atol=1e-4
    )
    assert res.notes == []  # one encoder: nothing was merged


def test_video_filter_and_unknown_video(visual_store) -> None:
    path, _ = visual_store
    with Store(path) as st:
        res = search(st, QUERY, k=3, video="c", source="visual", tower_for=TextTowers())
        assert {m.video_id for m in res.moments} == {"c"} and len(res.moments) == 3
        with pytest.raises(StoreError, match="no video"):
            search(st, QUERY, video="zzz", tower_for=TextTowers())


def test_replaced_memory_is_never_returned(visual_store, clip: ContrastiveEncoder) -> None:
    """Re-indexing "b" without the matching slot: the stale index row is skipped at
    once, and the refresh drops it."""
    path, _ = visual_store
    rec = record("b", str(clip.path), clip.fingerprint)
    with Store(path, writer=True) as st:
        commit(st, rec, unit(torch.randn(3, clip.embed_dim)))
        res = search(st, QUERY, k=20, source="visual", tower_for=TextTowers())
        assert ("b", 4) not in {(m.video_id, m.slot) for m in res.moments}
        assert len(res.moments) == 6 + 6  # the new run is not in the index yet
        rep = refresh_slot_index(st)
        assert (rep.slots_deleted, rep.slots_added) == (6, 3)
        res = search(st, QUERY, k=20, source="visual", tower_for=TextTowers())
        assert len(res.moments) == 6 + 6 + 3
        assert refresh_slot_index(st).slots_added == 0  # idempotent
        assert index_table(st, slot_index_name(clip.fingerprint)).count() == 15


def test_two_encoders_are_searched_apart_and_merged_by_rank(
    visual_store, cache: Path, clip: ContrastiveEncoder
) -> None:
    path, _ = visual_store
    pooled = load_encoder(tiny_checkpoint("clip", cache), "cpu", pool=2)
    assert pooled.fingerprint != clip.fingerprint
    q2 = pooled.encode_text([QUERY])[0]
    emb = unit(torch.randn(4, pooled.embed_dim))
    emb[1] = q2
    with Store(path, writer=True) as st:
        commit(st, record("d", str(clip.path), pooled.fingerprint, {"pool": 2}), emb)
        refresh_slot_index(st)
        res = search(st, QUERY, k=4, source="visual", tower_for=TextTowers())
    assert {m.encoder_fingerprint for m in res.moments[:2]} == {
        clip.fingerprint,
        pooled.fingerprint,
    }
    assert {(m.video_id, m.slot) for m in res.moments[:2]} == {("b", 4), ("d", 1)}
    assert [m.rank for m in res.moments] == [1, 1, 2, 2]
    assert "2 encoders searched separately" in res.notes[0]


def test_merge_by_rank_interleaves() -> None:
    assert merge_by_rank([[1, 2, 3], [10], [20, 21]], 5) == [1, 10, 20, 2, 21]  # type: ignore[list-item]
    assert merge_by_rank([], 3) == []


# --------------------------------------------------------------------------- text


def test_sentence_encoder_matches_sentence_transformers(minilm: SentenceEncoder) -> None:
    """Our transformers-only loading + mean pooling equals the reference library's."""
    from sentence_transformers import SentenceTransformer

    texts = ["a dog runs on the beach", "Traffic on a busy street at night, with bikes."]
    ours = minilm.encode_text(texts)
    ref = SentenceTransformer(str(minilm_dir()), device="cpu").encode(texts, convert_to_tensor=True)
    assert ours.shape == (2, 384)
    torch.testing.assert_close(ours, ref.float().cpu(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(2))
    assert float(ours[0] @ minilm.encode_text(["a puppy at the seaside"])[0]) > float(
        ours[1] @ minilm.encode_text(["a puppy at the seaside"])[0]
    )


CAPTIONS = {
    "dogs": ["a dog runs along the sandy beach", "waves and a dog playing in the sea"],
    "cars": ["a man talks on a phone while driving a car", "inside a car, a man at the wheel"],
    "toon": ["a cartoon rabbit in a green forest", "an animated bunny chases butterflies"],
}


def caption_rows(store: Store) -> list[dict]:
    rows = []
    for vid in CAPTIONS:
        rec = store.latest(vid)
        for i, text in enumerate(CAPTIONS[vid]):
            rows.append(
                {
                    "video_id": vid,
                    "encoder_fingerprint": rec.encoder_fingerprint,
                    "config_hash": rec.config_hash,
                    "run_id": rec.run_id,
                    "kind": "dense",
                    "start_s": 2.0 * i,
                    "end_s": 2.0 * i + 2,
                    "text": text,
                    "model": "test",
                    "settings": "{}",
                }
            )
    return rows


@pytest.fixture()
def text_store(tmp_path: Path, minilm: SentenceEncoder) -> Path:
    """Three videos indexed by an encoder without a text tower (MobileNetV2), with
    dense captions."""
    path = tmp_path / "store"
    model = str(tiny_checkpoint("mobilenet_v2", tmp_path / "cache"))
    with Store(path, writer=True) as st:
        for vid in CAPTIONS:
            commit(st, record(vid, model, "mobilenet:x:float32"), unit(torch.randn(2, 8)))
        st.qa.add("captions", caption_rows(st))
        refresh_slot_index(st)
        rep = refresh_caption_index(st, lambda: minilm.encode_text)
        assert rep.captions_added == 6
        assert refresh_caption_index(st, lambda: pytest.fail("nothing new")).captions_added == 0
        assert index_table(st, CAPTION_INDEX).index_types()["text"] == "FTS"
    return path


@pytest.mark.parametrize(
    ("query", "video"),
    [("puppy at the seaside", "dogs"), ("driving", "cars"), ("bunny", "toon")],
)
def test_text_search_hybrid(text_store: Path, minilm: SentenceEncoder, query, video) -> None:
    with Store(text_store) as st:
        res = search(st, query, k=3, source="all", text_embedder=lambda: minilm.encode_text,
                     tower_for=TextTowers())  # fmt: skip
    top = res.moments[0]
    assert (top.video_id, top.source, top.kind) == (video, "text", "dense")
    assert top.text in CAPTIONS[video]
    # the encoder without a text tower was skipped, and the output says so
    assert any("no text tower" in n for n in res.notes)


def test_text_search_drops_captions_of_replaced_memories(
    text_store: Path, minilm: SentenceEncoder
) -> None:
    with Store(text_store, writer=True) as st:
        rec = st.latest("dogs")
        commit(st, rec, unit(torch.randn(2, 8)))  # a new run: old captions are stale
        res = search(st, "dog on a beach", k=10, source="text",
                     text_embedder=lambda: minilm.encode_text)  # fmt: skip
        assert "dogs" not in {m.video_id for m in res.moments}
        assert refresh_caption_index(st, lambda: minilm.encode_text).captions_deleted == 2


def test_search_prints_no_lance_deprecation_warnings(text_store: Path) -> None:
    """A real ``videomem search`` process over both sources (the hybrid text query and
    the visual path's skip): its stderr carries no ``lance::dataset::scanner``
    deprecation warning (a query that projects columns must name its score column)."""
    import os
    import subprocess
    import sys

    script = Path(sys.executable).parent / "videomem"
    env = {k: v for k, v in os.environ.items() if k not in ("LANCE_LOG", "RUST_LOG")}
    r = subprocess.run(
        [str(script), "search", "puppy at the seaside", "--store", str(text_store), "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # the query ran through the hybrid text path (what used to warn)
    assert json.loads(r.stdout)["moments"][0]["video_id"] == "dogs"
    assert "lance::dataset::scanner" not in r.stderr, r.stderr
    assert "Deprecation" not in r.stderr, r.stderr


# --------------------------------------------------------------------------- bad input


def run_cli(*args: str):
    return CliRunner().invoke(app, ["search", *args])


def test_cli_search_json_and_text(visual_store) -> None:
    path, _ = visual_store
    r = run_cli(QUERY, "--store", str(path), "--k", "2", "--source", "visual", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["moments"][0]["video_id"] == "b" and out["moments"][0]["slot"] == 4
    r = run_cli(QUERY, "--store", str(path), "--k", "1")
    assert r.exit_code == 0 and "/videos/b.mp4" in r.stdout and "0:08.00-0:10.00" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["   "], "empty query"),
        (["x", "--video", "nope"], "no video 'nope'"),
        (["x", "--source", "pictures"], "unknown source"),
        (["x", "--k", "0"], "k must be >= 1"),
    ],
)
def test_cli_bad_input(visual_store, args: list[str], message: str) -> None:
    path, _ = visual_store
    r = run_cli(*args, "--store", str(path))
    assert r.exit_code == 2
    assert message in r.stderr and "Traceback" not in r.output


def test_cli_nothing_searchable(tmp_path: Path) -> None:
    """MobileNetV2 memories (no text tower) and no captions: a clear refusal."""
    model = str(tiny_checkpoint("mobilenet_v2", tmp_path / "cache"))
    path = tmp_path / "store"
    r = run_cli("x", "--store", str(path))
    assert r.exit_code == 2 and "no videomem store" in r.stderr
    with Store(path, writer=True) as st:
        commit(st, record("m", model, "mobilenet:x:float32"), unit(torch.randn(2, 8)))
    r = run_cli("x", "--store", str(path))
    assert r.exit_code == 2 and "no search index yet" in r.stderr
    r = run_cli("x", "--store", str(path), "--refresh")
    assert r.exit_code == 2, r.output
    assert "no memory was made by an encoder with a text tower" in r.stderr
    assert "mobilenet_v2" in r.stderr and "no captions or tags" in r.stderr
    assert "Traceback" not in r.output


def test_ann_index_is_built_at_the_threshold_and_keeps_up(tmp_path: Path) -> None:
    """Below ``ann_min_rows`` no index (exhaustive); at it an IVF-PQ index; rows added
    later are folded in by the next refresh; an exact vector is still found first."""
    import pyarrow as pa
    from videomem.memory.search import visual_hits
    from videomem.memory.search.refresh import ensure_ann, slot_index_schema

    v = np.random.default_rng(0).standard_normal((700, 16)).astype(np.float32)

    def rows(lo: int, hi: int) -> pa.Table:
        return pa.table({
            "video_id": ["v"] * (hi - lo), "encoder_fingerprint": ["f"] * (hi - lo),
            "run_id": [f"r{i}" for i in range(lo, hi)], "slot": np.arange(lo, hi, dtype=np.int32),
            "start_s": np.zeros(hi - lo), "end_s": np.ones(hi - lo),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(v[lo:hi].ravel()), 16),
        }, schema=slot_index_schema(16))  # fmt: skip

    with Store(tmp_path / "s", writer=True) as st:
        table = st.create_index_table("slot_index_t", slot_index_schema(16))
        table.add(rows(0, 600))
        assert not ensure_ann(table, ann_min_rows=601) and table.index_types() == {}
        assert ensure_ann(table, ann_min_rows=600)
        table.add(rows(600, 700))
        assert ensure_ann(table, ann_min_rows=600)
        assert table.vector_index_rows() == (700, 0) and list(table.index_types()) == ["vector"]
        for i in (5, 650):
            assert visual_hits(table, v[i], 3, None)[0]["slot"] == i
