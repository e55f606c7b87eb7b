"""The ask form: one generation thread off the event loop, a bounded queue, and
answers recorded only when asked to. The LLM is a stub behind the ChatModel protocol
that blocks until the test releases it, so "search answers while an ask generates"
is observed, not timed."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from videomem.jobs.ask import Asker
from videomem.jobs.searcher import Searcher
from videomem.jobs.serve import ServeConfig
from videomem.memory.store import Store
from videomem.qa.textllm import Reply
from videomem.qa.types import GenerationSettings

from tests.jobs.serve.conftest import start_server, stop_server
from tests.waiting import wait_until


class BlockingChat:
    """A ChatModel whose reply waits for ``release``; it records the prompts it got."""

    name = "stub-chat"
    context_len: int | None = None
    dtype = "float32"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.prompts: list[list[dict[str, str]]] = []

    def count_prompt(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def count_text(self, text: str) -> int:
        return len(text.split())

    def reply(self, messages: list[dict[str, str]], settings: GenerationSettings) -> Reply:
        self.prompts.append(messages)
        self.started.set()
        start = time.perf_counter()
        assert self.release.wait(300), "the test never released the stub"
        return Reply(
            "a bicycle", self.count_prompt(messages), [1, 2, 3], time.perf_counter() - start
        )


def bikes_id(store: Path) -> str:
    with Store(str(store)) as st:
        return st.list_videos("indexed", name="bikes")[0].video_id


def test_searches_are_answered_while_an_ask_generates(
    searchable_store: Path, searcher: Searcher
) -> None:
    chat = BlockingChat()
    with Store(str(searchable_store)) as st:  # the shared store may hold other tests' rows
        before = st.qa.read("answers")
    config = ServeConfig(store=str(searchable_store), ask_queue=1)
    running = start_server(config, searcher=searcher, asker=Asker(llm=chat))
    vid = bikes_id(searchable_store)
    try:
        with ThreadPoolExecutor(4) as pool, running.client() as c:
            asking = pool.submit(
                c.post, "/ask?format=json", data={"video": vid, "question": "What is shown?"}
            )
            wait_until(chat.started.is_set, "the stub LLM to start generating")
            # while it generates: searches and page loads from other clients
            searches = [
                pool.submit(c.get, "/search", params={"q": q, "format": "json"})
                for q in ("bicycle", "person", "car")
            ]
            for f in searches:
                r = f.result(timeout=120)
                assert r.status_code == 200 and r.json()["moments"]
            assert c.get("/?format=json").status_code == 200
            assert c.get(f"/video/{vid}?format=json").status_code == 200
            assert not asking.done(), "the ask finished before the stub was released"
            # the queue holds one question: a second is refused, readably
            busy = c.post("/ask?format=json", data={"video": vid, "question": "And now?"})
            assert busy.status_code == 503 and busy.json()["busy"].startswith("busy")
            chat.release.set()
            answer = asking.result(timeout=120)
        assert answer.status_code == 200, answer.text
        result = answer.json()["result"]
        assert result["answer"] == "a bicycle" and result["status"] == "answered"
        assert result["model"] == "stub-chat" and result["new_tokens"] == 3
        assert result["slots"] > 0 and result["total_s"] >= result["generate_s"]
        assert result["recorded"] is False
        # the prompt is the video's timeline: its tags are in it
        assert "What is shown?" in chat.prompts[0][-1]["content"]
        with Store(str(searchable_store)) as st:
            assert st.qa.read("answers") == before  # nothing written without the flag
    finally:
        chat.release.set()
        stop_server(running)


def test_record_answers_writes_the_answer_row(tmp_path: Path, searchable_store: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(searchable_store, store)
    chat = BlockingChat()
    chat.release.set()
    config = ServeConfig(store=str(store), record_answers=True)
    running = start_server(config, asker=Asker(llm=chat))
    vid = bikes_id(store)
    try:
        with running.client() as c:
            r = c.post("/ask", data={"video": vid, "question": "What is shown?", "at": "1.5"})
            assert r.status_code == 200 and "a bicycle" in r.text
            # the copied store may hold other tests' answers: this model's are the new one
            params = {"video": vid, "model": "stub-chat", "format": "json"}
            rows = c.get("/answers", params=params).json()
            assert rows["total"] == 1
            (row,) = rows["answers"]
            assert row["answer"] == "a bicycle" and row["time_s"] == 1.5
            assert row["model"] == "stub-chat" and row["status"] == "answered"
            csv = c.get("/answers", params={"format": "csv", "model": "stub-chat"}).text
            assert "a bicycle" in csv.splitlines()[1]
            assert "a bicycle" in c.get(f"/video/{vid}").text
            bad = c.post("/ask?format=json", data={"video": "ffffffffffff", "question": "q"})
            assert bad.status_code == 404 and "no video" in bad.json()["error"]
    finally:
        stop_server(running)


def test_no_page_load_starts_a_model(searchable_store: Path) -> None:
    """An asker that would load a text LLM by name: GET pages never load it."""
    asker = Asker(llm="no-such-llm-that-would-fail-to-load")
    running = start_server(ServeConfig(store=str(searchable_store)), asker=asker)
    try:
        with httpx.Client(base_url=running.url, timeout=60) as c:
            for path in ("/", "/ask", f"/ask?video={bikes_id(searchable_store)}", "/answers"):
                assert c.get(path).status_code == 200
        assert not asker.loaded
    finally:
        stop_server(running)
