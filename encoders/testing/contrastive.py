"""Tiny CLIP and SigLIP checkpoints (vision and text towers), for the contrastive
encoders and text search.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

from videomem.encoders.testing.parts import (
    TINY_VISION,
    byte_bpe,
    clip_image_processor,
    tiny_text_tower,
)


def build_tiny_clip(out: Path) -> Path:
    """CLIPModel (vision + text towers) with CLIPProcessor (PIL image processor +
    byte-level BPE CLIPTokenizer)."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab, merges = byte_bpe(["<|startoftext|>", "<|endoftext|>"], end_of_word="</w>")
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16)
    config = CLIPConfig(
        vision_config=TINY_VISION,
        text_config=tiny_text_tower(
            len(vocab),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        projection_dim=24,
    )
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(out)
    images = clip_image_processor(32)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out


def _tiny_unigram_tokenizer(max_length: int) -> PreTrainedTokenizerFast:
    """A SentencePiece-style (Unigram, "▁" word marker, "</s>" appended) fast tokenizer.

    Real SigLIP checkpoints ship a SentencePiece ``spiece.model`` that needs the
    ``sentencepiece`` package; this tiny one is built with ``tokenizers`` alone and
    saved as ``tokenizer.json`` so tests need nothing extra.
    """
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in string.ascii_lowercase + string.digits + string.punctuation]
    words = ["a", "the", "cat", "dog", "photo", "of", "video", "frame"]
    pieces += [("▁" + w, -1.0) for w in words]
    tk = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tk.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), normalizers.Replace(" ", "▁"), normalizers.Prepend("▁")]
    )
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tk.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    tk.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=max_length,
    )


def build_tiny_siglip(out: Path) -> Path:
    """SiglipModel (vision tower with attention-pooling head + text tower) with
    SiglipImageProcessorPil and a Unigram tokenizer (see above)."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    tokenizer = _tiny_unigram_tokenizer(max_length=16)
    config = SiglipConfig(
        vision_config=TINY_VISION,
        text_config=tiny_text_tower(
            len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,  # SigLIP's tokenizer adds no BOS
            eos_token_id=tokenizer.eos_token_id,
        ),
    )
    torch.manual_seed(0)
    SiglipModel(config).eval().save_pretrained(out)
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(out)
    tokenizer.save_pretrained(out)  # type: ignore[attr-defined]
    return out
