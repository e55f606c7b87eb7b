"""One question about one stored video, answered at once (``videomem ask``).

Two answerers behind one request (:class:`videomem.jobs.api.AskRequest`): the memory's
VLM (stored visual tokens in the prompt; breakpoint questions decode the frames at the
asked time again), or with ``llm`` a text LLM reading the video's text timeline (its
tags, captions and transcript). Both return the answer and the ``answers`` row a bulk job would
write for it, so ``ask --json`` and ``qa`` print the same shape. Nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from videomem.jobs.rows import answer_row
from videomem.jobs.videos import resolve_video
from videomem.pipeline.errors import VideomemError

if TYPE_CHECKING:
    from videomem.jobs.api import AskRequest
    from videomem.qa import Answer


def ask_memory(request: AskRequest) -> tuple[dict[str, Any], Answer]:
    """Answer from the video's memory with its VLM (or ``request.model``)."""
    from videomem.memory.store import Store
    from videomem.qa import Question, VideoContext, answer, load_for_record

    with Store(request.store, storage_options=request.storage_options) as st:
        vid = resolve_video(st, request.video)
        rec = st.latest(vid)
        session = load_for_record(rec, request.model, request.device, request.dtype)
        mem = st.load_memory(
            vid, encoder_fingerprint=rec.encoder_fingerprint, config_hash=rec.config_hash
        )
        transcript = st.transcript(vid) if request.settings.subtitles else None
    (a,) = answer(
        session.qa,
        mem,
        [Question(request.question, request.at)],
        request.settings,
        duration_s=rec.duration_s,
        video=VideoContext.from_record(rec),
        encoder=session.encoder,
        transcript=transcript,
    )
    return answer_row("", vid, a, session.model, request.settings, rec), a


def ask_timeline(request: AskRequest) -> tuple[dict[str, Any], Answer]:
    """Answer from the video's text timeline with the text LLM ``request.llm``."""
    from videomem.memory.store import Store
    from videomem.qa import Question
    from videomem.qa.textllm import TextLLM, TimelineAnswerer

    llm = request.llm or ""
    with Store(request.store, storage_options=request.storage_options) as st:
        vid = resolve_video(st, request.video)
        rec = st.latest(vid)
        if rec.status != "indexed":
            raise VideomemError(f"video {vid} failed to index: {rec.error or 'unknown error'}")
        # the timeline, but not this LLM's own captions (a caption must not feed an answer)
        captions = [c for c in st.captions(vid) if c["model"] != llm]
        transcript = st.transcript(vid)
    answerer = TimelineAnswerer(TextLLM(llm, request.device, request.dtype, name=llm))
    question = Question(request.question, request.at)
    (a,) = answerer.answer(captions, [question], request.settings, rec.duration_s, transcript)
    return answer_row("", vid, a, llm, request.settings, rec), a
