"""Keep the search indexes in step with the store: the index, caption, tag and
transcribe jobs call :func:`refresh_after_write` after their commits (``videomem search
--refresh`` calls :func:`refresh` by hand)."""

from __future__ import annotations

import logging
from typing import Any

from videomem.memory.search import ANN_MIN_ROWS, RefreshReport, refresh_search_indexes
from videomem.pipeline.errors import VideomemError

log = logging.getLogger(__name__)


def refresh(store: Any, ann_min_rows: int = ANN_MIN_ROWS) -> RefreshReport:
    """Refresh the search indexes of a store opened as the writer; the sentence
    encoder is loaded only when there is new caption text to embed."""
    from videomem.encoders.text import sentence_embedder

    return refresh_search_indexes(store, sentence_embedder, ann_min_rows)


def refresh_after_write(store: Any) -> None:
    """:func:`refresh` after a job's writes; a failure is logged, never fatal (the
    index can be refreshed later with ``videomem search --refresh``)."""
    try:
        log.info("%s", refresh(store).text())
    except VideomemError as e:
        log.warning("%s; run `videomem search --refresh` later", e)
