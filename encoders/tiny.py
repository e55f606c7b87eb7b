"""Tiny randomly initialised checkpoints of every supported family, for tests,
benchmarks and smoke runs.

Each builder creates the real architecture from transformers' own config classes
with tiny sizes, saves model + processor/tokenizer with ``save_pretrained`` (safetensors)
into a directory, and returns it, so tests load it through exactly the same
``load_encoder`` path as a user's real checkpoint. The weights are random: tokens are
meaningless, shapes and code paths are real. Seeds are fixed, so a builder makes the
same checkpoint every time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

TinyBuilder = Callable[[Path], Path]
TINY_BUILDERS: dict[str, TinyBuilder] = {}


def _tiny(family: str) -> Callable[[TinyBuilder], TinyBuilder]:
    def wrap(fn: TinyBuilder) -> TinyBuilder:
        TINY_BUILDERS[family] = fn
        return fn

    return wrap


def build_tiny(family: str, out_dir: str | Path) -> Path:
    """Build the tiny checkpoint of ``family`` into ``out_dir`` (created) and return it."""
    try:
        builder = TINY_BUILDERS[family]
    except KeyError:
        raise ValueError(f"no tiny builder for {family!r}; have {sorted(TINY_BUILDERS)}") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return builder(out)


def tiny_cache_key(family: str) -> str:
    """What a cached tiny checkpoint depends on: the family, this module's source (the
    builders and the helpers they call) and the transformers version that saved it.
    A changed builder or a transformers upgrade therefore builds a fresh checkpoint
    instead of silently reusing an old one."""
    import hashlib

    import transformers

    h = hashlib.sha256()
    h.update(family.encode())
    h.update(Path(__file__).read_bytes())
    h.update(transformers.__version__.encode())
    return h.hexdigest()[:12]


def tiny_checkpoint(family: str = "llava", cache_dir: str | Path | None = None) -> Path:
    """A cached tiny checkpoint (built once, then reused), e.g. for ``--model tiny``.

    Cached at ``<cache>/tiny/<family>-<key>/<family>`` with the key of
    :func:`tiny_cache_key`; the last folder is named by the family so fingerprints
    (which name a local checkpoint by its folder) read the same whatever the key.
    Safe when several processes (Ray actors) ask at once: each builds into its own
    temporary folder and renames it into place; a loser of that race drops its copy
    (the builders are seeded, so every copy is the same checkpoint).
    """
    import shutil
    import tempfile

    from videomem.pipeline.cache import cache_dir as default_cache_dir

    if family not in TINY_BUILDERS:
        raise ValueError(f"no tiny builder for {family!r}; have {sorted(TINY_BUILDERS)}")
    root = Path(cache_dir or default_cache_dir())
    out = root / "tiny" / f"{family}-{tiny_cache_key(family)}" / family
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=out.parent))
        try:
            build_tiny(family, tmp)
            try:
                tmp.rename(out)
            except OSError:
                if not (out / "config.json").exists():  # not a lost race: a real error
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


# ------------------------------------------------------------------ CLIP, SigLIP, BLIP-2


def _tiny_vit(image_size: int, patch: int, layers: int = 2, heads: int = 2) -> dict[str, Any]:
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
_TINY_VISION = _tiny_vit(32, 8, layers=3, heads=4)


def _tiny_text_tower(vocab_size: int, **token_ids: int | None) -> dict[str, Any]:
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


def _clip_image_processor(image_size: int) -> Any:
    """CLIP's PIL image processor (resize shortest edge + centre crop) at ``image_size``;
    LLaVA and LLaVA-NeXT-Video frames use the same one."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )


