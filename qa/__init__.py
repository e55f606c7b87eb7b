"""Question answering and captioning from stored memories.

``load_for_record(record)`` loads the VLM whose encoder made a stored memory (and
checks it did); ``answer(session.qa, memory, questions)`` and ``caption(...)`` run it.
Modules: ``layout`` (how each family lays out visual tokens), ``prompt`` (chat
template -> ids), ``model`` (the VLM taking stored tokens), ``visual`` (global and
breakpoint views), ``fit`` (context fitting), ``answer`` (answers and captions),
``session`` (loading for a store record).
"""

from videomem.qa.answer import Answer, Caption, Question, answer, caption
from videomem.qa.model import GenerationSettings, QAError, QAModel, load_qa_model
from videomem.qa.session import QASession, VideoContext, load_for_record

__all__ = [
    "Answer",
    "Caption",
    "GenerationSettings",
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
