"""Pictures of stored memories (matplotlib, files only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videomem.memory.schema import VideoRecord
from videomem.pipeline.errors import ConfigError


def plot_slots(record: VideoRecord, slots: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Draw one bar per memory slot along the video's timeline (width = the span it
    covers, height and colour = frames merged into it) and save it to ``out``."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'videomem[plot]' (or matplotlib)"
        ) from None
    from matplotlib import cm, colors

    sizes = [int(s["size"]) for s in slots] or [1]
    norm = colors.Normalize(vmin=0, vmax=max(sizes))
    cmap = matplotlib.colormaps["viridis"]
    fig, ax = plt.subplots(figsize=(10, 3), constrained_layout=True)
    for s in slots:
        width = max(float(s["end_s"]) - float(s["start_s"]), 1e-3)
        ax.bar(
            float(s["start_s"]),
            int(s["size"]),
            width=width,
            align="edge",
            color=cmap(norm(int(s["size"]))),
            edgecolor="black",
            linewidth=0.3,
        )
    end = record.duration_s or max((float(s["end_s"]) for s in slots), default=1.0)
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frames merged")
    ax.set_title(f"{record.video_id[:16]}  {Path(record.uri).name}  ({len(slots)} slots)")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="slot size")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
