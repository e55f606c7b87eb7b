"""Tiny SmolVLM and Idefics3 checkpoints (SigLIP-style tower, pixel-shuffle
connector, Llama).
"""

from __future__ import annotations

from pathlib import Path

from videomem.encoders.testing.parts import (
    IDEFICS_TEMPLATE,
    lively_lm,
    tiny_llama,
    tiny_vit,
    word_tokenizer,
)

#: special tokens of SmolVLM/Idefics3 prompts
_IDEFICS_TOKENS = ("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>")


def build_tiny_idefics(out: Path, family: str) -> Path:
    """SmolVLM / Idefics3 layout: SigLIP-style tower + pixel-shuffle connector
    (scale 2) + Llama. 32x32 frames, patch 8 -> 4x4 patches -> 4 tokens of width 32.
    Image splitting is off: a frame is one image at the encoder's base size."""
    import importlib

    import torch
    import transformers

    torch.manual_seed(0)
    tok = word_tokenizer(_IDEFICS_TOKENS, IDEFICS_TEMPLATE)
    image_size, patch = 32, 8
    prefix = "SmolVLM" if family == "smolvlm" else "Idefics3"
    vision = getattr(transformers, f"{prefix}VisionConfig")(**tiny_vit(image_size, patch))
    config = getattr(transformers, f"{prefix}Config")(
        vision_config=vision,
        text_config=tiny_llama(len(tok)),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    model = lively_lm(getattr(transformers, f"{prefix}ForConditionalGeneration")(config).eval())
    model.save_pretrained(out, safe_serialization=True)
    module = "smolvlm" if family == "smolvlm" else "idefics3"
    pil = getattr(
        importlib.import_module(f"transformers.models.{module}.image_processing_pil_{module}"),
        f"{prefix}ImageProcessorPil",
    )
    # SmolVLM's processor needs a torchvision video processor, so only the image
    # processor and tokenizer are saved (that is all the encoder reads).
    pil(
        size={"longest_edge": image_size},
        max_image_size={"longest_edge": image_size},
        do_image_splitting=False,
    ).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_smolvlm(out: Path) -> Path:
    return build_tiny_idefics(out, "smolvlm")


def build_tiny_idefics3(out: Path) -> Path:
    return build_tiny_idefics(out, "idefics3")
