"""``videomem export``: every table as Parquet, read back with DuckDB and pyarrow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner
from videomem.jobs.cli import app
from videomem.memory.store import Store, VideoCommit

from tests.memory.store.test_store import make_memory, record


@pytest.fixture()
def store_path(tmp_path: Path) -> Path:
    """Videos a (3 slots, replaced once), b (6 slots), c (failed); captions of a's
    current and replaced memory; two answers."""
    path = tmp_path / "store"
    with Store(path, writer=True) as st:
        st.commit([VideoCommit(record("a"), make_memory("a", slots=4, seed=1))])
        old_run = st.latest("a").run_id
        st.commit([VideoCommit(record("a"), make_memory("a", slots=3, seed=2))])
        st.commit([VideoCommit(record("b"), make_memory("b", slots=6, seed=3))])
        st.commit([VideoCommit(record("c", status="failed", error="bad"))])
        a = st.latest("a")
        caps = [
            {"video_id": "a", "encoder_fingerprint": a.encoder_fingerprint,
             "config_hash": a.config_hash, "run_id": run, "kind": "dense", "start_s": float(i),
             "end_s": i + 1.0, "text": f"caption {i}", "model": "m", "settings": "{}"}
            for run in (a.run_id, old_run) for i in range(2)
        ]  # fmt: skip
        st.qa.add("captions", caps)
        answers = [
            {"question_id": f"q{i}", "video_id": v, "mode": "global", "question": "what?",
             "answer": "that", "model": "m", "settings_hash": "h", "status": "answered"}
            for i, v in enumerate("ab")
        ]  # fmt: skip
        st.qa.add("answers", answers)
    return path


def test_export_every_table_read_by_duckdb(store_path: Path, tmp_path: Path) -> None:
    import duckdb  # here, so the module collects where only the runtime deps are (bench/gpu.sh)

    out = tmp_path / "export"
    r = CliRunner().invoke(app, ["export", str(out), "--store", str(store_path), "--no-tokens"])
    assert r.exit_code == 0, r.output
    files = {p.name for p in out.iterdir()}
    assert files == {"videos.parquet", "memories.parquet", "captions.parquet", "answers.parquet"}
    # without tokens: no token column; recent frames (2 per video) still exported
    assert "tokens" not in pq.read_schema(out / "memories.parquet").names
    con = duckdb.connect()
    count = {
        name: con.execute(f"SELECT count(*) FROM '{out / name}.parquet'").fetchone()[0]
        for name in ("videos", "memories", "captions", "answers")
    }
    # replaced memory rows are not exported; every caption row is (the table as it is)
    assert count == {"videos": 3, "memories": 3 + 2 + 6 + 2, "captions": 4, "answers": 2}
    slots = con.execute(
        f"""SELECT v.uri, count(*) AS slots, sum(m.size) AS frames
            FROM '{out}/memories.parquet' m JOIN '{out}/videos.parquet' v USING (run_id)
            WHERE m.kind = 'slot' GROUP BY v.uri ORDER BY v.uri"""
    ).fetchall()
    assert slots == [("/videos/a.mp4", 3, 6), ("/videos/b.mp4", 6, 21)]
    # captions of the current memory join their videos row; the replaced ones do not
    live_caps = con.execute(
        f"""SELECT count(*) FROM '{out}/captions.parquet' c
            JOIN '{out}/videos.parquet' v USING (video_id, run_id)"""
    ).fetchone()[0]
    assert live_caps == 2
    # the same file through pyarrow: embeddings survive, as float lists of width E
    mem = pq.read_table(out / "memories.parquet").to_pylist()
    emb = [r["embedding"] for r in mem if r["kind"] == "slot"]
    assert len(emb) == 9 and {len(e) for e in emb} == {6}


def test_export_with_tokens_round_trips_bits(store_path: Path, tmp_path: Path) -> None:
    with Store(store_path) as st:
        paths = st.export(tmp_path / "export", tokens=True)
        mem = st.load_memory("b")
    rows = pq.read_table(paths["memories"]).to_pylist()
    b = sorted((r for r in rows if r["video_id"] == "b" and r["kind"] == "slot"),
               key=lambda r: r["slot"])  # fmt: skip
    tok = np.stack([np.frombuffer(r["tokens"], "<f2").reshape(r["n"], r["d"]) for r in b])
    assert np.array_equal(tok.view(np.int16), mem.tokens.numpy().view(np.int16))
    settings = pq.read_table(paths["videos"]).column("config_json").to_pylist()
    assert all(json.loads(s) for s in settings)
