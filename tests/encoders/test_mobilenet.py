"""MobileNetV2 frame encoder against the checkpoint's own PIL processor and forward
(native parity), on a tiny random checkpoint and on the real ImageNet one (skipped
when ../shared is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from videomem.encoders import load_encoder
from videomem.encoders.mobilenet import MobileNetEncoder, feature_grid
from videomem.encoders.registry import FAMILIES
from videomem.encoders.testing import build_tiny
from videomem.pipeline.errors import EncoderError

from tests.encoders.test_clip import naive_pool  # the same k x k grid-pool reference


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("mobilenet_v2", tmp_path_factory.mktemp("mobilenet") / "tiny")


@pytest.fixture(params=["tiny", "real"])
def checkpoint(request: pytest.FixtureRequest, tiny_dir: Path) -> Path:
    """The tiny random checkpoint, and the real ImageNet one when it is present."""
    if request.param == "tiny":
        return tiny_dir
    return request.getfixturevalue("mobilenet_dir")


def frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Noise and smooth gradients alternating (noise alone is not what video looks like)."""
    x = np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(0, n, 2):
        x[i, ..., 0] = (xx * 2 + 10 * i) % 256
        x[i, ..., 1] = (yy * 2) % 256
        x[i, ..., 2] = (xx + yy) % 256
    return x


def load(path: Path, **options: object) -> MobileNetEncoder:
    enc = load_encoder(path, **options)
    assert isinstance(enc, MobileNetEncoder)
    return enc


def native(path: Path) -> torch.nn.Module:
    """The checkpoint loaded the plain transformers way, as the reference."""
    from transformers import MobileNetV2ForImageClassification

    return MobileNetV2ForImageClassification.from_pretrained(path).eval()


def test_family_is_registered() -> None:
    assert FAMILIES["mobilenet_v2"] == "videomem.encoders.mobilenet:load_mobilenet"


def test_preprocessing_matches_the_checkpoints_own_processor(checkpoint: Path) -> None:
    """Without torchvision, AutoImageProcessor is the PIL processor. Its still-image
    path resizes the shortest edge up (256 for 224) before the centre crop; we feed the
    whole frame at the crop size, i.e. the processor without its resize."""
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(checkpoint)
    assert type(proc).__name__ == "MobileNetV2ImageProcessorPil"  # what runs here
    enc = load(checkpoint)
    h, w = enc.input_size
    assert (h, w) == (proc.crop_size["height"], proc.crop_size["width"])
    x = frames(3, h)
    ref = proc(images=list(x), do_resize=False, return_tensors="pt")["pixel_values"]
    ours = enc.pixels(x)
    assert ours.shape == ref.shape == (3, 3, h, w)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    # the processor's own resize-and-crop really is a different picture (a zoom)
    zoomed = proc(images=list(x), return_tensors="pt")["pixel_values"]
    assert zoomed.shape == ours.shape and (zoomed - ours).abs().max() > 0.1


def test_tokens_and_embedding_equal_the_native_forward(checkpoint: Path) -> None:
    enc = load(checkpoint, batch_size=2)  # 5 frames -> chunks of 2, 2, 1
    model = native(checkpoint)
    x = frames(5, enc.input_size[0], seed=1)
    out = enc.encode(x, timestamps=[0.0, 0.5, 1.0, 1.5, 2.0])
    with torch.no_grad():
        ref = model.mobilenet_v2(pixel_values=enc.pixels(x))
    c, gh, gw = ref.last_hidden_state.shape[1:]
    assert (gh, gw) == enc.grid == feature_grid(model.config, enc.input_size)
    assert out.tokens.shape == (5, gh * gw, c) == (5, enc.tokens_per_frame, enc.dim)
    # token (i, j) of the grid is row-major position i * gw + j
    ref_tokens = ref.last_hidden_state.permute(0, 2, 3, 1).reshape(5, gh * gw, c)
    torch.testing.assert_close(out.tokens, ref_tokens, rtol=0, atol=1e-5)
    assert out.embedding is not None and out.embedding.shape == (5, enc.embed_dim)
    torch.testing.assert_close(
        out.embedding, F.normalize(ref.pooler_output, dim=-1), rtol=0, atol=1e-5
    )
    # the pooled feature is what the classifier head sees: same logits
    with torch.no_grad():
        logits = model(pixel_values=enc.pixels(x)).logits
    head = model.classifier
    raw = out.tokens.mean(dim=1)  # mean of the grid = the (unnormalised) pooler output
    torch.testing.assert_close(head(raw), logits, rtol=0, atol=1e-4)
    assert out.timestamps.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_real_checkpoint_shapes(mobilenet_dir: Path) -> None:
    enc = load(mobilenet_dir)
    assert enc.input_size == (224, 224) and enc.grid == (7, 7)
    assert (enc.tokens_per_frame, enc.dim, enc.embed_dim) == (49, 1280, 1280)
    assert enc.has_classifier
    assert enc.fingerprint.startswith("mobilenet_v2_imagenet:")


