"""Search over a store: the derived search indexes and the query.

* :mod:`.refresh` — keeps the search indexes (``caption_index``, one
  ``slot_index_<digest>`` per encoder) in step with the live memories and captions.
* :mod:`.speech_index` — the transcripts' segments as the ``speech_index`` table.
* :mod:`.query` — ranked (video, time span) moments for a text query.

Both reach the tables only through :class:`videomem.memory.store.Store`; this package
never imports ``lancedb``.
"""

from videomem.memory.search.query import (
    SOURCES,
    Moment,
    SearchResult,
    Source,
    merge_by_rank,
    moment_thumbnails,
    search,
    visual_hits,
)
from videomem.memory.search.refresh import (
    ANN_MIN_ROWS,
    CAPTION_INDEX,
    SLOT_INDEX_PREFIX,
    Embed,
    RefreshReport,
    refresh_caption_index,
    refresh_search_indexes,
    refresh_slot_index,
    slot_index_name,
)
from videomem.memory.search.speech_index import SPEECH_INDEX, refresh_speech_index

__all__ = [
    "ANN_MIN_ROWS",
    "CAPTION_INDEX",
    "SLOT_INDEX_PREFIX",
    "SOURCES",
    "SPEECH_INDEX",
    "Embed",
    "Moment",
    "RefreshReport",
    "SearchResult",
    "Source",
    "merge_by_rank",
    "moment_thumbnails",
    "refresh_caption_index",
    "refresh_search_indexes",
    "refresh_slot_index",
    "refresh_speech_index",
    "search",
    "slot_index_name",
    "visual_hits",
]
