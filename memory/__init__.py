"""The memory algorithms: adjacent-frame merging, MA-LMM compression, positional
encoding, and the streaming builder. Pure tensor code; never imports transformers."""

from videomem.memory.builder import MemoryBuilder
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
    "Compressed",
    "MemoryBuilder",
    "Merged",
    "adjacent_similarity",
    "frame_positions",
    "hierarchical_positions",
    "mbc_compress",
    "merge_adjacent",
    "pair_similarity",
    "pooled",
]
