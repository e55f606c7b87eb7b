"""A warm searcher: the query encoders loaded once, many searches answered.

``videomem search`` pays ~9 s per call to load the sentence encoder and each
checkpoint's text tower; a server (``videomem serve``) or a script that searches
repeatedly keeps one :class:`Searcher` and pays it once.

Design decisions:

* The searcher holds encoders only, never a store: the caller passes an open
  :class:`~videomem.memory.store.Store` to every call, so one searcher serves any
  number of stores and the store's reads always see its latest committed version.
* Encoders load lazily on the first query that needs them (a text tower per encoder
  fingerprint, as :class:`~videomem.encoders.text.TextTowers` does) under a lock, so
  concurrent first queries load each model once; after that, queries run in parallel
  (the models are only read).
* ``api.search`` is a one-shot searcher: the same code path as the warm one.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from videomem.memory.search import SearchResult, Source
    from videomem.memory.store import Store, VideoRecord

__all__ = ["Searcher"]


class Searcher:
    """Answers text queries over stores with encoders loaded once."""

    def __init__(self, device: str = "cpu") -> None:
        from videomem.encoders.text import TextTowers

        self.device = device
        self._towers = TextTowers(device)
        self._sentence: Any = None
        self._lock = threading.Lock()

    def _text_embedder(self) -> Any:
        with self._lock:
            if self._sentence is None:
                from videomem.encoders.text import sentence_embedder

                self._sentence = sentence_embedder(self.device)
            return self._sentence

    def _tower_for(self, record: VideoRecord) -> Any:
        with self._lock:
            return self._towers(record)

    def search(
        self,
        store: Store,
        query: str,
        *,
        k: int = 10,
        video: str | None = None,
        source: Source = "all",
    ) -> SearchResult:
        """The ``k`` best moments for ``query`` (see :func:`videomem.memory.search.search`)."""
        from videomem.memory.search import search

        return search(
            store,
            query,
            k=k,
            video=video,
            source=source,
            text_embedder=self._text_embedder,
            tower_for=self._tower_for,
        )
