"""Text-timeline QA: any Hugging Face causal LM answers from a video's text timeline.

Design decisions:

* The model sits behind a small protocol, :class:`ChatModel` (messages in, text out,
  plus token counting), so the answerer, the judge of ``qa.eval`` and the tests can
  use any model; :class:`TextLLM` is the transformers one: ``AutoModelForCausalLM``
  loaded the videomem way (safetensors only, offline-first, frozen) and prompts built
  with the checkpoint's own chat template (the tokenizer's, else its
  ``chat_template.jinja``/``.json``).
* :class:`TimelineAnswerer` has the QA stage's shape: a stored video's caption rows
  and questions in, :class:`videomem.qa.Answer` objects out (errors as failed
  answers), so the QA job's rows, tables, resume and bad-row handling apply unchanged.
  It works for every encoder family: it reads text (tags or captions), never tokens.
* **Question-aware fitting**: given a sentence encoder's
  :class:`~videomem.qa.relevance.EmbeddingCache`, a timeline too long for the context
  keeps the lines most relevant to each question whole (``qa.timeline.fit_relevant``;
  ``settings.context == "uniform"`` or no encoder: every line merges alike).
* Greedy decoding by default (the QA stage's :class:`GenerationSettings`), so answers
  are reproducible and resumable.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from videomem.pipeline.errors import VideomemError
from videomem.pipeline.transcript import Transcript
from videomem.qa.model import generation_kwargs
from videomem.qa.relevance import EmbeddingCache, text_scores
from videomem.qa.timeline import (
    SPEECH_NOTE,
    SYSTEM,
    Line,
    LineScores,
    build_prompt,
    has_speech,
    interleave,
    line_text,
    lines_from_captions,
    lines_from_transcript,
)
from videomem.qa.types import Answer, GenerationSettings, QAError, Question

if TYPE_CHECKING:
    from transformers import BatchEncoding

#: tokens kept free for the answer beyond max_new_tokens (template end tokens)
SLACK = 8


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    #: the generated token ids
    tokens: list[int]
    seconds: float


class ChatModel(Protocol):
    """A text chat model: what the timeline answerer and the judge need."""

    #: the model as the user named it (stored with every answer)
    name: str
    #: context window in tokens (None: unknown, no fitting)
    context_len: int | None
    dtype: str

    def count_prompt(self, messages: list[dict[str, str]]) -> int: ...

    def count_text(self, text: str) -> int: ...

    def reply(self, messages: list[dict[str, str]], settings: GenerationSettings) -> Reply: ...


class TextLLM:
    """A Hugging Face causal LM with its chat template (see the module docstring)."""

    def __init__(
        self,
        model: str,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        name: str | None = None,
    ) -> None:
        from transformers import AutoTokenizer
        from videomem.encoders.hf import (
            LoadSettings,
            load_pretrained,
            local_files_only,
            resolve_checkpoint,
            resolve_device,
            resolve_dtype,
        )
        from videomem.encoders.registry import resolve_model
        from videomem.qa.prompt import load_chat_template

        self.name = name or model
        path, local = resolve_checkpoint(resolve_model(model))
        if not local:
            from videomem.encoders.hf import check_hub

            check_hub(path)
        dev = resolve_device(device)
        settings = LoadSettings(dev, resolve_dtype(dtype, dev), 1, trust_remote_code, model)
        self.model = load_pretrained("AutoModelForCausalLM", path, settings)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                path, trust_remote_code=trust_remote_code, local_files_only=local_files_only(path)
            )
        except (OSError, ValueError) as e:
            raise QAError(f"{model}: cannot load its tokenizer ({e})") from e
        template = load_chat_template(path, self.tokenizer)
        if not template:
            raise QAError(f"{model}: the checkpoint has no chat template (not an instruct model?)")
        self.tokenizer.chat_template = template
        self.device = dev
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        cfg = self.model.config
        self.context_len = int(getattr(cfg, "max_position_embeddings", 0) or 0) or None
        self.eos = self.model.generation_config.eos_token_id
        self.pad = self.tokenizer.pad_token_id
        if self.pad is None:
            self.pad = self.eos[0] if isinstance(self.eos, list) else self.eos

    def _ids(self, messages: list[dict[str, str]]) -> torch.Tensor:
        # return_dict=True gives a BatchEncoding; transformers annotates the return as
        # the union of every shape apply_chat_template can give
        out = cast(
            "BatchEncoding",
            self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            ),
        )
        return out["input_ids"]

    def count_prompt(self, messages: list[dict[str, str]]) -> int:
        return int(self._ids(messages).shape[1])

    def count_text(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def reply(self, messages: list[dict[str, str]], settings: GenerationSettings) -> Reply:
        t0 = time.perf_counter()
        ids = self._ids(messages).to(self.device)
        kwargs = generation_kwargs(settings, self.pad)
        if settings.do_sample and settings.seed is not None:
            torch.manual_seed(settings.seed)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        new = out[0, ids.shape[1] :]
        text = str(self.tokenizer.decode(new, skip_special_tokens=True)).strip()
        return Reply(text, int(ids.shape[1]), new.tolist(), time.perf_counter() - t0)


def context_budget(llm: ChatModel, settings: GenerationSettings) -> int | None:
    """Prompt tokens allowed: the settings' ``max_context`` else the model's, less the
    answer's tokens."""
    ctx = settings.max_context or llm.context_len
    if ctx is None:
        return None
    budget = ctx - settings.max_new_tokens - SLACK
    if budget < 16:
        raise QAError(f"a context of {ctx} tokens leaves no room for a timeline and an answer")
    return budget


