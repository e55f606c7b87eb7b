"""decoder="torchcodec": the frames ffmpeg's decode() gives, as torch tensors, decoded in
process (real torchcodec on real FFmpeg libraries; its CPU build here, CUDA on a GPU)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from videomem.pipeline.decode import DecodeInfo, decode
from videomem.pipeline.errors import DecodeError
from videomem.pipeline.plan import make_plan
from videomem.pipeline.probe import probe
from videomem.pipeline.thumbs import jpeg_thumbnails
from videomem.pipeline.torch_decode import decode_torchcodec, fit_box, shape_frames
from videomem.pipeline.types import DecodeConfig

from tests.jobs.test_index import SMALL_MEMORY
from tests.videos import make_pattern, make_truncated_faststart, tricky_videos


def _torchcodec_loads() -> str | None:
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as err:  # not installed, or its FFmpeg libraries are missing
        return f"torchcodec cannot load here: {str(err).splitlines()[0]}"
    return None


WHY_NOT = _torchcodec_loads()
needs_torchcodec = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")

CONFIGS = [
    DecodeConfig(fps=5.0, batch_size=4),
    DecodeConfig(fps=25.0, size=(24, 40), aspect="crop", batch_size=7),
    DecodeConfig(num_frames=23, size=(32, 32), batch_size=5),
    DecodeConfig(fps=10.0, start_s=0.5, end_s=2.5, size=(48, 64), batch_size=6),
    DecodeConfig(fps=3.0, start_s=0.45, end_s=1.7, batch_size=6),
    DecodeConfig(fps=7.0, start_s=1.0, end_s=3.3, size=(24, 38), aspect="crop"),
    DecodeConfig(fps=1.0, size=(224, 224), batch_size=16),
]
IDS = ["fps5", "fps25-crop", "n23", "window", "window-vfr-end", "crop-half", "1fps-224"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory, shared_testdata: Path) -> dict[str, Path]:
    return {
        **tricky_videos(tmp_path_factory.mktemp("tcdecode")),
        # a real clip with non-square pixels (176x144, display 4:3)
        "carphone": shared_testdata / "carphone_pristine.mp4",
        "bikes": shared_testdata / "bikes.mp4",
        "bigbuckbunny": shared_testdata / "bigbuckbunny.mp4",
    }


def both(path: Path, cfg: DecodeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ffmpeg frames, torchcodec frames, ffmpeg timestamps, torchcodec timestamps)."""
    src = probe(path)
    a = list(decode(path, cfg, src))
    b = list(decode_torchcodec(path, cfg, src, make_plan(cfg, src)))
    assert all(isinstance(x.frames, torch.Tensor) and x.frames.device.type == "cpu" for x in b)
    assert all(len(x) <= cfg.batch_size for x in b)
    fa = np.concatenate([x.frames for x in a])
    fb = np.concatenate([x.frames.numpy() for x in b])
    ta = np.concatenate([x.timestamps for x in a])
    tb = np.concatenate([x.timestamps for x in b])
    assert np.array_equal(
        np.concatenate([x.frame_index for x in a]), np.concatenate([x.frame_index for x in b])
    )
    return fa, fb, ta, tb


@needs_torchcodec
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
# bigbuckbunny (the longest clip, ~20 s over the configs) is slow; five clips stay fast
@pytest.mark.parametrize(
    "name",
    [
        "cuts",
        "vfr",
        "rotated",
        "carphone",
        "bikes",
        pytest.param("bigbuckbunny", marks=pytest.mark.slow),
    ],
)
def test_torchcodec_gives_ffmpegs_frames(
    videos: dict[str, Path], name: str, cfg: DecodeConfig
) -> None:
    if name == "rotated" and cfg.start_s is not None and cfg.end_s is not None and cfg.end_s > 2:
        cfg = replace(cfg, start_s=0.3, end_s=1.9)  # the rotated video is 2 s long
    fa, fb, ta, tb = both(videos[name], cfg)
    assert np.array_equal(ta, tb)  # the same ticks, bit for bit
    assert fa.shape == fb.shape  # the same geometry (rotation, aspect, pad/crop offsets)
    diff = np.abs(fa.astype(np.int16) - fb.astype(np.int16)).mean(axis=(1, 2, 3))
    if cfg.size is None:
        assert diff.max() == 0  # at the coded size: the very same pixels
    else:
        # torch's bicubic against swscale's: rounding, not content (a frame one tick
        # off, or an offset of one pixel, is 10 or more on these videos)
        assert diff.mean() < 4.0 and diff.max() < 6.0


