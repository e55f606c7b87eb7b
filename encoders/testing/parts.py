"""What the tiny checkpoints of several families share: tower sizes, image processors,
tokenizers built offline with ``tokenizers`` alone, chat templates shaped like the real
hub checkpoints', and the tiny Llama every VLM's language model is.

Seeded and offline: nothing here downloads, and the same call builds the same object.
"""

from __future__ import annotations

from typing import Any


def tiny_vit(image_size: int, patch: int, layers: int = 2, heads: int = 2) -> dict[str, Any]:
    """A tiny ViT (width 32, MLP 64) as keyword arguments of any of transformers'
    vision configs: CLIP, SigLIP, BLIP-2, Idefics3 and SmolVLM towers name them alike."""
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch,
    )


#: tiny vision towers of CLIP, SigLIP, BLIP-2: 32x32 images in 8x8 patches -> a 4x4
#: grid of 16 patch tokens; three layers, so "penultimate" and "last" layer tokens differ
TINY_VISION = tiny_vit(32, 8, layers=3, heads=4)


def tiny_text_tower(vocab_size: int, **token_ids: int | None) -> dict[str, Any]:
    """The text tower of the tiny CLIP/SigLIP: two layers as wide as the vision
    tower, 16 positions; ``token_ids`` are its bos/eos/pad ids."""
    return dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=16,
        **token_ids,
    )


def clip_image_processor(image_size: int) -> Any:
    """CLIP's PIL image processor (resize shortest edge + centre crop) at ``image_size``;
    LLaVA and LLaVA-NeXT-Video frames use the same one."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )


def byte_bpe(
    specials: list[str], end_of_word: str = ""
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A tiny byte-level BPE vocabulary: the 256 byte symbols (so any text encodes,
    as with the real CLIP/GPT-2 vocabularies), their end-of-word forms when the
    tokenizer uses them, and a few merges so multi-byte tokens exist too."""
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    ends = [a + end_of_word for a in alphabet] if end_of_word else []
    for tok in [*specials, *alphabet, *ends]:
        vocab.setdefault(tok, len(vocab))
    merges = []
    for a, b in [("t", "h"), ("th", "e"), ("c", "a"), ("ca", "t"), ("d", "o"), ("do", "g")]:
        if b in ("e", "t", "g") and end_of_word:
            b += end_of_word
        merges.append((a, b))
        vocab.setdefault(a + b, len(vocab))
    return vocab, merges


#: words of the tiny tokenizers' vocabulary (after the special tokens); enough for
#: prompts like "user : <image> what happens in this video ? assistant :"
_TINY_WORDS = [
    *["a", "the", "video", "frame", "what", "is", "in", "this", "happens", "describe"],
    *["question", "answer", "user", "assistant", ":", ".", "?", ",", "and", "of", "to"],
]

#: appended after the words (so earlier ids stay put): the role words and markers the
#: chat templates below render; the ``<|...|>`` ones are special tokens, as in Qwen2
_CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
_CHAT_WORDS = ["USER", "ASSISTANT", "User", "Assistant", "system", "Frame", "from"]

# Chat templates shaped like the real hub checkpoints' ``chat_template.jinja`` (the
# tiny checkpoints save them the same way), so the QA stage renders prompts exactly
# as it would for a real model: LLaVA-1.5 / LLaVA-NeXT-Video ("USER: <image>\n... "
# + "ASSISTANT:"), LLaVA-OneVision (Qwen2's <|im_start|> turns), SmolVLM / Idefics3
# ("User:<image>...<end_of_utterance>\nAssistant:"). BLIP-2 checkpoints ship none.

#: both templates below put a message's images, then its videos, before its text
_MEDIA_FIRST = (
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}{% endfor %}"
)

VICUNA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    + _MEDIA_FIRST
    + "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' ' }}{% endgeneration %}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

QWEN2_VL_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}" + _MEDIA_FIRST + "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

IDEFICS_TEMPLATE = (
    "<|im_start|>"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
    "{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}"
    "{% elif line['type'] == 'video' %}{{ '<video>' }}"
    "{% endif %}{% endfor %}"
    "{% endif %}"
    "<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def word_tokenizer(image_tokens: tuple[str, ...], chat_template: str) -> Any:
    """A word-level fast tokenizer built offline with the ``tokenizers`` library.

    Special tokens first (ids 0..), so the image token ids are small and stable.
    ``chat_template`` is saved with it (``chat_template.jinja``), as real checkpoints do.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", *image_tokens]
    vocab = {t: i for i, t in enumerate([*specials, *_TINY_WORDS, *_CHAT_TOKENS, *_CHAT_WORDS])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=[*image_tokens, *_CHAT_TOKENS],
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def lively_lm(model: Any) -> Any:
    """Redraw the language model's matrices with a larger spread (std 2/sqrt(fan_in),
    seeded). At transformers' default init (std 0.02) a tiny random LM repeats one token
    whatever its input, which would make QA tests that compare answers vacuous; with
    this, greedy answers depend on the prompt and the visual tokens. The vision side
    (and so every encoder's tokens) is left as initialised."""
    import torch

    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and (
                "language_model" in name or "text_model" in name or "lm_head" in name
            ):
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p.shape[1] ** 0.5))
    return model


def tiny_llama(vocab_size: int, hidden: int = 32) -> object:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=3,
        bos_token_id=1,
        eos_token_id=2,
    )
