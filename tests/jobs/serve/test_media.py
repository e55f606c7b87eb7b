"""The source file by video id, with HTTP Range (what the player needs to seek)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from videomem.jobs.serve import ServeConfig
from videomem.memory.store import Store, VideoCommit
from videomem.pipeline.files import content_video_id

from tests.jobs.serve.conftest import (
    Running,
    start_server,
    stop_server,
    synthetic_memory,
    synthetic_record,
)


@pytest.fixture(scope="module")
def clip(searchable_store: Path) -> tuple[str, Path]:
    with Store(str(searchable_store)) as st:
        rec = st.list_videos("indexed", name="bikes")[0]
    return rec.video_id, Path(rec.uri)


def test_whole_file_and_ranges(served: Running, clip: tuple[str, Path]) -> None:
    vid, path = clip
    data = path.read_bytes()
    size = len(data)
    with served.client() as c:
        whole = c.get(f"/media/{vid}")
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-type"] == "video/mp4"
        mid = size // 2
        part = c.get(f"/media/{vid}", headers={"Range": f"bytes={mid}-{mid + 999}"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes {mid}-{mid + 999}/{size}"
        assert part.content == data[mid : mid + 1000]
        tail = c.get(f"/media/{vid}", headers={"Range": "bytes=-500"})
        assert tail.status_code == 206 and tail.content == data[-500:]
        beyond = c.get(f"/media/{vid}", headers={"Range": f"bytes={size + 10}-"})
        assert beyond.status_code == 416


def test_a_missing_or_changed_file_shows_the_memory_and_says_so(
    tmp_path: Path, clip: tuple[str, Path]
) -> None:
    """A video (copied clip, written through the Store's writer) whose file is then
    replaced by other bytes, then removed: the page shows its memory and says why the
    player is missing; the media route refuses with the reason."""
    _, shared_clip = clip
    path = tmp_path / "copy.mp4"
    shutil.copy(shared_clip, path)
    vid = content_video_id(path)
    store = tmp_path / "store"
    with Store(str(store), writer=True) as st:
        rec = dataclasses.replace(synthetic_record(0), video_id=vid, uri=str(path), slots=4)
        st.commit([VideoCommit(rec, synthetic_memory(vid))])
    running = start_server(ServeConfig(store=str(store)))
    try:
        with running.client() as c:
            assert c.get(f"/video/{vid}?format=json").json()["file"] == "ok"
            assert c.get(f"/media/{vid}").status_code == 200
            path.write_bytes(b"\0" * path.stat().st_size)  # same size, other content
            page = c.get(f"/video/{vid}?format=json").json()
            assert page["file"] == "changed" and len(page["slots"]) == 4
            r = c.get(f"/media/{vid}?format=json")
            assert r.status_code == 404 and "changed" in r.json()["error"]
            path.unlink()
            html = c.get(f"/video/{vid}").text
            assert 'id="file-missing"' in html and "<video" not in html
            assert html.count(f"/thumb/{vid}/") == 4
            assert "missing" in c.get(f"/media/{vid}?format=json").json()["error"]
    finally:
        stop_server(running)
