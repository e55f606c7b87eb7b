"""The one executor under faults: real Ray actors whose processes really die.

The steps here are small test steps (no model), so each fault is cheap and exact: a
worker killed mid-item, a poison item that kills every worker it lands on, a step
whose model cannot load. The last test kills a worker of a real index job.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from videomem.jobs.executor import LocalExecutor, RayExecutor, WorkerError, make_executor
from videomem.pipeline.errors import ConfigError

from tests.paths import REPO


@dataclass(frozen=True)
class EchoSpec:
    concurrency: int = 1
    #: seconds each item takes
    delay: float = 0.0
    broken: bool = False

    def build(self) -> EchoStep:
        if self.broken:
            raise RuntimeError("cannot load the model")
        return EchoStep(self.delay)

    def lost(self, item: Any, context: Any, error: str, retryable: bool) -> tuple:
        return ("lost", item, error, retryable)


class EchoStep:
    def __init__(self, delay: float) -> None:
        self.delay = delay

    def info(self) -> str:
        return "echo"

    def run(self, item: Any, context: Any, progress: Any) -> tuple:
        if item == "poison":
            os._exit(3)  # what an OOM kill or a segfault in a decoder looks like
        for _ in range(4):
            time.sleep(self.delay / 4)
            if progress is not None:
                progress(1)
        return ("ok", item, context)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    # workers import this test module to unpickle the steps
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        runtime_env={"env_vars": env},
        logging_level="ERROR",
    )
    yield ray
    ray.shutdown()


def test_local_executor_keeps_order_and_context() -> None:
    ex = LocalExecutor(EchoSpec(concurrency=2))
    assert ex.start() == "echo"
    units: list[int] = []
    outs = [o for batch in ex.run(["a", "b", "c"], "ctx", units.append) for o in batch]
    assert outs == [("ok", "a", "ctx"), ("ok", "b", "ctx"), ("ok", "c", "ctx")]
    assert sum(units) == 12


def test_make_executor_validates() -> None:
    with pytest.raises(ConfigError):
        make_executor(EchoSpec(), "local", workers=2)
    with pytest.raises(ConfigError):
        make_executor(EchoSpec(), "nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        make_executor(EchoSpec(), workers=0)


def test_worker_killed_mid_item_is_replaced_and_nothing_is_lost(ray_local) -> None:
    ex = RayExecutor(EchoSpec(delay=1.0), workers=2)
    ex.start()
    pids = ex.worker_pids()
    killed = threading.Event()
    units: list[int] = []

    def on_units(n: int) -> None:  # live progress arrives while items run
        units.append(n)
        if not killed.is_set():
            killed.set()
            os.kill(pids[0], signal.SIGKILL)

    items = [f"v{i}" for i in range(6)]
    try:
        outs = [o for batch in ex.run(items, "ctx", on_units) for o in batch]
    finally:
        ex.close()
    assert killed.is_set()
    assert sorted(o[1] for o in outs) == items
    assert all(o[0] == "ok" for o in outs), outs
    assert ex.died == 1 and ex.started == 3  # one replacement
    assert sum(units) >= 4 * len(items)  # each finished item reported its units


def test_poison_item_fails_after_killing_two_workers_and_the_job_goes_on(ray_local) -> None:
    ex = RayExecutor(EchoSpec(delay=0.2), workers=2, max_attempts=2)
    ex.start()
    items = ["a", "b", "poison", "c", "d", "e"]
    try:
        outs = [o for batch in ex.run(items) for o in batch]
    finally:
        ex.close()
    by_item = {o[1]: o for o in outs}
    assert sorted(by_item) == sorted(items) and len(outs) == len(items)
    lost = by_item["poison"]
    assert lost[0] == "lost" and lost[3] is False  # not retryable: it kills workers
    assert "died 2 times" in lost[2]
    assert all(by_item[i][0] == "ok" for i in items if i != "poison"), outs
    assert ex.died == 2


def test_no_worker_can_start_is_a_clear_job_error(ray_local) -> None:
    ex = RayExecutor(EchoSpec(broken=True), workers=2)
    with pytest.raises(WorkerError, match="no worker could be started.*cannot load the model"):
        ex.start()


@pytest.mark.slow  # a real index job on Ray actors that each load a model, ~12 s
def test_killed_worker_of_a_real_index_job(ray_local, tmp_path: Path) -> None:
    from videomem.encoders.config import EncoderConfig
    from videomem.encoders.testing import tiny_checkpoint
    from videomem.jobs.index import IndexJob, IndexStepSpec, run_index
    from videomem.jobs.progress import NullReporter
    from videomem.memory.config import MemoryConfig
    from videomem.memory.store import Store
    from videomem.pipeline.types import DecodeConfig

    from tests.videos import make_pattern

    tiny = tiny_checkpoint("llava", cache_dir=tmp_path / "cache")
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(4):
        make_pattern(folder / f"v{i}.mp4", seconds=20 + i, rate=10)  # distinct content
    job = IndexJob(
        paths=[str(folder)],
        store=str(tmp_path / "store"),
        encoder=EncoderConfig(str(tiny), device="cpu", batch_size=2),
        decode=DecodeConfig(fps=10.0),
        memory=MemoryConfig(short_term_len=6, merge_to=2, long_term_len=8, keep_recent=0),
        executor="ray",
        workers=2,
    )
    ex = RayExecutor(IndexStepSpec(job.encoder), workers=2)

    class KillOnFirstFrames(NullReporter):
        killed = False

        def units(self, n: int) -> None:
            if not self.killed:
                self.killed = True
                os.kill(ex.worker_pids()[0], signal.SIGKILL)

    rep = KillOnFirstFrames()
    summary = run_index(job, rep, executor=ex)
    assert rep.killed
    assert (summary.indexed, summary.failed) == (4, 0), summary.to_dict()
    assert ex.died == 1, summary.to_dict()
    with Store(job.store) as st:
        rows = st.list_videos()
        assert len(rows) == 4 and all(r.status == "indexed" for r in rows)
