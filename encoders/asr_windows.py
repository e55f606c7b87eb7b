"""Bounded audio windows for the speech recogniser, cut at silence.

A recogniser given a whole film would hold the whole track (690 MB of float32 for 3
hours) and its VAD output at once. Instead the audio stream (``pipeline.audio``'s
chunks) is regrouped into consecutive windows of about ``window_s`` seconds, each
transcribed on its own with its times offset.

Design decisions:

* A window boundary that falls inside a word garbles that word twice, so the cut is
  moved back to the latest pause in the window's last ``search_s`` seconds, as the
  voice-activity detector sees it (``find_cut``, Silero VAD in ``encoders.asr``).
  Without a pause there (uninterrupted speech for ``search_s``) the window is cut at
  its full length.
* What lies after the cut is carried into the next window, so no sample is dropped or
  read twice: the windows tile the stream exactly, and a sample's time is its
  window's ``start_s`` plus its offset.
* Memory: at most one window plus one incoming chunk is held (``window_s +
  chunk_s`` seconds of float32), however long the stream.
* ``find_cut`` is a plain callable (samples -> index or None), so the windowing is
  tested with a deterministic stand-in and the recogniser owns the VAD model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
from videomem.pipeline.audio import SAMPLE_RATE, AudioChunk
from videomem.pipeline.errors import ConfigError

__all__ = ["FindCut", "speech_windows"]

#: samples of the tail of a window -> where to cut in it (an index into those
#: samples), or None when there is no pause to cut at
FindCut = Callable[[np.ndarray], "int | None"]


def speech_windows(
    chunks: Iterable[AudioChunk],
    window_s: float,
    find_cut: FindCut | None = None,
    search_s: float = 30.0,
) -> Iterator[AudioChunk]:
    """Regroup consecutive ``chunks`` into windows of at most ``window_s`` seconds
    (the last one shorter), each ending at a pause found by ``find_cut`` in its last
    ``search_s`` seconds when there is one. Chunks must be consecutive (each starts
    where the previous ended) and at ``SAMPLE_RATE``."""
    if not window_s > 0 or search_s < 0:
        raise ConfigError(f"bad speech window: window_s={window_s}, search_s={search_s}")
    window = round(window_s * SAMPLE_RATE)
    search = min(window, round(search_s * SAMPLE_RATE))
    held: list[np.ndarray] = []
    held_n = 0
    start: float | None = None
    for chunk in chunks:
        if chunk.sample_rate != SAMPLE_RATE:
            raise ConfigError(
                f"audio at {chunk.sample_rate} Hz; the recogniser takes {SAMPLE_RATE}"
            )
        if start is None:
            start = chunk.start_s
        held.append(chunk.samples)
        held_n += len(chunk.samples)
        while held_n >= window:
            audio = np.concatenate(held) if len(held) > 1 else held[0]
            cut = window
            if find_cut is not None and search > 0:
                at = find_cut(audio[window - search : window])
                if at is not None and 0 < at <= search:
                    cut = window - search + at
            yield AudioChunk(audio[:cut], start)
            rest = audio[cut:]
            # a copy, so the yielded window's buffer is not kept alive by the rest
            held, held_n = ([rest.copy()] if len(rest) else []), len(rest)
            start += cut / SAMPLE_RATE
    if held_n and start is not None:
        yield AudioChunk(np.concatenate(held) if len(held) > 1 else held[0], start)
