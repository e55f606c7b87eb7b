"""One thumbnail per memory slot, chosen while streaming, without holding frames.

A slot's thumbnail is the frame whose mean-pooled tokens are closest (cosine) to the
slot's mean-pooled merged tokens — the frame that best shows what the slot remembers.
:class:`ThumbnailTracker` keeps one candidate per slot: a small payload (the caller's
JPEG bytes) and the frame's pooled vector [D]. After each batch the caller hands it the
builder's current slots (``MemoryBuilder.slot_view``); every slot keeps, of the
candidates inside its span (its own, those of slots merged into it, the batch's new
frames), the one closest to its merged tokens now. So when two slots merge, the
thumbnail of the one closer to the merged result survives, and at most
``slots + batch`` candidates are held at any time.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch
import torch.nn.functional as F


class ThumbnailTracker:
    """Candidates (time, pooled vector [D], payload) pruned to one per slot."""

    def __init__(self) -> None:
        self._t: list[float] = []
        self._vec: list[torch.Tensor] = []
        self._payload: list[bytes] = []

    def __len__(self) -> int:
        return len(self._t)

    def add(
        self, timestamps: Sequence[float], pooled: torch.Tensor, payloads: Sequence[bytes]
    ) -> None:
        """New frames: timestamps [B] (after every held one), pooled tokens [B, D]."""
        if not (len(timestamps) == pooled.shape[0] == len(payloads)):
            raise ValueError("timestamps, pooled and payloads must have the same length")
        self._t += [float(t) for t in timestamps]
        self._vec += list(pooled.detach().float().cpu())
        self._payload += list(payloads)

    def settle(self, starts: Sequence[float], pooled: torch.Tensor) -> None:
        """Keep one candidate per slot: slots start at ``starts`` [L] (time order) and
        have mean-pooled tokens ``pooled`` [L, D]. Candidates before the first slot
        (forgotten by ``drop_oldest``) are dropped."""
        if not self._t:
            return
        slot_of = [bisect.bisect_right(starts, t) - 1 for t in self._t]
        target = F.normalize(pooled.detach().float().cpu(), dim=-1)
        keep: list[int] = []
        i = 0
        while i < len(slot_of):
            j = i
            while j < len(slot_of) and slot_of[j] == slot_of[i]:
                j += 1
            if slot_of[i] >= 0:
                if j - i == 1:
                    keep.append(i)
                else:
                    cand = F.normalize(torch.stack(self._vec[i:j]), dim=-1)
                    keep.append(i + int((cand @ target[slot_of[i]]).argmax()))
            i = j
        self._t = [self._t[k] for k in keep]
        self._vec = [self._vec[k] for k in keep]
        self._payload = [self._payload[k] for k in keep]

    def result(self, starts: Sequence[float], pooled: torch.Tensor) -> list[bytes | None]:
        """The thumbnail of each final slot (None for a slot with no candidate)."""
        self.settle(starts, pooled)
        out: list[bytes | None] = [None] * len(starts)
        for t, p in zip(self._t, self._payload, strict=True):
            out[bisect.bisect_right(starts, t) - 1] = p
        return out
