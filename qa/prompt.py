"""Prompt ids for a question about a video, from the tokenizer and the checkpoint's
own chat template.

Design decisions:

* No ``AutoProcessor``: the video families' processors need torchvision. The prompt is
  the chat template rendered by the tokenizer, with the template's visual placeholders
  replaced by the family's expansion (:mod:`videomem.qa.layout`), then tokenised the
  way the processor tokenises its expanded text.
* The prompt is tokenised once, whole, and split at the first token of the question:
  everything before is the *prefix* (system prompt + video) that a KV cache can hold
  for every question about the video. A question whose tokenisation of the prefix part
  differs (a merge across the boundary) is flagged, and answered without reuse.
* A question or system prompt that contains the family's placeholder strings is
  refused: it would add placeholder tokens with no features behind them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videomem.pipeline.errors import VideomemError
from videomem.qa.layout import Layout, MovieChatVideo, PromptStyle, Span


class PromptError(VideomemError):
    """A question that cannot be turned into a prompt (e.g. it holds placeholders)."""


#: BLIP-2 checkpoints ship no chat template; this is the format its model cards use
BLIP2_FORMAT = "Question: {question} Answer:"


@dataclass(frozen=True)
class Prompt:
    """Token ids of one full prompt and where its question starts."""

    ids: list[int]
    #: tokens before the question: system prompt + video (the reusable prefix)
    prefix_len: int
    #: placeholder tokens in the prompt (features that must be spliced in)
    n_visual: int


def load_chat_template(path: str, tokenizer: Any) -> str | None:
    """The checkpoint's chat template: the tokenizer's own, else ``chat_template.jinja``
    or ``chat_template.json`` (processor-level files, as hub checkpoints ship them)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        return template
    root = Path(path)
    jinja, js = root / "chat_template.jinja", root / "chat_template.json"
    if not root.is_dir():  # a hub id: look in the local cache only
        from transformers.utils import cached_file

        for name in ("chat_template.jinja", "chat_template.json"):
            found = cached_file(
                path,
                name,
                local_files_only=True,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
            if found:
                if name.endswith(".jinja"):
                    jinja = Path(found)
                else:
                    js = Path(found)
    if jinja.is_file():
        return jinja.read_text()
    if js.is_file():
        value = json.loads(js.read_text()).get("chat_template")
        return value if isinstance(value, str) else None
    return None


class PromptBuilder:
    """Builds :class:`Prompt` s for one checkpoint (tokenizer + template + layout)."""

    def __init__(self, tokenizer: Any, chat_template: str | None, layout: Layout) -> None:
        self.tokenizer = tokenizer
        self.layout = layout
        self.chat_template = chat_template
        if chat_template is None and layout.item is not None:
            raise PromptError(
                "the checkpoint has no chat template (chat_template.jinja/json or the "
                "tokenizer's); its prompts cannot be built"
            )
        self.feature_id = int(tokenizer.convert_tokens_to_ids(layout.feature_token))

    def _check(self, text: str, what: str) -> None:
        bad = sorted(s for s in self.layout.special_strings() if s in text)
        if bad:
            raise PromptError(f"{what} contains the model's visual placeholder {bad[0]!r}")

    def render(
        self,
        question: str,
        spans: Sequence[Span],
        tokens_per_slot: int | Sequence[int],
        *,
        style: PromptStyle = "timestamped",
        system_prompt: str | None = None,
        duration_s: float | None = None,
        subtitles: Sequence[str] | None = None,
    ) -> tuple[str, int]:
        """The full prompt text and the character offset where the question starts
        (``subtitles``: the words said in each slot's span, beside it)."""
        if not question.strip():
            raise PromptError("empty question")
        self._check(question, "the question")
        if system_prompt:
            self._check(system_prompt, "the system prompt")
        for said in subtitles or ():
            self._check(said, "the transcript")
        parts = self.layout.expand(spans, tokens_per_slot, style, duration_s, subtitles)
        if isinstance(self.layout, MovieChatVideo):  # its one fixed prompt
            head, sep, rest = self.layout.prompt.partition("###")
            prompt = (system_prompt + sep + rest) if system_prompt else self.layout.prompt
            before, _, after = prompt.partition(self.layout.placeholder)
            before, after = (
                before.replace("{question}", question),
                after.replace("{question}", question),
            )
            text = before + parts[0] + after
            return text, text.rindex(question)
        if self.layout.item is None:  # BLIP-2: visual block, BOS, then the plain text
            text = BLIP2_FORMAT.format(question=question)
            if system_prompt:
                text = f"{system_prompt} {text}"
            bos = self.tokenizer.bos_token or ""
            head = "".join(parts) + bos
            return head + text, len(head) + text.rindex(question)
        messages: list[dict[str, Any]] = []
        if system_prompt:
            messages.append(
                {"role": "system", "content": [{"type": "text", "text": system_prompt}]}
            )
        content = [*self.layout.items(len(spans)), {"type": "text", "text": question}]
        messages.append({"role": "user", "content": content})
        rendered: str = self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )
        pieces = rendered.split(self.layout.placeholder)
        if len(pieces) - 1 != len(parts):
            raise PromptError(
                f"the chat template rendered {len(pieces) - 1} {self.layout.placeholder!r} "
                f"placeholders for {len(parts)} expected"
            )
        text = pieces[0] + "".join(p + rest for p, rest in zip(parts, pieces[1:], strict=True))
        return text, text.rindex(question)

    def build(
        self,
        question: str,
        spans: Sequence[Span],
        tokens_per_slot: int | Sequence[int],
        *,
        style: PromptStyle = "timestamped",
        system_prompt: str | None = None,
        duration_s: float | None = None,
        subtitles: Sequence[str] | None = None,
    ) -> Prompt:
        """Tokenise the full prompt once and find the question's first token."""
        text, q_start = self.render(
            question,
            spans,
            tokens_per_slot,
            style=style,
            system_prompt=system_prompt,
            duration_s=duration_s,
            subtitles=subtitles,
        )
        if isinstance(self.layout, MovieChatVideo):
            return self._segments(text, q_start)
        enc = self.tokenizer(
            text,
            add_special_tokens=self.layout.item is not None,
            return_offsets_mapping=True,
        )
        ids = list(enc["input_ids"])
        offsets = enc["offset_mapping"]
        prefix_len = 0
        for i, (_, end) in enumerate(offsets):
            if end > q_start:
                break
            prefix_len = i + 1
        n_visual = sum(1 for t in ids if t == self.feature_id)
        return Prompt(ids=ids, prefix_len=prefix_len, n_visual=n_visual)

    def _segments(self, text: str, q_start: int) -> Prompt:
        """MovieChat's tokenisation (``Chat.get_context_emb``): the text before the
        placeholders with BOS, the text after them without, each on its own; the
        placeholders are one token each."""
        block = self.layout.feature_token * self.layout.queries  # type: ignore[attr-defined]
        cut = text.index(block)
        before, after = text[:cut], text[cut + len(block) :]
        head = list(self.tokenizer(before, add_special_tokens=True)["input_ids"])
        enc = self.tokenizer(after, add_special_tokens=False, return_offsets_mapping=True)
        tail = list(enc["input_ids"])
        q = q_start - (len(text) - len(after))
        in_tail = sum(1 for _, end in enc["offset_mapping"] if end <= q)
        n = self.layout.queries  # type: ignore[attr-defined]
        ids = head + [self.feature_id] * n + tail
        return Prompt(ids=ids, prefix_len=len(head) + n + in_tail, n_visual=n)
