"""The QA stage's types: the question modes, a question and its answer, a caption, the
generation settings that change an answer, and the QA error.

One home for what every QA module and job hands around (the VLM path in ``answer``,
the text-LLM path in ``textllm``, scoring in ``eval``, the jobs), so a mode or a status
is defined once. Plain dataclasses: importing this module loads neither torch nor
transformers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from videomem.pipeline.errors import VideomemError
from videomem.qa.layout import PROMPT_STYLES, PromptStyle


class QAError(VideomemError):
    """The QA stage cannot run for this model or memory (a usage-level error)."""


#: "global": about the whole video; "breakpoint": about the moment ``time_s``
Mode = Literal["global", "breakpoint"]

#: how a memory too long for the context is cut to K slots (see ``qa.fit``):
#: "relevant" keeps the slots most relevant to the question whole, "uniform" merges all
Context = Literal["relevant", "uniform"]
CONTEXTS: tuple[Context, ...] = ("relevant", "uniform")


@dataclass(frozen=True)
class Question:
    """A question; ``time_s`` set = breakpoint mode at that time."""

    question: str
    time_s: float | None = None
    question_id: str | None = None

    @property
    def mode(self) -> Mode:
        return "global" if self.time_s is None else "breakpoint"


@dataclass
class Answer:
    """One answer (or failure) with what produced it."""

    question: Question
    status: Literal["answered", "failed"] = "answered"
    answer: str = ""
    error: str | None = None
    tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    #: slots the prompt showed, and the stored memory's slots before fitting
    slots: int = 0
    memory_slots: int = 0
    #: QA-time consolidation target (None: the memory fit as stored)
    k: int | None = None
    #: slots (timeline lines) kept whole by a question-aware cut, as indices into the
    #: view before it (None: no cut, or a uniform one)
    kept_slots: list[int] | None = None
    #: "memory" or "video" (breakpoint frames decoded again)
    source: str = "memory"
    seconds: float = 0.0
    dtype: str = ""

    @property
    def new_tokens(self) -> int:
        return len(self.tokens)


@dataclass
class Caption:
    """A caption of a whole video (``global``) or of a segment of slots (``dense``)."""

    kind: Literal["global", "dense"]
    start_s: float
    end_s: float
    text: str
    tokens: list[int]
    status: Literal["answered", "failed"] = "answered"
    error: str | None = None


@dataclass(frozen=True)
class GenerationSettings:
    """What changes an answer; its hash is part of the key answers resume on."""

    # Cap on generated tokens per answer.
    max_new_tokens: int = 64
    # Greedy by default: reproducible answers, resumable jobs.
    do_sample: bool = False
    # Sampling temperature and nucleus mass (only when do_sample).
    temperature: float = 1.0
    top_p: float = 1.0
    # Seed of the sampler (each question reseeds, so batching cannot change samples).
    seed: int | None = None
    # Optional system message, rendered by the chat template.
    system_prompt: str | None = None
    # "timestamped" (slot spans as text) or "native" (the processor's exact layout).
    prompt_style: PromptStyle = "timestamped"
    # Context budget in tokens (None: the LM's max positions); past it the memory is
    # consolidated further to K slots at QA time.
    max_context: int | None = None
    # Put the transcript's lines beside the slots they are said in (VLM QA; see
    # videomem.qa.subtitles). Off: the prompt is the plain memory's.
    subtitles: bool = False
    # How a memory too long for the context is cut to K slots: "relevant" keeps the
    # slots most relevant to the question whole (where the store can score them),
    # "uniform" merges every slot alike (the behaviour before this option).
    context: Context = "relevant"

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise QAError("max_new_tokens must be >= 1")
        if self.prompt_style not in PROMPT_STYLES:
            raise QAError(f"unknown prompt style {self.prompt_style!r}; use {PROMPT_STYLES}")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise QAError("sampling needs temperature > 0 and 0 < top_p <= 1")
        if self.context not in CONTEXTS:
            raise QAError(f"unknown context {self.context!r}; use {CONTEXTS}")

    def to_json(self) -> str:
        d = asdict(self)
        if not d["subtitles"]:  # off: the same JSON (and resume key) as before it existed
            del d["subtitles"]
        # "uniform" is what every answer stored before this option was made with, so
        # it keeps their keys; "relevant" (the default) may show other slots, so its
        # answers get a key of their own (a resumed job answers them once again)
        if d["context"] == "uniform":
            del d["context"]
        return json.dumps(d, sort_keys=True)

    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
