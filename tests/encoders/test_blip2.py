"""BLIP-2 frame encoder against Blip2ForConditionalGeneration's own processor, image-
feature path and language-model forward (native parity), on a tiny random checkpoint
(ViT + 8-query Q-Former + tiny OPT) loaded with from_pretrained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from videomem.encoders import load_encoder
from videomem.encoders.blip2 import (
    Blip2Encoder,
    _weight_files,
    load_visual_full,
    load_visual_lean,
)
from videomem.encoders.hf import LoadSettings, load_config
from videomem.encoders.testing import build_tiny
from videomem.pipeline.errors import EncoderError


@pytest.fixture(scope="session")
def blip2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("blip2", tmp_path_factory.mktemp("blip2") / "blip2")


@pytest.fixture(scope="session")
def native(blip2_dir: Path) -> torch.nn.Module:
    from transformers import Blip2ForConditionalGeneration

    return Blip2ForConditionalGeneration.from_pretrained(blip2_dir).eval()


@pytest.fixture(scope="session")
def processor(blip2_dir: Path):  # noqa: ANN201 (transformers processor)
    from transformers import AutoProcessor

    # the PIL image processor, with torchvision installed or not (videomem reads its constants)
    return AutoProcessor.from_pretrained(blip2_dir, backend="pil")


def frames(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:32, 0:32]
    x[0, ..., 0], x[0, ..., 1], x[0, ..., 2] = xx * 8, yy * 8, (xx + yy) * 4
    return x


def load(blip2_dir: Path, **options: object) -> Blip2Encoder:
    enc = load_encoder(blip2_dir, **options)
    assert isinstance(enc, Blip2Encoder)
    return enc


def test_preprocessing_matches_blip2_processor(blip2_dir: Path, processor) -> None:  # noqa: ANN001
    enc = load(blip2_dir)
    x = frames(3)
    assert type(processor.image_processor).__name__ == "BlipImageProcessorPil"
    ref = processor(images=list(x), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(enc.pixels(x), ref, rtol=0, atol=1e-5)


def test_sizes(blip2_dir: Path) -> None:
    q = load(blip2_dir)
    p = load(blip2_dir, tokens="projected")
    assert q.input_size == p.input_size == (32, 32)
    assert q.tokens_per_frame == p.tokens_per_frame == 8  # num_query_tokens (32 when real)
    assert (q.dim, p.dim) == (32, 40)  # Q-Former width vs OPT width
    assert q.embed_dim == p.embed_dim == 32
    assert q.loaded_lean and p.loaded_lean


def test_tokens_equal_the_native_image_feature_path(blip2_dir: Path, native) -> None:  # noqa: ANN001
    """(a) Q-Former query outputs and projected tokens = get_image_features'."""
    x = frames(4, seed=1)
    q = load(blip2_dir).encode(x)
    p = load(blip2_dir, tokens="projected").encode(x)
    with torch.no_grad():
        ref = native.get_image_features(pixel_values=load(blip2_dir).pixels(x))
    ref_query = ref.qformer_outputs.last_hidden_state
    torch.testing.assert_close(q.tokens, ref_query, rtol=0, atol=1e-5)
    torch.testing.assert_close(p.tokens, ref.pooler_output, rtol=0, atol=1e-5)
    # embedding: the normalised mean of the query outputs
    torch.testing.assert_close(
        q.embedding, F.normalize(ref_query.mean(1), dim=-1), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(p.embedding, q.embedding, rtol=0, atol=0)


def splice_logits(native, inputs, visual_tokens: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """The LM's logits with ``visual_tokens`` [B, Q, D] at the image-token positions."""
    ids = inputs["input_ids"]
    embeds = native.get_input_embeddings()(ids).clone()
    mask = ids == native.config.image_token_index
    assert int(mask.sum()) == visual_tokens.shape[0] * visual_tokens.shape[1]
    embeds[mask] = visual_tokens.reshape(-1, visual_tokens.shape[-1]).to(embeds.dtype)
    out = native.language_model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])
    return out.logits


