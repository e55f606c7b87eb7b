"""GPU helpers of the encoders: out-of-memory retry with smaller chunks (its logic runs
on CPU with an injected OOM), pinned uploads and the half dtype (on CUDA only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from videomem.encoders import load_encoder
from videomem.encoders.gpu import (
    HostUploader,
    PinnedStager,
    SideStreamUploader,
    half_dtype,
    is_out_of_memory,
)
from videomem.encoders.testing import build_tiny


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


def chunk_by_chunk(enc, x: np.ndarray, size: int) -> torch.Tensor:  # noqa: ANN001
    """The reference: each chunk preprocessed and encoded on its own, no lookahead."""
    with torch.inference_mode():
        parts = [enc._encode_pixels(enc.pixels(x[i : i + size]))[0] for i in range(0, len(x), size)]
    return torch.cat([p.to("cpu", torch.float32) for p in parts])


def test_chunks_copied_ahead_give_the_chunk_by_chunk_tokens(clip_dir: Path) -> None:
    enc = load_encoder(clip_dir, "cpu", batch_size=3)
    assert isinstance(enc.uploader(), HostUploader)  # type: ignore[attr-defined]  # CPU
    x = frames(10, enc.input_size[0])  # chunks 3, 3, 3, 1
    seen: list[int] = []
    real = enc._encode_pixels

    def counting(pixels: torch.Tensor):  # noqa: ANN202
        seen.append(len(pixels))
        return real(pixels)

    enc._encode_pixels = counting  # type: ignore[method-assign]
    got = enc.encode(x)
    assert seen == [3, 3, 3, 1]
    assert torch.equal(got.tokens, chunk_by_chunk(enc, x, 3))


@pytest.mark.gpu
def test_side_stream_uploads_are_exact_and_alternate_buffers() -> None:
    dev = torch.device("cuda")
    up = SideStreamUploader(dev)
    assert up.stream != torch.cuda.current_stream(dev)
    xs = [torch.randint(0, 256, (n, 16, 16, 3), dtype=torch.uint8) for n in (4, 4, 2, 4)]
    ups = [up.put(x, (i, len(x))) for i, x in enumerate(xs[:2])]
    assert ups[0].ready is not None and ups[0].frames.device.type == "cuda"
    assert up._buffers[0] is not None and up._buffers[1] is not None
    assert up._buffers[0].data_ptr() != up._buffers[1].data_ptr()
    assert up._buffers[0].is_pinned()
    got = [up.take(u).cpu() for u in ups]
    got += [up.take(up.put(x, (9, len(x)))).cpu() for x in xs[2:]]
    assert all(torch.equal(g, x) for g, x in zip(got, xs, strict=True))


@pytest.mark.gpu
def test_cuda_encode_with_copies_ahead_matches_chunk_by_chunk(clip_dir: Path) -> None:
    gpu = load_encoder(clip_dir, "cuda", dtype="float32", batch_size=3)
    assert isinstance(gpu.uploader(), SideStreamUploader)  # type: ignore[attr-defined]
    x = frames(10, gpu.input_size[0])
    torch.testing.assert_close(gpu.encode(x).tokens, chunk_by_chunk(gpu, x, 3), rtol=0, atol=1e-5)
