"""The memory record: a video's consolidated long-term memory (``VideoMemory``), the
last hand-off of the index stage (``FrameTokens`` → consolidate → ``VideoMemory``) and
what the store keeps and the QA stage reads.

It holds torch tensors: it is produced and consumed by tensor code (``memory/``, qa/).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from videomem.memory.config import MemoryConfig


@dataclass(slots=True)
class VideoMemory:
    """A video's consolidated long-term memory: L slots of N tokens of width D.

    tokens:    float16 (stored) [L, N, D]
    sizes:     int64   [L]   frames merged into each slot (sums to frames_seen, except
                             slots forgotten by ``overflow="drop_oldest"``)
    start_s:   float64 [L]   time span each slot covers; spans are ordered and
    end_s:     float64 [L]   contiguous for the "adaptive" and "moviechat" methods
    embedding: float32 [L, E] pooled embedding per slot for search, or None
    recent_tokens / recent_timestamps: the last ``keep_recent`` raw (unmerged)
        frames [S, N, D] / [S], for breakpoint-mode questions; may be None.
    thumbnails: [L] JPEG bytes (about 160 px on the long side) per slot, or None.
    keep:      bool    [L, N] the token positions each slot stores (token dropping,
                             ``MemoryConfig.token_tau`` > 0), or None: every token.
                             ``tokens`` stays dense: a dropped token holds the last
                             kept token at its position (``memory.redundancy.drop_tokens``),
                             so a reader that wants every position has a faithful one,
                             and a reader that lays out only what is stored (QA) takes
                             ``tokens[l][keep[l]]`` in grid order.
    """

    video_id: str
    tokens: torch.Tensor
    sizes: torch.Tensor
    start_s: torch.Tensor
    end_s: torch.Tensor
    embedding: torch.Tensor | None
    encoder_fingerprint: str
    memory_config: MemoryConfig
    frames_seen: int
    recent_tokens: torch.Tensor | None = None
    recent_timestamps: torch.Tensor | None = None
    config_hash: str = ""  # index_config_hash(decode, memory) once stored
    # one small JPEG per slot (the frame closest to the slot's tokens), or None
    thumbnails: list[bytes | None] | None = None
    # [L, N] bool: the positions each slot stores; None: all of them (see above)
    keep: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])
