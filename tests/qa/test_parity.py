"""Native parity of the QA stage, per VLM family (tiny random checkpoints, fp32).

For a memory with one frame per slot, ``prompt_style="native"`` must give the model
exactly what its own processor + pixel path gives it: the same prompt ids, greedy
answers token-identical to the model's own ``generate`` on the same frames, and
full-sequence logits within 1e-4.

Where the family's processor runs without torchvision (LLaVA, BLIP-2) it is used as
is. LLaVA-OneVision, LLaVA-NeXT-Video and SmolVLM have video processors that need
torchvision: for them the native prompt is built by calling the processor class's own
``replace_video_token`` (transformers' code, on an object holding the attributes it
reads) on the chat-template text, and the pixels are the frames normalised with the
checkpoint's constants (what the video processor does to frames already at size).
Idefics3 has no video path: its multi-image prompt uses ``Idefics3Processor``'s own
``replace_image_token`` for unsplit images.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

QUESTION = "what happens in this video ?"
TIMES = [0.0, 1.0, 2.0]
NEW = 10


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-cache")


def _frames(size: int, n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _setup(family: str, cache_dir: Path):  # type: ignore[no-untyped-def]
    from videomem.encoders import load_encoder
    from videomem.encoders.testing import tiny_checkpoint
    from videomem.qa.model import load_qa_model

    ckpt = tiny_checkpoint(family, cache_dir)
    enc = load_encoder(ckpt, "cpu", "float32")
    qa = load_qa_model(str(ckpt), "cpu", "float32")
    frames = _frames(enc.input_size[0])
    tokens = enc.encode(frames, TIMES).tokens  # fp32: parity is about layout, not fp16
    return ckpt, enc, qa, frames, tokens


def _ours(qa, enc, tokens, n_slots=3):  # type: ignore[no-untyped-def]
    from videomem.qa.layout import Span
    from videomem.qa.types import GenerationSettings

    spans = [Span(t, t) for t in TIMES[:n_slots]]
    prompt = qa.prompts.build(QUESTION, spans, enc.tokens_per_frame, style="native", duration_s=3.0)
    feats = qa.visual_features(tokens[:n_slots], enc.fingerprint)
    answer = qa.generate([prompt], [feats], GenerationSettings(max_new_tokens=NEW))[0]
    return prompt, feats, answer


def _native_answer(qa, inputs: dict) -> list[int]:  # type: ignore[no-untyped-def]
    with torch.inference_mode():
        out = qa.model.generate(
            **inputs, max_new_tokens=NEW, do_sample=False, pad_token_id=qa.pad_id
        )
    return qa._trim(out[:, inputs["input_ids"].shape[1] :])[0]


def _check(qa, prompt, feats, answer, inputs) -> None:  # type: ignore[no-untyped-def]
    assert prompt.ids == inputs["input_ids"][0].tolist()
    native = _native_answer(qa, inputs)
    assert answer == native
    assert len(answer) >= 2, "a vacuous comparison: the tiny LM stopped at once"
    with torch.inference_mode():
        ref = qa.model(**inputs).logits[0].float()
    got = qa.logits(prompt, feats)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() < 1e-4


def _chat_text(qa, item: str, n: int) -> str:  # type: ignore[no-untyped-def]
    content = [{"type": item}] * n + [{"type": "text", "text": QUESTION}]
    return qa.tokenizer.apply_chat_template(
        [{"role": "user", "content": content}],
        chat_template=qa.prompts.chat_template,
        tokenize=False,
        add_generation_prompt=True,
    )


def test_llava_multi_image_matches_its_processor(cache_dir: Path) -> None:
    from transformers import AutoProcessor

    ckpt, enc, qa, frames, tokens = _setup("llava", cache_dir)
    prompt, feats, answer = _ours(qa, enc, tokens)
    proc = AutoProcessor.from_pretrained(ckpt)
    conv = [
        {"role": "user", "content": [{"type": "image"}] * 3 + [{"type": "text", "text": QUESTION}]}
    ]
    text = proc.apply_chat_template(conv, add_generation_prompt=True)
    inputs = dict(proc(images=list(frames), text=text, return_tensors="pt"))
    _check(qa, prompt, feats, answer, inputs)


def test_llava_onevision_video_path(cache_dir: Path) -> None:
    from transformers import LlavaOnevisionProcessor

    _, enc, qa, frames, tokens = _setup("llava_onevision", cache_dir)
    prompt, feats, answer = _ours(qa, enc, tokens)
    pixels = enc.pixel_values(frames)[None]  # [1, F, 3, H, W]
    side = enc.input_size[0] // qa.config.vision_config.patch_size
    ns = SimpleNamespace(num_image_tokens=side * side, video_token="<video>")
    expanded = LlavaOnevisionProcessor.replace_video_token(ns, {"pixel_values_videos": pixels}, 0)
    text = _chat_text(qa, "video", 1).replace("<video>", expanded)
    ids = qa.tokenizer(text, return_tensors="pt").input_ids
    _check(qa, prompt, feats, answer, {"input_ids": ids, "pixel_values_videos": pixels})


def test_llava_next_video_video_path(cache_dir: Path) -> None:
    from transformers import LlavaNextVideoProcessor

    _, enc, qa, frames, tokens = _setup("llava_next_video", cache_dir)
    prompt, feats, answer = _ours(qa, enc, tokens)
    pixels = enc.pixel_values(frames)[None]
    ns = SimpleNamespace(patch_size=qa.config.vision_config.patch_size, video_token="<video>")
    expanded = LlavaNextVideoProcessor.replace_video_token(
        ns, {"pixel_values_videos": pixels.numpy()}, 0
    )
    text = _chat_text(qa, "video", 1).replace("<video>", expanded)
    ids = qa.tokenizer(text, return_tensors="pt").input_ids
    _check(qa, prompt, feats, answer, {"input_ids": ids, "pixel_values_videos": pixels})


def test_smolvlm_video_path(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers.models.smolvlm.processing_smolvlm as smol
    from transformers import SmolVLMProcessor
    from transformers.video_utils import VideoMetadata

    _, enc, qa, frames, tokens = _setup("smolvlm", cache_dir)
    prompt, feats, answer = _ours(qa, enc, tokens)
    pixels = enc.pixel_values(frames)[None]
    # the processor spells the frame count with num2words (not installed here)
    monkeypatch.setattr(smol, "num2words", {3: "three"}.__getitem__)
    ns = SimpleNamespace(
        image_seq_len=enc.tokens_per_frame,
        image_token="<image>",
        fake_image_token="<fake_token_around_image>",
        global_image_token="<global-img>",
    )
    meta = VideoMetadata(total_num_frames=3, fps=1.0, frames_indices=[0, 1, 2], duration=3.0)
    expanded = SmolVLMProcessor.replace_video_token(
        ns, {"pixel_values": pixels, "video_metadata": [meta]}, 0
    )
    text = _chat_text(qa, "video", 1).replace("<video>", expanded)
    ids = qa.tokenizer(text, return_tensors="pt").input_ids
    _check(qa, prompt, feats, answer, {"input_ids": ids, "pixel_values": pixels})


def test_idefics3_multi_image(cache_dir: Path) -> None:
    from transformers import Idefics3Processor

    _, enc, qa, frames, tokens = _setup("idefics3", cache_dir)
    prompt, feats, answer = _ours(qa, enc, tokens)
    pixels = enc.pixel_values(frames)[None]
    ns = SimpleNamespace(
        image_seq_len=enc.tokens_per_frame,
        image_token="<image>",
        fake_image_token="<fake_token_around_image>",
        global_image_tag="<global-img>",
    )
    block = Idefics3Processor.replace_image_token(ns, {"rows": [[0]], "cols": [[0]]}, 0)
    text = _chat_text(qa, "image", 3).replace("<image>", block)
    ids = qa.tokenizer(text, return_tensors="pt").input_ids
    _check(qa, prompt, feats, answer, {"input_ids": ids, "pixel_values": pixels})


def test_blip2_one_frame_matches_its_processor(cache_dir: Path) -> None:
    from transformers import AutoProcessor
    from videomem.qa.prompt import BLIP2_FORMAT

    ckpt, enc, qa, frames, tokens = _setup("blip2", cache_dir)
    prompt, feats, answer = _ours(qa, enc, tokens, n_slots=1)
    proc = AutoProcessor.from_pretrained(ckpt)
    text = BLIP2_FORMAT.format(question=QUESTION)
    inputs = dict(proc(images=[frames[0]], text=text, return_tensors="pt"))
    inputs.pop("attention_mask", None)
    _check(qa, prompt, feats, answer, inputs)


def test_blip2_several_frames_match_its_own_generate(cache_dir: Path) -> None:
    """BLIP-2's processor puts one image's queries per prompt; its model scatters any
    number of images' queries into as many placeholders, so L frames are L x Q queries
    before the BOS (MovieChat's layout), compared with the model's own pixel path."""
    from transformers import AutoProcessor
    from videomem.qa.prompt import BLIP2_FORMAT

    ckpt, enc, qa, frames, tokens = _setup("blip2", cache_dir)
    prompt, feats, answer = _ours(qa, enc, tokens)
    proc = AutoProcessor.from_pretrained(ckpt)
    text_ids = qa.tokenizer(BLIP2_FORMAT.format(question=QUESTION)).input_ids
    image_id = qa.prompts.feature_id
    ids = torch.tensor([[image_id] * (3 * enc.tokens_per_frame) + text_ids])
    pixels = proc.image_processor(list(frames), return_tensors="pt").pixel_values
    _check(qa, prompt, feats, answer, {"input_ids": ids, "pixel_values": pixels})


def test_number_words_spells_like_num2words() -> None:
    from videomem.qa.layout import number_words

    cases = {
        0: "zero",
        7: "seven",
        19: "nineteen",
        20: "twenty",
        21: "twenty-one",
        100: "one hundred",
        105: "one hundred and five",
        256: "two hundred and fifty-six",
        1000: "one thousand",
        1001: "one thousand and one",
        1234: "one thousand, two hundred and thirty-four",
    }
    assert {n: number_words(n) for n in cases} == cases
