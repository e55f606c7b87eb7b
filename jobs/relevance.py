"""What a QA holder scores slots with: the store's slot text of a memory, the sentence
encoder, and the memory's own text tower (``qa.relevance`` does the scoring).

Design decisions:

* One :class:`RelevanceSource` per long-lived holder (``jobs.ask.Asker``, the QA
  workers): it keeps the sentence encoder (loaded on the first cut, not before) and
  the vectors of each memory run's lines, so a second question about a video embeds
  only itself.
* The store is read only when a view must be cut (the lines are read lazily), and
  read again for every such question: a warm server sees tags or a transcript written
  since.
* The memory's text tower is tried only where no line can score; a family without
  one (every VLM) is refused by ``encoders.text`` once per fingerprint, and the cut
  is then uniform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from videomem.qa.relevance import EmbeddingCache, Relevance, SlotText, slot_texts
from videomem.qa.subtitles import heard

if TYPE_CHECKING:
    from videomem.memory.store import Store
    from videomem.memory.types import VideoMemory


def _minilm(device: str) -> Any:
    from videomem.encoders.text import sentence_embedder

    return sentence_embedder(device)


class RelevanceSource:
    """Builds the :class:`~videomem.qa.relevance.Relevance` of a stored memory."""

    def __init__(self, device: str = "cpu") -> None:
        self.text = EmbeddingCache(lambda: _minilm(device))
        self.device = device
        self._towers: Any = None

    def _tower(self, rec: Any) -> Any:
        """``rec``'s text tower's ``encode_text``, loaded on first call; it raises
        (and the scorer falls back) for a family without one."""
        from videomem.encoders.text import TextTowers

        if self._towers is None:
            self._towers = TextTowers(self.device)
        return lambda texts: self._towers(rec)(texts)

    def for_memory(self, store: Store, rec: Any, memory: VideoMemory) -> Relevance:
        """The scorer of ``memory`` (``rec``: its ``videos`` record in ``store``)."""

        def lines() -> list[SlotText]:
            said = heard(store.speech.get(rec.video_id), None)
            return slot_texts(store.qa.captions(rec.video_id, rec), said)

        spans = torch.stack([memory.start_s, memory.end_s], dim=1)
        return Relevance(
            lines,
            self.text,
            slot_spans=spans,
            slot_embedding=memory.embedding,
            tower=self._tower(rec),
        )
