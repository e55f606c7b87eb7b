"""Never overflow the LM's context: consolidate a view to K slots at QA time.

When slots x tokens + the rest of the prompt + ``max_new_tokens`` exceed the budget
(``settings.max_context``, else the LM's max positions), the view is merged further
with the memory's own adjacent merge (``videomem.memory.consolidate_memory``: most
similar temporally adjacent slots first, size-weighted, deterministic) down to the
largest K that fits the longest question. K is recorded with every answer.

Question-aware cut (``settings.context == "relevant"``, the default): when the caller
can score the view's slots against the question (``relevance``; see
``qa.relevance``), the slots clearly most relevant stay whole and only the slots
between them are merged, each gap down to its share of K with the same adjacent merge
(``qa.selection``). The view records which slots stayed whole (``kept_slots``). When
nothing can score, or no slot stands out, the cut is the uniform merge above, slot
for slot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from videomem.memory import consolidate_memory
from videomem.memory.config import MemoryConfig
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import VideomemError
from videomem.pipeline.transcript import SpeechSegment
from videomem.qa.layout import Span
from videomem.qa.model import QAModel
from videomem.qa.selection import choose_whole, plan
from videomem.qa.subtitles import subtitles_for
from videomem.qa.types import GenerationSettings
from videomem.qa.visual import Visual, _spans


def _prompt_len(
    qa: QAModel,
    view: Visual,
    question: str,
    settings: GenerationSettings,
    duration_s: float | None,
    heard: Sequence[SpeechSegment] | None = None,
) -> int:
    return len(
        qa.prompts.build(
            question,
            view.spans,
            qa.layout.slot_counts(view.keep, int(view.tokens.shape[1])),
            style=settings.prompt_style,
            system_prompt=settings.system_prompt,
            duration_s=duration_s,
            subtitles=None if heard is None else subtitles_for(view.spans, heard),
        ).ids
    )


def _merged(view: Visual, k: int, memory_config: MemoryConfig) -> Visual:
    mem = VideoMemory(
        video_id="",
        tokens=view.tokens,
        sizes=view.sizes,
        start_s=torch.tensor([s.start_s for s in view.spans], dtype=torch.float64),
        end_s=torch.tensor([s.end_s for s in view.spans], dtype=torch.float64),
        embedding=None,
        encoder_fingerprint="",
        memory_config=memory_config,
        frames_seen=int(view.sizes.sum()),
        keep=view.keep,
    )
    out = consolidate_memory(mem, k)  # merged keep: the union of the merged slots'
    return replace(
        view,
        tokens=out.tokens,
        spans=_spans(out.start_s, out.end_s),
        sizes=out.sizes,
        k=k,
        keep=out.keep,
    )


def _joined(view: Visual, parts: Sequence[Visual], k: int, kept: Sequence[int]) -> Visual:
    return replace(
        view,
        tokens=torch.cat([p.tokens for p in parts]),
        spans=tuple(s for p in parts for s in p.spans),
        sizes=torch.cat([p.sizes for p in parts]),
        keep=None if view.keep is None else torch.cat([_need_keep(p) for p in parts]),
        k=k,
        kept_slots=tuple(kept),
    )


def _need_keep(part: Visual) -> torch.Tensor:
    """A part's keep (a part of a view with keep has one, merged or not)."""
    if part.keep is None:
        raise RuntimeError("a part of a view with token positions lost them")
    return part.keep


#: the slots' relevance to the question, by span (None: nothing can score)
SlotScores = Callable[[Sequence[Span]], "torch.Tensor | None"]


def cut_view(
    view: Visual, k: int, memory_config: MemoryConfig, scores: torch.Tensor | None = None
) -> Visual:
    """``view`` cut to ``k`` slots: with ``scores`` [L] the slots clearly most relevant
    stay whole and each gap between them is merged to its share of ``k``
    (:mod:`videomem.qa.selection`); without, or when none stands out, the uniform
    merge (:func:`_merged`)."""
    kept = [] if scores is None or len(view) <= k else choose_whole(scores, k)
    if not kept:
        return _merged(view, k, memory_config)
    parts = [
        view.select(slice(p.start, p.stop))
        if p.whole
        else _merged(view.select(slice(p.start, p.stop)), p.slots, memory_config)
        for p in plan(kept, len(view), k)
    ]
    return _joined(view, parts, k, kept)


def limit_slots(view: Visual, limit: int, memory_config: MemoryConfig | None = None) -> Visual:
    """At most ``limit`` slots, as MovieChat fits its position table: a breakpoint view
    (``recent`` > 0) is cut as MovieChat's breakpoint mode cuts (oldest short-term
    frames first, then the oldest long-term slots; :func:`breakpoint_keep`); a global
    view over the limit is consolidated to it with the memory's own merge (MovieChat's
    long-term memory never exceeds its table)."""
    from videomem.encoders.moviechat import breakpoint_keep

    if view.recent <= 0:
        if len(view) <= limit:
            return view
        return _merged(view, limit, memory_config or MemoryConfig())
    n_long = len(view) - view.recent
    keep = breakpoint_keep(n_long, view.recent - 1, limit)
    if not keep:  # only the frame at t: MovieChat would have nothing; show that frame
        keep = [len(view) - 1]
    if keep == list(range(len(view))):
        return view
    return replace(view.select(keep), recent=sum(1 for i in keep if i >= n_long))


def fit_visual(
    qa: QAModel,
    view: Visual,
    settings: GenerationSettings,
    questions: Sequence[Any],
    *,
    duration_s: float | None = None,
    memory_config: MemoryConfig | None = None,
    heard: Sequence[SpeechSegment] | None = None,
    relevance: SlotScores | None = None,
) -> Visual:
    """``view`` itself when every question fits, else ``view`` consolidated to the
    largest K that fits the longest question (``k`` set). Raises when one slot is
    already too much. ``heard``: the speech segments whose subtitles the prompt holds
    (they are all kept, beside the merged slots). ``relevance``: scores the view's
    slots for the one question asked (see the module docstring; called only when a
    cut is needed)."""
    budget = settings.max_context or qa.context_len
    if budget is None or len(view) == 0:
        return view
    texts = [q.question if hasattr(q, "question") else str(q) for q in questions]
    texts = [t for t in texts if t.strip()]
    if not texts:
        return view
    longest = max(texts, key=lambda t: len(qa.tokenizer(t).input_ids))
    room = budget - settings.max_new_tokens
    try:
        full = _prompt_len(qa, view, longest, settings, duration_s, heard)
    except VideomemError:
        return view  # a bad question; it fails on its own when prompted
    if full <= room:
        return view
    cfg = memory_config or MemoryConfig()
    L = len(view)
    one = _prompt_len(qa, _merged(view, 1, cfg), longest, settings, duration_s, heard)
    if one > room:
        raise VideomemError(
            f"the prompt does not fit the context ({budget} tokens) even with one slot "
            f"({one} prompt + {settings.max_new_tokens} new tokens)"
        )
    per_slot = (full - one) / max(1, L - 1)
    k = max(1, min(L - 1, int((room - one) // per_slot) + 1))
    scores = relevance(view.spans) if relevance is not None else None
    fitted = cut_view(view, k, cfg, scores)
    while k > 1 and _prompt_len(qa, fitted, longest, settings, duration_s, heard) > room:
        k -= 1
        fitted = cut_view(view, k, cfg, scores)
    return fitted
