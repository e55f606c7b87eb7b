"""Video memories, in three rooms.

* Consolidation (this folder's top-level modules): adjacent-frame merging (adaptive
  and MovieChat), MA-LMM compression, re-consolidation to K slots, positional encoding,
  the streaming builder, slot thumbnails and quality measures. Pure tensor code: no
  I/O, never imports transformers. Re-exported here.
* :mod:`videomem.memory.store`: the LanceDB persistence layer, the one way into the
  store's tables (schemas, row codecs, commit protocol, lease, repair, export).
* :mod:`videomem.memory.search`: the search indexes and the query, through the Store.
"""

from videomem.memory.adaptive import AdaptiveChain
from videomem.memory.builder import MemoryBuilder
from videomem.memory.consolidate import consolidate_memory
from videomem.memory.merge import (
    Compressed,
    Merged,
    adjacent_similarity,
    mbc_compress,
    merge_adjacent,
    pair_similarity,
    pooled,
)
from videomem.memory.positional import frame_positions, hierarchical_positions

__all__ = [
    "AdaptiveChain",
    "Compressed",
    "MemoryBuilder",
    "Merged",
    "adjacent_similarity",
    "consolidate_memory",
    "frame_positions",
    "hierarchical_positions",
    "mbc_compress",
    "merge_adjacent",
    "pair_similarity",
    "pooled",
]