class TimelineAnswerer:
    """Answers questions about stored videos from their text timelines."""

    def __init__(self, llm: ChatModel, k: int = 5, relevance: EmbeddingCache | None = None) -> None:
        self.llm = llm
        self.k = k
        #: embeds lines and questions for a question-aware fit (None: uniform)
        self.relevance = relevance

    def _scores(self, question: str, settings: GenerationSettings) -> LineScores | None:
        cache = self.relevance
        if cache is None or settings.context != "relevant":
            return None
        return lambda lines: text_scores(cache, question, [line_text(x) for x in lines])

    def answer(
        self,
        captions: Sequence[dict[str, Any]],
        questions: Sequence[Question],
        settings: GenerationSettings,
        duration_s: float | None = None,
        transcript: Transcript | None = None,
    ) -> list[Answer]:
        """One :class:`Answer` per question (failed ones carry the error); the
        ``transcript``'s speech is interleaved with the caption lines."""
        summary, pictures = lines_from_captions(captions)
        out = []
        for q in questions:
            # a breakpoint question hears only what was said by its time
            lines = interleave(pictures, lines_from_transcript(transcript, q.time_s))
            try:
                out.append(self._one(summary, lines, q, settings, duration_s))
            except VideomemError as e:
                out.append(Answer(q, status="failed", error=str(e)))
        return out

    def _one(
        self,
        summary: list[str],
        lines: list[Line],
        q: Question,
        settings: GenerationSettings,
        duration_s: float | None,
    ) -> Answer:
        if not q.question.strip():
            raise QAError("empty question")
        late = q.time_s is not None and duration_s is not None and q.time_s > duration_s + 0.5
        if q.time_s is not None and (q.time_s < 0 or late):
            raise QAError(f"time {q.time_s}s is outside the video (0–{duration_s}s)")
        if not lines and not summary:
            raise QAError(
                "the video has no timeline yet: run `videomem tag` (or caption, or transcribe)"
            )
        system = settings.system_prompt or (SYSTEM + SPEECH_NOTE if has_speech(lines) else SYSTEM)
        prompt = build_prompt(
            summary,
            lines,
            q.question,
            q.time_s,
            count_prompt=self.llm.count_prompt,
            count_text=self.llm.count_text,
            budget=context_budget(self.llm, settings),
            system=system,
            k=self.k,
            scores=self._scores(q.question, settings),
        )
        r = self.llm.reply(prompt.messages, settings)
        return Answer(
            q,
            answer=r.text,
            prompt_tokens=r.prompt_tokens,
            tokens=list(r.tokens),
            slots=prompt.lines,
            memory_slots=prompt.total_lines,
            kept_slots=prompt.kept_lines,
            source="timeline",
            seconds=r.seconds,
            dtype=self.llm.dtype,
        )

    def caption(
        self,
        captions: Sequence[dict[str, Any]],
        settings: GenerationSettings,
        transcript: Transcript | None = None,
    ) -> Answer:
        """A global caption of the video written from its timeline (speech included)."""
        q = Question("Describe what happens in this video in one or two sentences.")
        rest = [c for c in captions if c["kind"] != "global"]
        # no question to choose lines by: the uniform fit (and a caption's key says so)
        uniform = replace(settings, context="uniform")
        return self.answer(rest, [q], uniform, transcript=transcript)[0]