def test_spliced_tokens_reproduce_the_native_forward(
    blip2_dir: Path,
    native,  # noqa: ANN001
    processor,  # noqa: ANN001
) -> None:
    """(b) our projected tokens in place of the image tokens give the logits of the
    model's own forward on inputs its processor built (with pixel values)."""
    x = frames(2, seed=2)
    texts = ["Question: what is the cat doing? Answer:", "the dog"]
    inputs = processor(images=list(x), text=texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = native(**inputs).logits
        projected = load(blip2_dir, tokens="projected").encode(x).tokens
        got = splice_logits(native, inputs, projected)
        # stored Q-Former tokens projected later (QA time) land on the same logits
        qenc = load(blip2_dir)
        via_project = splice_logits(native, inputs, qenc.project(qenc.encode(x).tokens))
    assert ref.shape == got.shape
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)
    torch.testing.assert_close(via_project, ref, rtol=0, atol=1e-4)
    # guard: other frames' tokens really change the logits
    with torch.no_grad():
        wrong = splice_logits(native, inputs, projected.flip(0))
    assert (wrong - ref).abs().max() > 1e-3


def test_projection_commutes_with_weighted_merging(blip2_dir: Path) -> None:
    """Why storing Q-Former tokens is exact: project(merge) == merge(project)."""
    enc = load(blip2_dir)
    t = enc.encode(frames(3, seed=4)).tokens
    w = torch.tensor([3.0, 1.0, 2.0])
    merged = (w.view(3, 1, 1) * t).sum(0) / w.sum()
    projected = enc.project(t)
    torch.testing.assert_close(
        enc.project(merged), (w.view(3, 1, 1) * projected).sum(0) / w.sum(), atol=1e-5, rtol=0
    )


def test_lean_load_reads_only_the_visual_parts(blip2_dir: Path) -> None:
    enc = load(blip2_dir)
    names = {n for n, _ in enc.visual.named_parameters()}
    assert not any(n.startswith("language_model") for n in names)
    assert "query_tokens" in names
    # as transformers does, the Q-Former stays float32 under a lower model dtype
    bf = load(blip2_dir, dtype="bfloat16")
    assert bf.visual.qformer.layernorm.weight.dtype == torch.float32
    assert bf.visual.query_tokens.dtype == torch.float32
    assert bf.visual.vision_model.post_layernorm.weight.dtype == torch.bfloat16
    out = bf.encode(frames(2))
    ref = enc.encode(frames(2))
    assert F.cosine_similarity(out.embedding, ref.embedding).min() > 0.99


def test_lean_and_full_loads_agree(blip2_dir: Path) -> None:
    settings = LoadSettings(torch.device("cpu"), torch.float32, 8, False, str(blip2_dir))
    config = load_config(blip2_dir)
    lean = load_visual_lean(str(blip2_dir), config, settings)
    full = load_visual_full(str(blip2_dir), settings)
    assert lean is not None
    px = load(blip2_dir).pixels(frames(2))
    with torch.no_grad():
        for a, b in zip(lean(px), full(px), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_sharded_checkpoint_reads_only_shards_with_visual_tensors(
    blip2_dir: Path, tmp_path: Path
) -> None:
    from transformers import Blip2ForConditionalGeneration

    sharded = tmp_path / "sharded"
    model = Blip2ForConditionalGeneration.from_pretrained(blip2_dir)
    model.save_pretrained(sharded, max_shard_size="60KB")
    for f in blip2_dir.iterdir():
        if not f.name.startswith("model") and not (sharded / f.name).exists():
            (sharded / f.name).write_bytes(f.read_bytes())
    all_shards = sorted(sharded.glob("model-*.safetensors"))
    needed = _weight_files(str(sharded))
    assert len(all_shards) > 2 and 0 < len(needed) < len(all_shards)
    x = frames(2)
    torch.testing.assert_close(
        load(sharded).encode(x).tokens, load(blip2_dir).encode(x).tokens, rtol=0, atol=0
    )


def test_bad_tokens_option(blip2_dir: Path) -> None:
    with pytest.raises(EncoderError, match="tokens"):
        load(blip2_dir, tokens="pooled")


def test_missing_weights_is_an_encoder_error(blip2_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "noweights"
    ckpt.mkdir()
    for f in blip2_dir.iterdir():
        if f.suffix != ".safetensors":
            (ckpt / f.name).write_bytes(f.read_bytes())
    with pytest.raises(EncoderError, match="safetensors"):
        load(ckpt)


@pytest.mark.gpu
def test_cuda_bfloat16_matches_the_native_model_on_cuda(blip2_dir: Path) -> None:
    from transformers import Blip2ForConditionalGeneration

    enc = load(blip2_dir, device="cuda", tokens="projected")
    model = Blip2ForConditionalGeneration.from_pretrained(blip2_dir, dtype=torch.bfloat16)
    model = model.eval().to("cuda")
    x = frames(4)
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=enc.pixels(x))
    out = enc.encode(x)
    torch.testing.assert_close(out.tokens, ref.pooler_output.float().cpu())
