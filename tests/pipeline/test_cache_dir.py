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
