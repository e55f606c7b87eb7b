"""Pictures of stored memories (matplotlib, files only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videomem.memory.store import VideoRecord
from videomem.pipeline.errors import ConfigError
from videomem.pipeline.transcript import SpeechSegment


def plot_slots(record: VideoRecord, slots: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Draw one bar per memory slot along the video's timeline (width = the span it
    covers, height and colour = frames merged into it) and save it to ``out``."""
    plt = _pyplot()
    import matplotlib
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


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'videomem[plot]' (or matplotlib)"
        ) from None
    return plt


def _image(jpeg: bytes | None) -> Any:
    """A stored JPEG as an RGB array (grey placeholder when absent)."""
    import io

    import numpy as np
    from PIL import Image

    if jpeg is None:
        return np.full((90, 160, 3), 200, dtype=np.uint8)
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def _save(fig: Any, plt: Any, out: str | Path) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_timeline(
    record: VideoRecord,
    slots: Sequence[dict[str, Any]],
    thumbnails: Sequence[bytes | None],
    captions: Sequence[dict[str, Any]],
    out: str | Path,
    speech: Sequence[SpeechSegment] = (),
) -> Path:
    """The memory as a strip: each slot's thumbnail drawn over the span it covers,
    the frames merged into it below, and the tags/captions of each span under that,
    over a band of the spans where something is said (``speech``)."""
    import textwrap

    plt = _pyplot()
    end = record.duration_s or max((float(s["end_s"]) for s in slots), default=1.0)
    end = max(end, max((float(s["end_s"]) for s in slots), default=0.0))
    fig, (top, mid, low) = plt.subplots(
        3, 1, figsize=(14, 6), sharex=True, gridspec_kw={"height_ratios": [2.2, 1, 2.0]}
    )
    for s, jpeg in zip(slots, thumbnails, strict=True):
        a, b = float(s["start_s"]), max(float(s["end_s"]), float(s["start_s"]) + 1e-3)
        top.imshow(_image(jpeg), extent=(a, b, 0, 1), aspect="auto", interpolation="bilinear")
        top.axvline(a, color="white", linewidth=1.5)
        mid.bar(a, int(s["size"]), width=b - a, align="edge", color="#4c72b0",
                edgecolor="black", linewidth=0.3)  # fmt: skip
        mid.text((a + b) / 2, int(s["size"]), str(s["size"]), ha="center", va="bottom", fontsize=7)
    top.set_ylim(0, 1)
    top.set_yticks([])
    top.set_title(
        f"{record.video_id[:16]}  {Path(record.uri).name}  ({len(slots)} slots; "
        "thumbnail = the frame closest to each slot's tokens)"
    )
    mid.set_ylabel("frames")
    low.set_ylim(0, 1)
    low.set_yticks([])
    shown = [c for c in captions if c["kind"] != "global"]
    for c in shown:
        a, b = float(c["start_s"]), float(c["end_s"])
        raw = str(c["text"] or "")
        if b - a < end / 8:  # a narrow span: one vertical line, so neighbours never collide
            low.text((a + b) / 2, 0.97, textwrap.shorten(raw, 34, placeholder="…"), ha="center", va="top",
                     fontsize=6, rotation=90)  # fmt: skip
        else:
            text = "\n".join(textwrap.wrap(raw, 30)[:4])
            low.text((a + b) / 2, 0.95, text, ha="center", va="top", fontsize=6)
        low.axvline(a, color="grey", linewidth=0.5)
    if not shown:
        low.text(end / 2, 0.5, "(no tags or captions)", ha="center", va="center", color="grey")
    for seg in speech:  # a band along the bottom where words are said
        low.axvspan(seg.start_s, seg.end_s, ymin=0.0, ymax=0.1, color="#dd8452", alpha=0.8)
    if speech:
        low.set_ylabel("speech ▁", color="#dd8452", fontsize=8)
    low.set_xlim(0, end)
    low.set_xlabel("time (s)")
    fig.tight_layout()
    return _save(fig, plt, out)


def plot_contact_sheet(
    query: str, moments: Sequence[Any], thumbnails: Sequence[bytes | None], out: str | Path
) -> Path:
    """The top search results as a grid of thumbnails, each titled with its video,
    time span, score and source."""
    import math

    plt = _pyplot()
    n = max(1, len(moments))
    cols = min(5, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (m, jpeg) in enumerate(zip(moments, thumbnails, strict=True)):
        ax = axes.flat[i]
        ax.imshow(_image(jpeg))
        what = f"[{m.kind}] {m.text}" if m.text else f"slot {m.slot}"
        ax.set_title(
            f"{i + 1}. {Path(m.uri).name or m.video_id[:12]}  {m.start_s:.1f}-{m.end_s:.1f}s\n"
            f"{m.source} {m.score:.3f}  {what[:38]}",
            fontsize=7,
        )
    fig.suptitle(f"search: {query!r}", fontsize=10)
    fig.tight_layout()
    return _save(fig, plt, out)
