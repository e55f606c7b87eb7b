"""Visual search at corpus scale: ANN index against exhaustive search, same run.

Builds a synthetic store through the real ``Store.commit`` (``--videos`` x
``--slots`` slots, 100K by default, 1M with ``--full``) whose slot embeddings look
like real ones: each video wanders around a few topic directions shared across the
corpus, slots are that plus per-slot noise, unit length. Then, on the real slot index
of :mod:`videomem.memory.search.refresh`:

* refresh time (copying the embeddings out of ``memories`` into the slot index);
* exhaustive search: LanceDB flat scan, query latency (median, p95);
* IVF-PQ index build time, then ANN query latency (same queries) and recall@10 of
  the ANN top 10 against the exhaustive top 10 (target >= 0.95);
* end-to-end ``memory.search.search`` latency with the ANN index (the vector query,
  the liveness check on ``videos``, building the moments);
* bytes per slot on disk: the ``memories`` table (tokens ``--tokens N,D`` float16 +
  embedding + columns) and the slot index (the vector + key columns).

Queries are stored embeddings plus noise (a text query lands near, not on, a slot).
Prints figures; asserts nothing.

    python bench/search.py            # 100K slots, ~3-5 min on 2 cores
    python bench/search.py --full     # 1M slots
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def synthetic_embeddings(
    rng: np.random.Generator, videos: int, slots: int, dim: int, topics: int
) -> np.ndarray:
    """[videos, slots, dim] unit vectors: per video a random walk over a mix of shared
    topic directions, plus per-slot noise."""
    basis = rng.standard_normal((topics, dim)).astype(np.float32)
    mix = rng.dirichlet(np.full(topics, 0.3), size=videos).astype(np.float32)  # [V, T]
    centre = mix @ basis  # [V, D]
    walk = np.cumsum(rng.standard_normal((videos, slots, dim)).astype(np.float32) * 0.15, axis=1)
    x = (
        centre[:, None, :]
        + walk
        + 0.3 * rng.standard_normal((videos, slots, dim)).astype(np.float32)
    )
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def build_store(path: Path, emb: np.ndarray, n: int, d: int, fp: str) -> float:
    from videomem.memory.config import MemoryConfig
    from videomem.memory.store import Store, VideoCommit, VideoRecord
    from videomem.memory.types import VideoMemory

    videos, slots, _ = emb.shape
    t0 = time.perf_counter()
    with Store(path, writer=True) as st:
        for lo in range(0, videos, 100):
            batch = []
            for v in range(lo, min(videos, lo + 100)):
                sizes = torch.full((slots,), 4, dtype=torch.int64)
                start = torch.arange(slots, dtype=torch.float64) * 4
                mem = VideoMemory(
                    video_id=f"v{v:07d}",
                    tokens=torch.zeros(slots, n, d, dtype=torch.float16),
                    sizes=sizes,
                    start_s=start,
                    end_s=start + 4,
                    embedding=torch.from_numpy(emb[v]),
                    encoder_fingerprint=fp,
                    memory_config=MemoryConfig(),
                    frames_seen=4 * slots,
                )
                rec = VideoRecord(
                    video_id=mem.video_id,
                    encoder_fingerprint=fp,
                    config_hash="bench",
                    status="indexed",
                    uri=f"/corpus/{mem.video_id}.mp4",
                    model="bench",
                    config_json=json.dumps({"encoder": {"model": "bench"}}),
                )
                batch.append(VideoCommit(rec, mem))
            st.commit(batch)
        st.optimize()
    return time.perf_counter() - t0


def timed_queries(table, queries: np.ndarray, k: int) -> tuple[list[float], list[list[tuple]]]:
    from videomem.memory.search import visual_hits

    lat, ids = [], []
    for q in queries:
        t0 = time.perf_counter()
        rows = visual_hits(table, q, k, None)
        lat.append(time.perf_counter() - t0)
        ids.append([(r["run_id"], r["slot"]) for r in rows])
    return lat, ids


def fmt_ms(lat: list[float]) -> str:
    s = sorted(lat)
    return f"median {1e3 * statistics.median(s):7.2f} ms   p95 {1e3 * s[int(0.95 * (len(s) - 1))]:7.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="1M slots (10K videos x 100)")
    ap.add_argument("--videos", type=int, default=None)
    ap.add_argument("--slots", type=int, default=100, help="slots per video")
    ap.add_argument("--dim", type=int, default=512, help="embedding width (CLIP ViT-B: 512)")
    ap.add_argument("--tokens", default="16,64", help="N,D of the stored tokens per slot")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--index-type", default="IVF_PQ", help="IVF_PQ (default), IVF_HNSW_SQ …")
    ap.add_argument("--dir", default=None, help="where to build the store (default: a tmp dir)")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]  # progress in logs
    videos = args.videos or (10_000 if args.full else 1_000)
    n, d = (int(x) for x in args.tokens.split(","))
    warnings.simplefilter("ignore", DeprecationWarning)

    from videomem.memory.search import refresh_slot_index, search, slot_index_name
    from videomem.memory.store import Store

    rng = np.random.default_rng(0)
    root = Path(args.dir or tempfile.mkdtemp(prefix="vm-search-bench-"))
    path = root / "store"
    fp = "bench:000000000000:float32"
    total = videos * args.slots
    print(f"{total:,} slots = {videos:,} videos x {args.slots}, E={args.dim}, tokens {n}x{d} fp16")
    try:
        emb = synthetic_embeddings(rng, videos, args.slots, args.dim, topics=64)
        t = build_store(path, emb, n, d, fp)
        print(f"store built (real Store.commit, 100 videos per commit) in {t:.1f} s")
        pick = rng.integers(0, total, args.queries)
        queries = emb.reshape(total, -1)[pick] + 0.05 * rng.standard_normal(
            (args.queries, args.dim)
        ).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=-1, keepdims=True)
        del emb

        with Store(path, writer=True) as st:
            t0 = time.perf_counter()
            rep = refresh_slot_index(st, ann_min_rows=10**12)  # exhaustive only
            refresh_s = time.perf_counter() - t0
            table = st.index_table(slot_index_name(fp))
            assert table is not None and rep.slots_added == total == table.count()
            timed_queries(table, queries[:3], args.k)  # warm the caches
            flat_lat, flat_ids = timed_queries(table, queries, args.k)
            t0 = time.perf_counter()
            table.ensure_vector_index(0, args.index_type)
            build_s = time.perf_counter() - t0
            timed_queries(table, queries[:3], args.k)
            ann_lat, ann_ids = timed_queries(table, queries, args.k)
            recall = statistics.mean(
                len(set(a) & set(f)) / len(f) for a, f in zip(ann_ids, flat_ids, strict=True)
            )
        with Store(path) as st:
            e2e = []
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                res = search(st, f"q{i}", k=args.k, source="visual",
                             tower_for=lambda rec, q=q: lambda texts: torch.from_numpy(q)[None])  # fmt: skip
                e2e.append(time.perf_counter() - t0)
                assert len(res.moments) == args.k
        mem_b = dir_bytes(path / "memories.lance")
        idx_b = dir_bytes(path / f"{slot_index_name(fp)}.lance")

        print(f"slot index refresh (copy {total:,} embeddings): {refresh_s:.1f} s")
        print(f"exhaustive (flat) query: {fmt_ms(flat_lat)}")
        print(f"{args.index_type} index build: {build_s:.1f} s")
        print(f"ANN query:               {fmt_ms(ann_lat)}")
        ratio = statistics.median(flat_lat) / statistics.median(ann_lat)
        print(f"ANN speed-up (median):   {ratio:.1f}x")
        print(f"recall@{args.k} ANN vs exhaustive: {recall:.3f}  (target >= 0.95)")
        print(f"search() end to end with ANN: {fmt_ms(e2e)}")
        print(f"bytes per slot: memories table {mem_b / total:,.0f} "
              f"(tokens alone {2 * n * d:,}), slot index {idx_b / total:,.0f}")  # fmt: skip
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
