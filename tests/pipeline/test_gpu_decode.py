"""``DecodeConfig(device="cuda")``: NVDEC decode with GPU scaling, and the CPU fallback
(recorded in ``DecodeInfo``) for codecs NVDEC cannot decode or a GPU that is not
there. The GPU side runs only where CUDA is (``-m gpu``); the fallback runs anywhere."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from videomem.pipeline.decode import DecodeInfo, decode
from videomem.pipeline.probe import probe
from videomem.pipeline.types import DecodeConfig

from tests.pipeline.test_decode import collect
from tests.videos import make_rotated, make_scenes, run_ffmpeg

CONFIGS = [
    DecodeConfig(fps=5.0, size=(48, 64), batch_size=4),
    DecodeConfig(num_frames=7, size=(32, 32), aspect="crop"),
    DecodeConfig(sample="keyframes", fps=None, size=(40, 40)),
]


@pytest.fixture(scope="module")
def vdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gpu_decode")


@pytest.fixture(scope="module")
def clips(vdir: Path) -> dict[str, Path]:
    scenes = (("red", 1.0), ("green", 0.6), ("blue", 1.4))
    return {
        "scenes": make_scenes(vdir / "scenes.mp4", scenes, 128, 96, gop=10).path,
        "rotated": make_rotated(vdir / "rotated.mp4", 90, 128, 64, gop=10).path,
    }


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """GPU scaling rounds differently from swscale: equal up to a few levels."""
    return a.shape == b.shape and float(np.abs(a.astype(int) - b.astype(int)).mean()) < 4.0


@pytest.mark.parametrize("cfg", CONFIGS, ids=["fps", "n-crop", "keyframes"])
def test_cuda_decode_or_recorded_fallback(clips: dict[str, Path], cfg: DecodeConfig) -> None:
    for path in clips.values():
        info = DecodeInfo()
        f_gpu, t_gpu, i_gpu, _ = collect(decode(path, replace(cfg, device="cuda"), info=info))
        f_cpu, t_cpu, i_cpu, _ = collect(decode(path, cfg))
        assert np.array_equal(t_gpu, t_cpu) and np.array_equal(i_gpu, i_cpu)
        if info.device == "cpu":  # no usable NVDEC here: the CPU decoded all of it
            assert info.fallback and info.fallback.startswith("NVDEC decode failed")
            assert np.array_equal(f_gpu, f_cpu)
        else:
            assert info.device == "cuda" and info.fallback is None
            assert all(close(a, b) for a, b in zip(f_gpu, f_cpu, strict=True))


def test_codec_nvdec_cannot_decode_goes_to_the_cpu(vdir: Path) -> None:
    path = vdir / "ffv1.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "2", "-c:v", "ffv1",
                str(path)])  # fmt: skip
    assert probe(path).codec == "ffv1"
    info = DecodeInfo()
    cfg = DecodeConfig(fps=2.0, size=(32, 32))
    f_gpu, t_gpu, _, _ = collect(decode(path, replace(cfg, device="cuda"), info=info))
    f_cpu, t_cpu, _, _ = collect(decode(path, cfg))
    assert info.device == "cpu" and info.fallback == "NVDEC cannot decode ffv1: decoded on the CPU"
    assert np.array_equal(f_gpu, f_cpu) and np.array_equal(t_gpu, t_cpu)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", CONFIGS, ids=["fps", "n-crop", "keyframes"])
def test_nvdec_decodes_on_the_gpu(clips: dict[str, Path], cfg: DecodeConfig) -> None:
    for path in clips.values():
        info = DecodeInfo()
        f_gpu, t_gpu, _, _ = collect(decode(path, replace(cfg, device="cuda"), info=info))
        assert info.device == "cuda", info.fallback
        f_cpu, t_cpu, _, _ = collect(decode(path, cfg))
        assert np.array_equal(t_gpu, t_cpu)
        assert all(close(a, b) for a, b in zip(f_gpu, f_cpu, strict=True))