def _byte_bpe(
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


@_tiny("clip")
def build_tiny_clip(out: Path) -> Path:
    """CLIPModel (vision + text towers) with CLIPProcessor (PIL image processor +
    byte-level BPE CLIPTokenizer)."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab, merges = _byte_bpe(["<|startoftext|>", "<|endoftext|>"], end_of_word="</w>")
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16)
    config = CLIPConfig(
        vision_config=_TINY_VISION,
        text_config=_tiny_text_tower(
            len(vocab),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        projection_dim=24,
    )
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(out)
    images = _clip_image_processor(32)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out


def _tiny_unigram_tokenizer(max_length: int) -> object:
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


@_tiny("siglip")
def build_tiny_siglip(out: Path) -> Path:
    """SiglipModel (vision tower with attention-pooling head + text tower) with
    SiglipImageProcessorPil and a Unigram tokenizer (see above)."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    tokenizer = _tiny_unigram_tokenizer(max_length=16)
    config = SiglipConfig(
        vision_config=_TINY_VISION,
        text_config=_tiny_text_tower(
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


@_tiny("blip2")
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

    vocab, merges = _byte_bpe(["<pad>", "</s>", "<unk>"])
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
        vision_config=_TINY_VISION,
        qformer_config=dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            encoder_hidden_size=_TINY_VISION["hidden_size"],
            cross_attention_frequency=1,
        ),
        text_config=text.to_dict(),
        num_query_tokens=8,
        image_token_index=image_token_id,
    )
    torch.manual_seed(0)
    _lively_lm(Blip2ForConditionalGeneration(config).eval()).save_pretrained(out)
    processor.save_pretrained(out)
    return out


# ------------------------------------------------------------------ LLaVA, LLaVA-OneVision, SmolVLM

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

_VICUNA_TEMPLATE = (
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

_QWEN2_VL_TEMPLATE = (
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

_IDEFICS_TEMPLATE = (
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


def _tiny_tokenizer(image_tokens: tuple[str, ...], chat_template: str) -> Any:
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


def _lively_lm(model: Any) -> Any:
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


def _tiny_llama(vocab_size: int, hidden: int = 32) -> object:
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


@_tiny("llava")
def _build_llava(out: Path) -> Path:
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
    tok = _tiny_tokenizer(("<image>",), _VICUNA_TEMPLATE)
    image_size, patch = 32, 8
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_tiny_vit(image_size, patch)),
        text_config=_tiny_llama(len(tok)),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    model = _lively_lm(LlavaForConditionalGeneration(config).eval())
    model.save_pretrained(out, safe_serialization=True)
    processor = LlavaProcessor(
        image_processor=_clip_image_processor(image_size),
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_VICUNA_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out


@_tiny("llava_onevision")
def _build_llava_onevision(out: Path) -> Path:
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
    tok = _tiny_tokenizer(("<image>", "<video>"), _QWEN2_VL_TEMPLATE)
    image_size, patch = 48, 8
    pinpoints = [[image_size, image_size], [image_size, 2 * image_size]]
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**_tiny_vit(image_size, patch)),
        text_config=_tiny_llama(len(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=pinpoints,
    )
    model = _lively_lm(LlavaOnevisionForConditionalGeneration(config).eval())
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


@_tiny("llava_next_video")
def _build_llava_next_video(out: Path) -> Path:
    """LLaVA-NeXT-Video layout: CLIP tower (layer -2, CLS dropped), 2x2 average
    pooling, projector, Llama. 32x32 frames, patch 8 -> 4x4 -> 4 tokens per frame."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
    )

    torch.manual_seed(0)
    tok = _tiny_tokenizer(("<image>", "<video>"), _VICUNA_TEMPLATE)
    image_size, patch = 32, 8
    config = LlavaNextVideoConfig(
        vision_config=CLIPVisionConfig(**_tiny_vit(image_size, patch)),
        text_config=_tiny_llama(len(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=[[image_size, image_size]],
        image_seq_length=(image_size // patch) ** 2,
        video_seq_length=(image_size // patch // 2) ** 2,
    )
    model = _lively_lm(LlavaNextVideoForConditionalGeneration(config).eval())
    model.save_pretrained(out, safe_serialization=True)
    # Frames use the CLIP constants, as LLaVA-NeXT-Video's video processor does.
    _clip_image_processor(image_size).save_pretrained(out)
    tok.save_pretrained(out)
    return out


#: special tokens of SmolVLM/Idefics3 prompts
_IDEFICS_TOKENS = ("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>")


def _build_idefics(out: Path, family: str) -> Path:
    """SmolVLM / Idefics3 layout: SigLIP-style tower + pixel-shuffle connector
    (scale 2) + Llama. 32x32 frames, patch 8 -> 4x4 patches -> 4 tokens of width 32.
    Image splitting is off: a frame is one image at the encoder's base size."""
    import importlib

    import torch
    import transformers

    torch.manual_seed(0)
    tok = _tiny_tokenizer(_IDEFICS_TOKENS, _IDEFICS_TEMPLATE)
    image_size, patch = 32, 8
    prefix = "SmolVLM" if family == "smolvlm" else "Idefics3"
    vision = getattr(transformers, f"{prefix}VisionConfig")(**_tiny_vit(image_size, patch))
    config = getattr(transformers, f"{prefix}Config")(
        vision_config=vision,
        text_config=_tiny_llama(len(tok)),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    model = _lively_lm(getattr(transformers, f"{prefix}ForConditionalGeneration")(config).eval())
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


@_tiny("smolvlm")
def _build_smolvlm(out: Path) -> Path:
    return _build_idefics(out, "smolvlm")


@_tiny("idefics3")
def _build_idefics3(out: Path) -> Path:
    return _build_idefics(out, "idefics3")


# ------------------------------------------------------------------ MobileNetV2


@_tiny("mobilenet_v2")
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
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    model.save_pretrained(out)
    MobileNetV2ImageProcessorPil(
        size={"shortest_edge": 146}, crop_size={"height": 128, "width": 128}
    ).save_pretrained(out)
    return out
