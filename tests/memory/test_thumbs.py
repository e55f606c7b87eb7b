"""Per-slot thumbnails: the tracker against naive choices, and end to end through
``index_video`` and the store (each slot's thumbnail shows a frame from its span)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from videomem.memory.builder import MemoryBuilder
from videomem.memory.config import MemoryConfig
from videomem.memory.thumbs import ThumbnailTracker
from videomem.pipeline.thumbs import jpeg_thumbnails
from videomem.pipeline.types import FrameTokens

from tests.videos import frame_color, make_scenes


def payload(t: float) -> bytes:
    return f"{t:.2f}".encode()


def test_a_merged_slot_keeps_the_frame_closer_to_the_merged_tokens() -> None:
    tr = ThumbnailTracker()
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    tr.add([0.0, 1.0], torch.stack([a, b]), [b"a", b"b"])
    tr.settle([0.0, 1.0], torch.stack([a, b]))  # two slots: both kept
    assert len(tr) == 2
    # they merge into one slot whose tokens lean towards b
    assert tr.result([0.0], torch.tensor([[0.3, 0.7]])) == [b"b"]
    tr2 = ThumbnailTracker()
    tr2.add([0.0, 1.0], torch.stack([a, b]), [b"a", b"b"])
    assert tr2.result([0.0], torch.tensor([[0.9, 0.1]])) == [b"a"]


def test_dropped_slots_lose_their_thumbnails_and_shapes_are_checked() -> None:
    tr = ThumbnailTracker()
    tr.add([0.0, 1.0, 2.0], torch.eye(3), [b"0", b"1", b"2"])
    assert tr.result([1.0, 2.0], torch.eye(3)[1:]) == [b"1", b"2"]  # frame 0 forgotten
    with pytest.raises(ValueError):
        tr.add([3.0], torch.eye(3), [b"x"])


def stream(config: MemoryConfig, x: torch.Tensor, batch: int) -> tuple[list, list[bytes | None]]:
    """Frames [T, N, D] at t = 0, 1, … through a builder and a tracker in batches."""
    b, tr = MemoryBuilder(config), ThumbnailTracker()
    ts = [float(t) for t in range(x.shape[0])]
    for i in range(0, len(ts), batch):
        b.add(FrameTokens(x[i : i + batch], torch.tensor(ts[i : i + batch], dtype=torch.float64)))
        tr.add(ts[i : i + batch], x[i : i + batch].mean(1), [payload(t) for t in ts[i : i + batch]])
        view = b.slot_view()
        assert view is not None
        tr.settle(*view)
    mem = b.finish("v", "fp")
    thumbs = tr.result(mem.start_s.tolist(), mem.tokens.mean(1))
    return list(zip(mem.start_s.tolist(), mem.end_s.tolist(), strict=True)), thumbs


@pytest.mark.parametrize(
    "config",
    [
        MemoryConfig(long_term_len=4),
        MemoryConfig(
            method="moviechat", long_term_len=4, short_term_len=6, merge_to=2, metric="cosine"
        ),
    ],
    ids=["adaptive", "moviechat"],
)
def test_thumbnails_come_from_their_slot(config: MemoryConfig) -> None:
    g = torch.Generator().manual_seed(0)
    scenes = torch.randn(5, 3, 8, generator=g)
    x = torch.cat(
        [scenes[k].expand(5, 3, 8) + 0.3 * torch.randn(5, 3, 8, generator=g) for k in range(5)]
    )
    # one batch: the tracker sees every frame of every final slot at once, so its choice
    # is the naive one — the frame of the span whose pooled tokens are closest
    spans, thumbs = stream(config, x, batch=x.shape[0])
    b = MemoryBuilder(config)
    b.add(FrameTokens(x, torch.arange(x.shape[0], dtype=torch.float64)))
    mem = b.finish("v", "fp")
    for (s, e), got, slot in zip(spans, thumbs, mem.tokens.mean(1), strict=True):
        frames = [t for t in range(x.shape[0]) if s <= t < e]
        sims = [float(torch.cosine_similarity(x[t].mean(0), slot, dim=0)) for t in frames]
        assert got == payload(frames[int(np.argmax(sims))])
    # batches of 3: every slot still has a thumbnail, from inside its span
    spans, thumbs = stream(config, x, batch=3)
    assert all(t is not None for t in thumbs)
    for (s, e), got in zip(spans, thumbs, strict=True):
        assert got is not None and s <= float(got) < e


def test_jpeg_thumbnails_are_small() -> None:
    frames = np.zeros((2, 224, 320, 3), dtype=np.uint8)
    frames[1, :, :, 0] = 255
    jpegs = jpeg_thumbnails(frames)
    sizes = [Image.open(io.BytesIO(j)).size for j in jpegs]
    assert sizes == [(160, 112), (160, 112)] and all(len(j) < 8000 for j in jpegs)
    assert frame_color(np.asarray(Image.open(io.BytesIO(jpegs[1])))) == "red"


def test_index_video_stores_a_thumbnail_per_slot(tmp_path: Path) -> None:
    """Five solid-colour scenes in four slots: every thumbnail shows a colour of a
    scene inside its slot's span, and they survive the store round trip."""
    from videomem.encoders import load_encoder
    from videomem.encoders.testing import tiny_checkpoint
    from videomem.jobs.index_video import index_video
    from videomem.memory.store import Store, VideoCommit, VideoRecord
    from videomem.pipeline.types import DecodeConfig

    colors = ["red", "green", "blue", "yellow", "magenta"]
    video = make_scenes(tmp_path / "v.mp4", [(c, 1.0) for c in colors], width=96, height=64)
    enc = load_encoder(tiny_checkpoint("clip", tmp_path / "cache"), "cpu")
    cfg = DecodeConfig(fps=4.0, size=enc.input_size)
    mem = index_video(str(video.path), enc, cfg, MemoryConfig(long_term_len=4)).memory
    assert mem.thumbnails is not None and len(mem.thumbnails) == len(mem) == 4
    for s, e, jpeg in zip(mem.start_s.tolist(), mem.end_s.tolist(), mem.thumbnails, strict=True):
        assert jpeg is not None
        img = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        assert max(img.shape[:2]) <= 160
        inside = {sc.color for sc in video.scenes if sc.start < e and s < sc.end}
        assert frame_color(img) in inside, (s, e, inside)
    rec = VideoRecord(video_id="v", encoder_fingerprint=enc.fingerprint, config_hash="c",
                      status="indexed", uri=str(video.path))  # fmt: skip
    with Store(tmp_path / "store", writer=True) as st:
        st.commit([VideoCommit(rec, mem)])
        assert st.load_memory("v").thumbnails == mem.thumbnails
