"""Tiny MovieChat-format inputs with MovieChat's exact key names, for the conversion and
parity tests: the frame-side ``.pth`` (LAVIS BLIP-2 names, text branch and stage-1 heads
included so the converter must drop them), the finetuned ``.pth`` (video side) and a
tiny Vicuna-like LLaMA directory with a word tokenizer that knows MovieChat's prompt.

Tensors are drawn seeded: LayerNorms near one, matrices at 1/sqrt(fan_in), so every
layer moves its input and a wrong mapping shows in the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: tiny sizes: ViT 32 wide (32x32 images, 8x8 patches), Q-Formers 24 wide, LLaMA 40
VIT, VIT_LAYERS, VIT_MLP, IMAGE, PATCH = 32, 2, 64, 32, 8
QF, QF_LAYERS, QF_MLP, QUERIES = 24, 2, 48, 8
VIDEO_QUERIES, FRAME_POS, LLM = 6, 32, 40
#: attention heads of the tiny inputs (the converter's Heads)
HEADS = dict(vision=4, qformer=4, video_qformer=4)

#: words of MovieChat's prompt, so the tiny tokenizer sees few unknowns
_WORDS = [
    "You",
    "are",
    "able",
    "to",
    "understand",
    "the",
    "visual",
    "content",
    "that",
    "user",
    "provides",
    "Follow",
    "instructions",
    "carefully",
    "and",
    "explain",
    "your",
    "answers",
    "Human",
    "Assistant",
    "what",
    "is",
    "in",
    "this",
    "video",
    "happens",
    "who",
    "where",
    "when",
    "a",
    "it",
    "of",
    "to",
    "describe",
]


@dataclass(frozen=True)
class TinyMovieChat:
    """Where the tiny inputs are."""

    qformer: Path
    checkpoint: Path
    llm: Path


def _draw(g: Any, *shape: int, kind: str = "w") -> Any:
    import torch

    if kind == "ln":
        return 1 + 0.1 * torch.randn(shape, generator=g)
    if kind == "b":
        return 0.1 * torch.randn(shape, generator=g)
    return torch.randn(shape, generator=g) / shape[-1] ** 0.5


def _qformer(g: Any, prefix: str, layers: int, width: int, enc: int, freq: int) -> dict[str, Any]:
    import torch

    s: dict[str, Any] = {}

    def linear(name: str, out: int, inp: int) -> None:
        s[f"{name}.weight"], s[f"{name}.bias"] = _draw(g, out, inp), _draw(g, out, kind="b")

    def norm(name: str) -> None:
        s[f"{name}.weight"], s[f"{name}.bias"] = (
            _draw(g, width, kind="ln"),
            _draw(g, width, kind="b"),
        )

    b = f"{prefix}.bert"
    norm(f"{b}.embeddings.LayerNorm")
    s[f"{b}.embeddings.word_embeddings.weight"] = _draw(g, 30, width)
    s[f"{b}.embeddings.position_embeddings.weight"] = _draw(g, 64, width)
    s[f"{b}.embeddings.position_ids"] = torch.arange(64)[None]
    for i in range(layers):
        lay = f"{b}.encoder.layer.{i}"
        kinds = ["attention"] + (["crossattention"] if i % freq == 0 else [])
        for a in kinds:
            kv = enc if a == "crossattention" else width
            linear(f"{lay}.{a}.self.query", width, width)
            linear(f"{lay}.{a}.self.key", width, kv)
            linear(f"{lay}.{a}.self.value", width, kv)
            linear(f"{lay}.{a}.output.dense", width, width)
            norm(f"{lay}.{a}.output.LayerNorm")
        for mid, out in (("intermediate", "output"), ("intermediate_query", "output_query")):
            linear(f"{lay}.{mid}.dense", QF_MLP, width)
            linear(f"{lay}.{out}.dense", width, QF_MLP)
            norm(f"{lay}.{out}.LayerNorm")
    linear(f"{prefix}.cls.predictions.transform.dense", width, width)
    return s


def frame_side_state(seed: int = 0) -> dict[str, Any]:
    """LAVIS BLIP-2 names: visual_encoder.*, ln_vision.*, Qformer.*, query_tokens, plus
    the stage-1 heads a released BLIP-2 .pth carries."""
    import torch

    g = torch.Generator().manual_seed(seed)
    s: dict[str, Any] = {
        "visual_encoder.cls_token": _draw(g, 1, 1, VIT),
        "visual_encoder.pos_embed": _draw(g, 1, 1 + (IMAGE // PATCH) ** 2, VIT),
        "visual_encoder.patch_embed.proj.weight": _draw(g, VIT, 3, PATCH, PATCH) * PATCH,
        "visual_encoder.patch_embed.proj.bias": _draw(g, VIT, kind="b"),
    }
    for i in range(VIT_LAYERS):
        blk = f"visual_encoder.blocks.{i}"
        for n in ("norm1", "norm2"):
            s[f"{blk}.{n}.weight"], s[f"{blk}.{n}.bias"] = (
                _draw(g, VIT, kind="ln"),
                _draw(g, VIT, kind="b"),
            )
        s[f"{blk}.attn.qkv.weight"] = _draw(g, 3 * VIT, VIT)
        s[f"{blk}.attn.q_bias"], s[f"{blk}.attn.v_bias"] = (
            _draw(g, VIT, kind="b"),
            _draw(g, VIT, kind="b"),
        )
        s[f"{blk}.attn.proj.weight"], s[f"{blk}.attn.proj.bias"] = (
            _draw(g, VIT, VIT),
            _draw(g, VIT, kind="b"),
        )
        s[f"{blk}.mlp.fc1.weight"], s[f"{blk}.mlp.fc1.bias"] = (
            _draw(g, VIT_MLP, VIT),
            _draw(g, VIT_MLP, kind="b"),
        )
        s[f"{blk}.mlp.fc2.weight"], s[f"{blk}.mlp.fc2.bias"] = (
            _draw(g, VIT, VIT_MLP),
            _draw(g, VIT, kind="b"),
        )
    s["ln_vision.weight"], s["ln_vision.bias"] = _draw(g, VIT, kind="ln"), _draw(g, VIT, kind="b")
    s["query_tokens"] = _draw(g, 1, QUERIES, QF, kind="b") * 5
    s.update(_qformer(g, "Qformer", QF_LAYERS, QF, VIT, freq=2))
    s["vision_proj.weight"], s["text_proj.weight"] = _draw(g, 16, QF), _draw(g, 16, QF)
    s["itm_head.weight"], s["temp"] = _draw(g, 2, QF), torch.tensor(0.07)
    return s


def video_side_state(seed: int = 1) -> dict[str, Any]:
    """MovieChat's finetuned names: video_Qformer.*, video_query_tokens,
    video_frame_position_embedding.weight, llama_proj.*."""
    import torch

    g = torch.Generator().manual_seed(seed)
    s = _qformer(g, "video_Qformer", 2, QF, QF, freq=1)
    s = {k: v for k, v in s.items() if ".cls." not in k}  # MovieChat saves no cls head
    s["video_query_tokens"] = _draw(g, 1, VIDEO_QUERIES, QF, kind="b") * 5
    s["video_frame_position_embedding.weight"] = _draw(g, FRAME_POS, QF, kind="b") * 5
    s["llama_proj.weight"], s["llama_proj.bias"] = _draw(g, LLM, QF), _draw(g, LLM, kind="b")
    return s


def build_tiny_vicuna(out: Path, hidden: int = LLM) -> Path:
    """A tiny LLaMA (safetensors) with a word tokenizer that has BOS and the prompt's
    words; "###" is one token, as "▁###" is in Vicuna's vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
    from videomem.encoders.testing.parts import lively_lm, tiny_llama

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    marks = ["###", "<Video>", "</Video>", ":", ".", "?", ",", "'"]
    vocab = {t: i for i, t in enumerate([*specials, *marks, *_WORDS])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("###", "isolated"),
            pre_tokenizers.Split("<Video>", "isolated"),
            pre_tokenizers.Split("</Video>", "isolated"),
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(),
        ]
    )
    from tokenizers import processors

    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama(len(vocab), hidden)).eval()  # type: ignore[arg-type]
    lively_lm(model)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_moviechat_inputs(out: Path) -> TinyMovieChat:
    """The three inputs of ``videomem models convert moviechat``, under ``out``."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    qformer, checkpoint = out / "blip2_pretrained.pth", out / "finetune-vicuna7b-v2.pth"
    # LAVIS saves {"model": state, ...}
    torch.save({"model": frame_side_state(), "epoch": 9}, qformer)
    torch.save({"model": video_side_state(), "epoch": 9}, checkpoint)
    return TinyMovieChat(qformer, checkpoint, build_tiny_vicuna(out / "vicuna"))
