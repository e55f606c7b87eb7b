"""MovieChat's hierarchically decomposed frame positional encoding.

A model trained with a learned table of ``n`` frame positions ``P [n, D]`` cannot
index a long-term memory of more than ``n`` slots. MovieChat extends it to ``n²``
positions without training, with ``alpha = 0.01``::

    u_i        = (p_i - alpha * p_0) / (1 - alpha)
    q_(n*i + j) = alpha * u_i + (1 - alpha) * u_j

Row ``n*i + j`` is "coarse position i, fine position j". For ``i = 0``, ``u_0 = p_0``
and ``q_j = p_j`` exactly, so a memory of at most ``n`` slots sees the original table.

Only model families that add frame position embeddings (the Video-LLaMA / BLIP-2
video Q-Former family) need this; it is a pure function of the table.
"""

from __future__ import annotations

import torch
from videomem.pipeline.errors import ConfigError

ALPHA = 0.01


def hierarchical_positions(table: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """Extend a position table ``P [n, D]`` to ``Q [n*n, D]`` (same dtype and device)."""
    if table.dim() != 2 or table.shape[0] < 1:
        raise ConfigError(f"position table must be [n, D] with n >= 1, got {tuple(table.shape)}")
    if not 0.0 <= alpha < 1.0:
        raise ConfigError(f"alpha must be in [0, 1), got {alpha}")
    n, d = table.shape
    u = (table - alpha * table[0]) / (1.0 - alpha)  # [n, D]
    q = alpha * u[:, None, :] + (1.0 - alpha) * u[None, :, :]  # [i, j, D]
    return q.reshape(n * n, d)


def frame_positions(table: torch.Tensor, length: int, alpha: float = ALPHA) -> torch.Tensor:
    """Position embeddings for ``length`` memory slots: ``[length, D]``.

    Uses the table as is when it is long enough (identical to the hierarchical rows
    anyway) and the hierarchical extension otherwise.
    """
    n = table.shape[0]
    if length < 0 or length > n * n:
        raise ConfigError(
            f"{length} frame positions requested but a table of {n} extends to at most {n * n}"
        )
    if length <= n:
        return table[:length]
    return hierarchical_positions(table, alpha)[:length]
