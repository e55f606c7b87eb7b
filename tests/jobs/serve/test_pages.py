"""Every page and its JSON, on a real uvicorn server: the real clips (indexed with
MobileNetV2 and tagged) and a store of 1,000 synthetic videos for paging."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from videomem.jobs.serve import ServeConfig
from videomem.memory.store import Store

from tests.jobs.serve.conftest import Running, start_server, stop_server


@pytest.fixture(scope="module")
def corpus_server(corpus_1000: Path) -> Iterator[Running]:
    running = start_server(ServeConfig(store=str(corpus_1000), page=50))
    yield running
    stop_server(running)


def test_corpus_pages_cover_1000_videos_once(corpus_server: Running) -> None:
    seen: list[str] = []
    with corpus_server.client() as c:
        offset: int | None = 0
        while offset is not None:
            data = c.get("/", params={"offset": offset, "limit": 120, "format": "json"}).json()
            assert len(data["videos"]) <= 120
            seen += [v["video_id"] for v in data["videos"]]
            offset = data["next_offset"]
        assert data["indexed"] == 900 and data["failed"] == 100 and data["total"] == 1000
    assert len(seen) == 1000 and len(set(seen)) == 1000


def test_corpus_filters_and_counts(corpus_server: Running) -> None:
    with corpus_server.client() as c:
        failed = c.get("/", params={"status": "failed", "format": "json"}).json()
        assert failed["failed"] == 100 and failed["indexed"] == 0
        assert all(v["status"] == "failed" and "moov atom" in v["error"] for v in failed["videos"])
        named = c.get("/", params={"name": "clip_0012", "format": "json"}).json()
        # clip_00120 … clip_00129
        assert sorted(v["name"] for v in named["videos"]) == [
            f"clip_{i:05d}.mp4" for i in range(120, 130)
        ]
        assert named["total"] == 10
        assert c.get("/", params={"model": "other", "format": "json"}).json()["total"] == 0
        html = c.get("/", params={"status": "failed"}).text
        assert "moov atom not found" in html and 'rel="next"' in html


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=100000", "offset=-1", "offset=x", "status=gone", "limit=1.5"],
)
def test_bad_paging_is_a_readable_400(corpus_server: Running, query: str) -> None:
    with corpus_server.client() as c:
        r = c.get(f"/?{query}&format=json")
        assert r.status_code == 400
        assert r.json()["error"] and "Traceback" not in r.text


def test_json_by_accept_header(corpus_server: Running) -> None:
    with corpus_server.client() as c:
        r = c.get("/?limit=2", headers={"Accept": "application/json"})
        assert r.headers["content-type"].startswith("application/json")
        assert len(r.json()["videos"]) == 2
        assert c.get("/?limit=2").headers["content-type"].startswith("text/html")


def test_video_page_and_json(served: Running, searchable_store: Path) -> None:
    with Store(str(searchable_store)) as st:
        rec = st.list_videos("indexed", name="bikes")[0]
        n_tags = sum(1 for c in st.qa.captions(rec.video_id) if c["kind"] == "tags")
    with served.client() as c:
        data = c.get(f"/video/{rec.video_id}?format=json").json()
        assert data["record"]["uri"] == rec.uri and data["file"] == "ok"
        assert len(data["slots"]) == rec.slots > 0
        assert data["slots"][0]["start_s"] == 0.0
        assert all(
            a["end_s"] <= b["start_s"] + 1e-9
            for a, b in zip(data["slots"], data["slots"][1:], strict=False)
        )
        assert data["tag_lines"] == n_tags > 0
        assert any(s["tags"] for s in data["slots"])
        html = c.get(f"/video/{rec.video_id[:8]}").text  # a unique prefix works too
        assert f'src="/media/{rec.video_id}"' in html
        assert html.count(f'src="/thumb/{rec.video_id}/') == rec.slots
        assert c.get("/video/ffffffffffffffffffffffff").status_code == 404


def test_search_page_and_json(served: Running) -> None:
    with served.client() as c:
        data = c.get("/search", params={"q": "bicycle", "k": 5, "format": "json"}).json()
        moments = data["moments"]
        assert 0 < len(moments) <= 5
        assert all(m["source"] == "text" and m["thumb_slot"] is not None for m in moments)
        html = c.get("/search", params={"q": "bicycle", "k": 5}).text
        first = moments[0]
        assert f'href="/video/{first["video_id"]}?t={first["start_s"]}"' in html
        thumb = c.get(f"/thumb/{first['video_id']}/{first['thumb_slot']}.jpg")
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"  # a JPEG
        assert c.get("/search").status_code == 200  # the empty form
        empty = c.get("/search?format=json")
        assert empty.status_code == 400 and "empty query" in empty.json()["error"]
        assert c.get("/search", params={"q": "x", "k": 1000}).status_code == 400
        assert c.get("/search", params={"q": "x", "source": "smell"}).status_code == 400


def test_ask_form_and_answers_pages(served: Running, searchable_store: Path) -> None:
    with Store(str(searchable_store)) as st:  # the shared store may hold other tests' answers
        stored = st.qa.read("answers")
    with served.client() as c:
        form = c.get("/ask?video=abcd")
        assert form.status_code == 200 and 'method="post"' in form.text
        data = c.get("/answers?format=json").json()
        assert data["total"] == len(stored)
        got = {(r["question_id"], r["video_id"], r["model"]) for r in data["answers"]}
        assert got <= {(r["question_id"], r["video_id"], r["model"]) for r in stored}
        assert bool(data["answers"]) == bool(stored)  # a first page whenever there are any
        csv = c.get("/answers?format=csv")
        assert csv.headers["content-type"].startswith("text/csv")
        assert csv.text.splitlines()[0].startswith("question_id,video_id")


def test_video_page_shows_speech_lines_when_there_are_any(tmp_path: Path) -> None:
    """A transcript written through the Store's writer shows as speech lines; a video
    without one shows none."""
    from videomem.pipeline.transcript import SpeechSegment, Transcript

    from tests.jobs.serve.conftest import write_synthetic

    store = tmp_path / "store"
    write_synthetic(str(store), 0, 2)
    said = (
        SpeechSegment(0.5, 2.0, "Hello <b>there</b>.", "en", -0.2, 0.01),
        SpeechSegment(3.0, 4.5, "Two bicycles.", "en", -0.3, 0.02),
    )
    with Store(str(store), writer=True) as st:
        st.speech.add([Transcript(f"{0:024x}", "whisper-base", "h", "done", said, "en")])
    running = start_server(ServeConfig(store=str(store)))
    try:
        with running.client() as c:
            data = c.get(f"/video/{0:024x}?format=json").json()
            assert data["speech"] == [
                {"start_s": 0.5, "end_s": 2.0, "text": "Hello <b>there</b>."},
                {"start_s": 3.0, "end_s": 4.5, "text": "Two bicycles."},
            ]
            html = c.get(f"/video/{0:024x}").text
            assert 'id="speech"' in html and "Hello &lt;b&gt;there&lt;/b&gt;." in html
            assert 'id="speech"' not in c.get(f"/video/{1:024x}").text
            assert c.get(f"/video/{1:024x}?format=json").json()["speech"] == []
    finally:
        stop_server(running)
