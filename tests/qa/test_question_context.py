"""Issue 21's question-aware context end to end: a needle slot that the uniform fit
merges away and the question-aware one keeps whole, with real components (a real
LanceDB store holding the memory and its tags, the real all-MiniLM-L6-v2, SmolLM2
reading the text timeline, a tiny random LLaVA reading stored tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from videomem.memory.config import MemoryConfig
from videomem.memory.store import Store, VideoCommit, VideoRecord
from videomem.memory.types import VideoMemory
from videomem.qa.timeline import Line, render_line
from videomem.qa.types import GenerationSettings

N, NEEDLE = 24, 17
QUESTION = "Is there a red umbrella in the video?"


def _tags(i: int) -> str:
    if i == NEEDLE:
        return "red umbrella 0.61, street 0.20"
    return f"street 0.5{i % 7}, car 0.2{i % 3}, tree 0.10"


def _store(path: Path, mem: VideoMemory) -> tuple[Store, VideoRecord]:
    """``mem`` committed to a real store with one tags row per slot (the needle's
    names a red umbrella; the rest a street)."""
    rec = VideoRecord("v1", mem.encoder_fingerprint, "cfg", "indexed", "/x.mp4", model="m")
    st = Store(path, writer=True)
    (done,) = st.commit([VideoCommit(rec, mem)])
    rows = [
        dict(
            video_id="v1",
            encoder_fingerprint=mem.encoder_fingerprint,
            config_hash="cfg",
            run_id=done.run_id,
            kind="tags",
            start_s=float(mem.start_s[i]),
            end_s=float(mem.end_s[i]),
            text=_tags(i),
            model="tagger",
            settings="{}",
        )  # fmt: skip
        for i in range(len(mem))
    ]
    st.qa.add("captions", rows)
    return st, st.latest("v1")


class Recording:
    """The real SmolLM2 (:class:`TextLLM`), recording every prompt it is given."""

    def __init__(self, llm: Any) -> None:
        self.llm, self.name, self.dtype = llm, llm.name, llm.dtype
        self.context_len = llm.context_len
        self.seen: list[list[dict[str, str]]] = []

    def count_prompt(self, messages: list[dict[str, str]]) -> int:
        return int(self.llm.count_prompt(messages))

    def count_text(self, text: str) -> int:
        return int(self.llm.count_text(text))

    def reply(self, messages: list[dict[str, str]], settings: GenerationSettings) -> Any:
        self.seen.append(messages)
        return self.llm.reply(messages, settings)


def _timeline_memory() -> VideoMemory:
    t = torch.arange(N, dtype=torch.float64)
    return VideoMemory(
        video_id="v1", tokens=torch.zeros(N, 2, 4, dtype=torch.float16),
        sizes=torch.ones(N, dtype=torch.int64), start_s=t * 5, end_s=t * 5 + 5,
        embedding=None, encoder_fingerprint="fp", memory_config=MemoryConfig(), frames_seen=N,
    )  # fmt: skip


@pytest.mark.slow
def test_timeline_needle_lost_by_uniform_kept_by_relevant(smollm2: Path, tmp_path: Path) -> None:
    from videomem.jobs.ask import Asker
    from videomem.qa.textllm import TextLLM

    llm = Recording(TextLLM(str(smollm2), "cpu", "float32", name="smollm2"))
    asker = Asker(llm=llm)
    st, _ = _store(tmp_path / "store", _timeline_memory())
    needle = render_line(Line(NEEDLE * 5.0, NEEDLE * 5.0 + 5, _tags(NEEDLE)))
    rows = {}
    with st:
        for context in ("uniform", "relevant"):
            settings = GenerationSettings(max_new_tokens=2, max_context=260, context=context)
            row, a = asker.ask(st, "v1", QUESTION, settings=settings)
            assert a.status == "answered", a.error
            assert a.memory_slots == N and a.slots < N  # the timeline was cut
            rows[context] = (row, llm.seen[-1][-1]["content"])
    (uniform, shown_u), (relevant, shown_r) = rows["uniform"], rows["relevant"]
    assert needle not in shown_u and uniform["kept_slots"] is None  # merged away
    assert needle in shown_r and relevant["kept_slots"] == [NEEDLE]  # word for word
    assert uniform["settings_hash"] != relevant["settings_hash"]
    # the ends of the video survive either way
    for shown in (shown_u, shown_r):
        assert "Timeline:\n00:00–" in shown and "–02:00" in shown


def _vlm_memory(enc: Any) -> VideoMemory:
    """A static shot: every frame the same picture with a little noise, so the slots'
    tokens are all alike and nothing visual tells the needle slot apart."""
    h, w = enc.input_size
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, h, w, 3)).astype(np.int16)
    frames = np.clip(base + rng.integers(-6, 7, (N, h, w, 3)), 0, 255).astype(np.uint8)
    ts = np.arange(N, dtype=np.float64) * 5
    tokens = enc.encode(frames, ts).tokens.half()
    return VideoMemory(
        video_id="v1", tokens=tokens, sizes=torch.ones(N, dtype=torch.int64),
        start_s=torch.from_numpy(ts), end_s=torch.from_numpy(ts + 5), embedding=None,
        encoder_fingerprint=enc.fingerprint, memory_config=MemoryConfig(), frames_seen=N,
    )  # fmt: skip


@pytest.mark.slow
def test_vlm_needle_slot_reaches_the_prompt_whole(tmp_path: Path) -> None:
    from videomem.encoders import load_encoder
    from videomem.encoders.testing import tiny_checkpoint
    from videomem.jobs.relevance import RelevanceSource
    from videomem.jobs.rows import answer_row
    from videomem.qa import answer, load_qa_model

    ckpt = tiny_checkpoint("llava", tmp_path / "cache")
    enc = load_encoder(ckpt, "cpu", "float32")
    qa = load_qa_model(str(ckpt), "cpu", "float32")
    st, rec = _store(tmp_path / "store", _vlm_memory(enc))
    fed: list[torch.Tensor] = []
    real = qa.visual_features

    def spy(tokens: torch.Tensor, fingerprint: str, keep: Any = None) -> Any:  # recorded
        fed.append(tokens)
        return real(tokens, fingerprint, keep)

    qa.visual_features = spy  # type: ignore[method-assign]
    with st:
        mem = st.load_memory("v1")
        source = RelevanceSource()
        wide = answer(qa, mem, [QUESTION], GenerationSettings(max_new_tokens=2))[0]
        budget = wide.prompt_tokens // 3
        got = {}
        for context in ("uniform", "relevant"):
            settings = GenerationSettings(max_new_tokens=2, max_context=budget, context=context)
            (a,) = answer(qa, mem, [QUESTION], settings, relevance=source.for_memory(st, rec, mem))
            assert a.status == "answered" and a.k is not None and a.slots == a.k < N
            got[context] = (a, fed[-1], answer_row("q", "v1", a, "tiny", settings, rec))
    needle = mem.tokens[NEEDLE]
    whole = lambda shown: any(torch.equal(row, needle) for row in shown)  # noqa: E731
    (ua, u_tokens, u_row), (ra, r_tokens, r_row) = got["uniform"], got["relevant"]
    assert ua.k == ra.k  # the same K: only which slots differs
    assert not whole(u_tokens) and ua.kept_slots is None and u_row["kept_slots"] is None
    assert whole(r_tokens) and ra.kept_slots == [NEEDLE] and r_row["kept_slots"] == [NEEDLE]
    # questions sharing the cut view are answered one by one, each as it is alone
    with Store(tmp_path / "store") as ro:
        rel = source.for_memory(ro, rec, mem)
        settings = GenerationSettings(max_new_tokens=2, max_context=budget)
        pair = answer(qa, mem, [QUESTION, "Where is the car?"], settings, relevance=rel)
        alone = [
            answer(qa, mem, [q], settings, relevance=rel)[0]
            for q in (QUESTION, "Where is the car?")
        ]
    assert [a.tokens for a in pair] == [a.tokens for a in alone]
    assert [a.kept_slots for a in pair] == [a.kept_slots for a in alone]
    assert pair[0].kept_slots == [NEEDLE]
    # written to and read back from the store's answers table
    with Store(tmp_path / "store", writer=True) as st2:
        st2.qa.add("answers", [u_row, r_row])
        back = {r["settings_hash"]: r["kept_slots"] for r in st2.qa.read("answers")}
    assert back == {u_row["settings_hash"]: None, r_row["settings_hash"]: [NEEDLE]}