def test_fit_box_is_ffmpegs_scale_expression() -> None:
    # 1280x720 (16:9) into 40x24 (5:3): crop fills the height, pad fills the width
    assert fit_box(40, 24, 16 / 9, "crop") == (43, 24)
    assert fit_box(40, 24, 16 / 9, "pad") == (40, 22)
    assert fit_box(40, 24, 16 / 9, "stretch") == (40, 24)
    # taller than the box
    assert fit_box(64, 48, 0.5, "pad") == (24, 48)
    assert fit_box(64, 48, 0.5, "crop") == (64, 128)


def test_shape_frames_rotates_and_places_like_ffmpeg() -> None:
    # a 2x4 frame (H x W) whose pixels are numbered; turned clockwise it is 4x2
    x = torch.arange(2 * 4, dtype=torch.uint8).reshape(1, 1, 2, 4).repeat(1, 3, 1, 1)
    turned = shape_frames(x, 90, None, "pad")
    assert turned.shape == (1, 4, 2, 3)
    assert turned[0, :, :, 0].tolist() == [[4, 0], [5, 1], [6, 2], [7, 3]]
    assert shape_frames(x, 180, None, "pad")[0, :, :, 0].tolist() == [[7, 6, 5, 4], [3, 2, 1, 0]]
    # pad: black bars, the picture at floor((out - in) / 2) as ffmpeg's pad puts it
    white = torch.full((1, 3, 27, 64), 255, dtype=torch.uint8)
    padded = shape_frames(white, 0, (48, 64), "pad")[0, :, 0, 0]
    rows = torch.nonzero(padded).flatten()
    assert (int(rows.min()), int(rows.max())) == (10, 36)


@needs_torchcodec
def test_decode_with_torchcodec_records_it_and_falls_back_where_it_cannot(
    videos: dict[str, Path],
) -> None:
    path = videos["cuts"]
    info = DecodeInfo()
    batches = list(decode(path, DecodeConfig(fps=2.0, decoder="torchcodec"), info=info))
    assert isinstance(batches[0].frames, torch.Tensor)
    assert (info.decoder, info.device, info.fallback) == ("torchcodec", "cpu", None)
    # keyframe sampling is ffmpeg's alone
    info = DecodeInfo()
    keys = DecodeConfig(sample="keyframes", fps=None, decoder="torchcodec")
    assert isinstance(next(iter(decode(path, keys, info=info))).frames, np.ndarray)
    assert info.decoder == "ffmpeg"
    if torch.cuda.is_available():
        return
    # torchcodec's CPU build cannot decode on cuda: ffmpeg decodes, and the row says why
    info = DecodeInfo()
    cfg = DecodeConfig(fps=2.0, decoder="torchcodec", device="cuda")
    frames = list(decode(path, cfg, info=info))
    assert isinstance(frames[0].frames, np.ndarray) and info.decoder == "ffmpeg"
    assert info.fallback is not None and info.fallback.startswith(
        "torchcodec cannot decode on cuda"
    )
    assert ".cpp:" not in info.fallback  # torchcodec's source location is cut off


@needs_torchcodec
def test_a_broken_video_is_a_clear_decode_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    cut = make_truncated_faststart(tmp_path / "cut.mp4")
    for path in (garbage, cut):
        cfg = DecodeConfig(fps=5.0, decoder="torchcodec")
        with pytest.raises(DecodeError) as err:
            list(decode(path, cfg))
        assert str(path) in str(err.value)


