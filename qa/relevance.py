"""How relevant each slot of a view is to a question (MovieChat+/ReKV-style selection).

What can score a slot, in the order it is used:

1. **Slot text**: the tags, dense captions and speech lines the store holds for the
   memory, each with its span, embedded with the sentence encoder (all-MiniLM-L6-v2)
   and compared (cosine) with the question embedded the same way. A view slot scores
   the best of the lines that overlap it. Text first because it exists for every
   family once ``tag``/``caption``/``transcribe`` ran, and a line names what a slot
   shows in the words a question uses.
2. **The memory's own text tower** (CLIP/SigLIP only): the slots' stored embeddings
   against the question embedded by the checkpoint that made them.
3. Nothing (no text, no text tower): ``None``, and the caller keeps today's uniform
   merge.

Design decisions:

* **Scores by span, not by index.** A view is not always the stored memory (a
  breakpoint view ends at t and may hold frames decoded again, MovieChat's views are
  cut to its table first), so a view slot is scored by the lines whose spans overlap
  it. A slot is taken to run until the next slot starts (stored spans run from a
  slot's first frame to its last, so a line said between two frames still lands
  somewhere); a slot no line overlaps scores the lowest score of the view.
* **What does not depend on the question is cached**: the lines' vectors, per memory
  run (its lines' texts), in an :class:`EmbeddingCache` the long-lived holder keeps
  (``jobs.ask.Asker``, the QA worker). A question then costs one sentence embedding
  plus a ``[slots, lines]`` overlap: well under the 50 ms goal at 256 slots on a CPU
  (bench/relevance.py).
* The encoders come in as plain ``texts -> [T, E]`` callables, loaded lazily (the
  sentence encoder only once a cut is needed), so this module loads no model itself.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from videomem.pipeline.errors import VideomemError
from videomem.pipeline.transcript import SpeechSegment
from videomem.qa.layout import Span
from videomem.qa.tags import tag_names

log = logging.getLogger(__name__)

#: texts -> embeddings [T, E]
Embed = Callable[[Sequence[str]], torch.Tensor]


@dataclass(frozen=True)
class SlotText:
    """A line of text about a stretch of the video: tags, a dense caption, speech."""

    start_s: float
    end_s: float
    text: str


def slot_texts(
    captions: Sequence[dict[str, Any]], speech: Sequence[SpeechSegment] = ()
) -> list[SlotText]:
    """The lines that can score slots: ``tags`` and ``dense`` caption rows (the
    store's ``captions`` of the memory's run; global captions span everything and
    score nothing apart) and the transcript's segments, in time order."""
    out = []
    for r in captions:
        text = r.get("text")
        if r.get("kind") not in ("tags", "dense") or not text:
            continue
        text = tag_names(str(text)) if r["kind"] == "tags" else str(text)
        out.append(SlotText(float(r["start_s"]), float(r["end_s"]), text))
    out += [SlotText(s.start_s, s.end_s, s.text.strip()) for s in speech if s.text.strip()]
    return sorted(out, key=lambda x: (x.start_s, x.end_s, x.text))


class EmbeddingCache:
    """A sentence encoder loaded on first use, and the vectors of the texts it has
    embedded (a memory run's lines; the least recently used dropped past ``size``
    texts, about 1.5 KB each for MiniLM)."""

    def __init__(self, load: Callable[[], Embed], size: int = 20_000) -> None:
        self._load = load
        self._embed: Embed | None = None
        self._size = size
        self._cached: OrderedDict[str, torch.Tensor] = OrderedDict()

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit vectors [T, E] of ``texts`` (not cached: a question)."""
        if self._embed is None:
            self._embed = self._load()
        return F.normalize(self._embed(list(texts)).float(), dim=-1)

    def vectors(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit vectors [T, E] of ``texts``, each embedded once."""
        new = list(dict.fromkeys(t for t in texts if t not in self._cached))
        if new:
            for t, v in zip(new, self.embed(new), strict=True):
                self._cached[t] = v
        for t in texts:
            self._cached.move_to_end(t)
        out = torch.stack([self._cached[t] for t in texts]) if texts else torch.zeros(0, 0)
        while len(self._cached) > self._size:
            self._cached.popitem(last=False)
        return out


def _tensor_spans(spans: Sequence[Span] | torch.Tensor) -> torch.Tensor:
    if isinstance(spans, torch.Tensor):
        return spans.to(torch.float64).reshape(-1, 2)
    return torch.tensor([[s.start_s, s.end_s] for s in spans], dtype=torch.float64).reshape(-1, 2)


