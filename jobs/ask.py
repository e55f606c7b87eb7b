"""One question about one stored video (``videomem ask``, the ask form of ``serve``).

Two answerers behind one request (:class:`videomem.jobs.api.AskRequest`): the memory's
VLM (stored visual tokens in the prompt; breakpoint questions decode the frames at the
asked time again), or with ``llm`` a text LLM reading the video's text timeline (its
tags, captions and transcript). Both return the answer and the ``answers`` row a bulk
job would write for it, so ``ask --json`` and ``qa`` print the same shape. Nothing is written.

Design decisions:

* :class:`Asker` is warm: it keeps the models it loaded (one QA session per model and
  encoder fingerprint, one text LLM) and answers many questions, against any open
  store the caller passes. ``api.ask`` builds a one-shot asker, so the CLI and the
  server share one code path.
* The text LLM may be given as a name (loaded on first use) or as any
  :class:`~videomem.qa.textllm.ChatModel`, so a caller can bring its own model.
* It also keeps what scores slots for a question-aware cut to K
  (:class:`~videomem.jobs.relevance.RelevanceSource`: the sentence encoder and each
  memory's line vectors), so a warm asker's cut costs one question embedding.
* An asker is not thread-safe: generation is serialised by its caller (the server
  runs it on one worker thread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from videomem.jobs.relevance import RelevanceSource
from videomem.jobs.rows import answer_row
from videomem.jobs.videos import resolve_video
from videomem.pipeline.errors import VideomemError
from videomem.qa.types import GenerationSettings

if TYPE_CHECKING:
    from videomem.jobs.api import AskRequest
    from videomem.memory.store import Store
    from videomem.qa import Answer
    from videomem.qa.session import QASession
    from videomem.qa.textllm import ChatModel

__all__ = ["Asker", "ask_memory", "ask_timeline"]


class Asker:
    """Answers questions about stored videos with models loaded once.

    ``llm``: answer from the text timeline with this text LLM (a name, or a
    :class:`ChatModel`); None: with the memory's VLM (``model``: another checkpoint
    of the same encoder).
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        llm: str | ChatModel | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype
        self._llm_spec = llm
        self._llm: ChatModel | None = None if isinstance(llm, str | None) else llm
        self._sessions: dict[tuple[str, str], QASession] = {}
        self.relevance = RelevanceSource()

    @property
    def llm_name(self) -> str | None:
        """The text LLM's name, or None when the memory's VLM answers."""
        spec = self._llm_spec
        return spec if isinstance(spec, str | None) else spec.name

    @property
    def loaded(self) -> bool:
        """Whether a model has been loaded (a text LLM, or a VLM session)."""
        return bool(self._sessions) or (isinstance(self._llm_spec, str) and self._llm is not None)

    def chat_model(self) -> ChatModel:
        """The text LLM, loaded on first use."""
        if self._llm is None:
            from videomem.qa.textllm import TextLLM

            name = self.llm_name or ""
            self._llm = TextLLM(name, self.device, self.dtype, name=name)
        return self._llm

    def ask(
        self,
        store: Store,
        video: str,
        question: str,
        at: float | None = None,
        settings: GenerationSettings | None = None,
    ) -> tuple[dict[str, Any], Answer]:
        """The answer to ``question`` about ``video`` (an id, prefix or file) and its
        ``answers`` row (not written)."""
        settings = settings or GenerationSettings()
        if self._llm_spec is not None:
            return self._ask_timeline(store, video, question, at, settings)
        return self._ask_memory(store, video, question, at, settings)

    def _ask_memory(
        self,
        st: Store,
        video: str,
        question: str,
        at: float | None,
        settings: GenerationSettings,
    ) -> tuple[dict[str, Any], Answer]:
        from videomem.qa import Question, VideoContext, answer, load_for_record

        vid = resolve_video(st, video)
        rec = st.latest(vid)
        key = (self.model or rec.model, rec.encoder_fingerprint)
        if key not in self._sessions or rec.status != "indexed":
            self._sessions[key] = load_for_record(rec, self.model, self.device, self.dtype)
        session = self._sessions[key]
        mem = st.load_memory(
            vid, encoder_fingerprint=rec.encoder_fingerprint, config_hash=rec.config_hash
        )
        transcript = st.speech.get(vid) if settings.subtitles else None
        (a,) = answer(
            session.qa,
            mem,
            [Question(question, at)],
            settings,
            duration_s=rec.duration_s,
            video=VideoContext.from_record(rec),
            encoder=session.encoder,
            transcript=transcript,
            relevance=self.relevance.for_memory(st, rec, mem),
        )
        return answer_row("", vid, a, session.model, settings, rec), a

    def _ask_timeline(
        self,
        st: Store,
        video: str,
        question: str,
        at: float | None,
        settings: GenerationSettings,
    ) -> tuple[dict[str, Any], Answer]:
        from videomem.qa import Question
        from videomem.qa.textllm import TimelineAnswerer

        vid = resolve_video(st, video)
        rec = st.latest(vid)
        if rec.status != "indexed":
            raise VideomemError(f"video {vid} failed to index: {rec.error or 'unknown error'}")
        llm = self.chat_model()
        # the timeline, but not this LLM's own captions (a caption must not feed an answer)
        captions = [c for c in st.qa.captions(vid, rec) if c["model"] != llm.name]
        transcript = st.speech.get(vid)  # what is said, when it was transcribed
        (a,) = TimelineAnswerer(llm, relevance=self.relevance.text).answer(
            captions, [Question(question, at)], settings, rec.duration_s, transcript
        )
        return answer_row("", vid, a, llm.name, settings, rec), a


def _one_shot(request: AskRequest, llm: str | None) -> tuple[dict[str, Any], Answer]:
    from videomem.memory.store import Store

    asker = Asker(model=request.model, llm=llm, device=request.device, dtype=request.dtype)
    with Store(request.store, storage_options=request.storage_options) as st:
        return asker.ask(st, request.video, request.question, request.at, request.settings)


def ask_memory(request: AskRequest) -> tuple[dict[str, Any], Answer]:
    """Answer from the video's memory with its VLM (or ``request.model``)."""
    return _one_shot(request, None)


def ask_timeline(request: AskRequest) -> tuple[dict[str, Any], Answer]:
    """Answer from the video's text timeline with the text LLM ``request.llm``."""
    return _one_shot(request, request.llm or "")
