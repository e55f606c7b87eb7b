"""Project-wide pytest fixtures.

Per-area helpers live in their own modules (``tests/videos.py`` makes synthetic test
videos with ffmpeg); this file only holds what every area needs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: real clips nobody on this project made; tests skip cleanly when absent
SHARED = Path(os.environ.get("VIDEOMEM_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_testdata() -> Path:
    d = SHARED / "testdata"
    if not d.is_dir():
        pytest.skip(f"real test clips not found at {d}")
    return d


@pytest.fixture(scope="session")
def mobilenet_dir() -> Path:
    d = SHARED / "models" / "mobilenet_v2_imagenet"
    if not (d / "config.json").is_file():
        pytest.skip(f"real MobileNetV2 checkpoint not found at {d}")
    return d


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def s3():
    """A local S3-compatible server (moto) for object-store tests; see tests/s3.py."""
    from tests.s3 import S3Server

    server = S3Server().start()
    yield server
    server.stop()
