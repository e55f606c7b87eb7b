"""Text search with real weights end to end: the three real sample clips joined
(bikes 0-10 s | carphone 10-14 s | bigbuckbunny 14-19.25 s), indexed through
``videomem index`` with the real ImageNet MobileNetV2, tagged per slot with the
classifier's own top labels, and searched with the real all-MiniLM-L6-v2 through
``videomem search``.

MobileNetV2 has no text tower, so the text source answers and the visual source
says it was skipped. Skips cleanly without ../shared.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from videomem.encoders import load_encoder
from videomem.encoders.mobilenet import MobileNetEncoder
from videomem.jobs.cli import app
from videomem.jobs.search_refresh import refresh
from videomem.memory.store import Store
from videomem.pipeline.decode import decode
from videomem.pipeline.types import DecodeConfig

from tests.videos import ConcatVideo, make_concat

CLIPS = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def slot_tags(
    encoder: MobileNetEncoder, video: Path, spans: list[tuple[float, float]], k: int = 3
) -> list[str]:
    """Per slot: the ``k`` ImageNet labels most often in the top 3 of its frames
    (1 fps), as comma-separated tags — what a tag job writes."""
    frames, ts = [], []
    for b in decode(video, DecodeConfig(fps=1.0, size=encoder.input_size)):
        frames.append(b.frames)
        ts += b.timestamps.tolist()
    labels = encoder.labels(np.concatenate(frames), k=3)
    out = []
    for start, end in spans:
        votes = Counter(
            name for t, row in zip(ts, labels, strict=True) if start <= t < end for name in row
        )
        out.append(", ".join(name for name, _ in votes.most_common(k)))
    return out


@pytest.fixture(scope="module")
def tagged(
    shared_testdata: Path, mobilenet_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ConcatVideo, str]:
    root = tmp_path_factory.mktemp("realsearch")
    video = make_concat(root / "three_clips.mp4", [shared_testdata / c for c in CLIPS])
    store = root / "store"
    r = invoke("index", str(video.path), "--store", str(store), "--model", str(mobilenet_dir),
               "--fps", "1", "--device", "cpu", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    encoder = load_encoder(mobilenet_dir, "cpu")
    assert isinstance(encoder, MobileNetEncoder)
    with Store(store, writer=True) as st:
        (rec,) = st.list_videos("indexed")
        mem = st.load_memory(rec.video_id)
        spans = list(zip(mem.start_s.tolist(), mem.end_s.tolist(), strict=True))
        tags = slot_tags(encoder, video.path, spans)
        rows = [
            {
                "video_id": rec.video_id,
                "encoder_fingerprint": rec.encoder_fingerprint,
                "config_hash": rec.config_hash,
                "run_id": rec.run_id,
                "kind": "tags",
                "start_s": s,
                "end_s": e,
                "text": text,
                "model": mobilenet_dir.name,
                "settings": json.dumps({"k": 3}),
            }
            for (s, e), text in zip(spans, tags, strict=True)
        ]
        st.add_qa_rows("captions", rows)
        report = refresh(st)
    print(
        "\nslot tags:\n"
        + "\n".join(f"  {s:5.1f}-{e:5.1f}  {t}" for (s, e), t in zip(spans, tags, strict=True))
    )
    assert report.captions_added == len(spans)
    return store, video, rec.video_id


@pytest.mark.parametrize(
    ("query", "clip"),
    [("a man wearing a suit and a tie", 1), ("a bridge over a street", 0), ("penguin", 2)],
)
def test_text_search_finds_the_clip_on_screen(tagged, query: str, clip: int) -> None:
    store, video, vid = tagged
    r = invoke("search", query, "--store", str(store), "--k", "3", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    top = out["moments"][0]
    lo, hi = video.bounds[clip], video.bounds[clip + 1]
    print(f"\n{query!r}: top {top['start_s']}-{top['end_s']} [{top['text']}] {top['score']:.4f}")
    assert top["video_id"] == vid and top["source"] == "text" and top["kind"] == "tags"
    # the last sample's slot ends one sampling step after it, past the video's end
    end = min(top["end_s"], video.duration)
    assert lo <= top["start_s"] < end <= hi, (top, video.bounds)
    assert top["uri"] == str(video.path.resolve())
    # MobileNetV2 memories have no text tower: the visual source was skipped, and said so
    assert any("no text tower" in n for n in out["notes"])