def span_scores(
    sim: torch.Tensor, items: torch.Tensor, spans: Sequence[Span] | torch.Tensor
) -> torch.Tensor | None:
    """Each view slot's best ``sim`` [T] among the items (spans ``items`` [T, 2]) that
    overlap it (see the module docstring): float32 [V]; None when no item overlaps
    any slot."""
    view = _tensor_spans(spans)
    if view.shape[0] == 0 or items.shape[0] == 0:
        return None
    start, end = view[:, 0], view[:, 1]
    nxt = torch.cat([start[1:], end[-1:] + 1e-6])
    stop = torch.maximum(end, nxt)
    s, e = items[:, 0][None, :], items[:, 1][None, :]
    lo = torch.maximum(s, start[:, None])
    hi = torch.minimum(e, stop[:, None])
    point = (s == e) & (s >= start[:, None]) & (s < stop[:, None])
    hit = (hi > lo) | point  # [V, T]
    if not bool(hit.any()):
        return None
    best = torch.where(hit, sim.float()[None, :], torch.tensor(float("-inf"))).amax(dim=1)
    seen = torch.isfinite(best)
    return torch.where(seen, best, best[seen].min())


class Relevance:
    """Scores a memory's view slots against a question.

    ``lines``: the memory's :func:`slot_texts`, or a function reading them (called on
    the first question that needs a cut); ``text``: the sentence encoder's cache
    (None: no text scoring). ``slot_spans`` [L, 2] and ``slot_embedding`` [L, E]: the
    stored memory's slots, scored with ``tower`` (the memory's own text tower, for
    CLIP/SigLIP; None otherwise) when no line can score."""

    def __init__(
        self,
        lines: Sequence[SlotText] | Callable[[], Sequence[SlotText]] = (),
        text: EmbeddingCache | None = None,
        *,
        slot_spans: torch.Tensor | None = None,
        slot_embedding: torch.Tensor | None = None,
        tower: Embed | None = None,
    ) -> None:
        self._read = lines if callable(lines) else (lambda: lines)
        self._lines: list[SlotText] | None = None
        self.text = text
        self._slots = (
            None
            if slot_spans is None or slot_embedding is None
            else (slot_spans.to(torch.float64), F.normalize(slot_embedding.float(), dim=-1))
        )
        self.tower = tower if self._slots is not None else None

    @property
    def lines(self) -> list[SlotText]:
        """The lines that score (read once; none without a sentence encoder)."""
        if self._lines is None:
            self._lines = list(self._read()) if self.text is not None else []
            self._items = torch.tensor(
                [[x.start_s, x.end_s] for x in self._lines], dtype=torch.float64
            ).reshape(-1, 2)
        return self._lines

    @property
    def source(self) -> str | None:
        """What scores: ``"text"``, ``"tower"``, or None (nothing can)."""
        if self.lines:
            return "text"
        return "tower" if self.tower is not None else None

    def scores(self, question: str, spans: Sequence[Span] | torch.Tensor) -> torch.Tensor | None:
        """float32 [V]: how relevant each view slot (``spans``) is to ``question``;
        None when nothing can score (the caller merges uniformly)."""
        try:
            if self.lines and self.text is not None:
                vecs = self.text.vectors([x.text for x in self.lines])
                sim = vecs @ self.text.embed([question])[0]
                return span_scores(sim, self._items, spans)
            if self.tower is not None and self._slots is not None:
                items, slots = self._slots
                q = F.normalize(self.tower([question]).float(), dim=-1)[0]
                return span_scores(slots @ q, items, spans)
        except (VideomemError, OSError, ValueError) as e:  # nothing to score with: uniform
            log.info("question-aware context unavailable, merging uniformly: %s", e)
            self._lines, self.tower = [], None
        return None


def text_scores(cache: EmbeddingCache, question: str, texts: Sequence[str]) -> torch.Tensor:
    """float32 [T]: the cosine of each text (a timeline line) with ``question``; an
    empty text scores the lowest of the others."""
    if not texts:
        return torch.zeros(0)
    vecs = cache.vectors(list(texts))
    sim = vecs @ cache.embed([question])[0]
    empty = torch.tensor([not t.strip() for t in texts])
    if bool(empty.all()):
        return torch.zeros(len(texts))
    return torch.where(empty, sim[~empty].min(), sim)
