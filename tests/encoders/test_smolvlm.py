"""SmolVLM / Idefics3 frame encoders against the models' own processor and forward.

Tiny random checkpoints of the real architectures are built by encoders/testing/
and loaded through ``load_encoder``. References: the PIL image processor with image
splitting off (SmolVLM's frame/video layout), ``get_image_features`` on a fully
loaded model, and the native forward's logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string
from videomem.encoders.contract import FrameEncoder
from videomem.encoders.registry import load_encoder
from videomem.encoders.testing import build_tiny
from videomem.pipeline.errors import EncoderError

transformers.logging.set_verbosity_error()

FAMILIES = ("smolvlm", "idefics3")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_smolvlm")
    return {f: build_tiny(f, root / f) for f in FAMILIES}


@pytest.fixture(scope="module")
def encoders(ckpt: dict[str, Path]) -> dict[str, FrameEncoder]:
    return {f: load_encoder(ckpt[f], device="cpu") for f in FAMILIES}


def _frames(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *size, 3), dtype=np.uint8)


def _processor_pixels(path: Path, frames: np.ndarray) -> torch.Tensor:
    """The checkpoint's PIL image processor, one frame per image, no splitting,
    resized straight to the encoder size (SmolVLM's video-frame layout) -> [B, 3, L, L]."""
    proc = transformers.AutoImageProcessor.from_pretrained(path, backend="pil")
    edge = proc.max_image_size["longest_edge"]
    out = proc(
        images=[[f] for f in frames],
        do_image_splitting=False,
        size={"longest_edge": edge},
        return_tensors="pt",
    )["pixel_values"]
    return out.reshape(-1, *out.shape[-3:])


def _full_model(path: Path) -> torch.nn.Module:
    model = transformers.AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    return model.eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_protocol_and_shapes(encoders: dict[str, FrameEncoder], family: str) -> None:
    enc = encoders[family]
    assert isinstance(enc, FrameEncoder)
    assert enc.input_size == (32, 32) and enc.tokens_per_frame == 4 and enc.dim == 32
    out = enc.encode(_frames(3, enc.input_size))
    assert out.tokens.shape == (3, 4, 32) and out.tokens.dtype == torch.float32
    assert out.embedding is not None
    torch.testing.assert_close(out.embedding, out.tokens.mean(dim=1))
    assert out.timestamps.tolist() == [0.0, 1.0, 2.0]
    assert not torch.allclose(out.tokens[0], out.tokens[1])


@pytest.mark.parametrize("family", FAMILIES)
def test_pixels_match_processor(
    encoders: dict[str, FrameEncoder], ckpt: dict[str, Path], family: str
) -> None:
    enc = encoders[family]
    frames = _frames(4, enc.input_size, seed=1)
    ours = enc.pixel_values(frames)  # type: ignore[attr-defined]
    ref = _processor_pixels(ckpt[family], frames)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_tokens_equal_native_features(
    encoders: dict[str, FrameEncoder], ckpt: dict[str, Path], family: str
) -> None:
    enc = encoders[family]
    frames = _frames(5, enc.input_size, seed=2)
    model = _full_model(ckpt[family])
    pixels = _processor_pixels(ckpt[family], frames)
    with torch.inference_mode():
        feats = model.get_image_features(pixel_values=pixels[None], return_dict=True)
    ref = feats.pooler_output[0].reshape(5, enc.tokens_per_frame, enc.dim)
    torch.testing.assert_close(enc.encode(frames).tokens, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_splice_reproduces_native_logits(
    encoders: dict[str, FrameEncoder], ckpt: dict[str, Path], family: str
) -> None:
    """Two frames as two images in one prompt, laid out by the processor's own
    prompt builder; our tokens spliced at <image> reproduce the native logits."""
    enc = encoders[family]
    path = ckpt[family]
    frames = _frames(2, enc.input_size, seed=3)
    model = _full_model(path)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    image = get_image_prompt_string(
        0, 0, enc.tokens_per_frame, "<fake_token_around_image>", "<image>", "<global-img>"
    )
    text = f"user : {image} {image} what happens in this video ? <end_of_utterance> assistant :"
    inputs = tok([text], return_tensors="pt")
    pixels = _processor_pixels(path, frames)[None]  # [1, F, 3, L, L]
    with torch.inference_mode():
        native = model(**inputs, pixel_values=pixels).logits
        ids = inputs["input_ids"]
        embeds = model.get_input_embeddings()(ids)
        mask = (ids == model.config.image_token_id)[..., None].expand_as(embeds)
        ours = enc.encode(frames).tokens.flatten(0, 1)
        spliced = model(
            inputs_embeds=embeds.masked_scatter(mask, ours),
            attention_mask=inputs["attention_mask"],
        ).logits
    torch.testing.assert_close(spliced, native, atol=1e-4, rtol=0)
    assert int(mask[..., 0].sum()) == 2 * enc.tokens_per_frame


def test_batch_splitting_equals_one_batch(ckpt: dict[str, Path]) -> None:
    big = load_encoder(ckpt["smolvlm"], device="cpu", batch_size=64)
    small = load_encoder(ckpt["smolvlm"], device="cpu", batch_size=2)
    frames = _frames(5, big.input_size, seed=4)
    torch.testing.assert_close(
        big.encode(frames).tokens, small.encode(frames).tokens, atol=1e-6, rtol=0
    )


def test_flat_frame_is_not_dropped(encoders: dict[str, FrameEncoder]) -> None:
    """get_image_features drops all-zero pixel tensors as padding; a flat grey frame
    (normalises to ~0) must still produce its own tokens."""
    enc = encoders["smolvlm"]
    frames = np.full((3, *enc.input_size, 3), 128, dtype=np.uint8)
    frames[1] = 0
    out = enc.encode(frames)
    assert out.tokens.shape[0] == 3
    torch.testing.assert_close(out.tokens[0], out.tokens[2])


def test_numpy_torch_fingerprint_dtype(
    encoders: dict[str, FrameEncoder], ckpt: dict[str, Path]
) -> None:
    enc = encoders["smolvlm"]
    frames = _frames(2, enc.input_size, seed=5)
    torch.testing.assert_close(
        enc.encode(frames).tokens, enc.encode(torch.from_numpy(frames)).tokens, atol=0, rtol=0
    )
    assert load_encoder(ckpt["smolvlm"], device="cpu").fingerprint == enc.fingerprint
    assert encoders["idefics3"].fingerprint != enc.fingerprint
    bf = load_encoder(ckpt["smolvlm"], device="cpu", dtype="bfloat16")
    assert bf.fingerprint != enc.fingerprint
    out = bf.encode(frames)
    assert out.tokens.dtype == torch.float32
    torch.testing.assert_close(out.tokens, enc.encode(frames).tokens, atol=0.1, rtol=0.05)


def test_language_model_layers_are_skipped_at_load(ckpt: dict[str, Path]) -> None:
    from videomem.encoders.hf import LoadSettings, load_config, load_vlm

    config = load_config(ckpt["smolvlm"])
    settings = LoadSettings(torch.device("cpu"), torch.float32, 8, False, str(ckpt["smolvlm"]))
    vlm = load_vlm("SmolVLMForConditionalGeneration", str(ckpt["smolvlm"]), config, settings)
    assert len(vlm.model.text_model.layers) == 0
    assert config.text_config.num_hidden_layers == 2  # the caller's config is untouched


def test_bad_inputs_raise_encoder_error(
    encoders: dict[str, FrameEncoder], ckpt: dict[str, Path]
) -> None:
    enc = encoders["smolvlm"]
    with pytest.raises(EncoderError, match="needs"):
        enc.encode(_frames(1, (16, 16)))
    with pytest.raises(EncoderError, match="unknown encoder options"):
        load_encoder(ckpt["smolvlm"], device="cpu", layer=-2)
