"""Per-slot tags: pure parts against naive loops, the taggers against the models' own
heads/towers, and real MobileNetV2 tags of the real sample clips through the tag job."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from videomem.encoders.registry import load_encoder
from videomem.encoders.testing import build_tiny
from videomem.memory.config import MemoryConfig
from videomem.memory.types import VideoMemory
from videomem.qa.tags import (
    ClassifierTagger,
    TagError,
    ZeroShotTagger,
    make_tagger,
    parse_tags_text,
    possible_settings,
    read_vocabulary,
    settings_json,
    short_label,
    tags_text,
    top_k_tags,
)

#: ImageNet classes that are pedal cycles
BICYCLE_LIKE = {"mountain bike", "bicycle-built-for-two", "tricycle", "unicycle"}


def memory_of(tokens: torch.Tensor, embedding: torch.Tensor | None = None) -> VideoMemory:
    L = tokens.shape[0]
    return VideoMemory(
        video_id="v",
        tokens=tokens.half(),
        sizes=torch.ones(L, dtype=torch.int64),
        start_s=torch.arange(L, dtype=torch.float64),
        end_s=torch.arange(1, L + 1, dtype=torch.float64),
        embedding=embedding,
        encoder_fingerprint="fp",
        memory_config=MemoryConfig(),
        frames_seen=L,
    )


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
def test_top_k_tags_equals_a_naive_loop(score: str) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 9, generator=g) * 3
    names = [f"c{i}" for i in range(9)]
    got = top_k_tags(logits, names, 3, score)  # type: ignore[arg-type]
    for row, tags in zip(logits.tolist(), got, strict=True):
        if score == "softmax":
            z = sum(math.exp(v) for v in row)
            probs = [math.exp(v) / z for v in row]
        else:
            probs = [1 / (1 + math.exp(-v)) for v in row]
        best = sorted(range(9), key=lambda j: -probs[j])[:3]
        assert [n for n, _ in tags] == [names[j] for j in best]
        assert [s for _, s in tags] == pytest.approx([probs[j] for j in best], abs=1e-6)


def test_top_k_tags_guards() -> None:
    assert top_k_tags(torch.zeros(2, 3), ["a", "b", "c"], 0) == [[], []]
    assert len(top_k_tags(torch.zeros(1, 3), ["a", "b", "c"], 99)[0]) == 3
    assert top_k_tags(torch.zeros(0, 3), ["a", "b", "c"], 2) == []
    with pytest.raises(TagError):
        top_k_tags(torch.zeros(2, 4), ["a", "b", "c"], 1)


def test_tags_text_round_trip_and_short_labels() -> None:
    tags = [("trolleybus", 0.412), ("street sign", 0.2249)]
    assert tags_text(tags) == "trolleybus 0.41, street sign 0.22"
    assert parse_tags_text("trolleybus 0.41, street sign 0.22") == [
        ("trolleybus", 0.41),
        ("street sign", 0.22),
    ]
    assert short_label("mountain bike, all-terrain bike, off-roader") == "mountain bike"


def test_vocabulary_file(tmp_path: Path) -> None:
    f = tmp_path / "v.txt"
    f.write_text("# comment\ncat\n\n dog \ncat\n")
    assert read_vocabulary(f) == ["cat", "dog"]
    f.write_text("# only a comment\n")
    with pytest.raises(TagError, match="no labels"):
        read_vocabulary(f)
    with pytest.raises(TagError, match="cannot read"):
        read_vocabulary(tmp_path / "missing.txt")
    default = read_vocabulary()
    assert "bicycle" in default and len(default) > 50


# --------------------------------------------------------------------------- taggers


def test_zero_shot_tags_equal_a_naive_loop(tmp_path: Path) -> None:
    """CLIP and SigLIP: each slot against each label, one at a time, with the model's
    own text features and scale (and SigLIP's bias)."""
    import transformers

    vocab = ["a cat", "a dog", "a red car", "a tree"]
    for family, cls in (("clip", "CLIPModel"), ("siglip", "SiglipModel")):
        path = build_tiny(family, tmp_path / family)
        enc = load_encoder(path, device="cpu")
        native = getattr(transformers, cls).from_pretrained(path).eval()
        tok = transformers.AutoTokenizer.from_pretrained(path)
        x = np.random.default_rng(1).integers(0, 256, (3, *enc.input_size, 3), dtype=np.uint8)
        ft = enc.encode(x)
        emb = ft.embedding * 0.5  # a merged slot's embedding is shorter than unit length
        tagger = make_tagger(enc, vocab, k=2)
        assert isinstance(tagger, ZeroShotTagger)
        got = tagger.tag(memory_of(ft.tokens, emb))
        for slot, tags in enumerate(got):
            scores = []
            for label in vocab:
                pad = "max_length" if family == "siglip" else True
                t = tok(
                    [f"a photo of a {label}."],
                    padding=pad,
                    truncation=True,
                    max_length=native.config.text_config.max_position_embeddings,
                    return_tensors="pt",
                )
                kw = {"input_ids": t["input_ids"]}
                if family == "clip":
                    kw["attention_mask"] = t["attention_mask"]
                with torch.no_grad():
                    te = native.get_text_features(**kw).pooler_output[0]
                    cos = float(torch.nn.functional.cosine_similarity(emb[slot], te.float(), dim=0))
                    logit = cos * float(native.logit_scale.exp())
                    if family == "siglip":
                        logit += float(native.logit_bias)
                scores.append(logit)
            s = torch.tensor(scores)
            probs = s.sigmoid() if family == "siglip" else s.softmax(-1)
            best = probs.topk(2).indices.tolist()
            assert [n for n, _ in tags] == [vocab[j] for j in best], family
            assert [v for _, v in tags] == pytest.approx(probs[best].tolist(), abs=1e-4)
        settings = json.loads(settings_json(tagger))
        assert settings["source"] == "zero-shot" and settings["labels"] == 4
        assert settings_json(tagger) in possible_settings(2, vocab)


def test_a_vlm_memory_cannot_be_tagged(tmp_path: Path) -> None:
    enc = load_encoder(build_tiny("llava", tmp_path / "llava"), device="cpu")
    with pytest.raises(TagError, match="caption"):
        make_tagger(enc)


# --------------------------------------------------------------------------- real weights


@pytest.fixture(scope="module")
def mobilenet(mobilenet_dir: Path):  # type: ignore[no-untyped-def]
    return load_encoder(mobilenet_dir, device="cpu")


def test_classifier_tags_are_the_mean_of_frame_logits(mobilenet, shared_testdata: Path) -> None:  # type: ignore[no-untyped-def]
    """A slot merging frames gets the head's logits of the mean feature = the mean of
    its frames' own logits (the head is linear), checked on real frames."""
    from videomem.pipeline.decode import decode
    from videomem.pipeline.types import DecodeConfig

    cfg = DecodeConfig(fps=1, size=mobilenet.input_size, aspect="crop")
    frames = np.concatenate([b.frames for b in decode(shared_testdata / "bikes.mp4", cfg)])[:4]
    ft = mobilenet.encode(frames)
    with torch.no_grad():
        frame_logits = mobilenet.classifier(pixel_values=mobilenet.pixels(torch.from_numpy(frames)))
    ref = frame_logits.logits.float()
    tagger = make_tagger(mobilenet, k=3)
    assert isinstance(tagger, ClassifierTagger)
    # one slot per frame: the tags are the head's own top-3 (what labels() says)
    per_frame = tagger.tag(memory_of(ft.tokens))
    assert [[n for n, _ in t] for t in per_frame] == [
        [short_label(n) for n in row] for row in mobilenet.labels(frames, k=3)
    ]
    # one slot of all four frames (tokens averaged, as consolidation does)
    merged = tagger.logits(memory_of(ft.tokens.float().mean(0, keepdim=True)))
    torch.testing.assert_close(merged[0], ref.mean(0), rtol=0, atol=0.05)


def test_real_tags_of_the_sample_clips(tagged_store: Path) -> None:
    """The real clips indexed with the real MobileNetV2 and tagged by the tag job (the
    ``tagged_store`` fixture): the bikes clip has bicycle-like labels in its slots, the
    man in the car does not; a re-run skips, --force replaces rather than duplicates."""
    from videomem.jobs.tag_job import TagJob, run_tag
    from videomem.memory.store import Store

    store = str(tagged_store)
    with Store(store) as st:
        by_clip = {}
        for rec in st.list_videos("indexed"):
            caps = [c for c in st.qa.captions(rec.video_id) if c["kind"] == "tags"]
            assert len(caps) == rec.slots
            mem = st.load_memory(rec.video_id)
            assert [c["start_s"] for c in caps] == mem.start_s.tolist()
            assert all(c["run_id"] == rec.run_id and c["model"] == rec.model for c in caps)
            by_clip[Path(rec.uri).name] = [parse_tags_text(c["text"]) for c in caps]
    assert set(by_clip) == {"bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"}
    print()
    for clip, slots in by_clip.items():
        print(clip, [tags_text(t[:2]) for t in slots])
    bikes = [n for slot in by_clip["bikes.mp4"] for n, _ in slot]
    assert BICYCLE_LIKE & set(bikes), bikes
    car = [n for slot in by_clip["carphone_pristine.mp4"] for n, _ in slot]
    assert not BICYCLE_LIKE & set(car), car
    assert {"suit", "Windsor tie", "bow tie"} & set(car)  # a man in a suit and tie

    n_slots = sum(len(s) for s in by_clip.values())
    again = run_tag(TagJob(store=store))
    assert (again.tagged, again.skipped) == (0, 3)
    forced = run_tag(TagJob(store=store, force=True))
    assert (forced.tagged, forced.slots) == (3, n_slots)
    with Store(store) as st:
        n = sum(
            c["kind"] == "tags"
            for r in st.list_videos("indexed")
            for c in st.qa.captions(r.video_id)
        )
        assert n == n_slots  # replaced on the captions key, not duplicated
