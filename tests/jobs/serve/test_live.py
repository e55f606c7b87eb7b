"""A store written by a running index job while the server reads it: a reload shows
each new video once its commit is in, and never a partial one (a listed video's
page always has all the slots its row names)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from videomem.encoders.config import EncoderConfig
from videomem.jobs import api
from videomem.jobs.index import IndexJob
from videomem.jobs.serve import ServeConfig
from videomem.pipeline.types import DecodeConfig

from tests.jobs.serve.conftest import start_server, stop_server
from tests.videos import make_pattern


@pytest.mark.slow
def test_new_videos_appear_on_reload_never_partial(
    tmp_path: Path, searchable_store: Path, mobilenet_dir: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(searchable_store, store)
    clips = tmp_path / "clips"
    for i, src in enumerate(("testsrc2", "smptebars", "mandelbrot")):
        make_pattern(clips / f"new_{i}.mp4", seconds=4 + 2 * i, src=src)
    running = start_server(ServeConfig(store=str(store)))
    job = IndexJob(
        paths=[str(clips)],
        store=str(store),
        encoder=EncoderConfig(model=str(mobilenet_dir), device="cpu"),
        decode=DecodeConfig(fps=2),
    )
    errors: list[BaseException] = []

    def index() -> None:
        try:
            api.index(job)
        except BaseException as e:  # shown by the test, not lost in the thread
            errors.append(e)

    writer = threading.Thread(target=index)
    try:
        with running.client() as c:
            before = {v["video_id"] for v in c.get("/?format=json").json()["videos"]}
            assert len(before) == 3
            writer.start()
            seen_counts = set()
            while True:
                done = not writer.is_alive()  # read before the page: the last poll is final
                videos = c.get("/?format=json&status=indexed").json()["videos"]
                new = [v for v in videos if v["video_id"] not in before]
                seen_counts.add(len(new))
                for v in new:
                    page = c.get(f"/video/{v['video_id']}?format=json").json()
                    assert page["record"]["status"] == "indexed"
                    assert len(page["slots"]) == page["record"]["slots"] == v["slots"] > 0
                if done:
                    break
        assert not errors, errors
        assert len(new) == 3 and sorted(v["name"] for v in new) == [
            "new_0.mp4",
            "new_1.mp4",
            "new_2.mp4",
        ]
        assert 0 in seen_counts  # polled before the first commit too
    finally:
        writer.join(timeout=600)
        stop_server(running)
