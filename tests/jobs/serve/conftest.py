"""Fixtures of the web app's tests: a real uvicorn server on a free loopback port.

The server runs in a thread of the test process (a real uvicorn on a real socket, so
HTTP is real end to end) so a test can hand it a stub LLM behind the ChatModel
protocol; the CLI's own process is tested separately (test_cli_serve.py).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import uvicorn
from videomem.jobs.ask import Asker
from videomem.jobs.searcher import Searcher
from videomem.jobs.serve import ServeConfig, create_app
from videomem.memory.config import MEMORY_PRESETS, MemoryConfig
from videomem.memory.store import Store, VideoCommit, VideoRecord
from videomem.memory.types import VideoMemory

from tests.waiting import wait_until


@dataclasses.dataclass
class Running:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kw)


def start_server(
    config: ServeConfig, searcher: Searcher | None = None, asker: Asker | None = None
) -> Running:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # see run.py
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    app = create_app(config, searcher=searcher, asker=asker)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the server to start", timeout_s=120)
    return Running(f"http://127.0.0.1:{port}", server, thread)


def stop_server(running: Running) -> None:
    running.server.should_exit = True
    running.thread.join(timeout=30)


@pytest.fixture(scope="session")
def searcher() -> Searcher:
    """One warm searcher for every server of the session (its models load once)."""
    return Searcher("cpu")


@pytest.fixture(scope="session")
def searchable_store(tagged_store: Path) -> Path:
    """The real clips, indexed with MobileNetV2 and tagged (the tag job keeps the
    caption search index up to date)."""
    return tagged_store


@pytest.fixture(scope="session")
def served(searchable_store: Path, searcher: Searcher) -> Iterator[Running]:
    running = start_server(ServeConfig(store=str(searchable_store)), searcher=searcher)
    yield running
    stop_server(running)


# --------------------------------------------------------------------------- synthetic


def synthetic_memory(video_id: str, slots: int = 4, seed: int = 0) -> VideoMemory:
    g = torch.Generator().manual_seed(seed)
    sizes = torch.full((slots,), 2, dtype=torch.int64)
    ends = torch.cumsum(sizes.double(), 0)
    return VideoMemory(
        video_id=video_id,
        tokens=torch.randn(slots, 2, 4, generator=g).half(),
        sizes=sizes,
        start_s=ends - sizes.double(),
        end_s=ends,
        embedding=torch.randn(slots, 4, generator=g),
        encoder_fingerprint="synthetic:0:float32",
        memory_config=MemoryConfig(),
        frames_seen=int(sizes.sum()),
    )


def synthetic_record(i: int, status: str = "indexed") -> VideoRecord:
    cfg = json.dumps({"memory": MEMORY_PRESETS["moviechat_reference"].to_dict()})
    return VideoRecord(
        video_id=f"{i:024x}",
        encoder_fingerprint="synthetic:0:float32",
        config_hash="cfg",
        status=status,  # type: ignore[arg-type]
        uri=f"/corpus/clip_{i:05d}.mp4",
        config_json=cfg,
        model="synthetic",
        error="decode failed: moov atom not found" if status == "failed" else None,
        duration_s=8.0,
        frames_sampled=8,
    )


def write_synthetic(store: str, first: int, n: int, failed_every: int = 0) -> None:
    """``n`` videos through the Store's own writer (one commit per 250)."""
    with Store(store, writer=True) as st:
        for start in range(first, first + n, 250):
            outcomes = []
            for i in range(start, min(first + n, start + 250)):
                if failed_every and i % failed_every == 0:
                    outcomes.append(VideoCommit(synthetic_record(i, "failed")))
                else:
                    outcomes.append(VideoCommit(synthetic_record(i), synthetic_memory(f"{i:024x}")))
            st.commit(outcomes)


@pytest.fixture(scope="module")
def corpus_1000(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 synthetic videos (every 10th failed) written through the Store's writer."""
    store = tmp_path_factory.mktemp("corpus") / "store"
    write_synthetic(str(store), 0, 1000, failed_every=10)
    return store
