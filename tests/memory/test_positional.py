"""memory.positional: MovieChat's hierarchically decomposed positional encoding."""

from __future__ import annotations

import pytest
import torch
from videomem.memory.positional import frame_positions, hierarchical_positions
from videomem.pipeline.errors import ConfigError


def naive_positions(p: torch.Tensor, alpha: float = 0.01) -> torch.Tensor:
    """MovieChat's reference loop, verbatim in structure."""
    u = [(p_i - alpha * p[0]) / (1 - alpha) for p_i in p]
    rows = []
    for i in range(p.shape[0]):
        for j in range(p.shape[0]):
            rows.append(alpha * u[i] + (1 - alpha) * u[j])
    return torch.stack(rows)


def test_matches_reference_loop_and_shape() -> None:
    p = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    q = hierarchical_positions(p)
    assert q.shape == (64, 32) and q.dtype == p.dtype
    torch.testing.assert_close(q, naive_positions(p))


def test_first_n_rows_are_the_table() -> None:
    p = torch.randn(16, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    q = hierarchical_positions(p)
    torch.testing.assert_close(q[:16], p, rtol=0, atol=1e-12)


def test_row_layout_is_coarse_times_n_plus_fine() -> None:
    p = torch.randn(4, 3, dtype=torch.float64)
    q = hierarchical_positions(p, alpha=0.1)
    u = (p - 0.1 * p[0]) / 0.9
    torch.testing.assert_close(q[4 * 2 + 3], 0.1 * u[2] + 0.9 * u[3])
    # rows within one coarse block stay close to the fine table: alpha is small
    assert (q[4:8] - p).abs().max() < (p - p[0]).abs().max() * 0.2 + 1e-9


def test_frame_positions() -> None:
    p = torch.randn(4, 3)
    assert torch.equal(frame_positions(p, 3), p[:3])
    torch.testing.assert_close(frame_positions(p, 10), hierarchical_positions(p)[:10])
    assert frame_positions(p, 0).shape == (0, 3)
    with pytest.raises(ConfigError, match="at most 16"):
        frame_positions(p, 17)


def test_bad_table() -> None:
    with pytest.raises(ConfigError):
        hierarchical_positions(torch.zeros(3))
    with pytest.raises(ConfigError):
        hierarchical_positions(torch.zeros(3, 2), alpha=1.0)
