"""GPU helpers of the encoders: out-of-memory retry with smaller chunks (its logic runs
on CPU with an injected OOM), pinned uploads and the half dtype (on CUDA only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from videomem.encoders import load_encoder
from videomem.encoders.gpu import PinnedStager, half_dtype, is_out_of_memory
from videomem.encoders.tiny import build_tiny


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("clip", tmp_path_factory.mktemp("gpu") / "clip")


def frames(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def oom() -> RuntimeError:
    cls = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return cls("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")


def test_out_of_memory_retries_with_half_the_chunk(clip_dir: Path) -> None:
    enc = load_encoder(clip_dir, "cpu", batch_size=8)
    x = frames(11, enc.input_size[0])
    ref = enc.encode(x)
    real = enc._encode_pixels
    sizes: list[int] = []

    def fits_three(pixels: torch.Tensor):  # noqa: ANN202
        sizes.append(len(pixels))
        if len(pixels) > 3:
            raise oom()
        return real(pixels)

    enc._encode_pixels = fits_three  # type: ignore[method-assign]
    got = enc.encode(x)
    torch.testing.assert_close(got.tokens, ref.tokens)
    torch.testing.assert_close(got.embedding, ref.embedding)
    assert sizes[:3] == [8, 4, 2] and set(sizes[3:]) <= {2, 1}
    assert enc._chunk == 2  # later batches keep the size that fitted
    sizes.clear()
    enc.encode(x[:4])
    assert sizes == [2, 2]


def test_out_of_memory_at_one_frame_and_other_errors_propagate(clip_dir: Path) -> None:
    enc = load_encoder(clip_dir, "cpu", batch_size=4)
    x = frames(2, enc.input_size[0])

    def always_oom(pixels: torch.Tensor):  # noqa: ANN202
        raise oom()

    enc._encode_pixels = always_oom  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="out of memory"):
        enc.encode(x)

    def broken(pixels: torch.Tensor):  # noqa: ANN202
        raise RuntimeError("shape mismatch")

    enc._encode_pixels = broken  # type: ignore[method-assign]
    enc._chunk = None
    with pytest.raises(RuntimeError, match="shape mismatch"):
        enc.encode(x)
    assert enc._chunk is None  # not an OOM: no retry, no smaller chunk
    assert is_out_of_memory(oom()) and not is_out_of_memory(RuntimeError("shape mismatch"))


def test_stager_passes_cpu_through() -> None:
    x = torch.arange(12, dtype=torch.uint8).view(1, 2, 2, 3)
    assert PinnedStager().to_device(x, torch.device("cpu")) is x


@pytest.mark.gpu
def test_pinned_uploads_are_exact_and_reuse_one_buffer() -> None:
    stager = PinnedStager()
    dev = torch.device("cuda")
    a = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8)
    b = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    ga = stager.to_device(a, dev)
    buf = stager._buffer
    gb = stager.to_device(b, dev)  # smaller: same pinned buffer, after ga's copy ended
    assert stager._buffer is buf and buf is not None and buf.is_pinned()
    assert torch.equal(ga.cpu(), a) and torch.equal(gb.cpu(), b)


@pytest.mark.gpu
def test_half_dtype_follows_the_device() -> None:
    dev = torch.device("cuda")
    major, _ = torch.cuda.get_device_capability(0)
    assert half_dtype(dev) == (torch.bfloat16 if major >= 8 else torch.float16)


@pytest.mark.gpu
def test_cuda_encode_matches_cpu(clip_dir: Path) -> None:
    cpu = load_encoder(clip_dir, "cpu", batch_size=3)
    gpu = load_encoder(clip_dir, "cuda", dtype="float32", batch_size=3)
    x = frames(7, cpu.input_size[0])
    torch.testing.assert_close(gpu.encode(x).tokens, cpu.encode(x).tokens, rtol=1e-3, atol=1e-3)
