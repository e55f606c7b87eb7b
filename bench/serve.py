"""``videomem serve`` at corpus scale: warm search, pages, ask overhead (CPU).

Stores are built through the real writer API (``Store.commit``, ``qa.add``, the
real search-index refresh), on one real indexed clip so the records name a real
checkpoint with a text tower (the tiny random CLIP of ``encoders/testing``: its text
tower is loaded exactly as a user's CLIP is). Then, against a real uvicorn server on
a loopback port (HTTP included in every figure):

* warm search latency p50/p95 at each scale (``--slots``), text (caption index,
  hybrid full-text + all-MiniLM-L6-v2) and visual (the CLIP text tower against the
  slot index), against the CLI's cold ``videomem search`` measured in the same run;
* the corpus page at 100K videos (first, middle and last page; the RSS growth of
  the process, server included, over 200 page loads: memory flat);
* the video page of a memory with 256 slots;
* ask overhead beyond the model's own generate: a ChatModel that answers at once,
  POST /ask total minus its generate time.

Prints figures and ratios; asserts nothing.

    python bench/serve.py --quick     # 10K slots, 10K videos (~3 min on 2 cores)
    python bench/serve.py             # 10K and 100K slots, 100K videos
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/ helpers (the server fixture, synthetic videos)

WORDS = ["bicycle", "person", "car", "street", "dog", "tree", "house", "road", "bus", "sky", "water", "boat", "train", "window", "door", "table", "chair", "phone", "suit", "tie", "bridge", "river", "mountain", "snow", "beach"]  # fmt: skip
QUERIES = ["a bicycle on the street", "a person in a suit", "a dog near water", "snow on a mountain",
           "a bus on the road", "a boat on the river", "a phone on the table", "a train at night"]  # fmt: skip


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p50 = statistics.median(xs)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    return f"p50 {1000 * p50:7.1f} ms  p95 {1000 * p95:7.1f} ms  (n={len(xs)})"


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def base_record(tmp: Path) -> Any:
    """A real record: a short synthetic clip indexed with the tiny CLIP."""
    from videomem.encoders.config import EncoderConfig
    from videomem.encoders.testing import tiny_checkpoint
    from videomem.jobs import api
    from videomem.jobs.index import IndexJob
    from videomem.memory.store import Store
    from videomem.pipeline.types import DecodeConfig

    from tests.videos import make_pattern

    clip = make_pattern(tmp / "clips" / "seed.mp4", seconds=3)
    store = tmp / "seed"
    model = str(tiny_checkpoint("clip"))
    api.index(IndexJob(paths=[str(clip)], store=str(store),
                       encoder=EncoderConfig(model=model, device="cpu"),
                       decode=DecodeConfig(fps=1)))  # fmt: skip
    with Store(str(store)) as st:
        rec = st.list_videos("indexed")[0]
        mem = st.load_memory(rec.video_id)
    return rec, int(mem.embedding.shape[1])


def build(path: Path, rec0: Any, dim: int, videos: int, slots: int, failed: int = 0) -> float:
    """``videos`` indexed videos of ``slots`` slots (embeddings, one tag line per slot)
    and ``failed`` failed rows, then the real search-index refresh."""
    from videomem.encoders.text import sentence_embedder
    from videomem.jobs.rows import caption_row
    from videomem.memory.config import MemoryConfig
    from videomem.memory.search import refresh_search_indexes
    from videomem.memory.store import Store, VideoCommit
    from videomem.memory.types import VideoMemory

    rng = random.Random(0)
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(rng.sample(WORDS, 4)) for _ in range(400)]
    embed_cache: dict[str, torch.Tensor] = {}

    def cached_embedder() -> Any:  # the same MiniLM vectors, each distinct line once
        embed = sentence_embedder("cpu")

        def run(texts: list[str]) -> torch.Tensor:
            new = sorted({t for t in texts if t not in embed_cache})
            if new:
                embed_cache.update(zip(new, embed(new), strict=True))
            return torch.stack([embed_cache[t] for t in texts])

        return run

    t0 = time.perf_counter()
    with Store(str(path), writer=True) as st:
        for lo in range(0, videos, 200):
            batch = []
            for v in range(lo, min(videos, lo + 200)):
                vid = f"{v:024x}"
                sizes = torch.full((slots,), 2, dtype=torch.int64)
                start = torch.arange(slots, dtype=torch.float64) * 2
                emb = torch.nn.functional.normalize(torch.randn(slots, dim, generator=g), dim=-1)
                mem = VideoMemory(video_id=vid, tokens=torch.zeros(slots, 1, 8, dtype=torch.float16),
                                  sizes=sizes, start_s=start, end_s=start + 2, embedding=emb,
                                  encoder_fingerprint=rec0.encoder_fingerprint,
                                  memory_config=MemoryConfig(), frames_seen=2 * slots)  # fmt: skip
                rec = dataclasses.replace(rec0, video_id=vid, uri=f"/corpus/clip_{v:07d}.mp4",
                                          slots=slots, run_id=None)  # fmt: skip
                batch.append(VideoCommit(rec, mem))
            for committed in st.commit(batch):
                st.qa.add("captions", [
                    caption_row(committed, "tags", 2.0 * i, 2.0 * i + 2, rng.choice(lines), "bench", "{}")
                    for i in range(slots)])  # fmt: skip
        for lo in range(0, failed, 10_000):
            n = min(failed, lo + 10_000) - lo
            st.commit([VideoCommit(dataclasses.replace(
                rec0, video_id=f"f{lo + i:023x}", uri=f"/corpus/broken_{lo + i:07d}.mp4",
                status="failed", run_id=None, error="decode failed: moov atom not found"))
                for i in range(n)])  # fmt: skip
        refresh_search_indexes(st, cached_embedder)
    return time.perf_counter() - t0


def cold_cli(store: Path, source: str) -> float:
    exe = str(Path(sys.executable).parent / "videomem")
    t0 = time.perf_counter()
    subprocess.run([exe, "search", QUERIES[0], "--store", str(store), "--source", source, "--json"],
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - t0


def warm_search(client: Any, source: str, rounds: int) -> list[float]:
    client.get("/search", params={"q": "warm up", "source": source, "format": "json"})
    out = []
    for i in range(rounds):
        t0 = time.perf_counter()
        r = client.get("/search", params={"q": QUERIES[i % len(QUERIES)], "source": source,
                                          "k": 10, "format": "json"})  # fmt: skip
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    return out


def rss_mb() -> float:
    """Resident memory now (VmRSS; the peak would hide growth behind the store build)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10K slots and 10K videos only")
    ap.add_argument("--rounds", type=int, default=40, help="queries per measurement")
    a = ap.parse_args()
    from videomem.jobs.ask import Asker
    from videomem.jobs.searcher import Searcher
    from videomem.jobs.serve import ServeConfig
    from videomem.qa.textllm import Reply

    from tests.jobs.serve.conftest import start_server, stop_server

    scales = [10_000] if a.quick else [10_000, 100_000]
    corpus_videos = 10_000 if a.quick else 100_000
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        rec0, dim = base_record(tmp)
        searcher = Searcher("cpu")
        print(
            f"# videomem serve bench (CPU, {torch.get_num_threads()} threads); tiny CLIP dim {dim}"
        )
        for n_slots in scales:
            store = tmp / f"s{n_slots}"
            built = build(store, rec0, dim, videos=n_slots // 100, slots=100)
            running = start_server(ServeConfig(store=str(store)), searcher=searcher)
            try:
                with running.client() as c:
                    for source in ("text", "visual"):
                        lat = warm_search(c, source, a.rounds)
                        cold = cold_cli(store, source)
                        print(f"search {source:6} {n_slots:>7} slots: warm {ms(lat)}; "
                              f"cold CLI {cold:6.2f} s; cold/warm p50 {cold / p50(lat):6.0f}x")  # fmt: skip
            finally:
                stop_server(running)
            print(f"  (store of {n_slots} slots built and indexed in {built:.0f} s)")

        store = tmp / "corpus"
        build(store, rec0, dim, videos=100, slots=4, failed=corpus_videos - 100)
        long = tmp / "long"
        build(long, rec0, dim, videos=1, slots=256)

        class Instant:
            name, context_len, dtype = "instant", None, "float32"

            def count_prompt(self, messages: list[dict[str, str]]) -> int:
                return sum(len(m["content"].split()) for m in messages)

            def count_text(self, text: str) -> int:
                return len(text.split())

            def reply(self, messages: Any, settings: Any) -> Reply:
                t0 = time.perf_counter()
                return Reply("yes", self.count_prompt(messages), [1], time.perf_counter() - t0)

        running = start_server(ServeConfig(store=str(store)), asker=Asker(llm=Instant()))
        try:
            with running.client() as c:
                c.get("/?format=json")
                base_rss = rss_mb()
                for name, offset in (("first", 0), ("middle", corpus_videos // 2),
                                     ("last", corpus_videos - 50)):  # fmt: skip
                    lat = []
                    for _ in range(a.rounds):
                        t0 = time.perf_counter()
                        assert c.get("/", params={"offset": offset}).status_code == 200
                        lat.append(time.perf_counter() - t0)
                    print(f"corpus page ({name:6}) at {corpus_videos} videos: {ms(lat)}")
                for i in range(200):
                    c.get("/", params={"offset": (i * 7919) % corpus_videos})
                print(f"  RSS growth over 200 corpus pages: {rss_mb() - base_rss:.1f} MB "
                      f"(of {rss_mb():.0f} MB)")  # fmt: skip
                vid = "0" * 24
                lat, overhead = [], []
                for i in range(a.rounds):
                    t0 = time.perf_counter()
                    r = c.post("/ask?format=json", data={"video": vid, "question": f"Is it {i}?"})
                    total = time.perf_counter() - t0
                    assert r.status_code == 200, r.text
                    overhead.append(total - r.json()["result"]["generate_s"])
                print(f"ask overhead beyond generate (timeline prompt of 4 slots): {ms(overhead)}")
        finally:
            stop_server(running)
        running = start_server(ServeConfig(store=str(long)))
        try:
            with running.client() as c:
                lat = []
                for _ in range(a.rounds):
                    t0 = time.perf_counter()
                    r = c.get(f"/video/{'0' * 24}")
                    lat.append(time.perf_counter() - t0)
                    assert r.status_code == 200 and r.text.count("/thumb/") == 256
                print(f"video page, 256 slots: {ms(lat)}")
        finally:
            stop_server(running)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
