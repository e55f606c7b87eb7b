"""LLaVA-family frame encoders against the models' own processors and forward passes.

Tiny random checkpoints of the real architectures (encoders/testing/) are saved and
loaded through ``load_encoder`` exactly like a user's checkpoint. References are
transformers' own code: the PIL image processors, ``get_image_features`` /
``get_video_features`` on a fully loaded model, and the native forward whose
logits our spliced tokens must reproduce.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers
from videomem.encoders.contract import FrameEncoder
from videomem.encoders.registry import load_encoder
from videomem.encoders.testing import build_tiny
from videomem.pipeline.errors import EncoderError

transformers.logging.set_verbosity_error()

FAMILIES = ("llava", "llava_onevision", "llava_next_video")
PROMPT = "user : {} what happens in this video ? assistant :"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_llava")
    return {f: build_tiny(f, root / f) for f in FAMILIES}


@pytest.fixture(scope="module")
def encoders(ckpt: dict[str, Path]) -> dict[str, FrameEncoder]:
    return {f: load_encoder(ckpt[f], device="cpu") for f in FAMILIES}


def _frames(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *size, 3), dtype=np.uint8)


def _full_model(path: Path) -> torch.nn.Module:
    model = transformers.AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    return model.eval()


def _processor_pixels(family: str, path: Path, frames: np.ndarray) -> torch.Tensor:
    """The checkpoint's own (PIL) image processor on the same frames -> [B, 3, H, W]."""
    proc = transformers.AutoImageProcessor.from_pretrained(path, backend="pil")
    out = proc(images=list(frames), return_tensors="pt")["pixel_values"]
    if family == "llava_onevision":
        out = out[:, 0]  # patch 0 = the whole frame at the base size; the rest are anyres tiles
    return out


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("family", FAMILIES)
def test_protocol_and_shapes(encoders: dict[str, FrameEncoder], family: str) -> None:
    enc = encoders[family]
    assert isinstance(enc, FrameEncoder)
    frames = _frames(3, enc.input_size)
    out = enc.encode(frames, timestamps=[0.5, 1.5, 2.5])
    assert out.tokens.shape == (3, enc.tokens_per_frame, enc.dim)
    assert out.tokens.dtype == torch.float32 and out.tokens.device.type == "cpu"
    assert out.embedding is not None and out.embedding.shape == (3, enc.embed_dim)
    torch.testing.assert_close(out.embedding, out.tokens.mean(dim=1))
    assert out.timestamps.tolist() == [0.5, 1.5, 2.5]
    # distinct frames give distinct tokens (the tokens depend on the pixels)
    assert not torch.allclose(out.tokens[0], out.tokens[1])


def test_expected_token_counts(encoders: dict[str, FrameEncoder]) -> None:
    # llava: 32/8 = 4x4 patches, CLS dropped; onevision: 6x6 -> bilinear 3x3;
    # next-video: 4x4 -> avg-pool 2x2
    assert encoders["llava"].tokens_per_frame == 16
    assert encoders["llava_onevision"].tokens_per_frame == 9
    assert encoders["llava_next_video"].tokens_per_frame == 4


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("family", FAMILIES)
def test_pixels_match_processor(
    encoders: dict[str, FrameEncoder], ckpt: dict[str, Path], family: str
) -> None:
    enc = encoders[family]
    frames = _frames(4, enc.input_size, seed=1)
    ours = enc.pixel_values(frames)  # type: ignore[attr-defined]
    ref = _processor_pixels(family, ckpt[family], frames)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- native parity


