"""A tiny MobileNetV2 image classifier with named classes (frame tags)."""

from __future__ import annotations

from pathlib import Path


def build_tiny_mobilenet_v2(out: Path) -> Path:
    """MobileNetV2ForImageClassification at width 0.25 (a 320-channel final feature
    map, ``finegrained_output`` off) with 5 named classes, and its PIL image processor
    scaled like the real one (shortest edge 146, centre crop 128: 224/256 of it).
    128x128 frames -> a 4x4 feature map -> 16 tokens of width 320.
    ``tf_padding`` is left on (transformers' default) where the real ImageNet
    checkpoint has it off, so both padding paths are exercised."""
    import torch
    from transformers import (
        MobileNetV2Config,
        MobileNetV2ForImageClassification,
        MobileNetV2ImageProcessorPil,
    )

    names = ["cat", "dog", "car", "tree", "bicycle"]
    config = MobileNetV2Config(
        image_size=128,
        depth_multiplier=0.25,
        finegrained_output=False,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    torch.manual_seed(0)
    model = MobileNetV2ForImageClassification(config).eval()
    # Random batch-norm statistics would be the identity (mean 0, var 1): give them
    # real-looking values so the parity tests see BN folding at work.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                mean, var = m.running_mean, m.running_var
                assert mean is not None and var is not None  # MobileNetV2 tracks running stats
                mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    model.save_pretrained(out)
    MobileNetV2ImageProcessorPil(
        size={"shortest_edge": 146}, crop_size={"height": 128, "width": 128}
    ).save_pretrained(out)
    return out
