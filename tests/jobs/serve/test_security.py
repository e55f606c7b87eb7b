"""Security defaults: ids only (traversal attempts 404), the Host check, headers, caps."""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from videomem.memory.store import Store

from tests.jobs.serve.conftest import Running


def raw_get(running: Running, path: str, host: str | None = None) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..``)."""
    url = urlsplit(running.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host or url.netloc)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "path",
    [
        "/media/../../etc/passwd",
        "/media/..%2f..%2fetc%2fpasswd",
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/media//etc/passwd",
        "/media/%2Fetc%2Fpasswd",
        "/media/C:%5Cwindows%5Cwin.ini",
        "/media/abc",  # a short prefix: media takes whole ids only
        "/media/AAAAAAAAAAAAAAAAAAAAAAAA",  # not the shape of an id
        "/media/ffffffffffffffffffffffff",  # the right shape, no such video
        "/media/000000000000000000000000'%20OR%20'1'='1",
        "/thumb/../../etc/passwd/0.jpg",
        "/thumb/ffffffffffffffffffffffff/0.jpg",
        "/video/..%2f..%2fetc",
        "/video/%00",
        "/static/../config.py",
        "/static/%2e%2e/config.py",
        "/static/..%2fconfig.py",
        "/etc/passwd",
    ],
)
def test_path_traversal_attempts_all_404(served: Running, path: str) -> None:
    status, body = raw_get(served, path)
    assert status == 404, (path, body[:200])
    assert b"root:" not in body and b"ServeConfig" not in body


def test_a_real_file_is_never_reachable_by_its_path(
    served: Running, searchable_store: Path
) -> None:
    with Store(str(searchable_store)) as st:
        uri = st.list_videos("indexed")[0].uri
    assert raw_get(served, "/media/" + uri)[0] == 404
    assert raw_get(served, "/media/" + uri.replace("/", "%2F"))[0] == 404


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8321", "127.0.0.1.evil.example"])
def test_a_foreign_host_header_is_refused(served: Running, host: str) -> None:
    status, body = raw_get(served, "/", host=host)
    assert status == 421 and b"unknown Host" in body


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:1234", "[::1]:8321"])
def test_loopback_host_names_are_served(served: Running, host: str) -> None:
    assert raw_get(served, "/?limit=1", host=host)[0] == 200


def test_security_headers_and_no_cors(served: Running) -> None:
    with served.client() as c:
        for path in ("/", "/search?q=bicycle", "/static/app.js", "/nothing-here"):
            r = c.get(path, headers={"Origin": "http://evil.example"})
            assert r.headers["content-security-policy"].startswith("default-src 'self'")
            assert r.headers["x-content-type-options"] == "nosniff"
            assert not any(h.lower().startswith("access-control-") for h in r.headers)


def test_html_is_escaped(served: Running) -> None:
    with served.client() as c:
        r = c.get("/search", params={"q": "<script>alert(1)</script>"})
        assert "<script>alert(1)</script>" not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text


def test_ask_is_post_only_and_capped(served: Running) -> None:
    with served.client() as c:
        # a GET with a question only shows the form: no page load starts a model
        r = c.get("/ask", params={"video": "abcd", "question": "what?", "format": "json"})
        assert r.status_code == 200 and r.json()["result"] is None
        assert c.put("/ask", data={"video": "abcd", "question": "q"}).status_code == 405
        long = c.post("/ask?format=json", data={"video": "abcd", "question": "x" * 2001})
        assert long.status_code == 400 and "too long" in long.json()["error"]
        empty = c.post("/ask?format=json", data={"video": "abcd", "question": " "})
        assert empty.status_code == 400 and "empty question" in empty.json()["error"]
        big = c.post("/ask", content=b"x" * 100_000, headers={"content-type": "text/plain"})
        assert big.status_code == 413


def test_ask_takes_ids_only_never_a_path(served: Running, searchable_store: Path) -> None:
    with Store(str(searchable_store)) as st:
        uri = st.list_videos("indexed")[0].uri  # a real file the store holds
    with served.client() as c:
        for video in (uri, "/etc/passwd", "../bikes.mp4", "bikes.mp4"):
            r = c.post("/ask?format=json", data={"video": video, "question": "what?"})
            assert r.status_code == 404 and "no video" in r.json()["error"], video
