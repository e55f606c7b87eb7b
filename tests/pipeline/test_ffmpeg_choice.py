"""Which ffmpeg runs: VIDEOMEM_FFMPEG, else the faster of the system and the bundled
binary (a cached measurement, else the newer version)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from videomem.pipeline.errors import DecodeError
from videomem.pipeline.ffmpeg import find_ffmpeg
from videomem.pipeline.ffmpeg_choice import choose_ffmpeg, ffmpeg_info, measure_ffmpeg

from tests.videos import imageio_ffmpeg_exe

SYSTEM = shutil.which("ffmpeg")


def version_of(exe: str) -> tuple[int, ...]:
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"ffmpeg version n?(\d+)\.(\d+)(?:\.(\d+))?", out)
    assert m, out
    return tuple(int(g) for g in m.groups() if g is not None)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIDEOMEM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VIDEOMEM_FFMPEG", raising=False)
    return tmp_path / "cache"


def test_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    exe = imageio_ffmpeg_exe()
    monkeypatch.setenv("VIDEOMEM_FFMPEG", exe)
    choice = choose_ffmpeg()
    assert (choice.path, choice.source) == (exe, "VIDEOMEM_FFMPEG")
    assert find_ffmpeg() == exe
    monkeypatch.setenv("VIDEOMEM_FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(DecodeError, match="not an executable"):
        choose_ffmpeg()
    assert "not an executable" in ffmpeg_info()["error"]


def test_bundled_when_path_has_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    choice = choose_ffmpeg()
    assert (choice.path, choice.source) == (imageio_ffmpeg_exe(), "imageio-ffmpeg")
    # the same binary reached through PATH is one candidate, not two
    linked = tmp_path / "bin2"
    linked.mkdir()
    os.symlink(imageio_ffmpeg_exe(), linked / "ffmpeg")
    monkeypatch.setenv("PATH", str(linked))
    choice = choose_ffmpeg()
    assert choice.source == "PATH" and choice.reason == "the only ffmpeg found"


@pytest.mark.skipif(SYSTEM is None, reason="needs a system ffmpeg besides the bundled one")
def test_newer_version_wins_then_a_measurement(private_cache: Path) -> None:
    assert SYSTEM is not None
    bundled = imageio_ffmpeg_exe()
    newer = bundled if version_of(bundled) > version_of(SYSTEM) else SYSTEM
    info = ffmpeg_info()
    assert info["path"] == newer and ".".join(map(str, version_of(newer))) == info["version"]
    assert "newer" in info["reason"] or "not older" in info["reason"]
    # a measurement made on this machine for these two binaries overrides the version
    seconds = measure_ffmpeg(repeats=1, seconds=1.0)
    assert set(seconds) == {SYSTEM, bundled} and all(s > 0 for s in seconds.values())
    choice = choose_ffmpeg()
    assert choice.path == min(seconds, key=seconds.__getitem__)
    assert choice.reason.startswith("faster when measured here")
    # it is tied to these exact binaries: a changed binary makes it stale
    data = json.loads((private_cache / "ffmpeg-choice.json").read_text())
    data["candidates"][0]["size"] += 1
    (private_cache / "ffmpeg-choice.json").write_text(json.dumps(data))
    assert choose_ffmpeg().path == newer
