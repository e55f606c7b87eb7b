"""Tiny LLaVA-1.5, LLaVA-OneVision and LLaVA-NeXT-Video checkpoints, with chat
templates shaped like the real ones.
"""

from __future__ import annotations

from pathlib import Path

from videomem.encoders.testing.parts import (
    QWEN2_VL_TEMPLATE,
    VICUNA_TEMPLATE,
    clip_image_processor,
    lively_lm,
    tiny_llama,
    tiny_vit,
    word_tokenizer,
)


def build_tiny_llava(out: Path) -> Path:
    """LLaVA-1.5 layout: CLIP vision tower (layer -2, CLS dropped) + 2-layer MLP
    projector + Llama. 32x32 frames, patch 8 -> 16 tokens of width 32 per frame."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(0)
    tok = word_tokenizer(("<image>",), VICUNA_TEMPLATE)
    image_size, patch = 32, 8
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**tiny_vit(image_size, patch)),
        text_config=tiny_llama(len(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    model = lively_lm(LlavaForConditionalGeneration(config).eval())
    model.save_pretrained(out, safe_serialization=True)
    processor = LlavaProcessor(
        image_processor=clip_image_processor(image_size),
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=VICUNA_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out


def build_tiny_llava_onevision(out: Path) -> Path:
    """LLaVA-OneVision layout: SigLIP tower (last layer, all patches) + projector +
    Llama (real ones use Qwen2). 48x48 frames, patch 8 -> 6x6 patches, pooled 2x2 by
    the video path -> 9 tokens of width 32 per frame."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        SiglipVisionConfig,
    )
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    torch.manual_seed(0)
    tok = word_tokenizer(("<image>", "<video>"), QWEN2_VL_TEMPLATE)
    image_size, patch = 48, 8
    pinpoints = [[image_size, image_size], [image_size, 2 * image_size]]
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**tiny_vit(image_size, patch)),
        text_config=tiny_llama(len(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=pinpoints,
    )
    model = lively_lm(LlavaOnevisionForConditionalGeneration(config).eval())
    model.save_pretrained(out, safe_serialization=True)
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_grid_pinpoints=pinpoints,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    # No processor/video processor: transformers' video processors need torchvision
    # and LlavaOnevisionProcessor refuses to be built without one. Frames are
    # normalised with the image processor's constants (the same in real OneVision
    # checkpoints).
    image_processor.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_llava_next_video(out: Path) -> Path:
    """LLaVA-NeXT-Video layout: CLIP tower (layer -2, CLS dropped), 2x2 average
    pooling, projector, Llama. 32x32 frames, patch 8 -> 4x4 -> 4 tokens per frame."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
    )

    torch.manual_seed(0)
    tok = word_tokenizer(("<image>", "<video>"), VICUNA_TEMPLATE)
    image_size, patch = 32, 8
    config = LlavaNextVideoConfig(
        vision_config=CLIPVisionConfig(**tiny_vit(image_size, patch)),
        text_config=tiny_llama(len(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=[[image_size, image_size]],
        image_seq_length=(image_size // patch) ** 2,
        video_seq_length=(image_size // patch // 2) ** 2,
    )
    model = lively_lm(LlavaNextVideoForConditionalGeneration(config).eval())
    model.save_pretrained(out, safe_serialization=True)
    # Frames use the CLIP constants, as LLaVA-NeXT-Video's video processor does.
    clip_image_processor(image_size).save_pretrained(out)
    tok.save_pretrained(out)
    return out
