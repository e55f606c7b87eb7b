"""Token-level redundancy between consecutive slots: which token positions change.

TimeChat-Online drops a video token when it barely differs from the same patch in
the previous frame; :func:`kept_positions` says which tokens of each slot such a rule
keeps at a threshold ``tau`` (cosine distance), and :func:`drop_tokens` is what a
memory stores with it on (``VideoMemory.keep``, the positions each slot keeps).

Design decisions:

* **tau = 0 keeps every token** (the rule is off): a memory stored at tau = 0 is
  today's, bit for bit; an identical token is otherwise "unchanged" (distance 0),
  whatever its norm (two all-zero tokens included).
* **The first slot keeps every token**: nothing precedes it.
* **Against what** (``against``): ``"previous"`` compares with the same position of
  the previous slot, as TimeChat-Online compares adjacent frames; ``"kept"``
  compares with the last token *kept* at that position, the reference a reader
  would fill a dropped token from, so a slowly drifting position is kept once it has
  drifted ``tau`` away from what is stored (with ``"previous"`` it may never be).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from videomem.pipeline.errors import ConfigError

Against = Literal["previous", "kept"]

# Norm below which a token counts as zero (two zero tokens are unchanged, not "far").
_EPS = 1e-8


def position_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine distance per position: ``[..., N, D] x [..., N, D] -> [..., N]`` float32
    in [0, 2]; 0 where both tokens are zero."""
    a, b = a.float(), b.float()
    dist = 1.0 - F.cosine_similarity(a, b, dim=-1, eps=_EPS)
    both_zero = (a.norm(dim=-1) < _EPS) & (b.norm(dim=-1) < _EPS)
    return torch.where(both_zero, torch.zeros_like(dist), dist).clamp(0.0, 2.0)


def kept_positions(tokens: torch.Tensor, tau: float, against: Against = "previous") -> torch.Tensor:
    """Which tokens of each slot change by more than ``tau`` (cosine distance) against
    the same position before: ``tokens [L, N, D] -> keep [L, N]`` bool.

    Slot 0 keeps every position; ``tau == 0`` keeps every token of every slot.
    """
    if tokens.dim() != 3:
        raise ConfigError(f"kept_positions: expected tokens [L, N, D], got {tuple(tokens.shape)}")
    if not (math.isfinite(tau) and 0.0 <= tau <= 2.0):
        raise ConfigError(f"kept_positions: tau must be a cosine distance in [0, 2], got {tau}")
    if against not in ("previous", "kept"):
        raise ConfigError(f"kept_positions: against must be 'previous' or 'kept', got {against!r}")
    keep = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    if tau == 0.0 or tokens.shape[0] < 2:
        return keep
    if against == "previous":
        keep[1:] = position_distance(tokens[1:], tokens[:-1]) > tau
        return keep
    ref = tokens[0].float().clone()  # [N, D] the last kept token per position
    for slot in range(1, tokens.shape[0]):
        changed = position_distance(tokens[slot], ref) > tau
        keep[slot] = changed
        ref[changed] = tokens[slot][changed].float()
    return keep


def kept_fraction(keep: torch.Tensor) -> float:
    """Fraction of tokens kept: ``keep [L, N]`` bool -> float in [0, 1] (1.0 if empty)."""
    return float(keep.float().mean()) if keep.numel() else 1.0


def drop_tokens(tokens: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token dropping as a memory stores it: ``tokens [L, N, D] -> (dense [L, N, D],
    keep [L, N] bool | None)``.

    ``keep`` is :func:`kept_positions` against the last *kept* token at each position;
    ``dense`` is ``tokens`` with every dropped token replaced by that last kept token
    (what a reader fills it from), in ``tokens``' dtype. ``tau == 0`` returns
    ``(tokens, None)``: nothing dropped, the memory as it is without the option.
    """
    keep = kept_positions(tokens, tau, against="kept")
    if tau == 0.0:
        return tokens, None
    dense = tokens.clone()
    for slot in range(1, tokens.shape[0]):
        dense[slot] = torch.where(keep[slot, :, None], tokens[slot], dense[slot - 1])
    return dense, keep