@needs_torchcodec
def test_index_one_video_from_torchcodec_frames(videos: dict[str, Path]) -> None:
    """Tensors from the decoder go through the encoder and the thumbnails as they are;
    the memory is the ffmpeg path's up to resize rounding; the row names the decoder."""
    from videomem.encoders.registry import load_encoder
    from videomem.encoders.testing import tiny_checkpoint
    from videomem.jobs.index_video import index_one

    enc = load_encoder(tiny_checkpoint("clip"), "cpu", batch_size=8)
    base = DecodeConfig(fps=4.0, size=enc.input_size, batch_size=5)
    out = {}
    for decoder in ("ffmpeg", "torchcodec"):
        cfg = replace(base, decoder=decoder)
        done = index_one(str(videos["cuts"]), "v", enc, cfg, SMALL_MEMORY, config_hash="h")
        assert done.record.status == "indexed", done.record.error
        assert done.record.decode_decoder == decoder and done.memory is not None
        out[decoder] = done.memory
    a, b = out["ffmpeg"], out["torchcodec"]
    assert a.frames_seen == b.frames_seen and b.thumbnails is not None
    assert a.recent_tokens is not None and b.recent_tokens is not None
    assert torch.equal(a.recent_timestamps, b.recent_timestamps)  # type: ignore[arg-type]
    # the raw tokens of the last frames: the same pictures up to resize rounding
    cos = torch.nn.functional.cosine_similarity(
        a.recent_tokens.float(), b.recent_tokens.float(), dim=-1
    )
    assert cos.min() > 0.98
    thumbs = jpeg_thumbnails(torch.zeros(2, 224, 224, 3, dtype=torch.uint8))
    assert len(thumbs) == 2 and all(t[:2] == b"\xff\xd8" for t in thumbs)


@pytest.mark.gpu
@needs_torchcodec
def test_torchcodec_on_cuda_keeps_frames_on_the_gpu(videos: dict[str, Path]) -> None:
    path = videos["bikes"]
    src = probe(path)
    cfg = DecodeConfig(fps=2.0, size=(224, 224), device="cuda", decoder="torchcodec")
    info = DecodeInfo()
    gpu = list(decode(path, cfg, src, info=info))
    assert info.decoder == "torchcodec" and info.device == "cuda", info.fallback
    assert all(b.frames.device.type == "cuda" for b in gpu)  # type: ignore[union-attr]
    cpu = list(decode(path, replace(cfg, device="cpu", decoder="ffmpeg"), src))
    assert np.array_equal(
        np.concatenate([b.timestamps for b in gpu]), np.concatenate([b.timestamps for b in cpu])
    )
    fa = np.concatenate([b.frames for b in cpu]).astype(np.int16)
    fb = np.concatenate([b.frames.cpu().numpy() for b in gpu]).astype(np.int16)  # type: ignore[union-attr]
    assert np.abs(fa - fb).mean() < 6.0  # NVDEC's colour conversion, torch's resize


@needs_torchcodec
def test_torchcodec_failing_part_way_hands_over_to_ffmpeg(tmp_path: Path) -> None:
    """Data torchcodec refuses in the middle of the stream (ffmpeg conceals it): ffmpeg
    goes on from the next tick, so no frame is lost, and the row says where."""
    good = make_pattern(tmp_path / "good.mp4", seconds=6)
    data = bytearray(good.read_bytes())
    start, end = data.find(b"mdat"), data.find(b"moov")
    assert 0 < start < end  # the index after the data: the damage below is in the frames
    at, length = start + (end - start) // 2, (end - start) // 10
    data[at : at + length] = b"\x55" * length
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    cfg = DecodeConfig(fps=5.0, batch_size=4)
    ffmpeg_only = list(decode(bad, cfg))
    info = DecodeInfo()
    mixed = list(decode(bad, replace(cfg, decoder="torchcodec"), info=info))
    assert info.fallback is not None and "the rest decoded by ffmpeg" in info.fallback
    assert info.decoder == "ffmpeg" and info.device == "cpu"  # who decoded the end
    kinds = [type(b.frames) for b in mixed]
    assert kinds[0] is torch.Tensor and kinds[-1] is np.ndarray  # handed over part way
    ta = np.concatenate([b.timestamps for b in ffmpeg_only])
    tb = np.concatenate([b.timestamps for b in mixed])
    assert np.array_equal(ta, tb)  # every tick, once, in order
    fa = np.concatenate([np.asarray(b.frames) for b in ffmpeg_only])
    fb = np.concatenate([np.asarray(b.frames) for b in mixed])
    assert np.array_equal(fa, fb)  # coded size: the same pixels on both sides of the cut
