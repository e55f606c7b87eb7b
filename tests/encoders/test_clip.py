"""CLIP and SigLIP frame/text encoders against the models' own processors and feature
paths (native parity), on tiny random checkpoints loaded with from_pretrained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from videomem.encoders import load_encoder
from videomem.encoders.clip import ContrastiveEncoder, pool_patch_grid
from videomem.encoders.testing import build_tiny
from videomem.pipeline.errors import EncoderError

FAMILIES = ["clip", "siglip"]
NATIVE = {"clip": "CLIPModel", "siglip": "SiglipModel"}
CLS = {"clip": 1, "siglip": 0}


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("contrastive")
    return {f: build_tiny(f, root / f) for f in FAMILIES}


@pytest.fixture(scope="session")
def natives(tiny_dirs: dict[str, Path]) -> dict[str, torch.nn.Module]:
    """The checkpoints loaded the plain transformers way, as the reference."""
    import transformers

    return {
        f: getattr(transformers, NATIVE[f]).from_pretrained(tiny_dirs[f]).eval() for f in FAMILIES
    }


def frames(n: int, seed: int = 0) -> np.ndarray:
    """Noise and smooth gradients alternating (noise alone is not what video looks like)."""
    x = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(0, n, 2):
        x[i, ..., 0] = (xx * 8 + 10 * i) % 256
        x[i, ..., 1] = yy * 8
        x[i, ..., 2] = ((xx + yy) * 4) % 256
    return x


def load(tiny_dirs: dict[str, Path], family: str, **options: object) -> ContrastiveEncoder:
    enc = load_encoder(tiny_dirs[family], **options)
    assert isinstance(enc, ContrastiveEncoder)
    return enc


@pytest.mark.parametrize("family", FAMILIES)
def test_preprocessing_matches_the_checkpoints_own_processor(
    family: str, tiny_dirs: dict[str, Path]
) -> None:
    """The checkpoint's PIL processor (the one videomem reads its constants from, with
    torchvision installed or not); frames already at input_size pass its resize/crop
    unchanged, so only rescale+normalise remain, which we do on the whole batch in torch."""
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(tiny_dirs[family], backend="pil")
    assert type(proc).__name__.endswith("Pil")
    enc = load(tiny_dirs, family)
    x = frames(4)
    ref = proc(images=list(x), return_tensors="pt")["pixel_values"]
    ours = enc.pixels(x)
    assert ours.shape == ref.shape == (4, 3, *enc.input_size)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layer", [None, 0, 1, -1])
def test_tokens_and_embedding_equal_the_native_feature_path(
    family: str, layer: int | None, tiny_dirs: dict[str, Path], natives: dict[str, torch.nn.Module]
) -> None:
    enc = load(tiny_dirs, family, **({} if layer is None else {"layer": layer}))
    model = natives[family]
    x = frames(5, seed=1)
    out = enc.encode(x)
    with torch.no_grad():
        px = enc.pixels(x)
        states = model.vision_model(pixel_values=px, output_hidden_states=True).hidden_states
        expected_layer = {"clip": -2, "siglip": -1}[family] if layer is None else layer
        ref_tokens = states[expected_layer][:, CLS[family] :]
        ref_embed = F.normalize(model.get_image_features(pixel_values=px).pooler_output, dim=-1)
    assert out.tokens.shape == (5, 16, 32) and enc.tokens_per_frame == 16
    torch.testing.assert_close(out.tokens, ref_tokens, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.embedding, ref_embed, rtol=0, atol=1e-5)


def test_last_layer_differs_from_penultimate(tiny_dirs: dict[str, Path]) -> None:
    """Guards the parity test above: the layer choice really changes the tokens."""
    x = frames(2)
    a = load(tiny_dirs, "clip", layer=-1).encode(x).tokens
    b = load(tiny_dirs, "clip", layer=-2).encode(x).tokens
    assert (a - b).abs().max() > 1e-3


def naive_pool(tokens: torch.Tensor, grid: int, k: int) -> torch.Tensor:
    """Mean of each (grid/k)^2 block of patches, k dividing grid, by explicit loops."""
    b, _, d = tokens.shape
    s = grid // k
    out = torch.zeros(b, k * k, d)
    for i in range(k):
        for j in range(k):
            cells = [
                tokens[:, (i * s + u) * grid + (j * s + v)] for u in range(s) for v in range(s)
            ]
            out[:, i * k + j] = torch.stack(cells).mean(0)
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("k", [1, 2, 4])
def test_pooling_to_a_k_by_k_grid(family: str, k: int, tiny_dirs: dict[str, Path]) -> None:
    x = frames(3, seed=2)
    full = load(tiny_dirs, family).encode(x)
    pooled_enc = load(tiny_dirs, family, pool=k)
    pooled = pooled_enc.encode(x)
    assert pooled_enc.tokens_per_frame == k * k
    assert pooled.tokens.shape == (3, k * k, 32)
    torch.testing.assert_close(pooled.tokens, naive_pool(full.tokens, 4, k), rtol=0, atol=1e-5)
    torch.testing.assert_close(pooled.embedding, full.embedding, rtol=0, atol=0)


def test_pool_patch_grid_is_row_major() -> None:
    # token value = its grid row; pooling 4x4 -> 2x2 must keep rows apart
    t = torch.arange(4.0).repeat_interleave(4).view(1, 16, 1)
    assert pool_patch_grid(t, (4, 4), 2).flatten().tolist() == [0.5, 0.5, 2.5, 2.5]


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_layer_or_pool_is_an_encoder_error(family: str, tiny_dirs: dict[str, Path]) -> None:
    with pytest.raises(EncoderError, match="layer"):
        load(tiny_dirs, family, layer=4)  # 3 blocks -> hidden states 0..3
    with pytest.raises(EncoderError, match="layer"):
        load(tiny_dirs, family, layer=-5)
    with pytest.raises(EncoderError, match="pool"):
        load(tiny_dirs, family, pool=5)
    with pytest.raises(EncoderError, match="pool"):
        load(tiny_dirs, family, pool=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_text_embeddings_equal_the_native_text_path(
    family: str, tiny_dirs: dict[str, Path], natives: dict[str, torch.nn.Module]
) -> None:
    from transformers import AutoTokenizer

    enc = load(tiny_dirs, family)
    texts = ["a photo of the cat", "dog", "the cat, a dog!"]
    got = enc.encode_text(texts)
    assert got.shape == (3, enc.embed_dim) and got.dtype == torch.float32
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(3))

    tok = AutoTokenizer.from_pretrained(tiny_dirs[family])
    model = natives[family]
    with torch.no_grad():
        if family == "clip":
            inputs = tok(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
            feats = model.get_text_features(**inputs).pooler_output
        else:  # SigLIP: max_length padding, no mask, as it was trained
            inputs = tok(texts, padding="max_length", max_length=16, return_tensors="pt")
            feats = model.get_text_features(input_ids=inputs["input_ids"]).pooler_output
    torch.testing.assert_close(got, F.normalize(feats, dim=-1), rtol=0, atol=1e-5)

    # a text's embedding does not depend on what it was batched with
    alone = enc.encode_text(["dog"])
    torch.testing.assert_close(alone[0], got[1], rtol=0, atol=1e-5)
    # and text -> frame search is a dot product in one space
    frame_emb = enc.encode(frames(2)).embedding
    assert frame_emb is not None and (frame_emb @ got.T).shape == (2, 3)


def test_text_is_truncated_to_the_models_context(tiny_dirs: dict[str, Path]) -> None:
    enc = load(tiny_dirs, "clip")
    long = " ".join(["cat"] * 100)  # far past max_position_embeddings=16
    assert enc.encode_text([long]).shape == (1, enc.embed_dim)
    assert enc.encode_text([]).shape == (0, enc.embed_dim)


@pytest.mark.parametrize("family", FAMILIES)
def test_sizes_and_fingerprint_fields(family: str, tiny_dirs: dict[str, Path]) -> None:
    enc = load(tiny_dirs, family)
    assert enc.input_size == (32, 32)
    assert enc.dim == 32
    assert enc.embed_dim == {"clip": 24, "siglip": 32}[family]
    assert enc.fingerprint.startswith(f"{family}:")
    assert f"layer={ {'clip': 2, 'siglip': 3}[family] }" in enc.fingerprint


def test_bfloat16_runs_close_to_float32(tiny_dirs: dict[str, Path]) -> None:
    x = frames(3)
    ref = load(tiny_dirs, "clip").encode(x)
    enc = load(tiny_dirs, "clip", dtype="bfloat16")
    assert next(enc.model.parameters()).dtype == torch.bfloat16
    got = enc.encode(x)
    assert got.tokens.dtype == torch.float32  # always handed back as float32
    torch.testing.assert_close(got.tokens, ref.tokens, rtol=0.05, atol=0.1)
    assert F.cosine_similarity(got.embedding, ref.embedding).min() > 0.99


@pytest.mark.gpu
@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_bfloat16_matches_the_native_model_on_cuda(
    family: str, tiny_dirs: dict[str, Path]
) -> None:
    import transformers

    enc = load(tiny_dirs, family, device="cuda")  # dtype auto -> bfloat16 on GPU
    assert enc.settings.dtype == torch.bfloat16
    model = getattr(transformers, NATIVE[family]).from_pretrained(
        tiny_dirs[family], dtype=torch.bfloat16
    )
    model = model.eval().to("cuda")
    x = frames(4)
    out = enc.encode(x)
    with torch.no_grad():
        px = enc.pixels(x)
        ref = model.vision_model(pixel_values=px, output_hidden_states=True).hidden_states
    torch.testing.assert_close(out.tokens, ref[enc.layer][:, CLS[family] :].float().cpu())
