"""A tiny BLIP-2 checkpoint: ViT, Q-Former and a tiny OPT."""

from __future__ import annotations

from pathlib import Path

from videomem.encoders.testing.parts import TINY_VISION, byte_bpe, lively_lm


def build_tiny_blip2(out: Path) -> Path:
    """Blip2ForConditionalGeneration (ViT + Q-Former with 8 queries + tiny OPT) with
    Blip2Processor (BlipImageProcessorPil + byte-level BPE GPT2Tokenizer, as OPT uses).

    The processor adds the ``<image>`` token; its id goes into the config as
    ``image_token_index`` so the native forward finds the query positions.
    """
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessorPil,
        GPT2Tokenizer,
        OPTConfig,
    )

    vocab, merges = byte_bpe(["<pad>", "</s>", "<unk>"])
    tokenizer = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        bos_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        add_bos_token=True,
    )
    images = BlipImageProcessorPil(size={"height": 32, "width": 32})
    processor = Blip2Processor(image_processor=images, tokenizer=tokenizer, num_query_tokens=8)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    assert isinstance(image_token_id, int)  # one token in, one id out
    text = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=40,
        ffn_dim=80,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        word_embed_proj_dim=40,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = Blip2Config(
        vision_config=TINY_VISION,
        qformer_config=dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            encoder_hidden_size=TINY_VISION["hidden_size"],
            cross_attention_frequency=1,
        ),
        text_config=text.to_dict(),
        num_query_tokens=8,
        image_token_index=image_token_id,
    )
    torch.manual_seed(0)
    lively_lm(Blip2ForConditionalGeneration(config).eval()).save_pretrained(out)
    processor.save_pretrained(out)
    return out
