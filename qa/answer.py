"""Answer questions about, and caption, a stored memory.

Design decisions:

* Questions about the same view of a video (every global question; breakpoint
  questions at the same t) share a prefix (system prompt + video). With
  ``reuse_prefix`` it is prefilled once and every question continues from a copy of
  its KV cache; otherwise questions run in left-padded batches of ``batch_size``. Both
  give the tokens one question at a time gives (tests check it).
* Sampling reseeds per question, and never batches, so a sampled answer does not
  depend on which other questions ran with it.
* **Question-aware cuts** (``settings.context == "relevant"`` and a
  :class:`~videomem.qa.relevance.Relevance` for the memory): when a view must be cut
  to K, each question gets the slots relevant to it (``qa.fit``), so questions that
  would share a prefix are answered one by one then; a view that fits is shared.
* Errors are data: a bad question (empty, outside the video, placeholder text) becomes
  an :class:`Answer` with ``status="failed"`` and the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import torch
from videomem.memory.config import MemoryConfig
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import VideomemError
from videomem.pipeline.transcript import SpeechSegment, Transcript
from videomem.qa.fit import SlotScores, fit_visual, limit_slots
from videomem.qa.model import QAModel
from videomem.qa.prompt import Prompt
from videomem.qa.relevance import Relevance
from videomem.qa.subtitles import heard, subtitles_for
from videomem.qa.types import Answer, Caption, GenerationSettings, Question
from videomem.qa.visual import Visual, breakpoint_visual, global_visual


def _failed(q: Question, error: str) -> Answer:
    return Answer(q, status="failed", error=error)


def _no_subtitles(transcript: Transcript | None) -> str | None:
    """Why subtitles cannot be given (None: they can; "no audio" gives none)."""
    if transcript is None:
        return "--subtitles: the video has no transcript; run `videomem transcribe` first"
    if transcript.status == "failed":
        return f"--subtitles: the video's transcription failed: {transcript.error}"
    return None


def _view(
    memory: VideoMemory,
    t: float | None,
    duration_s: float | None,
    video: object | None,
    encoder: object | None,
) -> Visual:
    if t is None:
        return global_visual(memory)
    if not t >= 0 or (duration_s is not None and t > duration_s + 1e-6):
        raise VideomemError(f"time_s={t:g} is outside the video (0 to {duration_s or 0:g} s)")
    return breakpoint_visual(memory, t, video=video, encoder=encoder)


def _scorer(relevance: Relevance | None, questions: Sequence[Question]) -> SlotScores | None:
    """The slot scores of a lone question (a shared view is cut uniformly)."""
    if relevance is None or len(questions) != 1:
        return None
    question = questions[0].question
    return lambda spans: relevance.scores(question, spans)


def _answer_view(
    qa: QAModel,
    view: Visual,
    questions: Sequence[Question],
    settings: GenerationSettings,
    *,
    duration_s: float | None,
    fingerprint: str,
    reuse_prefix: bool,
    batch_size: int,
    memory_config: MemoryConfig,
    heard: Sequence[SpeechSegment] | None = None,
    relevance: Relevance | None = None,
) -> list[Answer]:
    """Answer questions that share one view (so one prefix); ``heard``: the speech
    whose subtitles go beside the slots (None: no subtitles); ``relevance``: scores
    slots for a question-aware cut (None, or ``context="uniform"``: uniform)."""
    out: list[Answer | None] = [None] * len(questions)
    prompts: dict[int, Prompt] = {}
    aware = relevance if settings.context == "relevant" else None
    try:
        shown = view
        if qa.max_slots is not None:
            shown = limit_slots(view, qa.max_slots, memory_config)
        fitted = fit_visual(
            qa,
            shown,
            settings,
            questions,
            duration_s=duration_s,
            memory_config=memory_config,
            heard=heard,
            relevance=_scorer(aware, questions),
        )
    except VideomemError as e:
        return [_failed(q, str(e)) for q in questions]
    if aware is not None and fitted.k is not None and len(questions) > 1:
        # cut to K: each question keeps the slots relevant to it, so no shared prefix
        return [
            a
            for q in questions
            for a in _answer_view(
                qa,
                view,
                [q],
                settings,
                duration_s=duration_s,
                fingerprint=fingerprint,
                reuse_prefix=reuse_prefix,
                batch_size=batch_size,
                memory_config=memory_config,
                heard=heard,
                relevance=aware,
            )
        ]
    view = fitted
    n_tok = qa.layout.slot_counts(view.keep, int(view.tokens.shape[1]))
    subs = None if heard is None else subtitles_for(view.spans, heard)
    for i, q in enumerate(questions):
        try:
            prompts[i] = qa.prompts.build(
                q.question,
                view.spans,
                n_tok,
                style=settings.prompt_style,
                system_prompt=settings.system_prompt,
                duration_s=duration_s,
                subtitles=subs,
            )
        except VideomemError as e:
            out[i] = _failed(q, str(e))
    feats = qa.visual_features(view.tokens, fingerprint, view.keep)
    done: dict[int, tuple[list[int], float]] = {}
    todo = sorted(prompts)
    if reuse_prefix and todo:
        ref = prompts[todo[0]]
        t0 = time.perf_counter()
        cache = qa.prefill(ref, feats)
        share = (time.perf_counter() - t0) / len(todo)
        rest = []
        for i in todo:
            p = prompts[i]
            if p.ids[: p.prefix_len] != ref.ids[: ref.prefix_len]:
                rest.append(i)  # tokenised differently at the boundary: no reuse
                continue
            t0 = time.perf_counter()
            ids = qa.generate_cached(cache, p, settings)
            done[i] = (ids, time.perf_counter() - t0 + share)
        todo = rest
    step = 1 if settings.do_sample else max(1, batch_size)
    for j in range(0, len(todo), step):
        chunk = todo[j : j + step]
        t0 = time.perf_counter()
        results = qa.generate([prompts[i] for i in chunk], [feats] * len(chunk), settings)
        each = (time.perf_counter() - t0) / len(chunk)
        for i, ids in zip(chunk, results, strict=True):
            done[i] = (ids, each)
    for i, (ids, secs) in done.items():
        out[i] = Answer(
            questions[i],
            answer=qa.decode(ids),
            tokens=ids,
            prompt_tokens=len(prompts[i].ids),
            slots=len(view),
            memory_slots=view.slots,
            k=view.k,
            kept_slots=None if view.kept_slots is None else list(view.kept_slots),
            source=view.source,
            seconds=secs,
            dtype=qa.dtype_name,
        )
    return [a for a in out if a is not None]


def answer(
    qa: QAModel,
    memory: VideoMemory,
    questions: Sequence[Question | str],
    settings: GenerationSettings | None = None,
    *,
    duration_s: float | None = None,
    video: object | None = None,
    encoder: object | None = None,
    reuse_prefix: bool = True,
    batch_size: int = 1,
    transcript: Transcript | None = None,
    relevance: Relevance | None = None,
) -> list[Answer]:
    """Answer ``questions`` about one stored memory, in the order given.

    ``duration_s`` is the video's duration (bounds breakpoint times; SmolVLM's prompt
    names it). ``video`` (a :class:`~videomem.qa.session.VideoContext`) and ``encoder``
    let breakpoint questions decode the frames before t again. With
    ``settings.subtitles`` the ``transcript``'s lines go beside the slots (a question
    at t hears only what was said by t); a video never transcribed, or whose
    transcription failed, fails its questions with the reason. ``relevance`` scores
    the memory's slots for a question-aware cut to K (``settings.context``).
    """
    settings = settings or GenerationSettings()
    qs = [q if isinstance(q, Question) else Question(q) for q in questions]
    if settings.subtitles:
        problem = _no_subtitles(transcript)
        if problem:
            return [_failed(q, problem) for q in qs]
    fingerprint = memory.encoder_fingerprint
    groups: dict[float | None, list[int]] = {}
    for i, q in enumerate(qs):
        groups.setdefault(q.time_s, []).append(i)
    results: dict[int, Answer] = {}
    for t, idx in groups.items():
        try:
            view = _view(memory, t, duration_s, video, encoder)
            if len(view) == 0:
                raise VideomemError(f"nothing of the video precedes t={t:g}s")
        except VideomemError as e:
            for i in idx:
                results[i] = _failed(qs[i], str(e))
            continue
        answers = _answer_view(
            qa,
            view,
            [qs[i] for i in idx],
            settings,
            duration_s=duration_s,
            fingerprint=fingerprint,
            reuse_prefix=reuse_prefix,
            batch_size=batch_size,
            memory_config=memory.memory_config,
            heard=heard(transcript, t) if settings.subtitles else None,
            relevance=relevance,
        )
        for i, a in zip(idx, answers, strict=True):
            results[i] = a
    return [results[i] for i in range(len(qs))]


# --------------------------------------------------------------------------- captions

GLOBAL_CAPTION = "Describe this video in detail."
DENSE_CAPTION = "Describe what happens in this part of the video."


def segments(memory: VideoMemory, every_s: float | None) -> list[tuple[int, int]]:
    """[start, stop) slot ranges of consecutive slots, each spanning at most
    ``every_s`` seconds (a longer slot is a segment alone); None = one per slot."""
    L = len(memory)
    if every_s is None:
        return [(i, i + 1) for i in range(L)]
    if not every_s > 0:
        raise VideomemError("dense caption interval must be > 0 seconds")
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(1, L + 1):
        if i == L or float(memory.end_s[i]) - float(memory.start_s[start]) > every_s:
            out.append((start, i))
            start = i
    return out


def caption(
    qa: QAModel,
    memory: VideoMemory,
    settings: GenerationSettings | None = None,
    *,
    dense_every: float | None = None,
    dense: bool = True,
    duration_s: float | None = None,
    batch_size: int = 4,
) -> list[Caption]:
    """A global caption of the memory, then (``dense``) one per segment of consecutive
    slots (:func:`segments`). Segments are answered in left-padded batches."""
    settings = settings or GenerationSettings()
    if settings.subtitles:
        raise VideomemError("--subtitles is for questions (ask, qa), not captions")
    if len(memory) == 0:
        raise VideomemError(f"video {memory.video_id}: empty memory, nothing to caption")
    fp = memory.encoder_fingerprint
    (glob,) = answer(qa, memory, [GLOBAL_CAPTION], settings, duration_s=duration_s)
    start, end = float(memory.start_s[0]), float(memory.end_s[-1])
    caps = [Caption("global", start, end, glob.answer, glob.tokens, glob.status, glob.error)]
    if not dense:
        return caps
    views = []
    for a, b in segments(memory, dense_every):
        sub = replace(
            memory,
            tokens=memory.tokens[a:b],
            keep=None if memory.keep is None else memory.keep[a:b],
            start_s=memory.start_s[a:b],
            end_s=memory.end_s[a:b],
            sizes=memory.sizes[a:b],
            embedding=None,
            recent_tokens=None,
            recent_timestamps=None,
        )
        views.append(sub)
    step = 1 if settings.do_sample else max(1, batch_size)
    for j in range(0, len(views), step):
        chunk = views[j : j + step]
        prompts, feats, fitted = [], [], []
        for sub in chunk:
            view = global_visual(sub)
            if qa.max_slots is not None:
                view = limit_slots(view, qa.max_slots, memory.memory_config)
            view = fit_visual(
                qa,
                view,
                settings,
                [Question(DENSE_CAPTION)],
                duration_s=duration_s,
                memory_config=memory.memory_config,
            )
            fitted.append(view)
            prompts.append(
                qa.prompts.build(
                    DENSE_CAPTION,
                    view.spans,
                    qa.layout.slot_counts(view.keep, int(view.tokens.shape[1])),
                    style=settings.prompt_style,
                    system_prompt=settings.system_prompt,
                    duration_s=duration_s,
                )
            )
            feats.append(qa.visual_features(view.tokens, fp, view.keep))
        with torch.inference_mode():
            results = qa.generate(prompts, feats, settings)
        for sub, ids in zip(chunk, results, strict=True):
            caps.append(
                Caption(
                    "dense",
                    float(sub.start_s[0]),
                    float(sub.end_s[-1]),
                    qa.decode(ids),
                    ids,
                )
            )
    return caps
