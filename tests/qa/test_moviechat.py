"""MovieChat's answers from a stored memory, against an independent reference written
from MovieChat's code: ``encode_long_video`` (global and breakpoint), the prompt of its
inference script tokenised as ``Chat.get_context_emb`` does, and greedy generation with
its ``###`` stopping criterion, on the *unconverted* tiny Vicuna and ``.pth`` tensors."""

from __future__ import annotations

import pytest
import torch
from videomem.encoders.moviechat_convert import convert_moviechat
from videomem.encoders.testing import moviechat as tiny
from videomem.memory.config import MemoryConfig
from videomem.memory.types import VideoMemory
from videomem.qa.answer import answer
from videomem.qa.model import QAModel, load_qa_model
from videomem.qa.types import GenerationSettings, Question

from tests.encoders.test_moviechat import HEADS, ref_breakpoint, ref_encode_long_video

PROMPT_1 = (
    "You are able to understand the visual content that the user provides.Follow the "
    "instructions carefully and explain your answers.###Human: <Video><ImageHere></Video>"
)
QUESTIONS = ["what happens in this video ?", "who is in the video ?", "where is it ?"]
NEW = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("moviechat_qa")
    t = tiny.build_tiny_moviechat_inputs(root / "inputs")
    ckpt, _ = convert_moviechat(t.checkpoint, t.qformer, t.llm, root / "ckpt", heads=HEADS)
    qa = load_qa_model(str(ckpt), "cpu", "float32")
    from transformers import LlamaForCausalLM

    llm = LlamaForCausalLM.from_pretrained(t.llm, dtype=torch.float32).eval()
    state = torch.load(t.checkpoint, weights_only=True)["model"]
    return qa, llm, state


def _memory(long: int, recent: int) -> VideoMemory:
    g = torch.Generator().manual_seed(5)
    tokens = torch.randn(long, tiny.QUERIES, tiny.QF, generator=g).half()
    start = torch.arange(long, dtype=torch.float64)
    return VideoMemory(
        video_id="v",
        tokens=tokens,
        sizes=torch.ones(long, dtype=torch.int64),
        start_s=start,
        end_s=start + 1,
        embedding=None,
        encoder_fingerprint="",
        memory_config=MemoryConfig.preset("moviechat_reference"),
        frames_seen=long,
        recent_tokens=torch.randn(recent, tiny.QUERIES, tiny.QF, generator=g).half(),
        recent_timestamps=long + 0.1 * torch.arange(1, recent + 1, dtype=torch.float64),
    )


def ref_embeds(qa: QAModel, llm, video_emb: torch.Tensor, question: str) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Chat.get_context_emb: segments split at <ImageHere>, BOS on the first only."""
    prompt = PROMPT_1 + " " + question + "###Assistant:"
    segs = prompt.split("<ImageHere>")
    ids = [
        qa.tokenizer(s, return_tensors="pt", add_special_tokens=i == 0).input_ids
        for i, s in enumerate(segs)
    ]
    embs = [llm.model.embed_tokens(t) for t in ids]
    return torch.cat([embs[0], video_emb[None], embs[1]], dim=1)


def ref_answer(qa: QAModel, llm, video_emb: torch.Tensor, question: str) -> list[int]:  # type: ignore[no-untyped-def]
    """Chat.answer, greedy: stop at "###", strip a leading <unk>/<s>, cut at the stop."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    stop = qa.tokenizer.convert_tokens_to_ids("###")

    class StoppingCriteriaSub(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):  # type: ignore[no-untyped-def]
            return bool(input_ids[0][-1] == stop)

    with torch.inference_mode():
        out = llm.generate(
            inputs_embeds=ref_embeds(qa, llm, video_emb, question),
            max_new_tokens=NEW,
            do_sample=False,
            stopping_criteria=StoppingCriteriaList([StoppingCriteriaSub()]),
            eos_token_id=qa.tokenizer.eos_token_id,
            pad_token_id=qa.tokenizer.pad_token_id,
        )[0].tolist()
    if out and out[0] == 0:
        out = out[1:]
    if out and out[0] == 1:
        out = out[1:]
    for end in (stop, qa.tokenizer.eos_token_id):
        if end in out:
            out = out[: out.index(end)]
    return out


def _video_emb(state, frames: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return ref_encode_long_video(state, frames.float(), HEADS)[1]


@pytest.mark.parametrize("mode", ["global", "breakpoint"])
def test_spliced_logits_match_moviechat(setup, mode) -> None:  # type: ignore[no-untyped-def]
    qa, llm, state = setup
    mem = _memory(250, 10)
    if mode == "global":
        frames = mem.tokens
    else:
        assert mem.recent_tokens is not None
        frames = ref_breakpoint(mem.tokens, mem.recent_tokens[:-1], mem.recent_tokens[-1:], 256)
    emb = _video_emb(state, frames)
    prompt = qa.prompts.build(QUESTIONS[0], [], tiny.QUERIES)
    ours = qa.logits(prompt, qa.visual_features(frames))
    with torch.inference_mode():
        ref = llm(inputs_embeds=ref_embeds(qa, llm, emb, QUESTIONS[0])).logits[0]
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("reuse, batch", [(True, 1), (False, 3)])
def test_greedy_answers_are_token_identical_in_both_modes(setup, reuse, batch) -> None:  # type: ignore[no-untyped-def]
    qa, llm, state = setup
    mem = _memory(250, 10)
    t = float(mem.recent_timestamps[-1])  # type: ignore[index]
    qs = [Question(q) for q in QUESTIONS] + [Question(q, time_s=t) for q in QUESTIONS]
    got = answer(
        qa, mem, qs, GenerationSettings(max_new_tokens=NEW), duration_s=t + 1,
        reuse_prefix=reuse, batch_size=batch,
    )  # fmt: skip
    assert mem.recent_tokens is not None
    cut = ref_breakpoint(mem.tokens, mem.recent_tokens[:-1], mem.recent_tokens[-1:], 256)
    views = {None: _video_emb(state, mem.tokens), t: _video_emb(state, cut)}
    answers = set()
    for q, a in zip(qs, got, strict=True):
        assert a.status == "answered", a.error
        assert a.tokens == ref_answer(qa, llm, views[q.time_s], q.question), (q, a)
        answers.add(tuple(a.tokens))
    assert a.slots == 256  # the breakpoint view was cut to the table
    assert len(answers) > 1  # answers depend on the question and the view


def test_views_fit_the_position_table(setup) -> None:  # type: ignore[no-untyped-def]
    """A global view over 256 slots is consolidated to 256; a breakpoint before any
    long-term slot ends sees the short-term frames only, as MovieChat does."""
    from videomem.qa.fit import limit_slots
    from videomem.qa.visual import breakpoint_visual, global_visual

    qa, llm, state = setup
    assert qa.max_slots == 256
    big = _memory(300, 0)
    (a,) = answer(qa, big, ["what is it ?"], GenerationSettings(max_new_tokens=2))
    assert a.status == "answered" and a.slots == 256 and a.memory_slots == 300
    assert len(limit_slots(global_visual(big), 256)) == 256
    early = _memory(3, 4)
    early.end_s[:] = 100.0  # no long-term slot ends before t
    early.start_s[:] = 50.0
    view = breakpoint_visual(early, 3.45)
    assert view.recent == 4 and len(view) == 4
    cut = limit_slots(view, 256)
    assert early.recent_tokens is not None
    torch.testing.assert_close(cut.tokens, early.recent_tokens[:3])
