"""Question answering and captioning from stored memories.

``load_for_record(record)`` loads the VLM whose encoder made a stored memory (and
checks it did); ``answer(session.qa, memory, questions)`` and ``caption(...)`` run it.
Modules: ``layout`` (how each family lays out visual tokens), ``prompt`` (chat
template -> ids), ``model`` (the VLM taking stored tokens), ``visual`` (global and
breakpoint views), ``fit`` (context fitting), ``relevance`` and ``selection`` (a
question-aware cut to K: slot scores, which slots stay whole), ``answer`` (answers
and captions), ``session`` (loading for a store record), ``types`` (modes,
questions, answers, captions, generation settings, the QA error).
"""

from videomem.qa.answer import answer, caption
from videomem.qa.model import QAModel, load_qa_model
from videomem.qa.session import QASession, VideoContext, load_for_record
from videomem.qa.types import Answer, Caption, GenerationSettings, Mode, QAError, Question

__all__ = [
    "Answer",
    "Caption",
    "GenerationSettings",
    "Mode",
    "QAError",
    "QAModel",
    "QASession",
    "Question",
    "VideoContext",
    "answer",
    "caption",
    "load_for_record",
    "load_qa_model",
]
