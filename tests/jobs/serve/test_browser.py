"""The web app in a real headless Chromium (Debian's ``chromium``, driven by
Playwright through ``executable_path``; no browser download): type a query on the
corpus page, click a result, and the player stands at the slot's start with the
thumbnails loaded, under the CSP with no console error. The screenshot is kept as a
test artifact in ``build/test-artifacts/``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.jobs.serve.conftest import Running
from tests.paths import REPO

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "build" / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "no chromium: install Debian's package (`make system-deps` does as root, "
            "or `apt-get install chromium`)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def test_search_click_seek(browser: Any, served: Running) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(served.url + "/")
    page.locator("#q").press_sequentially("bicycle", delay=30)
    first = page.locator("#results .moment a").first
    first.wait_for(timeout=120_000)
    href = first.get_attribute("href")
    assert href is not None and "?t=" in href
    video_id = href.split("/video/")[1].split("?")[0]
    start = float(href.split("?t=")[1])
    # the results' thumbnails loaded (the CSP allows same-origin images)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    first.click()
    page.wait_for_url(f"**/video/{video_id}?t=*")
    page.wait_for_function(
        "s => { const p = document.getElementById('player');"
        " return p && p.readyState >= 1 && !p.seeking && Math.abs(p.currentTime - s) < 1e-3; }",
        arg=start,
        timeout=120_000,
    )
    assert page.evaluate("document.getElementById('player').currentTime") == pytest.approx(
        start, abs=1e-3
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('#timeline img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    n = page.locator("#timeline img").count()
    assert n > 0
    # a click on a later slot seeks the player there
    last = page.locator("#timeline li.slot").last
    slot_start = float(last.get_attribute("data-start") or "nan")
    last.click()
    page.wait_for_function(
        "s => Math.abs(document.getElementById('player').currentTime - s) < 1e-3",
        arg=slot_start,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "serve-video.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 0
    assert not problems, problems
    page.close()


def test_corpus_and_search_pages_have_no_console_errors(browser: Any, served: Running) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    for path in ("/", "/search?q=bicycle", "/ask", "/answers"):
        page.goto(served.url + path)
        page.wait_for_load_state("networkidle")
    page.goto(served.url + "/search?q=person")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(served.url + "/")
    page.locator("#q").press_sequentially("bicycle", delay=30)
    page.locator("#results .moment img").first.wait_for(timeout=120_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(ARTIFACTS / "serve-corpus.png"), full_page=True)
    assert not problems, problems
    page.close()