def test_real_checkpoint_labels_equal_the_native_top5(mobilenet_dir: Path) -> None:
    """labels() gives the native classifier's top-5 class names (1000 distinct
    ImageNet names on the real checkpoint)."""
    enc = load(mobilenet_dir)
    model = native(mobilenet_dir)
    x = frames(2, 224, seed=3)
    with torch.no_grad():
        top = model(pixel_values=enc.pixels(x)).logits.topk(5).indices.tolist()
    expected = [[model.config.id2label[j] for j in row] for row in top]
    assert enc.labels(x, k=5) == expected
    assert len(set(model.config.id2label.values())) == 1000


def test_labels_on_the_tiny_checkpoint(tiny_dir: Path) -> None:
    enc = load(tiny_dir)
    x = frames(3, 128)
    got = enc.labels(x, k=2)
    assert len(got) == 3 and all(len(r) == 2 for r in got)
    assert set(sum(got, [])) <= {"cat", "dog", "car", "tree", "bicycle"}
    assert enc.labels(x, k=99)[0].__len__() == 5  # clamped to the classes there are
    with pytest.raises(EncoderError, match="needs 128x128"):
        enc.labels(frames(1, 64))


def test_backbone_only_checkpoint_encodes_but_gives_no_labels(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """A MobileNetV2Model checkpoint (no head) loads the same backbone weights;
    labels() refuses rather than reading a randomly initialised head."""
    import shutil

    from transformers import MobileNetV2Model

    backbone = MobileNetV2Model.from_pretrained(tiny_dir)
    out = tmp_path / "backbone"
    backbone.save_pretrained(out)
    shutil.copy(tiny_dir / "preprocessor_config.json", out)
    enc = load(out)
    assert not enc.has_classifier
    x = frames(2, 128)
    torch.testing.assert_close(enc.encode(x).tokens, load(tiny_dir).encode(x).tokens)
    with pytest.raises(EncoderError, match="no trained classifier"):
        enc.labels(x)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_pooling_to_a_k_by_k_grid(k: int, tiny_dir: Path) -> None:
    x = frames(3, 128, seed=2)
    full = load(tiny_dir).encode(x)
    pooled_enc = load(tiny_dir, pool=k)
    pooled = pooled_enc.encode(x)
    assert pooled_enc.tokens_per_frame == k * k
    assert pooled.tokens.shape == (3, k * k, 320)
    torch.testing.assert_close(pooled.tokens, naive_pool(full.tokens, 4, k), rtol=0, atol=1e-5)
    torch.testing.assert_close(pooled.embedding, full.embedding, rtol=0, atol=0)
    assert f"pool={k}" in pooled_enc.fingerprint and "pool=" not in load(tiny_dir).fingerprint


def test_bad_options_are_encoder_errors(tiny_dir: Path) -> None:
    with pytest.raises(EncoderError, match="pool"):
        load(tiny_dir, pool=5)  # 4x4 feature map
    with pytest.raises(EncoderError, match="pool"):
        load(tiny_dir, pool=0)
    with pytest.raises(EncoderError, match="unknown encoder options"):
        load(tiny_dir, layer=-2)
    with pytest.raises(EncoderError, match="needs 128x128"):
        load(tiny_dir).encode(frames(1, 64))


@pytest.mark.parametrize(
    ("size", "output_stride", "grid"),
    [
        ((224, 224), 32, (7, 7)),
        ((128, 128), 32, (4, 4)),
        ((100, 60), 32, (4, 2)),
        ((224, 224), 16, (14, 14)),
    ],
)
def test_feature_grid_matches_the_network(
    size: tuple[int, int], output_stride: int, grid: tuple[int, int]
) -> None:
    """The analytic grid equals the real network's feature map, for odd sizes and a
    capped output stride too (a width-0.25 net: the grid depends on strides only)."""
    from transformers import MobileNetV2Config, MobileNetV2Model

    for tf_padding in (True, False):
        cfg = MobileNetV2Config(
            depth_multiplier=0.25, output_stride=output_stride, tf_padding=tf_padding
        )
        with torch.no_grad():
            fmap = MobileNetV2Model(cfg).eval()(torch.zeros(1, 3, *size)).last_hidden_state
        assert tuple(fmap.shape[2:]) == feature_grid(cfg, size) == grid


def test_bfloat16_runs_close_to_float32(tiny_dir: Path) -> None:
    x = frames(2, 128)
    ref = load(tiny_dir).encode(x)
    got = load(tiny_dir, dtype="bfloat16").encode(x)
    assert got.tokens.dtype == torch.float32
    assert F.cosine_similarity(got.embedding, ref.embedding).min() > 0.99
