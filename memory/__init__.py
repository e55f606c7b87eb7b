"""The memory algorithms: adjacent-frame merging (adaptive and MovieChat), MA-LMM
compression, re-consolidation to K slots, positional encoding, and the streaming
builder. Pure tensor code; never imports transformers."""

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
