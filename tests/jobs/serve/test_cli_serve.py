"""``videomem serve`` as a user runs it: its own process, the URL it prints, the
default loopback bind, the warning on any other address, a clear error for no store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.paths import REPO

VIDEOMEM = str(Path(sys.executable).parent / "videomem")


@contextmanager
def serving(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = subprocess.Popen(
        [VIDEOMEM, "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the socket is bound
        assert line.startswith("videomem serve: http://"), (
            line,
            proc.stderr and proc.stderr.read(),
        )
        yield line.split(": ", 1)[1].strip(), proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            addr, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # LISTEN
                found.add(addr)
    return found


@pytest.mark.slow
def test_serve_binds_loopback_by_default_and_prints_its_url(searchable_store: Path) -> None:
    with serving("--store", str(searchable_store)) as (url, _):
        host_port = url.removeprefix("http://").rstrip("/")
        host, port = host_port.rsplit(":", 1)
        assert host == "127.0.0.1"
        if os.path.exists("/proc/net/tcp"):
            assert listening_addresses(int(port)) == {"0100007F"}  # 127.0.0.1 only
        r = httpx.get(url + "?format=json", timeout=60)
        assert r.status_code == 200 and r.json()["indexed"] == 3


@pytest.mark.slow
def test_serve_warns_on_a_non_loopback_host(searchable_store: Path) -> None:
    with serving("--store", str(searchable_store), "--host", "0.0.0.0") as (url, proc):
        assert url.startswith("http://0.0.0.0:")
    assert proc.stderr is not None
    assert "no login" in proc.stderr.read()


@pytest.mark.slow
def test_serve_without_a_store_is_a_clear_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [VIDEOMEM, "serve", "--store", str(tmp_path / "none"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "error: no videomem store" in r.stderr and "Traceback" not in r.stderr
