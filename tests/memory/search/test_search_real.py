"""Text search with real weights end to end: the three real sample clips joined
(bikes 0-10 s | carphone 10-14 s | bigbuckbunny 14-19.25 s), indexed through
``videomem index`` with the real ImageNet MobileNetV2, tagged per slot through
``videomem tag`` (the classifier's own top labels), and searched with the real
all-MiniLM-L6-v2 through ``videomem search``.

MobileNetV2 has no text tower, so the text source answers and the visual source
says it was skipped. Skips cleanly without ../shared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from videomem.encoders.text import sentence_embedder
from videomem.jobs.cli import app
from videomem.memory.search import CAPTION_INDEX
from videomem.memory.store import Store

from tests.videos import ConcatVideo, make_concat

CLIPS = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


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
    # the tag job (MobileNetV2's own head on each slot's tokens) refreshes the index
    r = invoke("tag", "--store", str(store), "--top-k", "3", "--executor", "local",
               "--device", "cpu", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    with Store(store) as st:
        (rec,) = st.list_videos("indexed")
        tags = [(c["start_s"], c["end_s"], c["text"]) for c in st.qa.captions(rec.video_id)]
        assert tags and all(c["kind"] == "tags" for c in st.qa.captions(rec.video_id))
        index = st.index_table(CAPTION_INDEX)
        assert index is not None and index.count() == len(tags) == rec.slots
    print("\nslot tags:\n" + "\n".join(f"  {s:5.1f}-{e:5.1f}  {t}" for s, e, t in tags))
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


def test_pictures_of_the_timeline_and_the_results(tagged, tmp_path: Path) -> None:
    """``show --plot`` draws the slot thumbnails over their spans with the tags under
    them; ``search --plot`` a contact sheet of the hits' thumbnails."""
    from PIL import Image
    from videomem.memory.search import moment_thumbnails, search

    store, video, vid = tagged
    r = invoke("show", vid[:10], "--store", str(store), "--plot", str(tmp_path / "timeline.png"))
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "timeline.png").size[0] >= 1000
    r = invoke("search", "a man wearing a suit", "--store", str(store), "--k", "5",
               "--plot", str(tmp_path / "sheet.png"))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "sheet.png").size[0] >= 800
    with Store(store) as st:
        res = search(st, "a man wearing a suit", k=5, source="text",
                     text_embedder=sentence_embedder)  # fmt: skip
        thumbs = moment_thumbnails(st, res.moments)
        mem = st.load_memory(vid)
    assert mem.thumbnails is not None and all(t is not None for t in thumbs)
    # the top hit (the carphone span, one slot) shows that slot's own thumbnail
    (slot,) = [i for i, s in enumerate(mem.start_s.tolist()) if s == res.moments[0].start_s]
    assert thumbs[0] == mem.thumbnails[slot]
