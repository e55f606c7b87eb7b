"""One cache root for everything videomem builds once (ffmpeg choice, tiny checkpoints,
prepared models)."""

from __future__ import annotations

from pathlib import Path

import pytest
from videomem.pipeline.cache import cache_dir


def test_cache_dir_follows_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDEOMEM_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_cache_dir_defaults_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VIDEOMEM_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "videomem"


def test_every_cache_user_shares_the_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from videomem.encoders.prepared import prepared_dir

    monkeypatch.setenv("VIDEOMEM_CACHE", str(tmp_path))
    assert prepared_dir("smollm2") == tmp_path / "models" / "smollm2"


def test_build_folder_is_atomic_and_replaces_only_when_forced(tmp_path: Path) -> None:
    from videomem.pipeline.cache import build_folder

    out = tmp_path / "models" / "m"

    def write(text: str):  # type: ignore[no-untyped-def]
        return lambda tmp: (tmp / "f").write_text(text)

    def ready(p: Path) -> bool:
        return (p / "f").is_file()

    assert build_folder(out, write("one"), ready) == out
    assert (out / "f").read_text() == "one"
    build_folder(out, write("two"), ready, force=True)
    assert (out / "f").read_text() == "two"
    # another process got there first: its folder stays, ours is thrown away
    build_folder(out, write("three"), ready)
    assert (out / "f").read_text() == "two"

    def broken(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError):
        build_folder(tmp_path / "models" / "n", broken, ready)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m"]  # no half folder