def _native_features(family: str, model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The model's own feature path -> [B, N, D]."""
    cfg = model.config
    with torch.inference_mode():
        if family == "llava":
            feats = model.get_image_features(pixel_values=pixels, return_dict=True).pooler_output
            return torch.stack(list(feats))
        # each frame as its own one-frame clip, so no frame can leak into another
        feats = model.get_video_features(pixel_values_videos=pixels[:, None], return_dict=True)
        feats = feats.pooler_output
        if family == "llava_onevision":
            feats = feats[:, :-1]  # the clip-final image_newline
        assert cfg is not None
        return feats


@pytest.mark.parametrize("family", FAMILIES)
def test_tokens_equal_native_features(
    encoders: dict[str, FrameEncoder], ckpt: dict[str, Path], family: str
) -> None:
    enc = encoders[family]
    frames = _frames(5, enc.input_size, seed=2)
    model = _full_model(ckpt[family])
    ref = _native_features(family, model, _processor_pixels(family, ckpt[family], frames))
    ours = enc.encode(frames).tokens
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def _splice_logits(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_id: int,
    visual: torch.Tensor,
) -> torch.Tensor:
    """Our tokens [T, D] placed at the placeholder positions of ``input_ids``."""
    with torch.inference_mode():
        embeds = model.get_input_embeddings()(input_ids)
        mask = (input_ids == token_id)[..., None].expand_as(embeds)
        embeds = embeds.masked_scatter(mask, visual.to(embeds.dtype))
        return model(inputs_embeds=embeds, attention_mask=attention_mask).logits


def test_llava_splice_reproduces_native_logits(
    encoders: dict[str, FrameEncoder], ckpt: dict[str, Path]
) -> None:
    enc = encoders["llava"]
    path = ckpt["llava"]
    frames = _frames(2, enc.input_size, seed=3)
    proc = transformers.AutoProcessor.from_pretrained(path)
    text = PROMPT.format("<image> <image>")
    inputs = proc(text=[text], images=list(frames), return_tensors="pt")
    model = _full_model(path)
    with torch.inference_mode():
        native = model(**inputs).logits
    ours = enc.encode(frames).tokens.flatten(0, 1)
    spliced = _splice_logits(
        model, inputs["input_ids"], inputs["attention_mask"], model.config.image_token_id, ours
    )
    torch.testing.assert_close(spliced, native, atol=1e-4, rtol=0)
    # and the splice is sensitive: other frames' tokens change the logits
    other = enc.encode(_frames(2, enc.input_size, seed=4)).tokens.flatten(0, 1)
    moved = _splice_logits(
        model, inputs["input_ids"], inputs["attention_mask"], model.config.image_token_id, other
    )
    assert (moved - native).abs().max() > 1e-3


@pytest.mark.parametrize("family", ["llava_onevision", "llava_next_video"])
def test_video_splice_reproduces_native_logits(
    encoders: dict[str, FrameEncoder], ckpt: dict[str, Path], family: str
) -> None:
    """A clip of 3 frames through the native video path vs our per-frame tokens
    (+ OneVision's clip-final newline) spliced at the <video> positions."""
    enc = encoders[family]
    path = ckpt[family]
    frames = _frames(3, enc.input_size, seed=5)
    pixels_videos = _processor_pixels(family, path, frames)[None]  # [1, F, 3, H, W]
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = _full_model(path)
    # The processors cannot be instantiated without torchvision (their video
    # processors need it), so their own token-expansion methods are called on a
    # stand-in holding the attributes they read.
    h, w = enc.input_size
    patch = model.config.vision_config.patch_size
    if family == "llava_onevision":
        stub = SimpleNamespace(num_image_tokens=(h // patch) * (w // patch), video_token="<video>")
        cls = transformers.LlavaOnevisionProcessor
    else:
        stub = SimpleNamespace(patch_size=patch, video_token="<video>")
        cls = transformers.LlavaNextVideoProcessor
    placeholders = cls.replace_video_token(stub, {"pixel_values_videos": pixels_videos}, 0)
    inputs = tok([PROMPT.format(placeholders)], return_tensors="pt")
    with torch.inference_mode():
        native = model(**inputs, pixel_values_videos=pixels_videos).logits
    ours = enc.encode(frames).tokens.flatten(0, 1)
    if family == "llava_onevision":
        ours = torch.cat([ours, enc.video_suffix])  # type: ignore[attr-defined]
    token_id = model.config.video_token_id
    spliced = _splice_logits(model, inputs["input_ids"], inputs["attention_mask"], token_id, ours)
    torch.testing.assert_close(spliced, native, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- runtime behaviour


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_splitting_equals_one_batch(ckpt: dict[str, Path], family: str) -> None:
    big = load_encoder(ckpt[family], device="cpu", batch_size=64)
    small = load_encoder(ckpt[family], device="cpu", batch_size=2)
    frames = _frames(5, big.input_size, seed=6)
    a, b = big.encode(frames), small.encode(frames)
    torch.testing.assert_close(a.tokens, b.tokens, atol=1e-6, rtol=0)
    # a frame's tokens do not depend on its batch neighbours
    torch.testing.assert_close(small.encode(frames[3:4]).tokens[0], a.tokens[3], atol=1e-6, rtol=0)


def test_numpy_and_torch_inputs_agree(encoders: dict[str, FrameEncoder]) -> None:
    enc = encoders["llava"]
    frames = _frames(3, enc.input_size, seed=7)
    a = enc.encode(frames).tokens
    b = enc.encode(torch.from_numpy(frames)).tokens
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_fingerprint_stable_and_dtype_sensitive(ckpt: dict[str, Path]) -> None:
    a = load_encoder(ckpt["llava"], device="cpu").fingerprint
    b = load_encoder(ckpt["llava"], device="cpu", batch_size=3).fingerprint
    c = load_encoder(ckpt["llava"], device="cpu", dtype="bfloat16").fingerprint
    d = load_encoder(ckpt["llava_next_video"], device="cpu").fingerprint
    assert a == b  # batch size does not change tokens
    assert a != c and "bfloat16" in c
    assert a != d


def test_bfloat16_runs_and_returns_float32(
    ckpt: dict[str, Path], encoders: dict[str, FrameEncoder]
) -> None:
    enc = load_encoder(ckpt["llava"], device="cpu", dtype="bfloat16")
    frames = _frames(2, enc.input_size, seed=8)
    out = enc.encode(frames)
    ref = encoders["llava"].encode(frames).tokens
    assert out.tokens.dtype == torch.float32
    assert next(enc._core.parameters()).dtype == torch.bfloat16  # type: ignore[attr-defined]
    # bf16 has ~3 significant digits; the tokens must still be the same tokens
    torch.testing.assert_close(out.tokens, ref, atol=0.1, rtol=0.05)


def test_language_model_not_materialised(encoders: dict[str, FrameEncoder]) -> None:
    core = encoders["llava"]._core  # type: ignore[attr-defined]
    assert core.language_model is None
    names = [n for n, _ in core.named_parameters()]
    assert names and not any("layers." in n and "vision" not in n for n in names)


def test_bad_inputs_raise_encoder_error(
    encoders: dict[str, FrameEncoder], ckpt: dict[str, Path]
) -> None:
    enc = encoders["llava"]
    with pytest.raises(EncoderError, match="needs"):
        enc.encode(_frames(1, (16, 16)))
    with pytest.raises(EncoderError, match="uint8"):
        enc.encode(_frames(1, enc.input_size).astype(np.float32))
    with pytest.raises(EncoderError, match="timestamps"):
        enc.encode(_frames(2, enc.input_size), timestamps=[0.0])
    with pytest.raises(EncoderError, match="unknown encoder options"):
        load_encoder(ckpt["llava"], device="cpu", pool=2)
